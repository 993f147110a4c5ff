//! `--split-only`: no API at all. Each input's speech segments (the ones the sync route would
//! send: 16 kHz mono, at most 60 s, loudness-normalised per segment) are written as
//! `<base>.segments/seg-00000.wav`, ... with `<base>.segments/manifest.json` (the
//! [`SegmentPlan`]: every segment's `start_ms`/`end_ms` on the original timeline and its
//! file). The folder is assembled under a temporary name and renamed into place when complete.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use asr_pipeline::normalize::normalize_in_place;
use asr_pipeline::pipeline::SplitOptions;
use asr_pipeline::segment::{wav_bytes, Cutter, Segment, SegmentPlan};
use asr_pipeline::stream::{AudioStream, StreamOptions};
use asr_pipeline::time::to_secs;

use crate::engine::{Engine, Events, FileError, Finished, Job};
use crate::run::SEGMENTS_SUFFIX;

/// The journal settings of split-only runs (segmenter defaults).
pub const SETTINGS: &str = "split-only v1";

/// The manifest's name inside `<base>.segments/`.
pub const MANIFEST: &str = "manifest.json";

/// Writes segment files and a manifest per input.
pub struct SplitEngine;

impl SplitEngine {
    /// The engine.
    pub fn new() -> SplitEngine {
        SplitEngine
    }
}

/// Sets the flag when dropped: the blocking work sees that its caller is gone (Ctrl-C).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Engine for SplitEngine {
    async fn process(&self, job: Job<'_>) -> Result<Finished, FileError> {
        let cancelled = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancelled.clone());
        let final_rel = job.name.rel(SEGMENTS_SUFFIX);
        let staging = job.out.stage_dir(&final_rel).map_err(FileError::output)?;
        let path = job.input.path.clone();
        let events = job.events.clone();
        let source_name = job.input.path.to_string_lossy().into_owned();
        let task = tokio::task::spawn_blocking(move || {
            split_file(&path, &staging, source_name, &events, &cancelled).map(|p| (p, staging))
        });
        let (plan, staging) = match task.await {
            Ok(r) => r?,
            Err(e) => {
                return Err(FileError::output(anyhow::anyhow!(
                    "the split task failed: {e}"
                )))
            }
        };
        job.out
            .commit_dir(&staging, &final_rel)
            .map_err(FileError::output)?;
        Ok(Finished {
            audio_secs: to_secs(plan.total_samples),
            outputs: vec![final_rel],
        })
    }
}

/// Decodes, segments and writes one input into `staging`; returns its plan.
fn split_file(
    path: &Path,
    staging: &Path,
    source_name: String,
    events: &Events,
    cancelled: &AtomicBool,
) -> Result<SegmentPlan, FileError> {
    let lib = |e: asr_pipeline::Error| FileError::from_lib(&e.with_path(path));
    let source = source::open(path).map_err(lib)?;
    let mut stream =
        AudioStream::from_source(source, Some(path), StreamOptions::default()).map_err(lib)?;
    // The same segmentation and levels as the pipeline's sync route.
    let opts = SplitOptions::default();
    let mut cutter = Cutter::new(opts.segmenter.clone()).map_err(lib)?;
    let mut pieces: Vec<(Segment, Vec<f32>)> = Vec::new();
    let mut segments: Vec<Segment> = Vec::new();
    let mut files: Vec<String> = Vec::new();
    let norm = opts.normalize;
    let mut write = |pieces: &mut Vec<(Segment, Vec<f32>)>| -> Result<(), FileError> {
        for (seg, mut samples) in pieces.drain(..) {
            if let Some(n) = &norm {
                normalize_in_place(&mut samples, n);
            }
            let name = SegmentPlan::segment_file_name(segments.len());
            let bytes = wav_bytes(&samples).map_err(lib)?;
            crate::outputs::write_atomic(staging, name.as_ref(), &bytes)
                .map_err(FileError::output)?;
            segments.push(seg);
            files.push(name);
        }
        Ok(())
    };
    loop {
        if cancelled.load(Ordering::Relaxed) {
            return Err(FileError::output(anyhow::anyhow!("cancelled")));
        }
        let block = stream.next_block().map_err(lib)?;
        let Some(block) = block else { break };
        events.audio(to_secs(block.samples.len() as u64));
        cutter.push(block.samples, &mut pieces);
        write(&mut pieces)?;
    }
    cutter.finish(&mut pieces);
    write(&mut pieces)?;
    let mut plan = SegmentPlan::new(
        Some(source_name),
        &segments,
        stream.position(),
        cutter.segmenter().stats(),
    );
    for (s, f) in plan.segments.iter_mut().zip(files) {
        s.file = Some(f);
    }
    let json = plan.to_json().map_err(lib)?;
    crate::outputs::write_atomic(staging, MANIFEST.as_ref(), json.as_bytes())
        .map_err(FileError::output)?;
    Ok(plan)
}

/// Opening an input as a mono source: the decode module.
mod source {
    use super::*;
    use asr_pipeline::decode::Decoder;
    use asr_pipeline::stream::MonoSource;
    use asr_pipeline::Result;
    use std::num::NonZeroU32;

    /// The [`Decoder`] as the stream's source.
    pub struct DecoderSource(Decoder);

    pub fn open(path: &Path) -> Result<DecoderSource> {
        Decoder::open(path).map(DecoderSource)
    }

    impl MonoSource for DecoderSource {
        fn sample_rate(&self) -> NonZeroU32 {
            self.0.info().sample_rate
        }
        fn read_mono(&mut self, out: &mut Vec<f32>) -> Result<usize> {
            self.0.read_mono(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::OutDir;
    use asr_pipeline::segment::SegmentPlan;

    fn unit(name: &str) -> Vec<i16> {
        let path = format!("{}/testdata/speech/{name}.wav", env!("CARGO_MANIFEST_DIR"));
        hound::WavReader::open(path)
            .unwrap()
            .into_samples::<i16>()
            .map(Result::unwrap)
            .collect()
    }

    /// Two speech units (committed fixtures, 16 kHz) in silence, as a stereo 16 kHz WAV;
    /// returns the units' [start, end) in ms.
    fn scene(path: &Path) -> Vec<(u64, u64)> {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        let mut pos = 0u64;
        let mut truth = Vec::new();
        let silence = |w: &mut hound::WavWriter<_>, pos: &mut u64, n: u64| {
            for _ in 0..n {
                w.write_sample(0i16).unwrap();
                w.write_sample(0i16).unwrap();
            }
            *pos += n;
        };
        silence(&mut w, &mut pos, 16_000);
        for name in ["u2_hello", "u3_hold"] {
            let u = unit(name);
            let start = pos;
            for s in &u {
                w.write_sample(*s).unwrap();
                w.write_sample(*s).unwrap();
            }
            pos += u.len() as u64;
            truth.push((start / 16, pos / 16));
            silence(&mut w, &mut pos, 3 * 16_000);
        }
        w.finalize().unwrap();
        truth
    }

    #[test]
    fn segments_and_manifest_land_at_the_original_times() {
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("in.wav");
        let truth = scene(&input);
        let out = OutDir::open(&d.path().join("out"), &[], &[]).unwrap();
        let staging = out.stage_dir(Path::new("x.segments")).unwrap();
        let journal = std::sync::Arc::new(crate::journal::Journal::open(&out).unwrap());
        let progress = std::sync::Arc::new(crate::progress::Progress::new(false, 1, None));
        let events = Events::new(
            journal,
            progress,
            crate::journal::FileKey {
                path: "in".into(),
                size: 0,
                mtime_ns: 0,
            },
            SETTINGS.into(),
            "x".into(),
            vec![],
        );
        let plan = split_file(
            &input,
            &staging,
            "in.wav".into(),
            &events,
            &AtomicBool::new(false),
        )
        .unwrap();
        out.commit_dir(&staging, Path::new("x.segments")).unwrap();
        let dir = out.root().join("x.segments");
        let manifest =
            SegmentPlan::from_json(&std::fs::read_to_string(dir.join(MANIFEST)).unwrap()).unwrap();
        assert_eq!(manifest, plan);
        let total = hound::WavReader::open(&input).unwrap().duration();
        assert_eq!(manifest.total_samples, u64::from(total));
        assert!((events.audio_reported() - f64::from(total) / 16_000.0).abs() < 0.001);
        // Each unit is covered by a segment that starts and ends near it (padding ≤ 0.5 s).
        assert_eq!(manifest.segments.len(), 2, "{manifest:?}");
        for (s, (a, b)) in manifest.segments.iter().zip(truth) {
            assert!(s.start_ms <= a && a - s.start_ms <= 500, "{s:?}");
            assert!(s.end_ms >= b && s.end_ms - b <= 500, "{s:?}");
            let f = dir.join(s.file.as_deref().unwrap());
            let r = hound::WavReader::open(&f).unwrap();
            assert_eq!(r.spec().sample_rate, 16_000);
            assert_eq!(r.spec().channels, 1);
            assert_eq!(u64::from(r.duration()), s.end_sample - s.start_sample);
        }
        assert!(!staging.exists());
    }
}
