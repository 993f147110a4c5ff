//! Planning of async uploads: which audio goes up, in how many parts, cut where.
//!
//! Pure functions over the speech spans found by the voice activity detector.
//!
//! 1. Kept audio: without silence removal, the whole file. With it, the speech spans widened
//!    by a margin on each side, and joined when the silence between them is shorter than the
//!    removal threshold; what is left out are only long silences. A [`TimeMap`] records the kept
//!    spans (the uploaded audio is their concatenation).
//! 2. Parts: the uploaded timeline is cut into parts of at most `max_part` samples, each cut in
//!    the middle of a silence between two speech spans (the latest one that keeps the part
//!    within the limit); when a window has no silence at all, at a boundary between two speech
//!    segments; only when there is neither, hard at the limit.
//! 3. Lead-ins: with a `lead` (diarization on a file of several parts), every part after the
//!    first also uploads, before its own audio, the last `lead` uploaded samples of the part
//!    before. Both jobs then hear the same minutes, so that the speakers of one can be matched
//!    to those of the other (see [`crate::merge`]); what the second job says about its lead-in
//!    is used for that only. The parts' own audio stays contiguous and cut in silences; an
//!    utterance the later job hears across the cut is kept once (see [`crate::merge`]).

use serde::{Deserialize, Serialize};

use crate::time::Samples;
use crate::time::TimeMap;

/// One part of an async upload, on the original timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartPlan {
    /// 0-based index of the part.
    pub index: usize,
    /// Start on the original timeline (samples at 16 kHz): the part's offset.
    pub start: Samples,
    /// End (exclusive) on the original timeline.
    pub end: Samples,
    /// The kept spans relative to `start`, when silences are removed from this part; `None`
    /// when the whole of `[start, end)` is uploaded.
    pub time_map: Option<TimeMap>,
    /// Samples of the original timeline from `start` that belong to the part before and are
    /// uploaded again only to match speakers (0: none).
    #[serde(default)]
    pub lead_in: Samples,
}

impl PartPlan {
    /// Length of the audio uploaded for this part, in samples.
    pub fn uploaded_len(&self) -> Samples {
        match &self.time_map {
            Some(m) => m.uploaded_len(),
            None => self.end - self.start,
        }
    }

    /// The original spans `(start, end)` (absolute) whose audio is uploaded, in order.
    pub fn spans(&self) -> Vec<(Samples, Samples)> {
        match &self.time_map {
            Some(m) => m
                .spans()
                .iter()
                .map(|s| (self.start + s.original, self.start + s.original + s.len))
                .collect(),
            None => vec![(self.start, self.end)],
        }
    }
}

/// Sorted, merged speech spans clamped to `[0, file_len)`, empty ones dropped.
fn normalise_spans(speech: &[(Samples, Samples)], file_len: Samples) -> Vec<(Samples, Samples)> {
    let mut v: Vec<(Samples, Samples)> = speech
        .iter()
        .map(|&(a, b)| (a.min(file_len), b.min(file_len)))
        .filter(|(a, b)| b > a)
        .collect();
    v.sort_unstable();
    let mut out: Vec<(Samples, Samples)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            // Overlapping spans merge; touching ones stay separate (a segment boundary is a
            // possible cut).
            Some(last) if a < last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The kept spans when silences of at least `min_gap` samples are removed, keeping `margin`
/// samples of silence around each speech span (so that at least `2 * margin` remains where a
/// silence was cut out).
pub fn kept_spans(
    speech: &[(Samples, Samples)],
    file_len: Samples,
    min_gap: Samples,
    margin: Samples,
) -> Vec<(Samples, Samples)> {
    let mut out: Vec<(Samples, Samples)> = Vec::new();
    for (a, b) in normalise_spans(speech, file_len) {
        let a = a.saturating_sub(margin);
        let b = b.saturating_add(margin).min(file_len);
        match out.last_mut() {
            Some(last) if a < last.1 || a - last.1 < min_gap.saturating_sub(2 * margin) => {
                last.1 = last.1.max(b)
            }
            _ => out.push((a, b)),
        }
    }
    out
}

/// Cut points on a timeline of `len` samples so that no piece is longer than `max_part`,
/// cutting in silences between `speech` spans (sorted, non-overlapping) where possible.
fn cut_points(speech: &[(Samples, Samples)], len: Samples, max_part: Samples) -> Vec<Samples> {
    let max_part = max_part.max(1);
    // Gaps between speech: (a, b) with a = end of the speech before, b = start of the next.
    let mut gaps: Vec<(Samples, Samples)> = Vec::with_capacity(speech.len() + 1);
    let mut prev = 0;
    for &(a, b) in speech {
        gaps.push((prev, a));
        prev = b;
    }
    gaps.push((prev, len));
    let mut cuts = Vec::new();
    let mut s = 0;
    while len - s > max_part {
        let limit = s + max_part;
        let mut best_silence = None;
        let mut best_boundary = None;
        for &(a, b) in &gaps {
            if a > limit {
                break;
            }
            let cut = (a + (b - a) / 2).min(limit);
            if cut <= s {
                continue;
            }
            if b > a {
                best_silence = Some(cut);
            } else {
                best_boundary = Some(cut);
            }
        }
        let cut = best_silence.or(best_boundary).unwrap_or(limit);
        cuts.push(cut);
        s = cut;
    }
    cuts
}

/// Plans the async parts of a file of `file_len` samples whose speech spans are `speech`.
///
/// `remove_silence`: `Some((min_gap, margin))` removes silences of at least `min_gap` samples
/// (keeping `margin` on each side of speech, see [`kept_spans`]); `None` uploads everything.
/// Every part uploads at most `max_part` samples, its lead-in included. `lead`: uploaded
/// samples of the part before that each later part uploads first (at most a quarter of
/// `max_part`; 0 for none).
pub fn plan_parts(
    speech: &[(Samples, Samples)],
    file_len: Samples,
    max_part: Samples,
    remove_silence: Option<(Samples, Samples)>,
    lead: Samples,
) -> Vec<PartPlan> {
    let speech = normalise_spans(speech, file_len);
    let kept = match remove_silence {
        Some((min_gap, margin)) => kept_spans(&speech, file_len, min_gap, margin),
        None => vec![(0, file_len)],
    };
    let mut map = TimeMap::new();
    for &(a, b) in &kept {
        // Spans are sorted and disjoint by construction; push cannot fail.
        if map.push(a, b - a).is_err() {
            debug_assert!(false, "kept spans out of order");
        }
    }
    let up_len = map.uploaded_len();
    if up_len == 0 {
        return Vec::new();
    }
    let up_speech: Vec<(Samples, Samples)> = speech
        .iter()
        .map(|&(a, b)| (map.to_uploaded(a), map.to_uploaded(b)))
        .collect();
    let lead = if up_len > max_part {
        lead.min(max_part / 4)
    } else {
        0
    };
    let mut bounds = vec![0];
    bounds.extend(cut_points(&up_speech, up_len, max_part - lead));
    bounds.push(up_len);
    let mut parts = Vec::with_capacity(bounds.len() - 1);
    for (index, w) in bounds.windows(2).enumerate() {
        let (own, u1) = (w[0], w[1]);
        let u0 = if index == 0 {
            own
        } else {
            own.saturating_sub(lead)
        };
        let start = map.map_start(u0);
        let end = map.map_end(u1);
        let mut part_map = TimeMap::new();
        for s in map.spans() {
            let (su0, su1) = (s.uploaded, s.uploaded + s.len);
            let (i0, i1) = (su0.max(u0), su1.min(u1));
            if i1 > i0 {
                let orig = s.original + (i0 - su0);
                // In order and disjoint: cannot fail.
                let _ = part_map.push(orig - start, i1 - i0);
            }
        }
        let whole = part_map.spans().len() == 1 && part_map.uploaded_len() == end - start;
        parts.push(PartPlan {
            index,
            start,
            end,
            time_map: (!whole).then_some(part_map),
            lead_in: map.map_start(own) - start,
        });
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Samples = 16_000;
    const MIN: Samples = 60 * S;

    #[test]
    fn short_file_is_one_part() {
        let p = plan_parts(&[(S, 2 * S)], 10 * S, 400 * MIN, None, 0);
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].start, p[0].end, p[0].time_map.is_none()),
            (0, 10 * S, true)
        );
    }

    #[test]
    fn long_file_is_cut_in_the_latest_silence() {
        // speech every 10 minutes for 1 minute, 900 minutes in all
        let speech: Vec<_> = (0..90)
            .map(|i| (i * 10 * MIN, i * 10 * MIN + MIN))
            .collect();
        let p = plan_parts(&speech, 900 * MIN, 400 * MIN, None, 0);
        assert_eq!(p.len(), 3, "{p:?}");
        for w in p.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert_eq!(p[0].start, 0);
        assert_eq!(p[2].end, 900 * MIN);
        for part in &p {
            assert!(part.end - part.start <= 400 * MIN);
            // no cut inside speech
            for &(a, b) in &speech {
                assert!(
                    !(a < part.end && part.end < b),
                    "cut inside speech at {}",
                    part.end
                );
            }
        }
        // Latest silence before 400 min: between 391 and 400 min → its middle, 395.5 min.
        assert_eq!(p[0].end, 395 * MIN + MIN / 2);
    }

    #[test]
    fn continuous_speech_is_cut_at_a_segment_boundary() {
        let speech: Vec<_> = (0..10).map(|i| (i * 60 * S, (i + 1) * 60 * S)).collect();
        let p = plan_parts(&speech, 600 * S, 250 * S, None, 0);
        assert_eq!(p[0].end, 240 * S);
        let p = plan_parts(&[(0, 600 * S)], 600 * S, 250 * S, None, 0);
        assert_eq!(
            p[0].end,
            250 * S,
            "no boundary at all: hard cut at the limit"
        );
    }

    #[test]
    fn silence_removal_builds_time_maps_that_cover_the_speech() {
        let speech = [(10 * S, 20 * S), (21 * S, 25 * S), (100 * S, 110 * S)];
        let p = plan_parts(&speech, 200 * S, 400 * MIN, Some((5 * S, S / 4)), 0);
        assert_eq!(p.len(), 1);
        let spans = p[0].spans();
        assert_eq!(
            spans,
            vec![
                (10 * S - S / 4, 25 * S + S / 4),
                (100 * S - S / 4, 110 * S + S / 4)
            ]
        );
        assert_eq!(p[0].uploaded_len(), 15 * S + S / 2 + 10 * S + S / 2);
        // A limit that forces a cut between the two kept spans.
        let p = plan_parts(&speech, 200 * S, 20 * S, Some((5 * S, S / 4)), 0);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].end <= 100 * S - S / 4 && p[0].end >= 25 * S);
        assert!(p[1].start >= p[0].end);
        for part in &p {
            assert!(part.uploaded_len() <= 20 * S);
            for (a, b) in part.spans() {
                assert!(a >= part.start && b <= part.end);
            }
        }
        let all: Vec<_> = p.iter().flat_map(|x| x.spans()).collect();
        for &(a, b) in &speech {
            assert!(
                all.iter().any(|&(x, y)| x <= a && b <= y),
                "speech {a}..{b} kept"
            );
        }
    }

    #[test]
    fn later_parts_lead_in_with_the_end_of_the_part_before() {
        // Speech every 10 minutes for 1 minute, 900 minutes in all; lead-ins of 5 minutes.
        let speech: Vec<_> = (0..90)
            .map(|i| (i * 10 * MIN, i * 10 * MIN + MIN))
            .collect();
        let without = plan_parts(&speech, 900 * MIN, 400 * MIN, None, 0);
        let p = plan_parts(&speech, 900 * MIN, 400 * MIN, None, 5 * MIN);
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[0].lead_in, 0);
        for w in p.windows(2) {
            // Own audio contiguous: the next part's own start is this part's end...
            assert_eq!(w[1].start + w[1].lead_in, w[0].end);
            // ...and its lead-in is the 5 minutes before, within the part before.
            assert_eq!(w[1].lead_in, 5 * MIN);
        }
        for part in &p {
            assert!(part.uploaded_len() <= 400 * MIN, "{part:?}");
            for &(a, b) in &speech {
                let own = part.start + part.lead_in;
                assert!(!(a < own && own < b), "own audio starts inside speech");
                assert!(!(a < part.end && part.end < b), "cut inside speech");
            }
        }
        // The first cut moved earlier by the lead (the part with its lead-in stays in 400 min).
        assert!(p[0].end < without[0].end);
        assert!(p[1].end - p[1].start <= 400 * MIN);
        // With silences removed, the lead-in is 5 minutes of uploaded (kept) audio.
        let p = plan_parts(&speech, 900 * MIN, 30 * MIN, Some((5 * S, S / 4)), 5 * MIN);
        assert!(p.len() >= 2, "{p:?}");
        for w in p.windows(2) {
            // Own audio resumes where the part before ends, or after a silence left out.
            let own = w[1].start + w[1].lead_in;
            assert!(own >= w[0].end && w[1].start >= w[0].start, "{w:?}");
            assert!(!speech.iter().any(|&(a, b)| a < own && b > w[0].end));
            let m = w[1].time_map.as_ref().unwrap();
            let lead_up = m.to_uploaded(w[1].lead_in);
            assert!((5 * MIN - S..=5 * MIN + S).contains(&lead_up), "{lead_up}");
        }
        // A file that fits in one part has no lead-in.
        let p = plan_parts(&speech, 300 * MIN, 400 * MIN, None, 5 * MIN);
        assert_eq!((p.len(), p[0].lead_in), (1, 0));
    }

    #[test]
    fn empty_file_has_no_parts() {
        assert!(plan_parts(&[], 0, 400 * MIN, None, 0).is_empty());
    }
}
