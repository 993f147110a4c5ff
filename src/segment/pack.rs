//! Utterances in, requests out: the packing stage of the [`super::Segmenter`].
//!
//! A pure state machine on sample positions (no audio, no I/O). It holds the utterances of the
//! request being filled and decides where it closes: see the module docs of
//! [`crate::segment`] for the rules.

use super::{FrameStats, Packing, Segment, SegmenterOptions};
use crate::time::{Samples, TimeMap};
use crate::vad::FRAME_U64;

/// A gap at least this long is a turn change (or more): longer gaps are not preferred over it
/// (700 ms; pauses inside a turn are 0.2–0.5 s).
const TURN_GAP: Samples = 700 * crate::time::RATE as Samples / 1000;

/// One utterance (or a piece of one, at a forced cut), as the segmenter hands it over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Utt {
    /// Start of speech, or the forced cut it starts at (`cut_before`).
    pub start: Samples,
    /// End of speech, or the forced cut it ends at (`cut_after`).
    pub end: Samples,
    /// End of the word's fading end after `end` (≥ `end`): a request that ends with this
    /// utterance ends no earlier.
    pub tail: Samples,
    /// Where its padded start lies: `start − padding`, the point shared with the previous
    /// utterance (`shared`), or `start` after a forced cut.
    pub lead: Samples,
    /// `lead` is the quietest point of a gap shorter than twice the padding; the previous
    /// request, when it ends right before this utterance, ends there too.
    pub shared: bool,
    /// End of the sound heard as speech (≤ `end`). In noise the segmenter moves `end` out past
    /// it, so that a request ending with this utterance keeps a word end buried in the noise;
    /// inside a request a gap is kept from here, as in a clean recording.
    pub heard: Samples,
    /// Where the word's fading end after `heard` stops (≥ `heard`).
    pub fade: Samples,
    /// Voiced frames.
    pub voiced: u64,
    /// Begins at a forced cut: touches the previous piece.
    pub cut_before: bool,
    /// Ends at a forced cut: touches the next piece.
    pub cut_after: bool,
}

/// The packing state machine.
#[derive(Debug)]
pub(super) struct Packer {
    /// `None`: one utterance per request.
    target: Option<Samples>,
    pad: Samples,
    max_gap: Samples,
    max_pack_gap: Samples,
    max_envelope: Samples,
    /// The longest billed request ([`SegmenterOptions::max_len`]).
    max_len: Samples,
    /// Utterances of the request being filled, in order.
    open: Vec<Utt>,
    /// End of the last emitted request: later requests start at or after it.
    floor: Samples,
}

impl Packer {
    pub(super) fn new(o: &SegmenterOptions) -> Packer {
        Packer {
            target: match o.packing {
                Packing::Packed { target } => Some(target),
                Packing::Utterance => None,
            },
            pad: o.padding,
            max_gap: o.max_gap,
            max_pack_gap: o.max_pack_gap,
            max_envelope: o.max_envelope(),
            max_len: o.max_len,
            open: Vec::new(),
            floor: 0,
        }
    }

    /// End of the last emitted request.
    pub(super) fn floor(&self) -> Samples {
        self.floor
    }

    /// The next utterance, in order.
    pub(super) fn push(&mut self, u: Utt, stats: &mut FrameStats, out: &mut Vec<Segment>) {
        if let Some(last) = self.open.last().copied() {
            let joinable = match self.target {
                None => false,
                Some(_) => last.cut_after || u.start.saturating_sub(last.end) <= self.max_pack_gap,
            };
            if !joinable {
                self.emit(self.open.len(), Some(u), Samples::MAX, stats, out);
            }
        }
        self.open.push(u);
        let Some(target) = self.target else {
            return;
        };
        while self.open.len() > 1
            && (self.billed(self.open.len()) > target
                || self.envelope(self.open.len()) > self.max_envelope)
        {
            let j = self.cut_point(target);
            let next = self.open.get(j).copied();
            self.emit(j, next, Samples::MAX, stats, out);
        }
    }

    /// No utterance can start before `next_possible`: close the open request once nothing to
    /// come can join it.
    pub(super) fn idle(
        &mut self,
        next_possible: Samples,
        stats: &mut FrameStats,
        out: &mut Vec<Segment>,
    ) {
        let Some(last) = self.open.last().copied() else {
            return;
        };
        if last.cut_after {
            return;
        }
        let gap = next_possible.saturating_sub(last.end);
        let joinable = self.target.is_some() && gap <= self.max_pack_gap;
        if gap >= 2 * self.pad && !joinable {
            self.emit(self.open.len(), None, Samples::MAX, stats, out);
        }
    }

    /// The end of the input at `total`: emits what is open.
    pub(super) fn finish(
        &mut self,
        total: Samples,
        stats: &mut FrameStats,
        out: &mut Vec<Segment>,
    ) {
        if !self.open.is_empty() {
            self.emit(self.open.len(), None, total, stats, out);
        }
    }

    /// Silence between `open[i - 1]` and `open[i]` on the original timeline (0 at a forced
    /// cut).
    fn gap(&self, i: usize) -> Samples {
        match (self.open.get(i.wrapping_sub(1)), self.open.get(i)) {
            (Some(a), Some(b)) if !a.cut_after => b.start.saturating_sub(a.end),
            _ => 0,
        }
    }

    /// Billed length of a request made of `open[..n]`, with a full padding after it (when the
    /// next utterance's lead is shared, the request ends there instead, anywhere in the gap).
    fn billed(&self, n: usize) -> Samples {
        let v = &self.open[..n.min(self.open.len())];
        let (Some(first), Some(last)) = (v.first(), v.last()) else {
            return 0;
        };
        let mut len = first.start.saturating_sub(first.lead.max(self.floor));
        for (i, u) in v.iter().enumerate() {
            if i + 1 < v.len() {
                len += u.heard.saturating_sub(u.start) + self.kept_gap(i + 1);
            } else {
                len += u.end.saturating_sub(u.start);
            }
        }
        if !last.cut_after {
            len += self.end_pad(last);
        }
        len
    }

    /// Silence between what was heard of `open[i - 1]` and the start of `open[i]` (0 at a
    /// forced cut).
    fn sound_gap(&self, i: usize) -> Samples {
        match (self.open.get(i.wrapping_sub(1)), self.open.get(i)) {
            (Some(a), Some(b)) if !a.cut_after => b.start.saturating_sub(a.heard),
            _ => 0,
        }
    }

    /// How much of the gap before `open[i]` a request holding both sides sends, from the end
    /// of the previous word as heard: all of it up to `max_gap`; else its edges, `max_gap` in
    /// all (70 % after the word end, 30 % before the next onset), or the previous word's whole
    /// fading end and 30 % before the onset when that is longer.
    fn kept_gap(&self, i: usize) -> Samples {
        let gap = self.sound_gap(i);
        match self.open.get(i.wrapping_sub(1)) {
            Some(u) if gap > self.max_gap => {
                let (tail, head) = self.edges_after(u);
                (tail + head).min(gap)
            }
            _ => gap,
        }
    }

    /// The kept edges of a gap longer than `max_gap` that follows `u`: after the end of the
    /// word as heard, before the next utterance's start.
    fn edges_after(&self, u: &Utt) -> (Samples, Samples) {
        let tail = self.max_gap * 7 / 10;
        (
            tail.max(u.fade.saturating_sub(u.heard)),
            self.max_gap - tail,
        )
    }

    /// What a request ending with `u` keeps after its end: the padding, or the word's whole
    /// fading end when that is longer.
    fn end_pad(&self, u: &Utt) -> Samples {
        self.pad.max(u.tail.saturating_sub(u.end))
    }

    /// Span on the original timeline of a request made of `open[..n]` (full end padding).
    fn envelope(&self, n: usize) -> Samples {
        match (self.open.first(), self.open.get(n.wrapping_sub(1))) {
            (Some(first), Some(last)) => (last.end + self.end_pad(last)).saturating_sub(first.lead),
            _ => 0,
        }
    }

    /// Where the open request closes (`open[..j]` is emitted), among the cut points that keep
    /// it within `target` and the envelope: the longest gap, where every gap of at least
    /// [`TURN_GAP`] counts as the same (a turn change); among equals, the point that leaves the
    /// request at least half full, then the later one. So a request ends early at a turn change
    /// rather than late at a pause inside a turn, and never at a shorter pause than one it
    /// could have had.
    fn cut_point(&self, target: Samples) -> usize {
        let n = self.open.len();
        let fits = |j: usize| {
            j == 1 || (self.billed(j) <= target && self.envelope(j) <= self.max_envelope)
        };
        let mut best: Option<((Samples, bool, usize), usize)> = None;
        for j in (1..n).filter(|&j| fits(j)) {
            let key = (self.gap(j).min(TURN_GAP), self.billed(j) >= target / 2, j);
            if best.is_none_or(|(k, _)| key > k) {
                best = Some((key, j));
            }
        }
        best.map_or(1, |(_, j)| j)
    }

    /// Emits `open[..n]` as one request and keeps the rest open. `next` is the utterance that
    /// follows (its shared lead is where this request ends); `limit` caps the end (the input's
    /// length at the end).
    fn emit(
        &mut self,
        n: usize,
        next: Option<Utt>,
        limit: Samples,
        stats: &mut FrameStats,
        out: &mut Vec<Segment>,
    ) {
        let n = n.min(self.open.len());
        let utts: Vec<Utt> = self.open.drain(..n).collect();
        let (Some(first), Some(last)) = (utts.first(), utts.last()) else {
            return;
        };
        let start = first.lead.max(self.floor);
        let end = if last.cut_after {
            last.end
        } else {
            match next {
                Some(u) if u.shared => u.lead,
                _ => last.end + self.end_pad(last),
            }
        }
        .min(limit);
        if end <= start {
            return;
        }
        let mut kept = TimeMap::new();
        let mut span_start = start;
        let mut voiced = 0u64;
        for (i, u) in utts.iter().enumerate() {
            voiced += u.voiced;
            let Some(v) = utts.get(i + 1) else { break };
            if u.cut_after {
                continue;
            }
            let gap = v.start.saturating_sub(u.heard);
            if gap > self.max_gap {
                // Keep the gap's edges (where words fade in and out), leave out its middle.
                // Word ends fade longer than onsets rise (onsets are already moved out over
                // the loud frames before them): 70 % of the gap kept goes after the end, or
                // the word's whole fading end.
                let (tail, head) = self.edges_after(u);
                if tail + head >= gap {
                    continue;
                }
                let span_end = (u.heard + tail).min(end);
                // Spans are in order by construction; a failed push only drops a span.
                let _ = kept.push(span_start, span_end.saturating_sub(span_start));
                span_start = v.start - head;
            }
        }
        // Edges moved out over a fading word end, in noise or over its reverberation, come after
        // the last voiced frame, which the segmenter keeps within `max_len` with its padding:
        // they give way first, so no request is billed more than `max_len`.
        let excess =
            (kept.uploaded_len() + end.saturating_sub(span_start)).saturating_sub(self.max_len);
        let end = end.saturating_sub(excess).max(span_start + 1);
        let _ = kept.push(span_start, end.saturating_sub(span_start));
        self.floor = end;
        let billed = kept.uploaded_len().max(1);
        let ratio = ((voiced * FRAME_U64) as f64 / billed as f64).min(1.0) as f32;
        stats.segments += 1;
        out.push(Segment {
            start,
            end,
            speech_ratio: ratio,
            kept,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::RATE;

    const S: Samples = RATE as Samples;
    const MS: Samples = S / 1000;

    fn utt(start_ms: u64, end_ms: u64) -> Utt {
        let (start, end) = (start_ms * MS, end_ms * MS);
        Utt {
            start,
            end,
            tail: end,
            heard: end,
            fade: end,
            lead: start.saturating_sub(300 * MS),
            shared: false,
            voiced: (end - start) / FRAME_U64,
            cut_before: false,
            cut_after: false,
        }
    }

    fn packer(target_s: u64) -> Packer {
        Packer::new(&SegmenterOptions {
            packing: Packing::Packed {
                target: target_s * S,
            },
            max_pack_gap: 5 * S,
            ..SegmenterOptions::default()
        })
    }

    fn run(p: &mut Packer, utts: &[Utt]) -> Vec<Segment> {
        let mut out = Vec::new();
        let mut st = FrameStats::default();
        for u in utts {
            p.push(*u, &mut st, &mut out);
        }
        p.finish(u64::MAX, &mut st, &mut out);
        out
    }

    #[test]
    fn gaps_are_shortened_and_times_stay_on_the_original_timeline() {
        let mut p = packer(30);
        let out = run(&mut p, &[utt(1000, 3000), utt(4000, 6000), utt(6200, 7000)]);
        assert_eq!(out.len(), 1);
        let s = &out[0];
        assert_eq!((s.start, s.end), (700 * MS, 7300 * MS));
        // 0.3 + 2 + 0.2 (the 1 s gap shortened) + 2 + 0.2 (kept whole) + 0.8 + 0.3.
        assert_eq!(s.billed(), 5800 * MS);
        let spans = s.kept.spans();
        assert_eq!(spans.len(), 2);
        // 70 % of the 200 ms kept goes after the word end, 30 % before the next onset.
        assert_eq!(spans[0].original + spans[0].len, 3140 * MS);
        assert_eq!(spans[1].original, 3940 * MS);
    }

    #[test]
    fn a_full_request_closes_at_the_longest_gap_in_the_window() {
        // Utterances of 4 s; gaps 0.35 s except one turn gap of 1.2 s after the 5th.
        let mut utts = Vec::new();
        let mut t = 0;
        for i in 0..12 {
            utts.push(utt(t, t + 4000));
            t += 4000 + if i == 4 { 1200 } else { 350 };
        }
        let mut p = packer(30);
        let out = run(&mut p, &utts);
        assert!(out.len() >= 2);
        // The first request ends at the turn gap, not at the 0.35 s pause nearest 30 s.
        assert_eq!(out[0].end, utts[4].end + 300 * MS);
        for s in &out {
            assert!(s.billed() <= 30 * S, "{s:?}");
        }
    }

    #[test]
    fn a_request_ends_after_its_last_utterances_fading_end() {
        let mut p = packer(30);
        let mut last = utt(4000, 6000);
        last.tail = 6800 * MS;
        let out = run(&mut p, &[utt(1000, 3000), last, utt(20_000, 21_000)]);
        assert_eq!(out.len(), 2);
        // 800 ms of fading end instead of 300 ms of padding; billed counts it.
        assert_eq!(out[0].end, 6800 * MS);
        assert_eq!(out[0].billed(), (300 + 2000 + 200 + 2000 + 800) * MS);
        // A short fading end leaves the padding as it was.
        assert_eq!(out[1].end, 21_300 * MS);
    }

    #[test]
    fn a_gap_inside_a_request_keeps_the_words_whole_fading_end() {
        let mut p = packer(30);
        let mut first = utt(1000, 3000);
        first.tail = 3500 * MS;
        first.fade = 3500 * MS;
        let out = run(&mut p, &[first, utt(4000, 6000)]);
        assert_eq!(out.len(), 1);
        let spans = out[0].kept.spans();
        assert_eq!(spans.len(), 2);
        // 500 ms of fading end kept after the word (not 140 ms), 60 ms before the onset.
        assert_eq!(spans[0].original + spans[0].len, 3500 * MS);
        assert_eq!(spans[1].original, 3940 * MS);
        assert_eq!(out[0].billed(), (300 + 2000 + 500 + 60 + 2000 + 300) * MS);
    }

    #[test]
    fn in_noise_a_gap_inside_a_request_is_kept_from_the_word_as_heard() {
        // Heard until 3.0 s; in noise the segmenter moved the end out to 3.288 s.
        let mut p = packer(30);
        let mut first = utt(1000, 3288);
        first.heard = 3000 * MS;
        first.fade = 3000 * MS;
        first.tail = 3288 * MS;
        let mut last = utt(4000, 6288);
        last.heard = 6000 * MS;
        last.fade = 6000 * MS;
        last.tail = 6288 * MS;
        // What packing decisions count is what is sent.
        let billed = (300 + 2000 + 200 + 2288 + 300) * MS;
        p.open = vec![first, last];
        assert_eq!(p.billed(2), billed);
        p.open.clear();
        let out = run(&mut p, &[first, last]);
        assert_eq!(out.len(), 1);
        let spans = out[0].kept.spans();
        assert_eq!(spans.len(), 2);
        // Inside the request: 140 ms after the word as heard, 60 ms before the onset, as in a
        // clean recording (not 140 ms after the moved-out end).
        assert_eq!(spans[0].original + spans[0].len, 3140 * MS);
        assert_eq!(spans[1].original, 3940 * MS);
        // The request still ends 300 ms after the moved-out end.
        assert_eq!(out[0].end, 6588 * MS);
        assert_eq!(out[0].billed(), billed);
    }

    #[test]
    fn utterance_packing_sends_each_alone() {
        let mut p = Packer::new(&SegmenterOptions::default());
        let out = run(&mut p, &[utt(1000, 2000), utt(2300, 3000)]);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|s| s.kept.spans().len() == 1));
    }
}
