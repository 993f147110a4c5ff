//! Split-only: no API at all. Each input goes through the library's
//! [`split_only`] (the sync route's segmentation and levels: 16 kHz mono WAV segments of at most
//! 30 s, loudness-normalised each, plus `manifest.json`, the [`SegmentPlan`] with every
//! segment's `start_ms`/`end_ms` on the original timeline and its file), written into a staging
//! folder beside `<base>.segments/` and renamed into place once complete.

use std::path::Path;

use super::engine::{Engine, FileError, Finished, Job};
use super::run::SEGMENTS_SUFFIX;
use crate::pipeline::{split_only, SplitOptions};
use crate::segment::SegmentPlan;
use crate::time::to_secs;
use crate::Error;

/// The journal settings of split-only runs (the library's default split options).
pub const SETTINGS: &str = "split-only v1";

/// Writes segment files and a manifest per input.
pub struct SplitEngine;

impl Engine for SplitEngine {
    async fn process(&self, job: Job<'_>) -> Result<Finished, FileError> {
        let final_rel = job.name.rel(SEGMENTS_SUFFIX);
        let staging = job.out.stage_dir(&final_rel)?;
        let path = job.input.path.clone();
        let dir = staging.clone();
        let plan = match tokio::task::spawn_blocking(move || split_into(&path, &dir)).await {
            Ok(r) => r?,
            Err(e) => return Err(Error::internal(format!("the split task failed: {e}")).into()),
        };
        job.out.commit_dir(&staging, &final_rel)?;
        Ok(Finished {
            audio_secs: to_secs(plan.total_samples),
            outputs: vec![final_rel],
        })
    }
}

/// Splits `input` into `dir` (blocking).
fn split_into(input: &Path, dir: &Path) -> Result<SegmentPlan, FileError> {
    split_only(input, dir, &SplitOptions::default())
        .map_err(|e| FileError::from_lib(&e.with_path(input)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::outputs::OutDir;
    /// The manifest's documented name.
    const MANIFEST: &str = "manifest.json";

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
        let plan = split_into(&input, &staging).unwrap();
        out.commit_dir(&staging, Path::new("x.segments")).unwrap();
        let dir = out.root().join("x.segments");
        let manifest =
            SegmentPlan::from_json(&std::fs::read_to_string(dir.join(MANIFEST)).unwrap()).unwrap();
        assert_eq!(manifest, plan);
        let total = hound::WavReader::open(&input).unwrap().duration();
        assert_eq!(manifest.total_samples, u64::from(total));
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
