//! Time on the pipeline's timeline: integer sample counts at [`RATE`], seconds only at the edges.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

/// The pipeline's internal sample rate: sample `k` is original time `k / 16000` s.
pub const RATE: u32 = 16_000;

/// [`RATE`] as a `NonZeroU32`.
pub(crate) const RATE_NZ: NonZeroU32 = match NonZeroU32::new(RATE) {
    Some(r) => r,
    None => panic!("RATE is not zero"),
};

/// A position or length in samples at [`RATE`].
pub type Samples = u64;

/// Converts a sample count at [`RATE`] to seconds (for output only).
pub fn to_secs(samples: Samples) -> f64 {
    samples as f64 / f64::from(RATE)
}

/// Converts a sample count at [`RATE`] to whole milliseconds, rounded to nearest.
pub fn to_ms(samples: Samples) -> u64 {
    (samples * 1000 + u64::from(RATE) / 2) / u64::from(RATE)
}

/// Converts seconds to the nearest sample count at [`RATE`]; negative and NaN give 0.
pub fn from_secs(secs: f64) -> Samples {
    if secs.is_nan() || secs <= 0.0 {
        0
    } else {
        (secs * f64::from(RATE)).round() as Samples
    }
}

/// Converts a frame count at `rate` to the nearest sample count at [`RATE`] (round half up),
/// exactly, in integers.
pub fn rescale(frames: u64, rate: NonZeroU32) -> Samples {
    let r = u128::from(rate.get());
    ((u128::from(frames) * u128::from(RATE) * 2 + r) / (2 * r)) as Samples
}

/// A piecewise map from uploaded time to original time, for audio whose long silences were
/// cut out before upload. The uploaded audio is the concatenation of the kept spans, in order.
///
/// Positions are relative to the part (uploaded time 0 is the part's first kept sample;
/// original time 0 is the part's start on the original timeline, before its offset).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TimeMap {
    spans: Vec<Span>,
}

/// One kept span of a [`TimeMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Start in the uploaded audio (samples).
    pub uploaded: Samples,
    /// Start on the original (part-relative) timeline (samples).
    pub original: Samples,
    /// Length (samples).
    pub len: Samples,
}

impl TimeMap {
    /// An empty map (nothing kept yet).
    pub fn new() -> TimeMap {
        TimeMap::default()
    }

    /// Appends the next kept span: `len` samples starting at `original`. Spans must come in
    /// order and not overlap; an empty span is ignored; a span adjacent to the previous one
    /// extends it.
    pub fn push(&mut self, original: Samples, len: Samples) -> crate::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let uploaded = self.uploaded_len();
        if let Some(last) = self.spans.last_mut() {
            let last_end = last.original + last.len;
            if original < last_end {
                return Err(crate::Error::config(format!(
                    "time map spans out of order: {original} < {last_end}"
                )));
            }
            if original == last_end {
                last.len += len;
                return Ok(());
            }
        }
        self.spans.push(Span {
            uploaded,
            original,
            len,
        });
        Ok(())
    }

    /// The kept spans, in order.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// Total length of the uploaded audio (sum of the kept spans).
    pub fn uploaded_len(&self) -> Samples {
        self.spans.last().map_or(0, |s| s.uploaded + s.len)
    }

    /// Maps an uploaded position that STARTS something: at the seam between two spans it goes
    /// to the start of the later span. Past the end it is clamped to the end of the last span.
    pub fn map_start(&self, t: Samples) -> Samples {
        // Last span whose uploaded start is <= t.
        let i = self.spans.partition_point(|s| s.uploaded <= t);
        match i.checked_sub(1).and_then(|i| self.spans.get(i)) {
            Some(s) => s.original + (t - s.uploaded).min(s.len),
            None => self.spans.first().map_or(t, |s| s.original),
        }
    }

    /// The inverse map: the uploaded position of original position `t`. A position inside a
    /// removed gap goes to the seam where the gap was cut out; before the first span, 0; after
    /// the last, the uploaded length.
    pub fn to_uploaded(&self, t: Samples) -> Samples {
        // Last span whose original start is <= t.
        let i = self.spans.partition_point(|s| s.original <= t);
        match i.checked_sub(1).and_then(|i| self.spans.get(i)) {
            Some(s) => s.uploaded + (t - s.original).min(s.len),
            None => 0,
        }
    }

    /// Maps an uploaded position that ENDS something: at the seam between two spans it goes to
    /// the end of the earlier span.
    pub fn map_end(&self, t: Samples) -> Samples {
        // First span whose uploaded end is >= t.
        let i = self.spans.partition_point(|s| s.uploaded + s.len < t);
        match self.spans.get(i) {
            Some(s) => s.original + t.saturating_sub(s.uploaded),
            None => self.spans.last().map_or(t, |s| s.original + s.len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_are_exact_over_hours() {
        let eight_hours = 8 * 3600 * u64::from(RATE);
        assert_eq!(to_ms(eight_hours), 8 * 3600 * 1000);
        assert_eq!(from_secs(to_secs(eight_hours + 1)), eight_hours + 1);
        assert_eq!(
            rescale(44_100 * 3600 * 7, NonZeroU32::new(44_100).unwrap()),
            16_000 * 3600 * 7
        );
        assert_eq!(rescale(1, NonZeroU32::new(44_100).unwrap()), 0);
        assert_eq!(rescale(3, NonZeroU32::new(8_000).unwrap()), 6);
        assert_eq!(from_secs(-1.0), 0);
        assert_eq!(from_secs(f64::NAN), 0);
    }
}
