//! Time on the pipeline's timeline: integer sample counts at [`RATE`], seconds only at the edges.

use std::num::NonZeroU32;

/// The pipeline's internal sample rate: sample `k` is original time `k / 16000` s.
pub const RATE: u32 = 16_000;

/// [`RATE`] as a `NonZeroU32`.
pub const RATE_NZ: NonZeroU32 = match NonZeroU32::new(RATE) {
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
