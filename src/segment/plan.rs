//! [`SegmentPlan`]: the JSON manifest of a segmentation run.

use serde::{Deserialize, Serialize};

use super::{FrameStats, NoSpeech, Segment, Segmenter, SegmenterOptions};
use crate::time::{self, Samples, RATE};
use crate::{Error, ErrorKind, Result};

/// One entry of a [`SegmentPlan`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedSegment {
    /// 0-based position in the plan.
    pub index: usize,
    /// Start in milliseconds (rounded to nearest).
    pub start_ms: u64,
    /// End in milliseconds (rounded to nearest).
    pub end_ms: u64,
    /// Start in samples at 16 kHz (exact).
    pub start_sample: Samples,
    /// End in samples at 16 kHz, exclusive (exact).
    pub end_sample: Samples,
    /// Fraction of the billed audio that was voiced frames.
    pub speech_ratio: f32,
    /// The stretches `[start, end)` of the original timeline (samples at 16 kHz) whose audio
    /// is in the segment, concatenated in order: long silences between utterances are left
    /// out. A position `t` in the segment's audio is original time
    /// `spans[i].0 + (t − (length of spans[..i]))`.
    #[serde(default)]
    pub spans: Vec<[Samples; 2]>,
    /// The segment's audio file, relative to the manifest, when written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// The segmentation of one input: a JSON manifest, or a "no speech" outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentPlan {
    /// The input's name (file path or URL) as the caller gave it.
    pub source: Option<String>,
    /// The input's container / codec as decoded (e.g. `"mp3"`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_codec: Option<String>,
    /// The input's native sample rate in Hz, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sample_rate: Option<u32>,
    /// The input's channel count (downmixed to mono before segmentation), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_channels: Option<u16>,
    /// Sample rate of the sample positions: always 16000.
    pub sample_rate: u32,
    /// Input length in samples at 16 kHz.
    pub total_samples: Samples,
    /// Input length in milliseconds.
    pub total_ms: u64,
    /// The segments, in order, non-overlapping.
    pub segments: Vec<PlannedSegment>,
    /// Why there are no segments (`None` when there are some).
    pub no_speech: Option<NoSpeech>,
    /// Frame counts of the analysis.
    pub stats: FrameStats,
}

impl SegmentPlan {
    /// Builds the plan of `segments` over an input of `total_samples`.
    pub fn new(
        source: Option<String>,
        segments: &[Segment],
        total_samples: Samples,
        stats: FrameStats,
    ) -> SegmentPlan {
        let segments: Vec<PlannedSegment> = segments
            .iter()
            .enumerate()
            .map(|(index, s)| PlannedSegment {
                index,
                start_ms: time::to_ms(s.start),
                end_ms: time::to_ms(s.end),
                start_sample: s.start,
                end_sample: s.end,
                speech_ratio: s.speech_ratio,
                spans: s
                    .kept
                    .spans()
                    .iter()
                    .map(|k| [k.original, k.original + k.len])
                    .collect(),
                file: None,
            })
            .collect();
        let no_speech = if segments.is_empty() {
            Some(stats.no_speech().unwrap_or(NoSpeech::NoSpeechFound))
        } else {
            None
        };
        SegmentPlan {
            source,
            source_codec: None,
            source_sample_rate: None,
            source_channels: None,
            sample_rate: RATE,
            total_samples,
            total_ms: time::to_ms(total_samples),
            segments,
            no_speech,
            stats,
        }
    }

    /// Segments the whole of `samples` (16 kHz mono) in one call.
    pub fn from_samples(
        source: Option<String>,
        samples: &[f32],
        opts: SegmenterOptions,
    ) -> Result<SegmentPlan> {
        let mut seg = Segmenter::new(opts)?;
        let mut out = Vec::new();
        seg.push(samples, &mut out);
        seg.finish(&mut out);
        Ok(SegmentPlan::new(source, &out, seg.position(), seg.stats()))
    }

    /// Records what the input was before decoding (codec, native rate, channels).
    pub fn with_source_info(
        mut self,
        codec: impl Into<String>,
        sample_rate: u32,
        channels: u16,
    ) -> SegmentPlan {
        self.source_codec = Some(codec.into());
        self.source_sample_rate = Some(sample_rate);
        self.source_channels = Some(channels);
        self
    }

    /// True when there is no segment: nothing to send to the API; see [`SegmentPlan::no_speech`].
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The manifest as pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| {
            Error::new(ErrorKind::Encode {
                what: format!("segment manifest: {e}"),
            })
        })
    }

    /// Parses a manifest written by [`SegmentPlan::to_json`].
    pub fn from_json(text: &str) -> Result<SegmentPlan> {
        serde_json::from_str(text).map_err(|e| {
            Error::new(ErrorKind::Malformed {
                path: None,
                what: format!("segment manifest: {e}"),
            })
        })
    }
}
