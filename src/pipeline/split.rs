//! Split only: the pipeline's segmentation without any API: each segment's audio as a file plus
//! a `manifest.json` (the [`SegmentPlan`]: segments with start/end in ms and samples, and the
//! file of each), for people who use another ASR system.

use std::fs;
use std::path::Path;

use super::ahead;
use super::source::{self, DecodeReporter, Input, Select};
use crate::atomic::write_atomic;
use crate::channels::Lanes;
use crate::encode::FlacWriter;
use crate::normalize::{normalize_in_place, NormalizeOptions};
use crate::segment::{Cutter, Segment, SegmentPlan, SegmenterOptions};
use crate::time::RATE_NZ;
use crate::{Error, Result};

/// The audio format of the segment files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SplitFormat {
    /// 16 kHz 16-bit mono WAV (`seg-00000.wav`). The default.
    #[default]
    Wav,
    /// 16 kHz 16-bit mono FLAC (`seg-00000.flac`).
    Flac,
}

/// Options of [`split_only`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SplitOptions {
    /// Segment file format. Default [`SplitFormat::Wav`].
    pub format: SplitFormat,
    /// Segmenter options. Default: the same as the pipeline's sync route
    /// ([`SegmenterOptions::default`] packed to 30 s).
    pub segmenter: SegmenterOptions,
    /// Per-segment loudness normalisation. Default `Some(NormalizeOptions::default())`.
    pub normalize: Option<NormalizeOptions>,
}

impl Default for SplitOptions {
    fn default() -> Self {
        SplitOptions {
            format: SplitFormat::Wav,
            segmenter: super::default_segmenter(),
            normalize: Some(NormalizeOptions::default()),
        }
    }
}

/// The manifest's file name in the output directory.
pub const MANIFEST: &str = "manifest.json";

/// `seg-00000.wav` (or `.flac`): segment `index`'s file.
fn file_name(index: usize, format: SplitFormat) -> String {
    match format {
        SplitFormat::Wav => format!("seg-{index:05}.wav"),
        SplitFormat::Flac => format!("seg-{index:05}.flac"),
    }
}

/// Segments the audio file `input` and writes each segment's audio into `out_dir` (created if
/// needed) plus [`MANIFEST`], all atomically; returns the plan. Blocking: call it from a
/// blocking thread in async code. A file without speech gives a manifest with no segments and
/// its `no_speech` reason, not an error. Errors name the file.
pub fn split_only(input: &Path, out_dir: &Path, opts: &SplitOptions) -> Result<SegmentPlan> {
    split_input(&Input::Path(input.to_path_buf()), input, out_dir, opts)
}

pub(super) fn split_input(
    input: &Input,
    name: &Path,
    out_dir: &Path,
    opts: &SplitOptions,
) -> Result<SegmentPlan> {
    fs::create_dir_all(out_dir).map_err(|e| Error::io(Some(out_dir), e))?;
    let (mut stream, _) = source::open_tracks(
        input,
        name,
        Select::Lanes(Lanes::Mixed),
        ahead::track_options(),
    )?;
    let mut cutter = Cutter::new(opts.segmenter.clone())?;
    let mut out: Vec<(Segment, Vec<f32>)> = Vec::new();
    let mut segments = Vec::new();
    let mut names = Vec::new();
    let mut write = |out: &mut Vec<(Segment, Vec<f32>)>| -> Result<()> {
        for (seg, mut audio) in out.drain(..) {
            if let Some(n) = &opts.normalize {
                normalize_in_place(&mut audio, n);
            }
            let fname = file_name(segments.len(), opts.format);
            let path = out_dir.join(&fname);
            write_atomic(&path, |w| match opts.format {
                SplitFormat::Wav => Ok(w.write_all(&crate::encode::wav_bytes(&audio, RATE_NZ))?),
                SplitFormat::Flac => {
                    // Encoded in memory (a segment is at most 60 s) so the header can carry
                    // the true length.
                    let mut f = FlacWriter::new(std::io::Cursor::new(Vec::new()), RATE_NZ)?;
                    f.write(&audio)?;
                    Ok(w.write_all(f.finish_seekable()?.get_ref())?)
                }
            })?;
            segments.push(seg);
            names.push(fname);
        }
        Ok(())
    };
    // Decoding + 16 kHz, the voice detector's frame analysis, and segmentation + writing each
    // on a thread of its own (see `ahead`): a long file uses the machine's cores.
    let mut report = DecodeReporter::new(None, 1);
    let vad = opts.segmenter.vad.clone();
    ahead::drive_ahead(&mut stream, name, false, &mut report, &vad, |block| {
        if let (Some(t), Some(f)) = (block.tracks.first(), block.frames.first()) {
            cutter.push_analysed(t, f, &mut out);
            write(&mut out)?;
        }
        Ok(true)
    })?;
    let total = stream.position();
    cutter.finish(&mut out);
    write(&mut out)?;
    let mut plan = SegmentPlan::new(
        Some(name.display().to_string()),
        &segments,
        total,
        cutter.segmenter().stats(),
    );
    for (s, f) in plan.segments.iter_mut().zip(names) {
        s.file = Some(f);
    }
    let json = plan.to_json()?;
    write_atomic(&out_dir.join(MANIFEST), |w| {
        Ok(w.write_all(json.as_bytes())?)
    })?;
    Ok(plan)
}
