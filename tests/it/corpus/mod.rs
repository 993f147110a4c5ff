//! A real-speech segmentation corpus assembled from Debian packages, with ground truth at
//! sample positions.
//!
//! Shared by the segmentation tests (a reduced, deterministic set), the benches and
//! `examples/make_corpus.rs` (the full corpus on disk, for `scripts/vad_compare.sh`).
//!
//! Sources (installed by `.ci/run`; see `testdata/README.md` for licences):
//! - voices: `asterisk-core-sounds-es-wav` (es_MX, Allison Smith), `asterisk-core-sounds-ru-wav`
//!   (ru_RU), `asterisk-prompt-it-menardi-wav` (it_IT, Marcella Menardi), 8 kHz studio prompts;
//!   `fillets-ng-data-nl`, two Dutch actors (22 kHz Vorbis);
//! - music: `wesnoth-1.16-music` (orchestral Vorbis).
//!
//! Calls are assembled the way a call centre records them: two speakers at different levels,
//! short pauses inside a turn (180–470 ms) and turn gaps of 0.7–1.5 s, some overlaps, hold music,
//! dead air, line noise, telephone band at 8 kHz. Every source clip is one or more ground-truth
//! utterances: its speech extent (10 ms frames within 40 dB of the clip's loudest), split where
//! the clip itself pauses for 400 ms or more.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use asr_pipeline::stream::{AudioStream, StreamOptions};

/// The rate everything is assembled at.
pub const RATE: usize = 16_000;

/// Where the sources live.
pub const VOICES: &[(&str, &str)] = &[
    ("es", "/usr/share/asterisk/sounds/es_MX_f_Allison"),
    ("it", "/usr/share/asterisk/sounds/it_IT_f_Menardi"),
    ("ru", "/usr/share/asterisk/sounds/ru_RU_f_IvrvoiceRU"),
];
/// Fillets-ng level folders hold `<level>/nl/*-m-*.ogg` and `*-v-*.ogg`, one actor each.
pub const FILLETS: &str = "/usr/share/games/fillets-ng/sound";
/// Orchestral music.
pub const MUSIC: &str = "/usr/share/games/wesnoth/1.16/data/core/music";

/// The music folder: [`MUSIC`], or another folder of `.ogg` tracks named by `CORPUS_MUSIC`
/// (for measuring on other music, e.g. `extremetuxracer-data`'s `/usr/share/games/etr/music`).
pub fn music_dir() -> PathBuf {
    std::env::var_os("CORPUS_MUSIC").map_or_else(|| PathBuf::from(MUSIC), PathBuf::from)
}

/// One ground-truth utterance, `[start, end)` in samples at the case's rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Utterance {
    pub start: usize,
    pub end: usize,
    pub speaker: u8,
}

/// An assembled case.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub kind: &'static str,
    pub rate: usize,
    pub audio: Vec<f32>,
    pub utterances: Vec<Utterance>,
    pub music: Vec<(usize, usize)>,
}

/// A clean source clip at 16 kHz with its utterances (relative to the clip).
#[derive(Debug, Clone)]
pub struct Clip {
    pub audio: Vec<f32>,
    pub utts: Vec<(usize, usize)>,
}

/// A tiny deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.f() * n as f64) as usize % n.max(1)
    }
    /// Roughly Gaussian (sum of uniforms), unit variance.
    pub fn gauss(&mut self) -> f32 {
        ((0..4).map(|_| self.f()).sum::<f64>() - 2.0) as f32 * 1.732
    }
}

/// True when every source package is installed.
pub fn available() -> bool {
    VOICES.iter().all(|(_, d)| Path::new(d).is_dir())
        && Path::new(FILLETS).is_dir()
        && music_dir().is_dir()
}

/// Panics with the install command when a source is missing (CI installs them).
pub fn require() {
    assert!(
        available(),
        "the real-speech corpus needs Debian packages: apt-get install asterisk-core-sounds-es-wav \
         asterisk-core-sounds-ru-wav asterisk-prompt-it-menardi-wav fillets-ng-data-nl \
         wesnoth-1.16-music (.ci/run installs them)"
    );
}

/// Decodes any file to 16 kHz mono through the library's own front end.
pub fn decode(path: &Path) -> Vec<f32> {
    let mut s = AudioStream::open(path, StreamOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    while let Some(b) = s
        .next_block()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    {
        out.extend_from_slice(b.samples);
    }
    out
}

fn sorted_files(dir: &Path, pred: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&pred))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Files of the Asterisk sound sets that are not speech (beeps, tones, chimes, monkeys).
const NOT_SPEECH: &[&str] = &[
    "beep",
    "2tone",
    "confbridge-join",
    "confbridge-leave",
    "tt-monkeys.wav",
];

/// The spoken prompts of one asterisk voice.
pub fn voice_files(dir: &str) -> Vec<PathBuf> {
    sorted_files(Path::new(dir), |n| {
        n.ends_with(".wav") && !NOT_SPEECH.iter().any(|x| n.contains(x))
    })
}

/// The lines of one fillets-ng actor (`'m'` or `'v'`).
pub fn fillets_files(actor: char) -> Vec<PathBuf> {
    let tag = format!("-{actor}-");
    let mut v = Vec::new();
    let mut levels: Vec<PathBuf> = std::fs::read_dir(FILLETS)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    levels.sort();
    for l in levels {
        v.extend(sorted_files(&l.join("nl"), |n| {
            n.ends_with(".ogg") && n.contains(&tag)
        }));
    }
    v
}

/// The music tracks.
pub fn music_files() -> Vec<PathBuf> {
    sorted_files(&music_dir(), |n| {
        n.ends_with(".ogg") && !n.contains("silence")
    })
}

/// Mean-square energy of `c` in dB.
fn energy_db(c: &[f32]) -> f32 {
    10.0 * (c.iter().map(|v| v * v).sum::<f32>() / c.len().max(1) as f32 + 1e-12).log10()
}

/// 10 ms frame energies in dB.
fn frame_db(x: &[f32]) -> Vec<f32> {
    x.chunks(RATE / 100).map(energy_db).collect()
}

/// A clip's utterances: the speech extent (10 ms frames within 40 dB of the loudest and above
/// −65 dBFS), split at its own pauses of 400 ms or more. `None` for a clip without speech.
pub fn label(audio: Vec<f32>) -> Option<Clip> {
    let db = frame_db(&audio);
    let peak = db.iter().copied().fold(f32::MIN, f32::max);
    let thr = (peak - 40.0).max(-65.0);
    let active: Vec<bool> = db.iter().map(|&d| d > thr).collect();
    let mut utts = Vec::new();
    let hop = RATE / 100;
    let mut i = 0;
    while i < active.len() {
        if !active[i] {
            i += 1;
            continue;
        }
        let s = i;
        let mut e = i + 1;
        let mut j = i + 1;
        while j < active.len() {
            if active[j] {
                e = j + 1;
                j += 1;
            } else if j - e >= 40 {
                break;
            } else {
                j += 1;
            }
        }
        // Frames of at least 60 ms of activity make an utterance (clicks are not speech).
        if e - s >= 6 {
            utts.push((s * hop, (e * hop).min(audio.len())));
        }
        i = j.max(e);
    }
    if utts.is_empty() {
        return None;
    }
    Some(Clip { audio, utts })
}

/// Loads up to `n` labelled clips from `files`, skipping clips longer than `max_s` seconds.
pub fn clips(files: &[PathBuf], n: usize, max_s: f64) -> Vec<Clip> {
    files
        .iter()
        .map(|p| decode(p))
        .filter(|a| (a.len() as f64) < max_s * RATE as f64)
        .filter_map(label)
        .take(n)
        .collect()
}

/// Scales `x` so that its active frames (within 30 dB of its peak) have RMS `dbfs`.
pub fn set_level(x: &mut [f32], dbfs: f32) {
    let db = frame_db(x);
    let peak = db.iter().copied().fold(f32::MIN, f32::max);
    let act: Vec<f32> = db.into_iter().filter(|&d| d > peak - 30.0).collect();
    if act.is_empty() {
        return;
    }
    let mean = act.iter().map(|d| 10f32.powf(d / 10.0)).sum::<f32>() / act.len() as f32;
    let g = 10f32.powf((dbfs - 10.0 * mean.log10()) / 20.0);
    x.iter_mut().for_each(|v| *v *= g);
}

/// Line noise: pink-ish noise (a one-pole low-pass of white noise mixed with white).
pub fn line_noise(rng: &mut Rng, n: usize, dbfs: f32) -> Vec<f32> {
    let mut lp = 0f32;
    let mut v: Vec<f32> = (0..n)
        .map(|_| {
            let w = rng.gauss();
            lp = 0.97 * lp + 0.03 * w * 4.0;
            0.5 * w + lp
        })
        .collect();
    let rms = (v.iter().map(|x| x * x).sum::<f32>() / n.max(1) as f32).sqrt();
    let g = 10f32.powf(dbfs / 20.0) / rms.max(1e-9);
    v.iter_mut().for_each(|x| *x *= g);
    v
}

/// A windowed-sinc FIR band-pass, 300–3400 Hz at 16 kHz (odd length, linear phase).
fn telephone_taps() -> Vec<f32> {
    let n = 101usize;
    let m = (n / 2) as f64;
    let sinc = |fc: f64, k: f64| {
        if k == 0.0 {
            2.0 * fc
        } else {
            (2.0 * std::f64::consts::PI * fc * k).sin() / (std::f64::consts::PI * k)
        }
    };
    let (lo, hi) = (300.0 / RATE as f64, 3400.0 / RATE as f64);
    (0..n)
        .map(|i| {
            let k = i as f64 - m;
            let w = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos()
                + 0.08 * (4.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
            ((sinc(hi, k) - sinc(lo, k)) * w) as f32
        })
        .collect()
}

/// Telephone channel: band-pass 300–3400 Hz, then every other sample (8 kHz). Zero delay (the
/// filter is centred), so positions halve exactly.
pub fn telephone(x: &[f32]) -> Vec<f32> {
    let taps = telephone_taps();
    let h = taps.len() / 2;
    (0..x.len() / 2)
        .map(|o| {
            let c = 2 * o;
            let mut acc = 0f32;
            for (k, t) in taps.iter().enumerate() {
                let i = c as isize + k as isize - h as isize;
                if i >= 0 && (i as usize) < x.len() {
                    acc += t * x[i as usize];
                }
            }
            acc
        })
        .collect()
}

/// G.711 µ-law round trip of a sample (what a µ-law WAV stores and gives back).
pub fn mulaw_round_trip(x: f32) -> f32 {
    let s = (x.clamp(-1.0, 1.0) * 32767.0).round() as i16;
    f32::from(mulaw_to_linear(linear_to_mulaw(s))) / 32768.0
}

/// G.711 µ-law decoding of one byte.
pub fn mulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let exp = i32::from((u >> 4) & 7);
    let mag = ((i32::from(u & 0x0F) << 3) + 0x84) << exp;
    let v = mag - 0x84;
    (if u & 0x80 != 0 { -v } else { v }) as i16
}

/// `[s, e)` of `x` without the 10 ms frames at either end whose energy is below `dbfs`.
fn audible(x: &[f32], mut s: usize, mut e: usize, dbfs: f32) -> (usize, usize) {
    let hop = RATE / 100;
    let db = |a: usize| energy_db(&x[a..(a + hop).min(x.len())]);
    while s + hop <= e && db(s) < dbfs {
        s += hop;
    }
    while e >= s + hop && db(e - hop) < dbfs {
        e -= hop;
    }
    (s, e)
}

/// What a call is made of.
#[derive(Debug, Clone)]
pub struct CallSpec {
    pub name: String,
    pub seed: u64,
    /// Length to reach, seconds.
    pub secs: f64,
    /// Hold-music breaks (each 20–60 s) and dead-air breaks (5–15 s) over the call.
    pub holds: usize,
    pub dead_air: usize,
    /// Speaker levels, dBFS (active speech RMS).
    pub levels: [f32; 2],
    /// Line noise level, dBFS.
    pub noise_dbfs: f32,
    /// Probability that a turn overlaps the previous one.
    pub overlap_p: f64,
    /// Telephone band at 8 kHz (else 16 kHz wideband).
    pub telephone: bool,
}

/// Assembles a two-speaker conversation from clip pools `a` and `b` and hold music `music`.
pub fn assemble(spec: &CallSpec, a: &[Clip], b: &[Clip], music: &[Vec<f32>]) -> Case {
    assemble_inner(spec, a, b, music, false).0
}

/// The same call recorded the way call-centre systems record it: speaker 0 (the agent, with
/// the hold music) on channel 0, speaker 1 (the customer) on channel 1, the line noise on
/// both. Returns the case (its `audio` is the mono mix, as [`assemble`] gives) and the two
/// channels at the case's rate.
pub fn assemble_stereo(
    spec: &CallSpec,
    a: &[Clip],
    b: &[Clip],
    music: &[Vec<f32>],
) -> (Case, [Vec<f32>; 2]) {
    let (case, ch) = assemble_inner(spec, a, b, music, true);
    let [l, r] = ch.unwrap_or_default();
    (case, [l, r])
}

fn assemble_inner(
    spec: &CallSpec,
    a: &[Clip],
    b: &[Clip],
    music: &[Vec<f32>],
    stereo: bool,
) -> (Case, Option<[Vec<f32>; 2]>) {
    let mut rng = Rng::new(spec.seed);
    let total = (spec.secs * RATE as f64) as usize;
    let mut audio = vec![0f32; total + 120 * RATE];
    let mut per: [Vec<f32>; 2] = if stereo {
        [audio.clone(), audio.clone()]
    } else {
        [Vec::new(), Vec::new()]
    };
    let mut utts: Vec<Utterance> = Vec::new();
    let mut music_spans = Vec::new();
    let mut t = RATE / 2 + rng.below(RATE);
    let mut speaker = 0u8;
    let mut last_end = t;
    // Where breaks happen: spread over the call.
    let n_breaks = spec.holds + spec.dead_air;
    let mut breaks: Vec<(usize, bool)> = (0..n_breaks)
        .map(|i| {
            let at = total * (2 * i + 1) / (2 * n_breaks.max(1));
            (at, i < spec.holds)
        })
        .collect();
    breaks.sort();
    let mut bi = 0;
    while t < total {
        if let Some(&(at, hold)) = breaks.get(bi) {
            if t >= at {
                bi += 1;
                let len = if hold {
                    rng.range(20.0, 60.0)
                } else {
                    rng.range(5.0, 15.0)
                };
                let len = (len * RATE as f64) as usize;
                let start = t;
                if hold && !music.is_empty() {
                    let track = &music[rng.below(music.len())];
                    let off = rng.below(track.len().saturating_sub(len).max(1));
                    let mut m: Vec<f32> = track[off..(off + len).min(track.len())].to_vec();
                    set_level(&mut m, spec.levels[0] - 3.0);
                    for (i, v) in m.iter().enumerate() {
                        if let Some(o) = audio.get_mut(start + i) {
                            *o += v;
                        }
                        if let Some(o) = per[0].get_mut(start + i) {
                            *o += v;
                        }
                    }
                    music_spans.push((start, start + m.len()));
                    t = start + m.len();
                } else {
                    t = start + len;
                }
                t += (rng.range(0.7, 1.5) * RATE as f64) as usize;
                continue;
            }
        }
        // One turn: 1–3 utterances (clips) of one speaker.
        let pool = if speaker == 0 { a } else { b };
        let n = 1 + rng.below(3);
        for k in 0..n {
            let clip = &pool[rng.below(pool.len())];
            let mut x = clip.audio.clone();
            set_level(&mut x, spec.levels[usize::from(speaker)]);
            // The clip's own leading silence is trimmed to 50 ms before its first utterance.
            let first = clip.utts[0].0;
            let lead = first.saturating_sub(RATE / 20);
            let last = clip.utts.last().map_or(x.len(), |u| u.1);
            let body = &x[lead..(last + RATE / 20).min(x.len())];
            let at = t;
            for (i, v) in body.iter().enumerate() {
                if let Some(o) = audio.get_mut(at + i) {
                    *o += v;
                }
                if let Some(o) = per[usize::from(speaker)].get_mut(at + i) {
                    *o += v;
                }
            }
            for &(s, e) in &clip.utts {
                // What sinks under the line noise is not heard: the truth ends where the
                // speech is 6 dB above the noise (10 ms frames of the clip at its level).
                let (s, e) = audible(&x, s, e, spec.noise_dbfs + 6.0);
                if e <= s {
                    continue;
                }
                utts.push(Utterance {
                    start: at + s - lead,
                    end: at + e - lead,
                    speaker,
                });
            }
            let end = at + last - lead;
            last_end = last_end.max(end);
            t = end;
            if k + 1 < n {
                t += (rng.range(0.18, 0.47) * RATE as f64) as usize;
            }
        }
        // Turn gap, or an overlap into the next turn.
        speaker ^= 1;
        if rng.f() < spec.overlap_p {
            t = t.saturating_sub((rng.range(0.2, 0.8) * RATE as f64) as usize);
        } else {
            t += (rng.range(0.7, 1.5) * RATE as f64) as usize;
        }
    }
    let len = (last_end + RATE).max(total).min(audio.len());
    audio.truncate(len);
    let noise = line_noise(&mut rng, len, spec.noise_dbfs);
    audio.iter_mut().zip(&noise).for_each(|(a, n)| *a += n);
    for p in &mut per {
        p.truncate(len);
        p.iter_mut().zip(&noise).for_each(|(a, n)| *a += n);
    }
    utts.sort_by_key(|u| (u.start, u.end));
    let mut case = Case {
        name: spec.name.clone(),
        kind: "call",
        rate: RATE,
        audio,
        utterances: utts,
        music: music_spans,
    };
    if spec.telephone {
        case = to_telephone(case);
        if stereo {
            per = [telephone(&per[0]), telephone(&per[1])];
        }
    }
    (case, stereo.then_some(per))
}

/// A WAV file (16-bit PCM) of `channels` (all the same length) at `rate`.
pub fn wav_bytes_channels(rate: usize, channels: &[&[f32]]) -> Vec<u8> {
    let ch = channels.len();
    let n = channels.first().map_or(0, |c| c.len());
    let data_len = n * ch * 2;
    let mut v = Vec::with_capacity(44 + data_len);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&((36 + data_len) as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&(ch as u16).to_le_bytes());
    v.extend_from_slice(&(rate as u32).to_le_bytes());
    v.extend_from_slice(&((rate * ch * 2) as u32).to_le_bytes());
    v.extend_from_slice(&((ch * 2) as u16).to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data_len as u32).to_le_bytes());
    for i in 0..n {
        for c in channels {
            let s = (c[i].clamp(-1.0, 1.0) * 32767.0).round() as i16;
            v.extend_from_slice(&s.to_le_bytes());
        }
    }
    v
}

/// The case through a telephone channel at 8 kHz (positions halved).
pub fn to_telephone(c: Case) -> Case {
    Case {
        audio: telephone(&c.audio),
        rate: RATE / 2,
        utterances: c
            .utterances
            .iter()
            .map(|u| Utterance {
                start: u.start / 2,
                end: u.end.div_ceil(2),
                speaker: u.speaker,
            })
            .collect(),
        music: c
            .music
            .iter()
            .map(|&(s, e)| (s / 2, e.div_ceil(2)))
            .collect(),
        ..c
    }
}

/// A variant: the whole case scaled by `gain_db`.
pub fn with_gain(c: &Case, suffix: &str, gain_db: f32) -> Case {
    let g = 10f32.powf(gain_db / 20.0);
    Case {
        name: format!("{}{suffix}", c.name),
        audio: c.audio.iter().map(|v| v * g).collect(),
        ..c.clone()
    }
}

/// A variant with white-ish noise added so that the speech is `snr_db` above it.
pub fn with_snr(c: &Case, suffix: &str, snr_db: f32, seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    // Speech power: mean square over the utterances.
    let (mut e, mut n) = (0f64, 0usize);
    for u in &c.utterances {
        for v in &c.audio[u.start..u.end.min(c.audio.len())] {
            e += f64::from(*v * *v);
            n += 1;
        }
    }
    let speech_db = 10.0 * (e / n.max(1) as f64 + 1e-12).log10();
    let noise = line_noise(&mut rng, c.audio.len(), speech_db as f32 - snr_db);
    Case {
        name: format!("{}{suffix}", c.name),
        audio: c.audio.iter().zip(&noise).map(|(a, b)| a + b).collect(),
        ..c.clone()
    }
}

/// A variant with lost packets filled with zeros, as VoIP recorders write them: every 10–30 s
/// a gap of 60–200 ms, outside the utterances, set to digital silence.
pub fn with_loss(c: &Case, suffix: &str, seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let mut audio = c.audio.clone();
    let mut at = (rng.range(10.0, 30.0) * c.rate as f64) as usize;
    while at < audio.len() {
        let len = (rng.range(0.06, 0.2) * c.rate as f64) as usize;
        let end = (at + len).min(audio.len());
        let clear = c.utterances.iter().all(|u| end <= u.start || at >= u.end);
        if clear {
            audio[at..end].fill(0.0);
        }
        at += (rng.range(10.0, 30.0) * c.rate as f64) as usize;
    }
    Case {
        name: format!("{}{suffix}", c.name),
        audio,
        ..c.clone()
    }
}

/// A variant through G.711 µ-law.
pub fn with_mulaw(c: &Case, suffix: &str) -> Case {
    Case {
        name: format!("{}{suffix}", c.name),
        audio: c.audio.iter().map(|&v| mulaw_round_trip(v)).collect(),
        ..c.clone()
    }
}

/// Music only: `secs` of tracks back to back (each excerpt 30–60 s), at −20 dBFS, over line
/// noise.
pub fn music_only(name: &str, seed: u64, secs: f64, tracks: &[Vec<f32>], telephone: bool) -> Case {
    let mut rng = Rng::new(seed);
    let total = (secs * RATE as f64) as usize;
    let mut audio = Vec::with_capacity(total);
    while audio.len() < total && !tracks.is_empty() {
        let tr = &tracks[rng.below(tracks.len())];
        let len = ((rng.range(30.0, 60.0) * RATE as f64) as usize).min(total - audio.len());
        let off = rng.below(tr.len().saturating_sub(len).max(1));
        let mut m = tr[off..(off + len).min(tr.len())].to_vec();
        set_level(&mut m, -20.0);
        audio.extend(m);
    }
    let noise = line_noise(&mut rng, audio.len(), -65.0);
    audio.iter_mut().zip(&noise).for_each(|(a, n)| *a += n);
    let n = audio.len();
    let c = Case {
        name: name.into(),
        kind: "music",
        rate: RATE,
        audio,
        utterances: Vec::new(),
        music: vec![(0, n)],
    };
    if telephone {
        to_telephone(c)
    } else {
        c
    }
}

/// Line noise only (dead air).
pub fn silence_only(name: &str, seed: u64, secs: f64) -> Case {
    let mut rng = Rng::new(seed);
    let audio = line_noise(&mut rng, (secs * RATE as f64) as usize, -60.0);
    to_telephone(Case {
        name: name.into(),
        kind: "silence",
        rate: RATE,
        audio,
        utterances: Vec::new(),
        music: Vec::new(),
    })
}

/// The case's audio as 16-bit PCM WAV bytes at its rate (µ-law when `mulaw`).
pub fn wav_bytes(c: &Case, mulaw: bool) -> Vec<u8> {
    let n = c.audio.len();
    let (tag, bits, block) = if mulaw {
        (7u16, 8u16, 1u16)
    } else {
        (1, 16, 2)
    };
    let data_len = n * usize::from(block);
    let mut v = Vec::with_capacity(44 + data_len);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&((36 + data_len) as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&(c.rate as u32).to_le_bytes());
    v.extend_from_slice(&((c.rate * usize::from(block)) as u32).to_le_bytes());
    v.extend_from_slice(&block.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data_len as u32).to_le_bytes());
    for &x in &c.audio {
        let s = (x.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        if mulaw {
            v.push(linear_to_mulaw(s));
        } else {
            v.extend_from_slice(&s.to_le_bytes());
        }
    }
    v
}

/// G.711 µ-law encoding of one 16-bit sample.
pub fn linear_to_mulaw(s: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut x = i32::from(s);
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = (x + BIAS).min(0x7FFF);
    let exp = (31 - (x as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mant = (x >> (exp + 3)) & 0x0F;
    !(sign | (exp << 4) as u8 as i32 | mant) as u8
}

/// The truth as JSON (the format `scripts/vad_compare.py` reads).
pub fn truth_json(c: &Case) -> String {
    let utts: Vec<String> = c
        .utterances
        .iter()
        .map(|u| {
            format!(
                "{{\"start\": {}, \"end\": {}, \"speaker\": \"{}\"}}",
                u.start, u.end, u.speaker
            )
        })
        .collect();
    let music: Vec<String> = c
        .music
        .iter()
        .map(|(s, e)| format!("{{\"start\": {s}, \"end\": {e}}}"))
        .collect();
    format!(
        "{{\"rate\": {}, \"len\": {}, \"kind\": \"{}\",\n \"utterances\": [{}],\n \"music\": [{}]}}\n",
        c.rate,
        c.audio.len(),
        c.kind,
        utts.join(",\n  "),
        music.join(", ")
    )
}

/// The corpus: the full one (a 45-minute call, 20 minutes of dialogue; for `make_corpus`) or
/// the quick one the tests run (6 minutes and 4 minutes), with whether each case is written as
/// µ-law.
pub fn cases(quick: bool) -> Vec<(Case, bool)> {
    let (call_s, dia_s, n_clips) = if quick {
        (360.0, 240.0, 60)
    } else {
        (2700.0, 1200.0, 400)
    };
    let v = |i: usize| clips(&voice_files(VOICES[i].1), n_clips, 12.0);
    let (es, it, ru) = (v(0), v(1), v(2));
    let m = clips(&fillets_files('m'), n_clips, 12.0);
    let vv = clips(&fillets_files('v'), n_clips, 12.0);
    let music: Vec<Vec<f32>> = music_files()
        .iter()
        .take(if quick { 4 } else { 40 })
        .map(|p| decode(p))
        .collect();
    let mut cases = Vec::new();
    let call = assemble(
        &CallSpec {
            name: "call_es_it".into(),
            seed: 1,
            secs: call_s,
            holds: if quick { 1 } else { 3 },
            dead_air: if quick { 1 } else { 4 },
            levels: [-20.0, -26.0],
            noise_dbfs: -60.0,
            overlap_p: 0.1,
            telephone: true,
        },
        &es,
        &it,
        &music,
    );
    cases.push((with_gain(&call, "_m45", -45.0 + 20.0), false));
    cases.push((with_snr(&call, "_snr5", 5.0, 7), false));
    cases.push((
        with_loss(&with_snr(&call, "_snr5", 5.0, 7), "_loss", 8),
        false,
    ));
    cases.push((with_mulaw(&call, "_ulaw"), true));
    cases.push((call, false));
    let call2 = assemble(
        &CallSpec {
            name: "call_ru_nl".into(),
            seed: 2,
            secs: call_s / 2.0,
            holds: 1,
            dead_air: 2,
            levels: [-22.0, -26.0],
            noise_dbfs: -55.0,
            overlap_p: 0.15,
            telephone: true,
        },
        &ru,
        &vv,
        &music,
    );
    cases.push((call2, false));
    let mut dia = assemble(
        &CallSpec {
            name: "dialogue_nl".into(),
            seed: 3,
            secs: dia_s,
            holds: 0,
            dead_air: 0,
            levels: [-20.0, -24.0],
            noise_dbfs: -70.0,
            overlap_p: 0.05,
            telephone: false,
        },
        &m,
        &vv,
        &music,
    );
    dia.kind = "dialogue";
    cases.push((dia, false));
    cases.push((music_only("music_only_8k", 4, 180.0, &music, true), false));
    cases.push((music_only("music_only_16k", 5, 180.0, &music, false), false));
    cases.push((silence_only("silence_only", 6, 120.0), false));
    cases
}

/// What a segmentation did to a case (all positions compared at 16 kHz).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    pub utterances: usize,
    /// Inside exactly one request's span, and no other request's span overlaps it.
    pub whole: usize,
    /// Overlapping two or more requests' spans.
    pub split: usize,
    /// Overlapping no request.
    pub missed: usize,
    /// Samples of utterance time (their union) and how many of them were sent.
    pub speech: u64,
    pub speech_sent: u64,
    /// Samples of music and how many were sent.
    pub music: u64,
    pub music_sent: u64,
    /// Samples billed (sent), requests, and the longest request billed.
    pub billed: u64,
    pub requests: usize,
    pub longest: u64,
}

impl Score {
    pub fn add(&mut self, o: &Score) {
        self.utterances += o.utterances;
        self.whole += o.whole;
        self.split += o.split;
        self.missed += o.missed;
        self.speech += o.speech;
        self.speech_sent += o.speech_sent;
        self.music += o.music;
        self.music_sent += o.music_sent;
        self.billed += o.billed;
        self.requests += o.requests;
        self.longest = self.longest.max(o.longest);
    }
    pub fn whole_pct(&self) -> f64 {
        100.0 * self.whole as f64 / self.utterances.max(1) as f64
    }
    pub fn coverage_pct(&self) -> f64 {
        100.0 * self.speech_sent as f64 / self.speech.max(1) as f64
    }
    pub fn music_pct(&self) -> f64 {
        100.0 * self.music_sent as f64 / self.music.max(1) as f64
    }
    pub fn billed_ratio(&self) -> f64 {
        self.billed as f64 / self.speech.max(1) as f64
    }
}

/// The union of intervals, sorted and merged.
fn merged(v: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut v = v.to_vec();
    v.sort_unstable();
    let mut m: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match m.last_mut() {
            Some(l) if s <= l.1 => l.1 = l.1.max(e),
            _ => m.push((s, e)),
        }
    }
    m
}

/// Length of the union of intervals.
fn union_len(v: Vec<(u64, u64)>) -> u64 {
    merged(&v).iter().map(|(s, e)| e - s).sum()
}

/// Length of the intersection of the union of `a` with the union of `b`.
fn covered(a: &[(u64, u64)], b: &[(u64, u64)]) -> u64 {
    let m = merged(b);
    let am = merged(a);
    let mut total = 0;
    for (s, e) in am {
        let i = m.partition_point(|x| x.1 <= s);
        for &(bs, be) in &m[i..] {
            if bs >= e {
                break;
            }
            total += e.min(be).saturating_sub(s.max(bs));
        }
    }
    total
}

/// The stretches of the original timeline that `segments` send, `[start, end)` at 16 kHz.
fn kept_spans(segments: &[asr_pipeline::segment::Segment]) -> Vec<(u64, u64)> {
    segments
        .iter()
        .flat_map(|s| {
            s.kept
                .spans()
                .iter()
                .map(|p| (p.original, p.original + p.len))
        })
        .collect()
}

/// Scores `segments` (16 kHz positions, as the segmenter returns them) against the case.
pub fn score(c: &Case, segments: &[asr_pipeline::segment::Segment]) -> Score {
    let k = (RATE / c.rate) as u64;
    let tol = 160; // 10 ms at 16 kHz
    let utts: Vec<(u64, u64)> = c
        .utterances
        .iter()
        .map(|u| (u.start as u64 * k, u.end as u64 * k))
        .collect();
    let music: Vec<(u64, u64)> = c
        .music
        .iter()
        .map(|&(s, e)| (s as u64 * k, e as u64 * k))
        .collect();
    let kept = kept_spans(segments);
    let mut sc = Score {
        utterances: utts.len(),
        requests: segments.len(),
        ..Score::default()
    };
    for &(s, e) in &utts {
        let (s2, e2) = (s + tol, e.saturating_sub(tol).max(s + tol + 1));
        let overlapping: Vec<&asr_pipeline::segment::Segment> = segments
            .iter()
            .filter(|r| r.start < e2 && r.end > s2)
            .collect();
        match overlapping.as_slice() {
            [] => sc.missed += 1,
            [r] if r.start <= s2 && r.end >= e2 => sc.whole += 1,
            [_] => {}
            _ => sc.split += 1,
        }
    }
    sc.speech = union_len(utts.clone());
    sc.speech_sent = covered(&utts, &kept);
    sc.music = union_len(music.clone());
    sc.music_sent = covered(&music, &kept);
    sc.billed = segments.iter().map(|s| s.billed()).sum();
    sc.longest = segments.iter().map(|s| s.billed()).max().unwrap_or(0);
    sc
}

/// Prints each utterance that was not sent whole, with what covered it and how loud the
/// loudest 10 ms of its unsent part is, in dB below the utterance's loudest 10 ms (a clipped
/// word is within 10–20 dB of it; a reverberation tail or breath is 25 dB or more below).
pub fn explain(c: &Case, segments: &[asr_pipeline::segment::Segment]) {
    let k = (RATE / c.rate) as u64;
    let kept = merged(&kept_spans(segments));
    let hop = (c.rate / 100) as u64; // 10 ms in the case's samples
    let frame_db = |a: u64| {
        let a = a as usize;
        energy_db(&c.audio[a.min(c.audio.len())..(a + hop as usize).min(c.audio.len())])
    };
    for u in &c.utterances {
        let (s, e) = (u.start as u64 * k, u.end as u64 * k);
        let ov: Vec<(f64, f64)> = segments
            .iter()
            .filter(|r| r.start < e && r.end > s)
            .map(|r| (r.start as f64 / 16e3, r.end as f64 / 16e3))
            .collect();
        let whole = ov.len() == 1
            && ov[0].0 * 16e3 <= (s + 160) as f64
            && ov[0].1 * 16e3 >= (e - 160) as f64;
        if !whole {
            let (mut peak, mut unsent) = (f32::MIN, f32::MIN);
            let mut f = u.start as u64;
            while f + hop <= u.end as u64 {
                let d = frame_db(f);
                peak = peak.max(d);
                let (a, b) = (f * k, (f + hop) * k);
                if !kept.iter().any(|&(ks, ke)| ks <= a && ke >= b) {
                    unsent = unsent.max(d);
                }
                f += hop;
            }
            println!(
                "  {} spk {} utt {:.3}-{:.3} ({:.2} s): {:?}; unsent: {}",
                c.name,
                u.speaker,
                s as f64 / 16e3,
                e as f64 / 16e3,
                (e - s) as f64 / 16e3,
                ov,
                if unsent == f32::MIN {
                    "nothing (edge within 10 ms)".to_string()
                } else {
                    format!("loudest {:.0} dB below its peak", peak - unsent)
                }
            );
        }
    }
}
