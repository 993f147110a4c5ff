//! Writers: WAV and FLAC, streamed block by block, decode back (with our own Decoder) to
//! exactly the 16-bit-quantised input.

use std::io::Cursor;
use std::num::NonZeroU32;
use std::path::Path;

use asr_pipeline::decode::{AudioFormat, Decoder};
use asr_pipeline::encode::{quantize, wav_bytes, FlacWriter, WavWriter};
use asr_pipeline::ErrorKind;

const RATE: NonZeroU32 = match NonZeroU32::new(16_000) {
    Some(r) => r,
    None => panic!(),
};

/// A test signal: chirp plus noise, with values beyond ±1 to exercise clamping.
fn signal(n: usize) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(9);
    (0..n)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            let chirp = (2.0 * std::f32::consts::PI * (100.0 + 2000.0 * t) * t).sin();
            let x = 0.7 * chirp + 0.1 * (rng.f32() - 0.5);
            if i % 5000 == 17 {
                1.5
            } else if i % 5000 == 18 {
                -1.5
            } else {
                x
            }
        })
        .collect()
}

fn decode(bytes: Vec<u8>) -> (Vec<f32>, Decoder) {
    let mut d = Decoder::from_reader(Cursor::new(bytes), Some(Path::new("rt"))).unwrap();
    let mut out = Vec::new();
    while d.read_mono(&mut out).unwrap() > 0 {}
    (out, d)
}

fn quantised(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&v| f32::from(quantize(v)) / 32768.0)
        .collect()
}

#[test]
fn quantize_is_the_inverse_of_s_over_32768() {
    for s in [i16::MIN, -12345, -1, 0, 1, 12345, i16::MAX] {
        assert_eq!(quantize(f32::from(s) / 32768.0), s);
    }
    assert_eq!(quantize(2.0), i16::MAX);
    assert_eq!(quantize(-2.0), i16::MIN);
    assert_eq!(quantize(f32::NAN), 0);
}

#[test]
fn wav_writer_known_length_round_trips() {
    let x = signal(40_000);
    let mut w = WavWriter::new(Vec::new(), RATE, Some(x.len() as u64)).unwrap();
    for block in x.chunks(1234) {
        w.write(block).unwrap();
    }
    let bytes = w.finish().unwrap();
    assert_eq!(bytes.len(), 44 + 2 * x.len());
    let (y, d) = decode(bytes);
    assert_eq!(d.info().format, AudioFormat::Wav);
    assert_eq!(d.info().sample_rate, RATE);
    assert_eq!(d.info().frames_hint, Some(x.len() as u64));
    assert_eq!(y, quantised(&x));
}

#[test]
fn wav_writer_unknown_length_reads_to_the_end() {
    let x = signal(10_000);
    let mut w = WavWriter::new(Vec::new(), RATE, None).unwrap();
    w.write(&x).unwrap();
    let bytes = w.finish().unwrap();
    let (y, _) = decode(bytes);
    assert_eq!(y, quantised(&x));
}

#[test]
fn wav_writer_enforces_the_declared_length() {
    let mut w = WavWriter::new(Vec::new(), RATE, Some(10)).unwrap();
    w.write(&[0.0; 5]).unwrap();
    let e = w.write(&[0.0; 6]).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Encode { .. }), "{e}");
    let e = w.finish().unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Encode { .. }), "{e}");
}

#[test]
fn wav_bytes_round_trips() {
    let x = signal(16_000 * 3);
    let bytes = wav_bytes(&x, RATE);
    let (y, _) = decode(bytes.clone());
    assert_eq!(y, quantised(&x));
    // Same bytes as the streaming writer with a known length.
    let mut w = WavWriter::new(Vec::new(), RATE, Some(x.len() as u64)).unwrap();
    w.write(&x).unwrap();
    assert_eq!(w.finish().unwrap(), bytes);
}

#[test]
fn flac_writer_round_trips_in_blocks_of_any_size() {
    // 300 000 samples: several batches of frames encoded in parallel, then a short block.
    for (n, block) in [
        (300_000, 7_777),
        (300_000, 300_000),
        (50_000, 777),
        (4096, 4096),
        (4097, 100),
        (1, 1),
        (0, 1),
    ] {
        let x = signal(n);
        let mut w = FlacWriter::new(Vec::new(), RATE).unwrap();
        for b in x.chunks(block) {
            w.write(b).unwrap();
        }
        let bytes = w.finish().unwrap();
        if n == 0 {
            // Header only: no audio frames.
            assert!(bytes.starts_with(b"fLaC"));
            continue;
        }
        assert!(bytes.len() < 2 * n + 200, "FLAC compresses");
        let (y, d) = decode(bytes);
        assert_eq!(d.info().format, AudioFormat::Flac);
        assert_eq!(d.info().sample_rate, RATE);
        assert_eq!(y, quantised(&x), "n {n} block {block}");
    }
}

/// A `Write` whose bytes can be inspected while a writer owns it.
#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Frames are encoded 16 blocks (of 4096 samples) at a time: memory is one batch.
#[test]
fn flac_writer_streams_batch_by_batch() {
    const BATCH: usize = 16 * 4096;
    let sink = Shared::default();
    let len = || sink.0.lock().unwrap().len();
    let mut w = FlacWriter::new(sink.clone(), RATE).unwrap();
    let header = len();
    assert!(header > 4);
    let x = signal(2 * BATCH + 10);
    w.write(&x[..BATCH - 1]).unwrap();
    assert_eq!(len(), header, "nothing before a batch is full");
    w.write(&x[BATCH - 1..BATCH]).unwrap();
    let one = len();
    assert!(one > header, "a full batch is written at once");
    w.write(&x[BATCH..2 * BATCH - 1]).unwrap();
    assert_eq!(len(), one, "at most one batch is held");
    w.write(&x[2 * BATCH - 1..]).unwrap();
    let two = len();
    assert!(two > one);
    w.finish().unwrap();
    assert!(len() > two);
    let bytes = sink.0.lock().unwrap().clone();
    assert_eq!(decode(bytes).0, quantised(&x));
}

#[test]
fn wav_writer_writes_the_header_first() {
    let sink = Shared::default();
    let mut w = WavWriter::new(sink.clone(), RATE, Some(100)).unwrap();
    assert_eq!(sink.0.lock().unwrap().len(), 44);
    w.write(&[0.25; 100]).unwrap();
    assert_eq!(sink.0.lock().unwrap().len(), 244);
    w.finish().unwrap();
}

/// The true length must be in STREAMINFO when the writer can seek: readers such as libsndfile
/// size the stream from it, and an upload whose header says "unknown" may be refused or mis-billed.
#[test]
fn flac_writer_on_a_seekable_sink_records_the_true_length() {
    for n in [1usize, 4095, 4096, 50_001] {
        let x = signal(n);
        // A prefix before the stream: the header is found relative to where the writer began.
        let mut cur = std::io::Cursor::new(b"JUNK".to_vec());
        cur.set_position(4);
        let mut w = FlacWriter::new(cur, RATE).unwrap();
        w.write(&x).unwrap();
        let cur = w.finish_seekable().unwrap();
        assert_eq!(
            cur.position() as usize,
            cur.get_ref().len(),
            "left at the end"
        );
        let bytes = &cur.get_ref()[4..];
        assert_eq!(&bytes[..4], b"fLaC");
        let si = &bytes[8..42];
        let min_block = u16::from_be_bytes([si[0], si[1]]);
        let max_block = u16::from_be_bytes([si[2], si[3]]);
        let min_frame = u32::from_be_bytes([0, si[4], si[5], si[6]]);
        let max_frame = u32::from_be_bytes([0, si[7], si[8], si[9]]);
        let packed = u64::from_be_bytes(si[10..18].try_into().unwrap());
        assert_eq!((min_block, max_block), (4096, 4096));
        assert_eq!(packed >> 44, u64::from(RATE.get()), "rate kept");
        assert_eq!((packed >> 41) & 7, 0, "mono");
        assert_eq!((packed >> 36) & 31, 15, "16 bits");
        assert_eq!(packed & ((1 << 36) - 1), n as u64, "total samples");
        assert!(
            min_frame > 0 && min_frame <= max_frame,
            "{min_frame} {max_frame}"
        );
        let (y, _) = decode(bytes.to_vec());
        assert_eq!(y, quantised(&x), "n {n}");
    }
}
