//! Stage `merge`: API results back onto the ORIGINAL file's timeline.
//!
//! - Sync: each segment's text sits at that segment's original `[start, end)`
//!   ([`sync_segments`]).
//! - Async: the server's timestamps (milliseconds relative to what was uploaded) are converted
//!   to samples (float noise rounded away), clamped to the uploaded part, sorted, zero-length
//!   pieces dropped, slight overlaps between consecutive pieces of the same speaker split at
//!   their midpoint (overlaps between different speakers are real and kept; see
//!   `sort_and_trim`), then mapped through the part's
//!   [`TimeMap`] (when silences were removed before upload) and its offset ([`async_parts`]).
//!   Speaker labels are kept. With several parts the server numbers speakers per job, so
//!   nothing says `speaker_0` of part 1 is `speaker_0` of part 2: a later part that uploaded a
//!   lead-in (the end of the part before, heard by both jobs) has its speakers matched by who
//!   talks when in it ([`merge_parts`]); a matched speaker takes the earlier part's label, one
//!   that cannot be matched keeps a label of its part (`p2:speaker_1`). What a job said about
//!   its lead-in is used for matching only (the part before transcribed it), except a piece
//!   that runs on past the lead-in: it is the later part's, whole, and replaces the part
//!   before's pieces of that speaker that it covers (cut short at the part's end).
//! - Optionally adjacent pieces of one speaker are joined for reading (`MergeOptions`).

use crate::time::{Samples, TimeMap};
use crate::transcript::{Source, SpeakerMatch, TranscriptSegment};

/// Samples per millisecond at [`crate::time::RATE`].
const PER_MS: f64 = crate::time::RATE as f64 / 1000.0;

/// The result of one synchronous request, with its segment's place on the original timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncPiece {
    /// 0-based index of the segment in the file's plan.
    pub segment: usize,
    /// Segment start on the original timeline (samples at 16 kHz).
    pub start: Samples,
    /// Segment end (exclusive) on the original timeline (samples at 16 kHz).
    pub end: Samples,
    /// The transcription the server returned.
    pub text: String,
    /// The language the server reported, if any.
    pub language: Option<String>,
    /// The speaker: the channel's name when channels are transcribed separately.
    pub speaker: Option<String>,
    /// The file's channel the segment was cut from, when channels are transcribed separately.
    pub channel: Option<u16>,
}

/// Places sync results at their segments' original times: sorted by start, zero-length and
/// empty-text results dropped, text trimmed. Segments of one track never overlap; segments of
/// different channels (different speakers) may, and are kept as they are. Overlapping
/// unlabelled segments (never produced by the segmenter) are split at their midpoint like
/// two async pieces of one speaker.
pub fn sync_segments(pieces: impl IntoIterator<Item = SyncPiece>) -> Vec<TranscriptSegment> {
    let mut out: Vec<TranscriptSegment> = pieces
        .into_iter()
        .filter_map(|p| {
            let text = p.text.trim();
            if text.is_empty() || p.end <= p.start {
                return None;
            }
            Some(TranscriptSegment {
                start: p.start,
                end: p.end,
                speaker: p.speaker,
                language: p.language.filter(|l| !l.trim().is_empty()),
                text: text.to_string(),
                source: Source::Sync { segment: p.segment },
                channel: p.channel,
            })
        })
        .collect();
    sort_and_trim(&mut out);
    out
}

/// One timestamp of an asynchronous result, in the client's units (milliseconds, relative to
/// the uploaded audio).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct AsyncPiece {
    /// Start in milliseconds from the start of the uploaded audio (float noise allowed).
    pub start_ms: f64,
    /// End in milliseconds from the start of the uploaded audio.
    pub end_ms: f64,
    /// Speaker label as the server gave it (`speaker_0`).
    pub speaker: Option<String>,
    /// Language tag as the server gave it.
    pub language: Option<String>,
    /// The transcription.
    pub text: String,
}

/// One uploaded part of an async run and what the server said about it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PartResult {
    /// 0-based index of the part.
    pub part: usize,
    /// Where the part starts on the original timeline (samples).
    pub offset: Samples,
    /// Length of the part on the original timeline (samples); results are clamped to it.
    pub len: Samples,
    /// Map from uploaded time to part-relative original time, when silences were removed.
    pub time_map: Option<TimeMap>,
    /// The server's timestamps for this part.
    pub pieces: Vec<AsyncPiece>,
    /// Samples from `offset` that belong to the part before (uploaded again to match
    /// speakers): pieces that end there are used for that only. 0 for none.
    pub lead_in: Samples,
}

/// How async results are merged.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct MergeOptions {
    /// With more than one part, never give two parts' speakers one label unless they were
    /// matched: a later part's speakers take the matched label of the part before, or a
    /// label of their part (`p2:speaker_0`). Default: `true` (the server numbers speakers
    /// per job). `false` keeps the server's labels as they are.
    pub distinct_speakers_per_part: bool,
}

impl Default for MergeOptions {
    fn default() -> Self {
        MergeOptions {
            distinct_speakers_per_part: true,
        }
    }
}

/// Converts a server millisecond value to samples, rounding float noise away
/// (`660.0000000000003` → 10 560). Non-finite values give `None`; negative ones 0.
fn ms_to_samples(ms: f64) -> Option<Samples> {
    if !ms.is_finite() {
        return None;
    }
    let s = (ms * PER_MS).round();
    if s <= 0.0 {
        Some(0)
    } else if s >= u64::MAX as f64 {
        Some(u64::MAX)
    } else {
        Some(s as Samples)
    }
}

/// Puts pieces in order and removes only what is certainly noise; never drops text.
///
/// The rule (times already clamped to the file and rounded to whole samples by the callers):
/// 1. zero-length pieces are dropped;
/// 2. pieces are sorted by `(start, end)`;
/// 3. an overlap is trimmed only between consecutive pieces of the SAME speaker (or two
///    unlabelled pieces): the earlier one ends and the later one starts at the midpoint of the
///    overlap, and only when that leaves both non-empty and the later piece ends after the
///    earlier one (a piece nested in another of the same speaker is left as it is);
/// 4. every other overlap is kept as it is: different speakers legitimately overlap
///    (backchannels, crosstalk; RTTM allows it), so a turn is never shortened or moved
///    because another speaker talks over it.
///
/// The result is sorted by `(start, end)`; segments may overlap.
fn sort_and_trim(v: &mut Vec<TranscriptSegment>) {
    v.retain(|s| s.end > s.start);
    v.sort_by_key(|a| (a.start, a.end));
    // Index of the last piece seen for each speaker (None = unlabelled).
    let mut last: std::collections::HashMap<Option<String>, usize> =
        std::collections::HashMap::new();
    for i in 0..v.len() {
        let key = v.get(i).map(|s| s.speaker.clone()).unwrap_or_default();
        if let Some(&j) = last.get(&key) {
            let (head, tail) = v.split_at_mut(i);
            if let (Some(prev), Some(next)) = (head.get_mut(j), tail.first_mut()) {
                if next.start < prev.end && next.end > prev.end {
                    // prev.start <= next.start < prev.end < next.end
                    let mid = next.start + (prev.end - next.start) / 2;
                    if mid > prev.start {
                        prev.end = mid;
                        next.start = mid;
                    }
                }
            }
        }
        last.insert(key, i);
    }
    // Trimming only moves starts forward by at most half a slight overlap: re-sort (stable).
    v.sort_by_key(|a| (a.start, a.end));
}

/// Sorts segments by (start, end) and trims overlaps between consecutive pieces of one
/// speaker, as [`async_parts`] does (used to combine the tracks of several channels).
pub(crate) fn sort_segments(v: &mut Vec<TranscriptSegment>) {
    sort_and_trim(v);
}

/// Merges the async results of every part onto the original timeline; see the module docs.
///
/// `file_len` is the original file's length in samples: nothing ends after it.
pub fn async_parts(
    parts: &[PartResult],
    opts: &MergeOptions,
    file_len: Samples,
) -> Vec<TranscriptSegment> {
    merge_parts(parts, opts, file_len).0
}

/// Least time two speakers must be heard together in a lead-in to be matched: 1 s.
const MIN_AGREEMENT: Samples = crate::time::RATE as Samples;
/// Share of each speaker's agreement in a lead-in that its match must hold.
const MATCH_SHARE: f64 = 0.6;

/// [`async_parts`], also saying for each part (in the order given) how its speakers were
/// labelled: `None` for the first part, or when labels are kept as the server gave them.
pub fn merge_parts(
    parts: &[PartResult],
    opts: &MergeOptions,
    file_len: Samples,
) -> (Vec<TranscriptSegment>, Vec<Option<SpeakerMatch>>) {
    let relabel = opts.distinct_speakers_per_part && parts.len() > 1;
    let mut all = Vec::new();
    let mut matches = Vec::with_capacity(parts.len());
    // The part before's segments (final labels).
    let mut before: Vec<TranscriptSegment> = Vec::new();
    for (k, p) in parts.iter().enumerate() {
        let v = place_part(p, file_len);
        let own_from = p.offset.saturating_add(p.lead_in);
        // A piece over by `own_from` is the part before's (its job heard it whole). A piece
        // that runs on past it is this part's, whole: its job heard all of it, while the part
        // before's audio stopped at the cut.
        let (lead, mut own): (Vec<_>, Vec<_>) = v.into_iter().partition(|s| s.end <= own_from);
        if relabel && k > 0 {
            let m = match_speakers(&lead, &before, &own, own_from, p.part);
            for s in &mut own {
                if let Some(l) = s.speaker.as_ref().and_then(|l| m.labels.get(l)) {
                    s.speaker = Some(l.clone());
                }
            }
            matches.push(Some(m));
        } else {
            matches.push(None);
        }
        // The part before's version of an utterance that runs across the cut is cut short
        // there: the piece of the same speaker running on, which this job heard from (about)
        // the same start, replaces it. A piece it does not cover stays, and so does any
        // piece of a speaker not matched: words twice rather than none.
        if relabel {
            let across: Vec<&TranscriptSegment> =
                own.iter().filter(|s| s.start < own_from).collect();
            before.retain(|b| {
                !across.iter().any(|s| {
                    b.speaker == s.speaker
                        && b.end > s.start
                        && b.start + SAME_START >= s.start
                        && b.start >= p.offset
                })
            });
        }
        all.append(&mut before);
        before = own;
    }
    all.append(&mut before);
    sort_and_trim(&mut all);
    (all, matches)
}

/// How far apart two jobs may place the start of one utterance: 250 ms.
const SAME_START: Samples = crate::time::RATE as Samples / 4;

/// One part's pieces on the original timeline, with the server's labels.
fn place_part(p: &PartResult, file_len: Samples) -> Vec<TranscriptSegment> {
    let uploaded_len = p.time_map.as_ref().map_or(p.len, TimeMap::uploaded_len);
    let mut v: Vec<TranscriptSegment> = p
        .pieces
        .iter()
        .filter_map(|a| {
            let start = ms_to_samples(a.start_ms)?.min(uploaded_len);
            let end = ms_to_samples(a.end_ms)?.min(uploaded_len);
            Some(TranscriptSegment {
                start,
                end,
                speaker: a
                    .speaker
                    .as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
                language: a
                    .language
                    .as_deref()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
                text: a.text.trim().to_string(),
                source: Source::Async { part: p.part },
                channel: None,
            })
        })
        .collect();
    // Trim in uploaded time (where the server's overlaps are), then map.
    sort_and_trim(&mut v);
    for s in &mut v {
        let (a, b) = match &p.time_map {
            Some(m) => (m.map_start(s.start), m.map_end(s.end)),
            None => (s.start, s.end),
        };
        let a = a.min(p.len);
        let b = b.min(p.len);
        s.start = p.offset.saturating_add(a).min(file_len);
        s.end = p.offset.saturating_add(b).min(file_len);
    }
    v
}

/// Matches the speakers a part's job heard in its lead-in (`lead`, the job's labels) to
/// those the part before has there (`before`, final labels): by how long each pair is heard
/// at the same time. A pair is matched, greedily from the longest agreement, when it agrees
/// for at least [`MIN_AGREEMENT`] and holds [`MATCH_SHARE`] of each one's agreement with
/// anyone. Every label of `own` gets its transcript label.
fn match_speakers(
    lead: &[TranscriptSegment],
    before: &[TranscriptSegment],
    own: &[TranscriptSegment],
    own_from: Samples,
    part: usize,
) -> SpeakerMatch {
    use std::collections::{BTreeMap, BTreeSet};
    let mut together: BTreeMap<(&str, &str), Samples> = BTreeMap::new();
    // What the job heard of the lead-in: its pieces there, and the start of those that run on.
    let heard = lead.iter().chain(own.iter().filter(|s| s.start < own_from));
    for a in heard {
        let Some(la) = a.speaker.as_deref() else {
            continue;
        };
        for b in before {
            let Some(lb) = b.speaker.as_deref() else {
                continue;
            };
            let both = a.end.min(b.end).saturating_sub(a.start.max(b.start));
            if both > 0 {
                *together.entry((la, lb)).or_default() += both;
            }
        }
    }
    let mut total_new: BTreeMap<&str, Samples> = BTreeMap::new();
    let mut total_old: BTreeMap<&str, Samples> = BTreeMap::new();
    for (&(a, b), &t) in &together {
        *total_new.entry(a).or_default() += t;
        *total_old.entry(b).or_default() += t;
    }
    let mut pairs: Vec<((&str, &str), Samples)> = together.into_iter().collect();
    pairs.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    let mut matched = BTreeMap::new();
    let mut taken: BTreeSet<&str> = BTreeSet::new();
    for ((a, b), t) in pairs {
        let share =
            |total: Option<&Samples>| t as f64 >= MATCH_SHARE * total.copied().unwrap_or(0) as f64;
        if t >= MIN_AGREEMENT
            && !matched.contains_key(a)
            && !taken.contains(b)
            && share(total_new.get(a))
            && share(total_old.get(b))
        {
            matched.insert(a, b);
            taken.insert(b);
        }
    }
    // The labels the transcript carries: those of the part's own pieces.
    let mut labels = BTreeMap::new();
    let mut unmatched = Vec::new();
    for l in own.iter().filter_map(|s| s.speaker.as_deref()) {
        if labels.contains_key(l) {
            continue;
        }
        match matched.get(l) {
            Some(b) => {
                labels.insert(l.to_string(), (*b).to_string());
            }
            None => {
                labels.insert(l.to_string(), format!("p{}:{l}", part + 1));
                unmatched.push(l.to_string());
            }
        }
    }
    unmatched.sort();
    SpeakerMatch { labels, unmatched }
}

/// Joins adjacent pieces of one speaker (same speaker, language and source) separated by at
/// most `max_gap` samples, as long as the joined piece stays within `max_len` samples. Texts
/// are joined with a space. For reading; RTTM users want the pieces as they came.
pub(crate) fn join_adjacent(
    segments: Vec<TranscriptSegment>,
    max_gap: Samples,
    max_len: Samples,
) -> Vec<TranscriptSegment> {
    let mut out: Vec<TranscriptSegment> = Vec::with_capacity(segments.len());
    for s in segments {
        if let Some(last) = out.last_mut() {
            let joinable = last.speaker.is_some()
                && last.speaker == s.speaker
                && last.language == s.language
                && last.source == s.source
                && s.start >= last.end
                && s.start - last.end <= max_gap
                && s.end.saturating_sub(last.start) <= max_len;
            if joinable {
                last.end = s.end;
                if !s.text.is_empty() {
                    if !last.text.is_empty() {
                        last.text.push(' ');
                    }
                    last.text.push_str(&s.text);
                }
                continue;
            }
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(start_ms: f64, end_ms: f64, spk: &str, text: &str) -> AsyncPiece {
        AsyncPiece {
            start_ms,
            end_ms,
            speaker: Some(spk.into()),
            language: Some("nso-ZA".into()),
            text: text.into(),
        }
    }

    const S: Samples = 16_000;

    #[test]
    fn float_noise_is_rounded_and_overlaps_split() {
        let parts = [PartResult {
            part: 0,
            offset: 0,
            len: 30 * S,
            time_map: None,
            pieces: vec![
                // out of order, with noise and a slight overlap
                piece(1260.0000000000005, 2309.9999999999995, "speaker_1", "b"),
                piece(660.0000000000003, 1270.0, "speaker_0", "a"),
                piece(2400.0, 2400.0, "speaker_0", "zero"),
                piece(29_000.0, 40_000.0, "speaker_0", "clamped"),
            ],
            lead_in: 0,
        }];
        let v = async_parts(&parts, &MergeOptions::default(), 30 * S);
        assert_eq!(v.len(), 3, "{v:?}");
        assert_eq!(v[0].text, "a");
        assert_eq!(v[0].start, 660 * 16);
        // different speakers: the 1260..1270 ms overlap is real and kept
        assert_eq!(v[0].end, 1270 * 16);
        assert_eq!(v[1].start, 1260 * 16);
        assert_eq!(v[1].end, 2310 * 16);
        assert_eq!(v[1].speaker.as_deref(), Some("speaker_1"));
        assert_eq!(v[2].end, 30 * S);
        assert_eq!(v[2].source, Source::Async { part: 0 });
    }

    #[test]
    fn parts_are_offset_and_speakers_kept_distinct() {
        let parts = [
            PartResult {
                part: 0,
                offset: 0,
                len: 10 * S,
                time_map: None,
                pieces: vec![piece(1000.0, 2000.0, "speaker_0", "x")],
                lead_in: 0,
            },
            PartResult {
                part: 1,
                offset: 10 * S,
                len: 10 * S,
                time_map: None,
                pieces: vec![piece(500.0, 1500.0, "speaker_0", "y")],
                lead_in: 0,
            },
        ];
        let v = async_parts(&parts, &MergeOptions::default(), 20 * S);
        assert_eq!(v[1].start, 10 * S + 500 * 16);
        assert_eq!(v[1].end, 10 * S + 1500 * 16);
        // No lead-in: nothing to match part 2's speaker by.
        assert_eq!(v[0].speaker.as_deref(), Some("speaker_0"));
        assert_eq!(v[1].speaker.as_deref(), Some("p2:speaker_0"));
        assert_eq!(v[1].source, Source::Async { part: 1 });
    }

    /// Two speakers alternating; part 2's job numbers them the other way round. Its lead-in
    /// (the last 20 s of part 1) shows who is who.
    #[test]
    fn speakers_are_matched_across_parts_by_the_lead_in() {
        // Part 1: 0..60 s, turns of 4 s: A (speaker_0) at 0, 8, 16...; B (speaker_1) at 4, 12...
        let turns = |from: u64, to: u64, a: &str, b: &str, shift: f64| -> Vec<AsyncPiece> {
            (from / 4..to / 4)
                .map(|i| {
                    let t = (i * 4) as f64 * 1000.0 - shift;
                    let who = if i % 2 == 0 { a } else { b };
                    piece(t + 100.0, t + 3900.0, who, &format!("{who}@{}", i * 4))
                })
                .collect()
        };
        let p1 = PartResult {
            part: 0,
            offset: 0,
            len: 60 * S,
            time_map: None,
            pieces: turns(0, 60, "speaker_0", "speaker_1", 0.0),
            lead_in: 0,
        };
        // Part 2 uploads 40..100 s: lead-in 40..60 s, its own audio 60..100 s; its job names
        // A `speaker_1` and B `speaker_0`.
        let p2 = PartResult {
            part: 1,
            offset: 40 * S,
            len: 60 * S,
            time_map: None,
            pieces: turns(40, 100, "speaker_1", "speaker_0", 40_000.0),
            lead_in: 20 * S,
        };
        let (v, m) = merge_parts(&[p1.clone(), p2.clone()], &MergeOptions::default(), 100 * S);
        // Every turn once: 15 from part 1, 10 from part 2 (its lead-in's 5 are dropped).
        assert_eq!(v.len(), 25);
        for s in &v {
            let at: u64 = s.start / S;
            let expect = if (at / 4).is_multiple_of(2) {
                "speaker_0"
            } else {
                "speaker_1"
            };
            assert_eq!(s.speaker.as_deref(), Some(expect), "{s:?}");
            let part = if at < 60 { 0 } else { 1 };
            assert_eq!(s.source, Source::Async { part });
        }
        assert_eq!(m[0], None);
        let m2 = m[1].clone().unwrap();
        assert!(m2.unmatched.is_empty());
        assert_eq!(
            m2.labels.get("speaker_0").map(String::as_str),
            Some("speaker_1")
        );

        // A third voice only in part 2's own audio cannot be matched: it says so.
        let mut p2x = p2.clone();
        p2x.pieces
            .push(piece(50_000.0, 52_000.0, "speaker_2", "new"));
        let (v, m) = merge_parts(&[p1.clone(), p2x], &MergeOptions::default(), 100 * S);
        assert_eq!(
            m[1].as_ref().unwrap().unmatched,
            vec!["speaker_2".to_string()]
        );
        assert!(v
            .iter()
            .any(|s| s.speaker.as_deref() == Some("p2:speaker_2")));

        // A lead-in with no speech: nothing matched, every label of part 2 its own.
        let mut silent = p2.clone();
        silent.pieces.retain(|a| a.start_ms >= 20_000.0);
        let (v, m) = merge_parts(&[p1, silent], &MergeOptions::default(), 100 * S);
        let m2 = m[1].as_ref().unwrap();
        assert_eq!(m2.unmatched.len(), 2);
        assert!(v
            .iter()
            .filter(|s| s.start >= 60 * S)
            .all(|s| s.speaker.as_deref().is_some_and(|l| l.starts_with("p2:"))));
    }

    /// An utterance running across the cut: the part before heard it up to its end, the
    /// next job whole. It is in the transcript once, whole.
    #[test]
    fn an_utterance_across_the_cut_is_kept_once_and_whole() {
        for (a, b) in [(54_000.0, 62_000.0), (58_000.0, 66_000.0)] {
            let p1 = PartResult {
                part: 0,
                offset: 0,
                len: 60 * S,
                time_map: None,
                pieces: vec![
                    piece(42_000.0, 45_000.0, "speaker_0", "A before"),
                    piece(46_000.0, 50_000.0, "speaker_1", "B before"),
                    piece(a, 60_000.0, "speaker_0", "A cut short"),
                ],
                lead_in: 0,
            };
            // The second job (40..100 s) numbers the voices the other way round.
            let p2 = PartResult {
                part: 1,
                offset: 40 * S,
                len: 60 * S,
                time_map: None,
                pieces: vec![
                    piece(2_000.0, 5_000.0, "speaker_1", "A before"),
                    piece(6_000.0, 10_000.0, "speaker_0", "B before"),
                    piece(a - 40_000.0, b - 40_000.0, "speaker_1", "A whole"),
                    piece(30_000.0, 32_000.0, "speaker_0", "B after"),
                ],
                lead_in: 20 * S,
            };
            let (v, m) = merge_parts(&[p1, p2], &MergeOptions::default(), 100 * S);
            let texts: Vec<(&str, &str)> = v
                .iter()
                .map(|s| (s.text.as_str(), s.speaker.as_deref().unwrap_or("-")))
                .collect();
            assert_eq!(
                texts,
                [
                    ("A before", "speaker_0"),
                    ("B before", "speaker_1"),
                    ("A whole", "speaker_0"),
                    ("B after", "speaker_1")
                ],
                "{v:?}"
            );
            let whole = &v[2];
            assert_eq!((whole.start, whole.end), ((a as u64) * 16, (b as u64) * 16));
            // Only the labels the transcript carries are reported.
            let m2 = m[1].as_ref().unwrap();
            assert_eq!(m2.labels.len(), 2);
            assert!(m2.unmatched.is_empty());
        }
    }

    /// A piece running across the cut replaces only the part before's pieces of that speaker
    /// that it covers: nothing the later job did not hear whole is dropped.
    #[test]
    fn a_piece_across_the_cut_never_replaces_words_it_does_not_cover() {
        let texts = |p1: Vec<AsyncPiece>, p2: Vec<AsyncPiece>, offset: u64| -> Vec<String> {
            let parts = [
                PartResult {
                    part: 0,
                    offset: 0,
                    len: 60 * S,
                    time_map: None,
                    pieces: p1,
                    lead_in: 0,
                },
                PartResult {
                    part: 1,
                    offset: offset * S,
                    len: (100 - offset) * S,
                    time_map: None,
                    pieces: p2,
                    lead_in: (60 - offset) * S,
                },
            ];
            merge_parts(&parts, &MergeOptions::default(), 100 * S)
                .0
                .into_iter()
                .map(|s| s.text)
                .collect()
        };
        // The later job splits the utterance at a pause the earlier one did not.
        let v = texts(
            vec![
                piece(41_000.0, 44_000.0, "speaker_0", "A earlier"),
                piece(54_000.0, 60_000.0, "speaker_0", "one two three four"),
            ],
            vec![
                piece(1_000.0, 4_000.0, "speaker_0", "A earlier"),
                piece(14_000.0, 17_000.0, "speaker_0", "one two three"),
                piece(17_500.0, 22_000.0, "speaker_0", "four five"),
            ],
            40,
        );
        assert_eq!(v, ["A earlier", "one two three four", "four five"]);
        // Two utterances whose boundary the jobs place 20 ms apart: the first stays.
        let v = texts(
            vec![
                piece(41_000.0, 44_000.0, "speaker_0", "A earlier"),
                piece(50_000.0, 55_520.0, "speaker_0", "first sentence"),
                piece(55_520.0, 60_000.0, "speaker_0", "second, cut"),
            ],
            vec![
                piece(1_000.0, 4_000.0, "speaker_0", "A earlier"),
                piece(10_000.0, 15_500.0, "speaker_0", "first sentence"),
                piece(15_500.0, 23_000.0, "speaker_0", "second, whole"),
            ],
            40,
        );
        assert_eq!(v, ["A earlier", "first sentence", "second, whole"]);
        // A piece that began before the later part's audio: that job never heard its start.
        let v = texts(
            vec![
                piece(41_000.0, 44_000.0, "speaker_0", "A earlier"),
                piece(45_000.0, 60_000.0, "speaker_0", "long, cut"),
            ],
            vec![piece(0.0, 14_000.0, "speaker_0", "its end")],
            50,
        );
        assert!(v.contains(&"long, cut".to_string()), "{v:?}");
    }

    #[test]
    fn time_map_restores_removed_silence() {
        let mut m = TimeMap::new();
        m.push(S, 2 * S).unwrap(); // original 1..3 s → uploaded 0..2 s
        m.push(10 * S, 2 * S).unwrap(); // original 10..12 s → uploaded 2..4 s
        assert!(m.push(11 * S, S).is_err());
        assert_eq!(m.uploaded_len(), 4 * S);
        assert_eq!(m.map_start(2 * S), 10 * S);
        assert_eq!(m.map_end(2 * S), 3 * S);
        assert_eq!(m.map_start(S / 2), S + S / 2);
        assert_eq!(m.map_end(4 * S + 7), 12 * S);
        let parts = [PartResult {
            part: 0,
            offset: 100 * S,
            len: 20 * S,
            time_map: Some(m),
            pieces: vec![
                piece(500.0, 1500.0, "speaker_0", "in first span"),
                piece(1500.0, 2500.0, "speaker_1", "across the seam"),
                piece(2000.0, 3000.0, "speaker_0", "second span"),
            ],
            lead_in: 0,
        }];
        let v = async_parts(&parts, &MergeOptions::default(), 200 * S);
        let t: Vec<_> = v.iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(
            t,
            vec![
                (101 * S + S / 2, 102 * S + S / 2),
                // seam piece (another speaker) keeps its overlap with the next piece
                (102 * S + S / 2, 110 * S + S / 2),
                (110 * S, 111 * S),
            ]
        );
    }

    fn turns(v: &[TranscriptSegment]) -> Vec<(Samples, Samples, &str, &str)> {
        v.iter()
            .map(|s| {
                (
                    s.start,
                    s.end,
                    s.speaker.as_deref().unwrap_or(""),
                    s.text.as_str(),
                )
            })
            .collect()
    }

    #[test]
    fn nested_piece_of_another_speaker_keeps_both_turns() {
        let parts = [PartResult {
            part: 0,
            offset: 0,
            len: 10 * S,
            time_map: None,
            pieces: vec![
                piece(1000.0, 5000.0, "speaker_0", "long"),
                piece(2000.0, 3000.0, "speaker_1", "short"),
            ],
            lead_in: 0,
        }];
        let v = async_parts(&parts, &MergeOptions::default(), 10 * S);
        assert_eq!(
            turns(&v),
            vec![
                (S, 5 * S, "speaker_0", "long"),
                (2 * S, 3 * S, "speaker_1", "short")
            ]
        );
    }

    /// Reviewer's case: the old trimming shrank speaker_0 to 0–2 s and deleted speaker_1.
    #[test]
    fn crosstalk_of_three_speakers_is_kept_whole() {
        let parts = [PartResult {
            part: 0,
            offset: 0,
            len: 30 * S,
            time_map: None,
            pieces: vec![
                piece(0.0, 10_000.0, "speaker_0", "zero"),
                piece(1000.0, 20_000.0, "speaker_1", "one"),
                piece(2000.0, 3000.0, "speaker_2", "two"),
            ],
            lead_in: 0,
        }];
        let v = async_parts(&parts, &MergeOptions::default(), 30 * S);
        assert_eq!(
            turns(&v),
            vec![
                (0, 10 * S, "speaker_0", "zero"),
                (S, 20 * S, "speaker_1", "one"),
                (2 * S, 3 * S, "speaker_2", "two"),
            ]
        );
    }

    #[test]
    fn same_speaker_slight_overlap_split_nested_kept() {
        let parts = [PartResult {
            part: 0,
            offset: 0,
            len: 30 * S,
            time_map: None,
            pieces: vec![
                piece(0.0, 1010.0, "speaker_0", "a"),
                piece(500.0, 2000.0, "speaker_1", "other"),
                piece(1000.0, 3000.0, "speaker_0", "b"),
                // nested in b, same speaker: kept, b not cut
                piece(1500.0, 2500.0, "speaker_0", "c"),
            ],
            lead_in: 0,
        }];
        let v = async_parts(&parts, &MergeOptions::default(), 30 * S);
        assert_eq!(
            turns(&v),
            vec![
                (0, 1005 * 16, "speaker_0", "a"),
                (500 * 16, 2 * S, "speaker_1", "other"),
                (1005 * 16, 3 * S, "speaker_0", "b"),
                (1500 * 16, 2500 * 16, "speaker_0", "c"),
            ]
        );
        for w in v.windows(2) {
            assert!((w[0].start, w[0].end) <= (w[1].start, w[1].end));
        }
    }

    #[test]
    fn nan_and_negative_times() {
        let parts = [PartResult {
            part: 0,
            offset: 0,
            len: 10 * S,
            time_map: None,
            pieces: vec![
                piece(f64::NAN, 1000.0, "speaker_0", "nan"),
                piece(-50.0, 1000.0, "speaker_0", "neg"),
            ],
            lead_in: 0,
        }];
        let v = async_parts(&parts, &MergeOptions::default(), 10 * S);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].start, v[0].end, v[0].text.as_str()), (0, S, "neg"));
    }

    #[test]
    fn overlapping_segments_of_two_channels_are_both_kept() {
        let piece = |segment, start, end, ch: u16| SyncPiece {
            segment,
            start,
            end,
            text: format!("t{segment}"),
            language: None,
            speaker: Some(format!("channel_{ch}")),
            channel: Some(ch),
        };
        let v = sync_segments(vec![piece(1, 2 * S, 6 * S, 1), piece(0, S, 4 * S, 0)]);
        let got: Vec<_> = v.iter().map(|s| (s.start, s.end, s.channel)).collect();
        assert_eq!(got, vec![(S, 4 * S, Some(0)), (2 * S, 6 * S, Some(1))]);
        assert_eq!(v[1].speaker.as_deref(), Some("channel_1"));
    }

    #[test]
    fn sync_results_sit_at_their_segments() {
        let v = sync_segments(vec![
            SyncPiece {
                segment: 1,
                start: 5 * S,
                end: 9 * S,
                text: " b ".into(),
                language: Some("zu-ZA".into()),
                speaker: None,
                channel: None,
            },
            SyncPiece {
                segment: 0,
                start: S,
                end: 3 * S,
                text: "a".into(),
                language: None,
                speaker: None,
                channel: None,
            },
            SyncPiece {
                segment: 2,
                start: 10 * S,
                end: 12 * S,
                text: "  ".into(),
                language: None,
                speaker: None,
                channel: None,
            },
        ]);
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].start, v[0].end, v[0].source),
            (S, 3 * S, Source::Sync { segment: 0 })
        );
        assert_eq!(v[1].text, "b");
    }

    #[test]
    fn joins_only_same_speaker_within_gap() {
        let parts = [PartResult {
            part: 0,
            offset: 0,
            len: 100 * S,
            time_map: None,
            pieces: vec![
                piece(0.0, 1000.0, "speaker_0", "a"),
                piece(1200.0, 2000.0, "speaker_0", "b"),
                piece(2000.0, 3000.0, "speaker_1", "c"),
                piece(9000.0, 9500.0, "speaker_1", "d"),
            ],
            lead_in: 0,
        }];
        let v = async_parts(&parts, &MergeOptions::default(), 100 * S);
        let j = join_adjacent(v, S / 2, 30 * S);
        let texts: Vec<_> = j.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, vec!["a b", "c", "d"]);
        assert_eq!((j[0].start, j[0].end), (0, 2 * S));
    }
}
