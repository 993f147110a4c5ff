//! [`Cutter`]: the segmenter plus a bounded ring of audio.

use std::collections::VecDeque;

use super::{Segment, Segmenter, SegmenterOptions};
use crate::time::{Samples, RATE};
use crate::Result;

/// A [`Segmenter`] with a bounded ring of audio: hands out each segment with its samples.
///
/// Memory: at most [`Segmenter::lookback`] + 1 s of samples, whatever the input length.
#[derive(Debug)]
pub struct Cutter {
    seg: Segmenter,
    ring: VecDeque<f32>,
    /// Timeline position of `ring[0]`.
    ring_start: Samples,
    keep: usize,
    segs: Vec<Segment>,
}

/// Input is fed to the segmenter in chunks of at most this many samples (1 s), which bounds the
/// ring to `lookback + CHUNK`.
const CHUNK: usize = RATE as usize;

impl Cutter {
    /// A cutter with the given segmenter options.
    pub fn new(opts: SegmenterOptions) -> Result<Self> {
        let seg = Segmenter::new(opts)?;
        let keep = usize::try_from(seg.lookback()).unwrap_or(usize::MAX);
        Ok(Cutter {
            seg,
            ring: VecDeque::with_capacity(keep.saturating_add(CHUNK).min(1 << 22)),
            ring_start: 0,
            keep,
            segs: Vec::new(),
        })
    }

    /// The segmenter inside (options, stats, position).
    pub fn segmenter(&self) -> &Segmenter {
        &self.seg
    }

    /// Samples of audio held right now (bounded by `lookback + 1 s`).
    pub fn buffered(&self) -> usize {
        self.ring.len()
    }

    /// Feeds samples; appends each segment that is now final with a copy of the audio it sends
    /// (its [`Segment::kept`] spans, concatenated).
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<(Segment, Vec<f32>)>) {
        for chunk in samples.chunks(CHUNK) {
            self.ring.extend(chunk.iter().copied());
            self.seg.push(chunk, &mut self.segs);
            self.drain(out);
            let excess = self.ring.len().saturating_sub(self.keep);
            self.ring.drain(..excess);
            self.ring_start += excess as u64;
        }
    }

    /// [`Cutter::push`] with the frames of `samples` analysed elsewhere (see
    /// [`Segmenter::push_analysed`]); the ring holds up to `lookback` + one call's samples.
    pub(crate) fn push_analysed(
        &mut self,
        samples: &[f32],
        frames: &[crate::vad::Analysed],
        out: &mut Vec<(Segment, Vec<f32>)>,
    ) {
        self.ring.extend(samples.iter().copied());
        self.seg
            .push_analysed(samples.len(), frames, &mut self.segs);
        self.drain(out);
        let excess = self.ring.len().saturating_sub(self.keep);
        self.ring.drain(..excess);
        self.ring_start += excess as u64;
    }

    /// Ends the input and appends the remaining segments with their audio.
    pub fn finish(&mut self, out: &mut Vec<(Segment, Vec<f32>)>) {
        self.seg.finish(&mut self.segs);
        self.drain(out);
    }

    fn drain(&mut self, out: &mut Vec<(Segment, Vec<f32>)>) {
        for s in self.segs.drain(..) {
            let mut audio = Vec::with_capacity(usize::try_from(s.billed()).unwrap_or(0));
            for span in s.kept.spans() {
                let at = |t: Samples| {
                    usize::try_from(t.saturating_sub(self.ring_start))
                        .unwrap_or(usize::MAX)
                        .min(self.ring.len())
                };
                let (from, to) = (at(span.original), at(span.original + span.len));
                audio.extend(self.ring.range(from.min(to)..to));
            }
            out.push((s, audio));
        }
    }
}
