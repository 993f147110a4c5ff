//! Stage `resample`: any input rate from 8 kHz to 192 kHz → 16 kHz ([`crate::time::RATE`]),
//! chunk by chunk, delay compensated.
//!
//! Built on rubato 5's synchronous [`rubato::Fft`] resampler with [`rubato::FixedSync::Input`]
//! (measured the fastest and cleanest option for fixed ratios). Mono only: the decoder has
//! already downmixed.
//!
//! # Timing contract
//! * Output sample `k` is original time `k / 16000` s: the resampler's own reported delay
//!   ([`rubato::Resampler::output_delay`]) is dropped from the start of the output.
//! * After [`Resampler::finish`], the total output length is exactly
//!   [`crate::time::rescale`]`(n_in, rate_in)` = round(n_in × 16000 / rate_in) (half up).
//! * A click at input sample `i` peaks at output sample round(i × 16000 / rate_in) (±1).
//! * At 16 kHz input the resampler is skipped entirely (bit-exact passthrough).
//!
//! # FFT size
//! The FFT block is the smallest multiple of the rate pair's minimum block
//! (`rate / gcd(rate, 16000)`) that gives at least 512 output frames: a longer
//! block puts the anti-aliasing cutoff closer to 8 kHz (≈ 0.97 × Nyquist at 512) at the cost of
//! delay, which is compensated anyway. The block count is kept even so both FFT sizes are even:
//! with an odd input block, rubato's filter is centred half an input sample away from its
//! reported delay (0.7 output samples at 11 025 Hz; the tests catch it). Rates that share no factor with 16000 (e.g. 44 101 Hz)
//! use one block per second of input: correct, but slower.
//!
//! Memory is fixed at construction (a few FFT blocks); [`Resampler::process`] never allocates
//! beyond growing the caller's `out`.

use std::num::NonZeroU32;

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler as _, WindowFunction};

use crate::error::{Error, ErrorKind, Result};
use crate::time::{rescale, RATE};

/// Lowest input rate accepted, in Hz.
pub const MIN_RATE: u32 = 8_000;
/// Highest input rate accepted, in Hz.
pub const MAX_RATE: u32 = 192_000;
/// Minimum FFT block on the output (16 kHz) side, in frames; see the module docs.
pub(crate) const MIN_FFT_OUT: usize = 512;
/// Target input frames per call into rubato (rounded to whole FFT blocks).
const TARGET_CHUNK_IN: usize = 8192;

/// Converts mono audio at one fixed rate to 16 kHz, delay compensated, in a stream of calls.
///
/// Feed any number of [`process`](Resampler::process) calls with slices of any length, then
/// one [`finish`](Resampler::finish). After `finish` the resampler is reset and can take a new
/// stream at the same rate.
pub struct Resampler {
    rate_in: NonZeroU32,
    inner: Option<Inner>,
    /// Input frames received since the start of the stream.
    frames_in: u64,
    /// Output frames delivered since the start of the stream (after the delay was dropped).
    frames_out: u64,
}

struct Inner {
    fft: Fft<f32>,
    /// Input frames waiting for a full rubato chunk (capacity `chunk_in`, never reallocated).
    pending: Vec<f32>,
    chunk_in: usize,
    /// Output frames still to drop from the start (the resampler's reported delay).
    to_skip: usize,
    delay: usize,
    indexing: Indexing,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("rate_in", &self.rate_in)
            .field("passthrough", &self.inner.is_none())
            .field("frames_in", &self.frames_in)
            .field("frames_out", &self.frames_out)
            .finish()
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Resampler {
    /// Creates a resampler from `rate_in` (8 kHz–192 kHz) to 16 kHz.
    ///
    /// Errors with [`ErrorKind::Unsupported`] for a rate outside that range.
    pub fn new(rate_in: NonZeroU32) -> Result<Resampler> {
        let r = rate_in.get();
        if !(MIN_RATE..=MAX_RATE).contains(&r) {
            return Err(Error::new(ErrorKind::Unsupported {
                path: None,
                what: format!("sample rate {r} Hz (supported: {MIN_RATE}–{MAX_RATE} Hz)"),
            }));
        }
        let inner = if r == RATE {
            None
        } else {
            let (rate, out_rate) = (r as usize, RATE as usize);
            let g = gcd(rate, out_rate);
            let (min_in, min_out) = (rate / g, out_rate / g);
            // An even number of minimum blocks keeps both FFT sizes even: with an odd input
            // block rubato's filter centre sits half an input sample off its reported delay.
            let blocks = MIN_FFT_OUT.div_ceil(min_out).max(1).next_multiple_of(2);
            let fft_in = blocks * min_in;
            let sub_chunks = (TARGET_CHUNK_IN / fft_in).max(1);
            let chunk_in = fft_in * sub_chunks;
            let fft = Fft::<f32>::new_custom(
                rate,
                out_rate,
                chunk_in,
                sub_chunks,
                1,
                WindowFunction::BlackmanHarris2,
                FixedSync::Input,
            )
            .map_err(|e| {
                // A rate the resampler cannot plan for is the input's property, not an option.
                Error::new(crate::ErrorKind::Unsupported {
                    path: None,
                    what: format!("sample rate {r} Hz (resampling to {RATE} Hz: {e})"),
                })
            })?;
            debug_assert_eq!(fft.input_frames_next(), chunk_in);
            let delay = fft.output_delay();
            Some(Inner {
                fft,
                pending: Vec::with_capacity(chunk_in),
                chunk_in,
                to_skip: delay,
                delay,
                indexing: Indexing::new(),
            })
        };
        Ok(Resampler {
            rate_in,
            inner,
            frames_in: 0,
            frames_out: 0,
        })
    }

    /// The input rate.
    pub fn rate_in(&self) -> NonZeroU32 {
        self.rate_in
    }

    /// True when the input is already at 16 kHz and samples are copied unchanged.
    pub fn is_passthrough(&self) -> bool {
        self.inner.is_none()
    }

    /// The resampler's delay in output frames (already compensated; for information).
    pub fn delay(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.delay)
    }

    /// Input frames received since the stream started.
    pub fn frames_in(&self) -> u64 {
        self.frames_in
    }

    /// Output frames delivered since the stream started.
    pub fn frames_out(&self) -> u64 {
        self.frames_out
    }

    /// Resamples `input` and APPENDS the 16 kHz samples ready so far to `out`.
    ///
    /// Output is delay-compensated: the first sample ever appended is time 0. Some output is
    /// held back until enough input has arrived; [`finish`](Resampler::finish) flushes it.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<()> {
        self.frames_in += input.len() as u64;
        let before = out.len();
        match &mut self.inner {
            None => out.extend_from_slice(input),
            Some(inner) => {
                let mut rest = input;
                while !rest.is_empty() {
                    if inner.pending.is_empty() && rest.len() >= inner.chunk_in {
                        // Whole chunks straight from the caller's slice: no copy into `pending`.
                        let (chunk, tail) = rest.split_at(inner.chunk_in);
                        inner.run(chunk, None, out)?;
                        rest = tail;
                    } else {
                        let take = (inner.chunk_in - inner.pending.len()).min(rest.len());
                        let (head, tail) = rest.split_at(take);
                        inner.pending.extend_from_slice(head);
                        rest = tail;
                        if inner.pending.len() == inner.chunk_in {
                            let pending = std::mem::take(&mut inner.pending);
                            let r = inner.run(&pending, None, out);
                            inner.pending = pending;
                            inner.pending.clear();
                            r?;
                        }
                    }
                }
            }
        }
        self.frames_out += (out.len() - before) as u64;
        Ok(())
    }

    /// Flushes the held-back output, appends it to `out`, and resets for a new stream.
    ///
    /// After this the stream's total output is exactly
    /// [`rescale`]`(frames_in, rate_in)` samples.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<()> {
        let expected = rescale(self.frames_in, self.rate_in);
        let need = usize::try_from(expected.saturating_sub(self.frames_out)).map_err(|_| {
            Error::new(crate::ErrorKind::Unsupported {
                path: None,
                what: "audio too long for this platform's address space".into(),
            })
        })?;
        let start = out.len();
        if let Some(inner) = &mut self.inner {
            // The last partial chunk, then silence, until the tail of the filter is out.
            let mut first = true;
            while out.len() - start < need {
                let pending = std::mem::take(&mut inner.pending);
                let partial = if first { pending.len() } else { 0 };
                first = false;
                let r = inner.run(&pending, Some(partial), out);
                inner.pending = pending;
                inner.pending.clear();
                r?;
            }
            inner.pending.clear();
            inner.fft.reset();
            inner.to_skip = inner.delay;
        }
        out.truncate(start + need);
        self.frames_in = 0;
        self.frames_out = 0;
        Ok(())
    }
}

impl Inner {
    /// One rubato call: `input` holds `chunk_in` frames, or fewer with `partial` set.
    fn run(&mut self, input: &[f32], partial: Option<usize>, out: &mut Vec<f32>) -> Result<()> {
        let n_out = self.fft.output_frames_next();
        let base = out.len();
        out.resize(base + n_out, 0.0);
        let map = |e: &dyn std::fmt::Display| Error::internal(format!("resampler: {e}"));
        // A zero-length slice adapter is not accepted: give rubato a one-frame dummy instead.
        let dummy = [0.0f32];
        let src = if input.is_empty() { &dummy[..] } else { input };
        let adapter_in = SequentialSlice::new(src, 1, src.len()).map_err(|e| map(&e))?;
        let mut adapter_out =
            SequentialSlice::new_mut(&mut out[base..], 1, n_out).map_err(|e| map(&e))?;
        self.indexing.partial_len = partial;
        let (_, written) = self
            .fft
            .process_into_buffer(&adapter_in, &mut adapter_out, Some(&self.indexing))
            .map_err(|e| map(&e))?;
        out.truncate(base + written);
        if self.to_skip > 0 {
            let skip = self.to_skip.min(written);
            out.drain(base..base + skip);
            self.to_skip -= skip;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(r: u32) -> NonZeroU32 {
        NonZeroU32::new(r).unwrap()
    }

    #[test]
    fn rejects_rates_out_of_range() {
        for r in [1, 7_999, 192_001, 400_000] {
            let e = Resampler::new(nz(r)).unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::Unsupported { .. }),
                "{r}: {e}"
            );
        }
    }

    #[test]
    fn passthrough_at_16k_is_bit_exact() {
        let mut r = Resampler::new(nz(16_000)).unwrap();
        assert!(r.is_passthrough());
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut out = Vec::new();
        r.process(&x[..333], &mut out).unwrap();
        r.process(&x[333..], &mut out).unwrap();
        r.finish(&mut out).unwrap();
        assert_eq!(out, x);
    }

    #[test]
    fn empty_stream_gives_nothing() {
        let mut r = Resampler::new(nz(44_100)).unwrap();
        let mut out = Vec::new();
        r.finish(&mut out).unwrap();
        assert!(out.is_empty());
    }
}
