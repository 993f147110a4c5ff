//! Resampler timing contract: exact output length and click position for many input rates,
//! fed in odd chunk sizes.

use std::num::NonZeroU32;

use asr_pipeline::resample::Resampler;
use asr_pipeline::time::rescale;

const RATES: [u32; 9] = [
    8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 96_000, 192_000,
];

fn nz(r: u32) -> NonZeroU32 {
    NonZeroU32::new(r).unwrap()
}

/// Feeds `x` in chunks cycling through `sizes`, then finishes.
fn run(rate: u32, x: &[f32], sizes: &[usize]) -> Vec<f32> {
    let mut r = Resampler::new(nz(rate)).unwrap();
    let mut out = Vec::new();
    let mut i = 0;
    let mut k = 0;
    while i < x.len() {
        let n = sizes[k % sizes.len()].min(x.len() - i);
        r.process(&x[i..i + n], &mut out).unwrap();
        i += n;
        k += 1;
    }
    r.finish(&mut out).unwrap();
    out
}

fn argmax_abs(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if v.abs() > x[best].abs() {
            best = i;
        }
    }
    best
}

#[test]
fn output_length_is_exact_for_every_rate_and_chunking() {
    let chunkings: [&[usize]; 4] = [&[1, 7, 333], &[4097], &[10_000, 3], &[100_000]];
    for rate in RATES {
        // Lengths chosen so n × 16000 / rate falls below, on and above a half sample.
        for n in [
            0usize,
            1,
            2,
            3,
            17,
            999,
            12_345,
            rate as usize + 1,
            3 * rate as usize / 2 + 7,
        ] {
            let x = vec![0.25f32; n];
            for sizes in chunkings {
                let out = run(rate, &x, sizes);
                assert_eq!(
                    out.len() as u64,
                    rescale(n as u64, nz(rate)),
                    "rate {rate}, n {n}, chunks {sizes:?}"
                );
            }
        }
    }
}

#[test]
fn click_lands_at_its_time_for_every_rate() {
    for rate in RATES {
        let n = rate as usize * 2; // 2 s
                                   // Clicks near the start, mid-stream at an awkward position, and near the end.
        for t in [0.011f64, 0.7731, 1.2345, 1.98] {
            let i = (t * f64::from(rate)).round() as usize;
            let mut x = vec![0.0f32; n];
            x[i] = 1.0;
            let out = run(rate, &x, &[513, 4096, 77]);
            assert_eq!(out.len() as u64, rescale(n as u64, nz(rate)));
            let expected = (i as f64 * 16_000.0 / f64::from(rate)).round() as i64;
            let got = argmax_abs(&out) as i64;
            assert!(
                (got - expected).abs() <= 1,
                "rate {rate}: click at input {i} (t {t}) came out at {got}, expected {expected}"
            );
        }
    }
}

#[test]
fn tone_level_and_dc_survive_resampling() {
    // A 1 kHz tone at amplitude 0.5 keeps its amplitude; a constant keeps its value
    // away from the edges (no gain error, no leftover delay).
    for rate in RATES {
        let n = rate as usize;
        let x: Vec<f32> = (0..n)
            .map(|i| {
                0.5 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / f64::from(rate)).sin()
                    as f32
            })
            .collect();
        let out = run(rate, &x, &[1000]);
        let mid = &out[2000..14_000];
        let peak = mid.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!((peak - 0.5).abs() < 0.01, "rate {rate}: peak {peak}");
        // Phase: compare with the ideal 16 kHz tone.
        let err = mid
            .iter()
            .enumerate()
            .map(|(k, v)| {
                let ideal = 0.5
                    * (2.0 * std::f64::consts::PI * 1000.0 * (k + 2000) as f64 / 16_000.0).sin();
                (f64::from(*v) - ideal).powi(2)
            })
            .sum::<f64>()
            / mid.len() as f64;
        assert!(
            err.sqrt() < 0.01,
            "rate {rate}: rms error vs ideal {}",
            err.sqrt()
        );
    }
}

#[test]
fn high_frequencies_are_removed_when_downsampling() {
    // A 12 kHz tone at 48 kHz is above the 8 kHz Nyquist: it must not alias into the output.
    let rate = 48_000u32;
    let x: Vec<f32> = (0..rate as usize)
        .map(|i| {
            0.5 * (2.0 * std::f64::consts::PI * 12_000.0 * i as f64 / f64::from(rate)).sin() as f32
        })
        .collect();
    let out = run(rate, &x, &[4096]);
    let peak = out[1000..15_000].iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(peak < 0.005, "aliased energy: peak {peak}");
}

#[test]
fn reusable_after_finish() {
    let mut r = Resampler::new(nz(44_100)).unwrap();
    let x = vec![0.1f32; 44_100];
    let mut a = Vec::new();
    r.process(&x, &mut a).unwrap();
    r.finish(&mut a).unwrap();
    let mut b = Vec::new();
    r.process(&x, &mut b).unwrap();
    r.finish(&mut b).unwrap();
    assert_eq!(a, b);
}

#[test]
fn rates_sharing_no_factor_with_16k_still_keep_time() {
    // 44 101 Hz and 8 001 Hz: gcd with 16 000 is 1, so the FFT block is a whole second.
    for rate in [8_001u32, 44_101] {
        let n = rate as usize * 3 + 5;
        let i = rate as usize + 777;
        let mut x = vec![0.0f32; n];
        x[i] = 1.0;
        let out = run(rate, &x, &[4096, 13]);
        assert_eq!(out.len() as u64, rescale(n as u64, nz(rate)), "rate {rate}");
        let expected = (i as f64 * 16_000.0 / f64::from(rate)).round() as i64;
        assert!(
            (argmax_abs(&out) as i64 - expected).abs() <= 1,
            "rate {rate}"
        );
    }
}
