//! Decoding alone, one core: real speech (testdata/speech, three levels, DTX gaps) encoded
//! by rvoip-codec-core in the lowest and the highest mode, with and without DTX. Criterion's
//! throughput is samples per second; divide by 8000 for × realtime.
//!
//! `cargo bench -p asr-pipeline-amrnb --bench decode`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "../tests/common/mod.rs"]
#[macro_use]
mod common;

use common::Frame;

ours!(amrnb, false);

fn decode(c: &mut Criterion) {
    let pcm = common::signal::<Ours>();
    let mut g = c.benchmark_group("amrnb");
    g.throughput(Throughput::Elements(pcm.len() as u64));
    g.sample_size(20);
    for (mode, dtx) in [(0u8, false), (7, false), (7, true)] {
        let frames = common::encode::<Ours>(&pcm, mode, dtx);
        let name = format!("mode{mode}{}", if dtx { "_dtx" } else { "" });
        g.bench_function(name, |b| {
            let mut out = [0i16; amrnb::FRAME_LEN];
            b.iter(|| {
                let mut d = amrnb::Decoder::new();
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
