//! Decoding alone, one core: real speech (testdata/speech, three levels, DTX gaps) encoded
//! by rvoip-codec-core in the lowest and the highest mode, with and without DTX. Criterion's
//! throughput is samples per second; divide by 16000 for × realtime.
//!
//! `cargo bench -p asr-pipeline-amrwb --bench decode`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "../../amrnb/tests/common/mod.rs"]
#[macro_use]
mod common;

use common::Frame;

ours!(amrwb, true);

fn decode(c: &mut Criterion) {
    let pcm = common::signal::<Ours>();
    let mut g = c.benchmark_group("amrwb");
    g.throughput(Throughput::Elements(pcm.len() as u64));
    g.sample_size(20);
    for (mode, dtx) in [(0u8, false), (8, false), (8, true)] {
        let frames = common::encode::<Ours>(&pcm, mode, dtx);
        let name = format!("mode{mode}{}", if dtx { "_dtx" } else { "" });
        g.bench_function(name, |b| {
            let mut out = [0i16; amrwb::FRAME_LEN];
            b.iter(|| {
                let mut d = amrwb::Decoder::new();
                for f in &frames {
                    match f {
                        Frame::Coded(ft, q, p) => d.decode(*ft, *q, p, &mut out),
                        Frame::Lost => d.decode_lost(&mut out),
                    }
                }
                out[0]
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
