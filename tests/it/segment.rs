//! Acceptance tests of the segmentation stage, with ground truth: speech units from
//! testdata/speech (real telephone prompts by Allison Smith, Asterisk core sounds, CC-BY-SA 3.0,
//! and eSpeak NG units, CC0) placed at known sample positions in silence, noise and music-like
//! tones.

use asr_pipeline::segment::{
    Cutter, NoSpeech, Packing, Segment, SegmentPlan, Segmenter, SegmenterOptions, MAX_SEGMENT,
};
use asr_pipeline::vad::FRAME_U64;
use std::f32::consts::TAU;

const SR: u64 = 16_000;
/// Real human speech (Asterisk core sounds, CC-BY-SA 3.0, telephone band) then eSpeak NG units.
pub(crate) const UNIT_NAMES: [&str; 9] = [
    "r1_please_hold",
    "r2_one_moment",
    "r3_two_nine",
    "u1_yes_please",
    "u2_hello",
    "u3_hold",
    "u4_tn",
    "u5_af",
    "u6_number",
];
/// Index of `r2_one_moment` in [`UNIT_NAMES`]: it ends in a ~250 ms fading "z" at −40 to
/// −50 dBFS, which 20 dB SNR noise buries (see `four_minutes_with_short_gaps_split_only_in_gaps`).
const R2: usize = 1;

fn units() -> Vec<Vec<f32>> {
    UNIT_NAMES
        .iter()
        .map(|n| {
            let path = format!("{}/testdata/speech/{n}.wav", env!("CARGO_MANIFEST_DIR"));
            let r = hound::WavReader::open(&path).expect(&path);
            assert_eq!(r.spec().sample_rate, 16_000);
            r.into_samples::<i16>()
                .map(|s| f32::from(s.unwrap()) / 32768.0)
                .collect()
        })
        .collect()
}

/// Audio with the ground-truth positions of the speech units in it.
#[derive(Clone)]
struct Scene {
    audio: Vec<f32>,
    units: Vec<(u64, u64)>,
}

impl Scene {
    fn new() -> Scene {
        Scene {
            audio: Vec::new(),
            units: Vec::new(),
        }
    }
    fn silence(&mut self, n: u64) {
        self.audio.extend(std::iter::repeat_n(0.0, n as usize));
    }
    fn unit(&mut self, u: &[f32]) {
        let s = self.audio.len() as u64;
        self.audio.extend_from_slice(u);
        self.units.push((s, self.audio.len() as u64));
    }
    fn other(&mut self, x: &[f32]) {
        self.audio.extend_from_slice(x);
    }
    fn scaled_to_peak_dbfs(&self, dbfs: f32) -> Scene {
        let peak = self.audio.iter().fold(0f32, |m, x| m.max(x.abs()));
        let g = 10f32.powf(dbfs / 20.0) / peak;
        Scene {
            audio: self.audio.iter().map(|x| x * g).collect(),
            units: self.units.clone(),
        }
    }
    fn speech_len(&self) -> u64 {
        self.units.iter().map(|(s, e)| e - s).sum()
    }
}

fn secs(s: f64) -> u64 {
    (s * SR as f64).round() as u64
}

fn opts() -> SegmenterOptions {
    SegmenterOptions::default()
}

fn segment(audio: &[f32], o: SegmenterOptions) -> Vec<Segment> {
    let mut s = Segmenter::new(o).unwrap();
    let mut out = Vec::new();
    s.push(audio, &mut out);
    s.finish(&mut out);
    out
}

/// The invariants every segmentation must keep: ordered, non-overlapping, within the input,
/// every segment ≤ max ≤ 60 s.
fn check_shape(segs: &[Segment], total: u64, max: u64) {
    assert!(max <= MAX_SEGMENT);
    let mut prev_end = 0;
    for s in segs {
        assert!(s.start < s.end, "{s:?}");
        assert!(s.start >= prev_end, "overlap or disorder at {s:?}");
        assert!(s.end <= total, "{s:?} beyond the input ({total})");
        assert!(s.billed() <= max, "{s:?} longer than max {max}");
        assert!(s.len() <= 2 * max, "{s:?} spans more than twice max {max}");
        assert!((0.0..=1.0).contains(&s.speech_ratio), "{s:?}");
        prev_end = s.end;
    }
}

/// Fraction of ground-truth speech samples inside some segment.
fn coverage(segs: &[Segment], units: &[(u64, u64)]) -> f64 {
    let total: u64 = units.iter().map(|(s, e)| e - s).sum();
    let mut covered = 0u64;
    for &(us, ue) in units {
        for s in segs {
            let a = us.max(s.start);
            let b = ue.min(s.end);
            covered += b.saturating_sub(a);
        }
    }
    covered as f64 / total as f64
}

/// Segment boundaries that fall strictly inside a unit.
fn cuts_inside_units(segs: &[Segment], units: &[(u64, u64)]) -> Vec<(u64, (u64, u64))> {
    let mut bad = Vec::new();
    for s in segs {
        for b in [s.start, s.end] {
            if let Some(u) = units.iter().find(|(us, ue)| *us < b && b < *ue) {
                bad.push((b, *u));
            }
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

fn check_all(scene: &Scene, segs: &[Segment], max: u64) {
    check_shape(segs, scene.audio.len() as u64, max);
    let cov = coverage(segs, &scene.units);
    let per_unit: Vec<(u64, u64, f64)> = scene
        .units
        .iter()
        .map(|&u| (u.0, u.1, coverage(segs, &[u])))
        .filter(|u| u.2 < 1.0)
        .collect();
    assert!(
        cov >= 0.995,
        "coverage {cov:.4} < 99.5 %: units not whole {per_unit:?}, segments {segs:?}"
    );
    let bad = cuts_inside_units(segs, &scene.units);
    assert!(bad.is_empty(), "boundaries inside units: {bad:?}");
}

fn white(rng: &mut fastrand::Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.f32() * 2.0 - 1.0).collect()
}

/// Pink noise (Paul Kellet's economy filter on white noise).
fn pink(rng: &mut fastrand::Rng, n: usize) -> Vec<f32> {
    let (mut b0, mut b1, mut b2) = (0f32, 0f32, 0f32);
    (0..n)
        .map(|_| {
            let w = rng.f32() * 2.0 - 1.0;
            b0 = 0.99765 * b0 + w * 0.0990460;
            b1 = 0.96300 * b1 + w * 0.2965164;
            b2 = 0.57000 * b2 + w * 1.0526913;
            b0 + b1 + b2 + w * 0.1848
        })
        .collect()
}

fn power(x: &[f32]) -> f64 {
    x.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>() / x.len().max(1) as f64
}

/// Adds `noise` so that speech power (over the unit samples) / noise power = `snr_db`.
fn add_noise(scene: &Scene, noise: &[f32], snr_db: f64) -> Scene {
    let speech: Vec<f32> = scene
        .units
        .iter()
        .flat_map(|&(s, e)| scene.audio[s as usize..e as usize].iter().copied())
        .collect();
    let g = (power(&speech) / power(noise) / 10f64.powf(snr_db / 10.0)).sqrt() as f32;
    Scene {
        audio: scene
            .audio
            .iter()
            .zip(noise.iter().cycle())
            .map(|(a, n)| a + g * n)
            .collect(),
        units: scene.units.clone(),
    }
}

/// A tone with `harmonics` partials per note (amplitude 1/h), notes of `note` samples with an
/// exponential decay of time constant `decay` samples (0 = sustained).
fn music(notes: &[f32], harmonics: usize, note: usize, decay: f32, amp: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(notes.len() * note);
    for &f0 in notes {
        for i in 0..note {
            let t = i as f32 / SR as f32;
            let env = if decay > 0.0 {
                (-(i as f32) / decay).exp()
            } else {
                1.0
            };
            let v: f32 = (1..=harmonics)
                .map(|h| (TAU * f0 * h as f32 * t).sin() / h as f32)
                .sum();
            out.push(amp * env * v / 2.0);
        }
    }
    out
}

fn chord(freqs: &[f32], n: usize, amp: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t = i as f32 / SR as f32;
            amp * freqs.iter().map(|f| (TAU * f * t).sin()).sum::<f32>() / freqs.len() as f32
        })
        .collect()
}

const MELODY: [f32; 12] = [
    262.0, 294.0, 330.0, 349.0, 392.0, 349.0, 330.0, 294.0, 262.0, 247.0, 220.0, 247.0,
];

/// Units separated by random silences of `gap_min..gap_max` seconds.
fn scattered(seed: u64, n: usize, gap_min: f64, gap_max: f64) -> Scene {
    let us = units();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut sc = Scene::new();
    sc.silence(secs(0.5) + rng.u64(0..1000));
    for _ in 0..n {
        sc.unit(&us[rng.usize(0..us.len())]);
        sc.silence(secs(gap_min + rng.f64() * (gap_max - gap_min)));
    }
    sc
}

#[test]
fn units_in_silence_are_covered_never_cut_and_padded() {
    let sc = scattered(1, 25, 0.2, 3.0);
    let o = opts();
    let segs = segment(&sc.audio, o.clone());
    check_all(&sc, &segs, o.max_len);
    // Precision: no segment is mostly silence; total length stays near speech + padding.
    let total: u64 = segs.iter().map(Segment::len).sum();
    let bound = sc.speech_len() + sc.units.len() as u64 * (2 * o.padding + 2 * FRAME_U64);
    assert!(total <= bound, "segments {total} > {bound}");
    // Units more than 1 s apart are in different segments (utterance packing).
    assert!(segs.len() >= 10, "{}", segs.len());
}

/// `unit` scaled to a sample peak of `dbfs`.
fn at_peak(unit: &[f32], dbfs: f32) -> Vec<f32> {
    let peak = unit.iter().fold(0f32, |m, x| m.max(x.abs()));
    let g = 10f32.powf(dbfs / 20.0) / peak;
    unit.iter().map(|x| x * g).collect()
}

/// Level of the loudest 32 ms frame of `x`, dBFS.
fn loudest_frame_db(x: &[f32]) -> f32 {
    x.chunks(512)
        .map(|c| 10.0 * power(c).log10() as f32)
        .fold(f32::MIN, f32::max)
}

/// Adds pink noise at an RMS of `dbfs` to the whole scene (a line's or a room's floor).
fn add_floor(sc: &mut Scene, rng: &mut fastrand::Rng, dbfs: f32) {
    let floor = pink(rng, sc.audio.len());
    let g = 10f32.powf(dbfs / 20.0) / power(&floor).sqrt() as f32;
    for (a, n) in sc.audio.iter_mut().zip(&floor) {
        *a += g * n;
    }
}

/// A word whose end rings on in the room: `unit` (peak at −6 dBFS), then noise decaying at
/// `db_per_s` from `start_db` under the level of the unit's loudest 32 ms, for `len` samples, over
/// a −70 dBFS pink floor. Returns the scene and where the ring falls under the floor + 8 dB.
fn ringing(unit: &[f32], start_db: f32, db_per_s: f32, len: u64) -> (Scene, u64) {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut sc = Scene::new();
    sc.silence(secs(1.0));
    let u = at_peak(unit, -6.0);
    let end_db = loudest_frame_db(&u);
    sc.unit(&u);
    let tail_start = sc.audio.len() as u64;
    let ring = white(&mut rng, len as usize);
    // White noise in ±1 has RMS 1/√3.
    let a0 = 10f32.powf((end_db - start_db) / 20.0) * 3f32.sqrt();
    let ring: Vec<f32> = ring
        .iter()
        .enumerate()
        .map(|(i, x)| x * a0 * 10f32.powf(-db_per_s * i as f32 / SR as f32 / 20.0))
        .collect();
    sc.other(&ring);
    sc.silence(secs(3.0));
    add_floor(&mut sc, &mut rng, -70.0);
    // The ring's RMS in dBFS at sample i: end_db − start_db − db_per_s·t; it meets −62 dBFS
    // here.
    let audible = ((end_db - start_db + 62.0).max(0.0) / db_per_s * SR as f32) as u64;
    (sc, tail_start + audible.min(len))
}

#[test]
fn a_word_end_ringing_on_in_the_room_is_sent_to_its_end() {
    // Studio dialogue: a word's end decays 30–40 dB under its peak over 0.5–1 s; the speech
    // model lets go of it long before (issue 9: 5 % of the dialogue's utterances lost their
    // last 50–400 ms this way).
    let us = units();
    let o = SegmenterOptions::requests();
    for (unit, start_db, rate) in [(0, 12.0, 40.0), (2, 10.0, 45.0), (0, 6.0, 55.0)] {
        let (sc, audible_end) = ringing(&us[unit], start_db, rate, secs(1.2));
        let segs = segment(&sc.audio, o.clone());
        assert_eq!(segs.len(), 1, "{}: {segs:?}", UNIT_NAMES[unit]);
        let s = &segs[0];
        let (_, unit_end) = sc.units[0];
        assert!(
            s.end + FRAME_U64 >= audible_end,
            "{}: the request ends {} ms after the word, its ring is audible for {} ms",
            UNIT_NAMES[unit],
            (s.end - unit_end) / 16,
            (audible_end - unit_end) / 16
        );
        // …and not much beyond it: the padding after the ring at most.
        assert!(
            s.end <= audible_end.max(unit_end + o.padding) + o.padding + 4 * FRAME_U64,
            "{}: {} ms sent after a ring of {} ms",
            UNIT_NAMES[unit],
            (s.end - unit_end) / 16,
            (audible_end - unit_end) / 16
        );
    }
}

#[test]
fn speech_up_to_the_limit_then_ringing_on_is_never_billed_over_60_s() {
    // Units 100-200 ms apart (no pause long enough to end an utterance) for 58-59.5 s, then
    // the last word rings on: the edges moved out after the last word (loud frames, the
    // fading end) must give way to the API's limit.
    let us = units();
    for off in 0..24u64 {
        let mut rng = fastrand::Rng::with_seed(off);
        let mut sc = Scene::new();
        sc.silence(SR / 2 + off * 160);
        let mut k = 0;
        while (sc.audio.len() as u64) < secs(58.0 + 0.06 * off as f64) {
            sc.unit(&us[(k + off as usize) % us.len()]);
            sc.silence(1600 + rng.u64(0..1600));
            k += 1;
        }
        let (ring, _) = ringing(&us[(k + off as usize) % us.len()], 10.0, 35.0, SR);
        sc.other(&ring.audio[secs(1.0) as usize..]);
        for o in [opts(), SegmenterOptions::requests()] {
            for s in segment(&sc.audio, o.clone()) {
                assert!(
                    s.billed() <= o.max_len,
                    "offset {off}: a request billed {} ms",
                    s.billed() / 16
                );
            }
        }
    }
}

#[test]
fn a_new_word_after_a_pause_filled_by_reverberation_is_a_new_utterance() {
    // A word, 350-600 ms of its reverberation, then the next word: the pause is longer than
    // `min_silence`, so these are two utterances, as they were before fading ends were kept.
    let us = units();
    for ring_ms in [350.0, 450.0, 600.0] {
        let (first, _) = ringing(&us[0], 12.0, 40.0, secs(ring_ms / 1000.0));
        let mut sc = Scene::new();
        sc.other(&first.audio[..first.audio.len() - secs(3.0) as usize]);
        sc.unit(&us[2]);
        sc.silence(secs(1.0));
        let segs = segment(&sc.audio, opts());
        assert_eq!(segs.len(), 2, "ring {ring_ms} ms: {segs:?}");
    }
}

#[test]
fn steady_quiet_noise_after_a_word_is_not_its_ringing_end() {
    // Steady noise 44 dB under the word's loudest frame, 8 dB above the line's floor (sound,
    // but not loud): it does not fall, so it is not kept as the word's end.
    let us = units();
    let mut rng = fastrand::Rng::with_seed(11);
    let mut sc = Scene::new();
    sc.silence(secs(1.0));
    let u = at_peak(&us[0], -6.0);
    let top = loudest_frame_db(&u);
    sc.unit(&u);
    let hum = white(&mut rng, secs(2.0) as usize);
    let a = 10f32.powf((top - 44.0) / 20.0) * 3f32.sqrt();
    sc.other(&hum.iter().map(|x| x * a).collect::<Vec<f32>>());
    sc.silence(secs(2.0));
    add_floor(&mut sc, &mut rng, top - 52.0);
    let segs = segment(&sc.audio, SegmenterOptions::requests());
    let (_, unit_end) = sc.units[0];
    let first = segs.first().expect("the word is sent");
    assert!(
        first.end <= unit_end + secs(0.65),
        "{} ms sent after the word",
        (first.end - unit_end) / 16
    );
}

#[test]
fn music_right_after_a_word_is_not_taken_for_its_ringing_end() {
    // Hold music that starts as the agent stops talking keeps its level: it is not a fading
    // word end, and no more of it is sent than before fading ends were kept.
    let us = units();
    let o = SegmenterOptions::requests();
    let mut sc = Scene::new();
    sc.silence(secs(1.0));
    sc.unit(&us[0]);
    let tune = music(&MELODY, 6, secs(0.25) as usize, 0.0, 0.1);
    sc.other(&tune);
    sc.other(&tune);
    sc.silence(secs(1.0));
    let segs = segment(&sc.audio, o.clone());
    let (_, unit_end) = sc.units[0];
    for s in &segs {
        if s.start < unit_end + secs(1.0) {
            assert!(
                s.end <= unit_end + secs(0.7),
                "{} ms of music sent after the word",
                (s.end - unit_end) / 16
            );
        }
    }
}

#[test]
fn speech_at_the_very_start_and_end_is_covered() {
    let us = units();
    for noise in [false, true] {
        let mut sc = Scene::new();
        sc.unit(&us[2]);
        sc.silence(secs(0.7));
        sc.unit(&us[4]);
        sc.silence(secs(2.0));
        sc.unit(&us[R2]);
        let sc = if noise {
            let mut rng = fastrand::Rng::with_seed(11);
            add_noise(&sc, &white(&mut rng, sc.audio.len()), 20.0)
        } else {
            sc
        };
        let segs = segment(&sc.audio, opts());
        check_all(&sc, &segs, opts().max_len);
        assert_eq!(segs.first().map(|s| s.start), Some(0), "{segs:?}");
        assert_eq!(segs.last().map(|s| s.end), Some(sc.audio.len() as u64));
    }
}

#[test]
fn packed_segments_respect_target_and_max() {
    let sc = scattered(2, 40, 0.3, 1.2);
    let target = secs(12.0);
    let mut o = opts();
    o.max_len = secs(15.0);
    o.packing = Packing::Packed { target };
    let segs = segment(&sc.audio, o.clone());
    check_all(&sc, &segs, target);
    let utt = segment(&sc.audio, opts());
    assert!(segs.len() < utt.len(), "{} vs {}", segs.len(), utt.len());
}

/// Four minutes of units (real and eSpeak) separated only by 80–150 ms gaps, clean or in 20 dB
/// SNR pink noise.
fn short_gap_run(noisy: bool) -> Scene {
    let us = units();
    let mut rng = fastrand::Rng::with_seed(3);
    let mut sc = Scene::new();
    sc.silence(secs(0.3));
    while sc.audio.len() < secs(240.0) as usize {
        sc.unit(&us[rng.usize(0..us.len())]);
        sc.silence(secs(0.080 + rng.f64() * 0.070));
    }
    if noisy {
        add_noise(&sc, &pink(&mut rng, sc.audio.len()), 20.0)
    } else {
        sc
    }
}

fn check_short_gap_splits(sc: &Scene, max: u64) {
    let mut o = opts();
    o.max_len = max;
    let segs = segment(&sc.audio, o);
    check_all(sc, &segs, max);
    assert!(
        segs.len() as u64 >= 240 * SR / max,
        "{} segments",
        segs.len()
    );
    // Forced splits touch (shared boundary); every one of them is in a gap (checked above).
    let forced = segs.windows(2).filter(|w| w[0].end == w[1].start).count();
    assert!(forced >= 3, "{forced} forced splits");
}

/// Four minutes with no 300 ms pause: every request is a forced cut, and each must fall in a
/// gap between units. Inside the real prompt "please hold" (r1) the model lets go of loud
/// speech for 224 ms, longer than the 80–150 ms gaps: a forced cut prefers the pause whose
/// frames reach the noise floor.
#[test]
fn four_minutes_with_short_gaps_split_only_in_gaps() {
    let sc = short_gap_run(false);
    for max in [secs(30.0), secs(60.0), secs(10.0)] {
        check_short_gap_splits(&sc, max);
    }
}

/// KNOWN FAILURE with the real prompts: their fading word ends (r2's final "z" falls from −40
/// to −50 dBFS over ~250 ms) lie 10 dB and more under 20 dB SNR noise, so the detected pause is
/// "buried tail + gap + buried onset". Sharing the gap at its quietest pair of frames (not its
/// middle) brought the boundaries inside units from 10 to 2 of ~170 gaps; those 2 still land
/// ~50 ms before the end of an r2. Run with `cargo test --test segment -- --ignored`.
#[test]
fn four_minutes_with_short_gaps_in_20db_noise_split_only_in_gaps() {
    check_short_gap_splits(&short_gap_run(true), secs(20.0));
}

#[test]
fn continuous_speech_longer_than_max_is_split_below_max() {
    let us = units();
    let mut sc = Scene::new();
    sc.silence(secs(1.0));
    let start = sc.audio.len() as u64;
    for i in 0..25 {
        sc.other(&us[i % us.len()]);
    }
    sc.units.push((start, sc.audio.len() as u64));
    sc.silence(secs(1.0));
    let mut o = opts();
    o.max_len = secs(8.0);
    let segs = segment(&sc.audio, o);
    check_shape(&segs, sc.audio.len() as u64, secs(8.0));
    assert!(coverage(&segs, &sc.units) >= 0.995);
    assert!(segs.len() >= 5, "{segs:?}");
}

#[test]
fn level_does_not_change_segments() {
    let base = scattered(4, 20, 0.15, 2.5);
    let quiet = base.scaled_to_peak_dbfs(-45.0);
    let loud = base.scaled_to_peak_dbfs(-3.0);
    let a = segment(&quiet.audio, opts());
    let b = segment(&loud.audio, opts());
    check_all(&quiet, &a, opts().max_len);
    check_all(&loud, &b, opts().max_len);
    assert_eq!(a.len(), b.len(), "{a:?}\n{b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert!(x.start.abs_diff(y.start) <= FRAME_U64, "{x:?} vs {y:?}");
        assert!(x.end.abs_diff(y.end) <= FRAME_U64, "{x:?} vs {y:?}");
    }
}

#[test]
fn speech_in_20db_white_and_pink_noise_is_covered() {
    let base = scattered(5, 20, 0.5, 3.0);
    let mut rng = fastrand::Rng::with_seed(55);
    for (name, noise) in [
        ("white", white(&mut rng, base.audio.len())),
        ("pink", pink(&mut rng, base.audio.len())),
    ] {
        let sc = add_noise(&base, &noise, 20.0);
        let segs = segment(&sc.audio, opts());
        check_all(&sc, &segs, opts().max_len);
        // The noise alone is not speech: segments stay near the units.
        let total: u64 = segs.iter().map(Segment::len).sum();
        let bound = sc.speech_len() + sc.units.len() as u64 * secs(1.0);
        assert!(total <= bound, "{name}: segments {total} > {bound}");
    }
}

#[test]
fn music_tones_and_silence_give_no_segments() {
    let mut rng = fastrand::Rng::with_seed(6);
    let n = secs(20.0) as usize;
    let cases: Vec<(&str, Vec<f32>, NoSpeech)> = vec![
        ("silence", vec![0.0; n], NoSpeech::Silence),
        ("tone", chord(&[440.0], n, 0.3), NoSpeech::Music),
        (
            "chord",
            chord(&[261.6, 329.6, 392.0, 523.3], n, 0.5),
            NoSpeech::Music,
        ),
        (
            "harmonics",
            music(&[110.0, 146.8, 110.0, 164.8], 12, n / 4, 0.0, 0.4),
            NoSpeech::Music,
        ),
        (
            "melody",
            music(&MELODY.repeat(8), 6, secs(0.2) as usize, 0.0, 0.4),
            NoSpeech::Music,
        ),
        (
            "plucked melody",
            music(&MELODY.repeat(6), 8, secs(0.3) as usize, 2500.0, 0.5),
            NoSpeech::Music,
        ),
        (
            "quiet melody",
            music(&MELODY.repeat(8), 4, secs(0.25) as usize, 0.0, 0.005),
            NoSpeech::Music,
        ),
        (
            "steady white noise",
            white(&mut rng, n).iter().map(|x| x * 0.1).collect(),
            NoSpeech::Silence,
        ),
    ];
    for (name, audio, why) in cases {
        let plan = SegmentPlan::from_samples(Some(name.into()), &audio, opts()).unwrap();
        assert!(plan.is_empty(), "{name}: {:?}", plan.segments);
        assert_eq!(plan.no_speech, Some(why), "{name}: {:?}", plan.stats);
        assert!(why.to_string().starts_with("no speech"));
        let json = plan.to_json().unwrap();
        assert!(json.contains("\"no_speech\""), "{json}");
    }
}

/// Real prompts, each between a loud synthetic melody and 0.6 s of digital silence: the
/// model's state after the melody answered 0.00 to the prompt that followed ('two nine', r3),
/// until digital silence counted as a pause for the state (see `vad`).
#[test]
fn speech_between_hold_music_is_found_and_music_is_not() {
    let us = units();
    let mut sc = Scene::new();
    let tune = music(&MELODY.repeat(3), 6, secs(0.25) as usize, 0.0, 0.2);
    for u in &us {
        sc.other(&tune);
        sc.silence(secs(0.6));
        sc.unit(u);
        sc.silence(secs(0.6));
    }
    sc.other(&tune);
    let segs = segment(&sc.audio, opts());
    check_all(&sc, &segs, opts().max_len);
    let total: u64 = segs.iter().map(Segment::len).sum();
    let bound = sc.speech_len() + sc.units.len() as u64 * secs(1.0);
    assert!(total <= bound, "segments {total} > {bound}: {segs:?}");
}

/// Pushes `n` zeros in 1 s slices, never allocating more than 1 s.
fn push_zeros(s: &mut Segmenter, n: u64, out: &mut Vec<Segment>) {
    let zeros = vec![0f32; SR as usize];
    let mut left = n;
    while left > 0 {
        let k = left.min(SR);
        s.push(&zeros[..k as usize], out);
        left -= k;
    }
}

#[test]
fn eight_hours_place_the_last_segment_to_the_sample() {
    let us = units();
    // Three units; long silences between them: 240 s in the reference, hours in the real run.
    // Both silences are frame multiples, so frames line up and every segment must shift by
    // exactly the extra silence.
    let lead = 37u64; // off the frame grid on purpose
    let place = |gaps: [u64; 3]| {
        let mut s = Segmenter::new(opts()).unwrap();
        let mut out = Vec::new();
        let mut pos = 0u64;
        let mut truth = Vec::new();
        for (i, g) in gaps.iter().enumerate() {
            push_zeros(&mut s, *g, &mut out);
            pos += g;
            let u = &us[i * 2 % us.len()];
            s.push(u, &mut out);
            truth.push((pos, pos + u.len() as u64));
            pos += u.len() as u64;
        }
        push_zeros(&mut s, secs(10.0), &mut out);
        pos += secs(10.0);
        s.finish(&mut out);
        assert_eq!(s.position(), pos);
        (out, truth, pos)
    };
    let g = secs(240.0);
    let (reference, ref_truth, _) = place([lead + g, g, g]);
    let h = 3600 * SR;
    let (long, truth, total) = place([lead + 3 * h, 2 * h, 3 * h - secs(32.0)]);
    assert!(total >= 8 * h - secs(32.0));
    assert_eq!(reference.len(), 3, "{reference:?}");
    assert_eq!(long.len(), 3, "{long:?}");
    for ((r, l), (rt, lt)) in reference
        .iter()
        .zip(&long)
        .zip(ref_truth.iter().zip(&truth))
    {
        let shift = lt.0 - rt.0;
        assert_eq!(shift % FRAME_U64, 0);
        assert_eq!((l.start, l.end), (r.start + shift, r.end + shift));
        assert!(
            l.start <= lt.0 && lt.1 <= l.end,
            "{l:?} does not hold {lt:?}"
        );
        assert!(lt.0 - l.start <= opts().padding + FRAME_U64, "{l:?} {lt:?}");
        assert!(l.end - lt.1 <= opts().padding + FRAME_U64, "{l:?} {lt:?}");
    }
    // The manifest of the 8-hour run: its last entry is the short reference's last entry moved
    // by exactly the extra silence (a whole number of 32 ms frames, so a whole number of ms:
    // 16 samples per ms), with no drift from the hours in between.
    let last = long.last().unwrap();
    let plan = SegmentPlan::new(None, &long, total, Default::default());
    let ref_plan = SegmentPlan::new(None, &reference, 0, Default::default());
    let p = plan.segments.last().unwrap();
    let r = ref_plan.segments.last().unwrap();
    let shift = truth[2].0 - ref_truth[2].0;
    assert_eq!(shift, 8 * h - secs(32.0) - 3 * g);
    assert_eq!((p.start_sample, p.end_sample), (last.start, last.end));
    assert_eq!(p.start_ms, r.start_ms + shift / 16);
    assert_eq!(p.end_ms, r.end_ms + shift / 16);
    // And within half a millisecond of the sample position, computed in floating point.
    for (ms, sample) in [(p.start_ms, last.start), (p.end_ms, last.end)] {
        let exact = sample as f64 / 16.0;
        assert!((ms as f64 - exact).abs() <= 0.5, "{ms} ms vs {exact} ms");
    }
    assert!(p.start_ms > 7 * 3_600_000, "{p:?}");
}

/// A varied scene for the slicing property: units, noise bursts, music, silence.
fn varied(seed: u64) -> Scene {
    let us = units();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut sc = Scene::new();
    for _ in 0..14 {
        match rng.u8(0..5) {
            0 => sc.silence(rng.u64(0..secs(2.0))),
            1 => {
                let len = rng.usize(100..8000);
                let n = white(&mut rng, len);
                sc.other(&n.iter().map(|x| x * 0.05).collect::<Vec<_>>());
            }
            2 => sc.other(&music(&MELODY, 4, secs(0.15) as usize, 0.0, 0.2)),
            _ => {
                sc.unit(&us[rng.usize(0..us.len())]);
                sc.silence(rng.u64(secs(0.05)..secs(0.6)));
            }
        }
    }
    sc
}

#[test]
fn slice_sizes_do_not_change_segments_and_lookback_holds() {
    for seed in 0..6u64 {
        let sc = varied(seed);
        let mut o = opts();
        o.max_len = secs(5.0);
        if seed % 2 == 1 {
            o.packing = Packing::Packed { target: secs(4.0) };
        }
        let whole = segment(&sc.audio, o.clone());
        let mut rng = fastrand::Rng::with_seed(seed + 100);
        for round in 0..4 {
            let mut s = Segmenter::new(o.clone()).unwrap();
            let bound = s.lookback();
            let mut out = Vec::new();
            let mut rest: &[f32] = &sc.audio;
            while !rest.is_empty() {
                let n = match round {
                    0 => 1,
                    1 => [479, 480, 481][rng.usize(0..3)],
                    _ => rng.usize(1..7000),
                }
                .min(rest.len());
                let before = s.position();
                let had = out.len();
                s.push(&rest[..n], &mut out);
                for seg in &out[had..] {
                    assert!(
                        seg.start + bound >= before,
                        "seed {seed}: {seg:?} starts before {before} - {bound}"
                    );
                }
                rest = &rest[n..];
            }
            let before = s.position();
            let had = out.len();
            s.finish(&mut out);
            for seg in &out[had..] {
                assert!(seg.start + bound >= before, "seed {seed}: {seg:?}");
            }
            assert_eq!(out, whole, "seed {seed} round {round}");
        }
    }
}

#[test]
fn cutter_hands_out_each_segments_audio_with_bounded_memory() {
    let sc = {
        let us = units();
        let mut rng = fastrand::Rng::with_seed(8);
        let mut sc = Scene::new();
        while sc.audio.len() < secs(300.0) as usize {
            sc.silence(secs(rng.f64() * 4.0));
            sc.unit(&us[rng.usize(0..us.len())]);
        }
        sc
    };
    let o = opts();
    let expected = segment(&sc.audio, o.clone());
    let mut c = Cutter::new(o).unwrap();
    let bound = c.segmenter().lookback() as usize + SR as usize;
    let mut out = Vec::new();
    for chunk in sc.audio.chunks(12_345) {
        c.push(chunk, &mut out);
        assert!(c.buffered() <= bound, "{} > {bound}", c.buffered());
    }
    c.finish(&mut out);
    let segs: Vec<Segment> = out.iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(segs, expected);
    for (s, audio) in &out {
        assert_eq!(
            audio.as_slice(),
            &sc.audio[s.start as usize..s.end as usize]
        );
    }
}

#[test]
fn plan_round_trips_as_json() {
    let sc = scattered(9, 4, 1.0, 2.0);
    let mut c = Cutter::new(opts()).unwrap();
    let mut out = Vec::new();
    c.push(&sc.audio, &mut out);
    c.finish(&mut out);
    let segs: Vec<Segment> = out.iter().map(|(s, _)| s.clone()).collect();
    let mut plan = SegmentPlan::new(
        Some("calls/a b.wav".into()),
        &segs,
        sc.audio.len() as u64,
        c.segmenter().stats(),
    )
    .with_source_info("pcm_s16le", 44_100, 2);
    assert!(!plan.is_empty());
    assert_eq!(plan.no_speech, None);
    for (i, s) in plan.segments.iter_mut().enumerate() {
        s.file = Some(format!("seg-{i:05}.wav"));
    }
    let back = SegmentPlan::from_json(&plan.to_json().unwrap()).unwrap();
    assert_eq!(back, plan);
    let v: serde_json::Value = serde_json::from_str(&plan.to_json().unwrap()).unwrap();
    let first = &v["segments"][0];
    assert_eq!(first["index"], 0);
    assert_eq!(first["start_sample"], segs[0].start);
    assert_eq!(first["start_ms"], (segs[0].start * 1000 + SR / 2) / SR);
    assert_eq!(first["file"], "seg-00000.wav");
    assert_eq!(v["source_sample_rate"], 44_100);
    assert_eq!(v["total_samples"], sc.audio.len() as u64);
}
