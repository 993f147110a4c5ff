//! Builds the real-speech segmentation corpus on disk and scores this crate's segmenter on it.
//!
//! ```sh
//! cargo run --release --example make_corpus -- OUT_DIR [--quick] [--verbose]
//! CORPUS_ONLY=snr5 cargo run --release --example make_corpus -- OUT_DIR   # matching cases only
//! scripts/vad_compare.sh OUT_DIR        # the same corpus through Silero VAD and py-webrtcvad
//! ```
//!
//! Writes `<case>.wav` (8 kHz telephone calls, 16-bit PCM or µ-law; 16 kHz dialogue), the
//! ground truth `<case>.truth.json` and this crate's requests `<case>.ours.json` (the
//! pipeline's segmenter defaults, run on the WAV file through the real front end), then prints
//! the scores. Needs the Debian packages listed in `tests/it/corpus/mod.rs`.

#[path = "../tests/it/corpus/mod.rs"]
mod corpus;

use std::path::{Path, PathBuf};
use std::time::Instant;

use asr_pipeline::segment::{Segment, Segmenter, SegmenterOptions};
use asr_pipeline::stream::{AudioStream, StreamOptions};
use corpus::Score;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let verbose = args.iter().any(|a| a == "--verbose");
    let out = PathBuf::from(
        args.iter()
            .find(|a| !a.starts_with("--"))
            .ok_or_else(|| anyhow::anyhow!("usage: make_corpus OUT_DIR [--quick]"))?,
    );
    corpus::require();
    std::fs::create_dir_all(&out)?;
    let cases = corpus::cases(quick);
    println!(
        "{:<22} {:>6} {:>6} {:>5} {:>6} {:>8} {:>7} {:>7} {:>6} {:>7}",
        "case", "utts", "whole%", "split", "missed", "cover%", "music%", "billed", "reqs", "×rt"
    );
    let mut totals = Score::default();
    // Experiments: CORPUS_ONLY=<part of a case name> scores only the matching cases.
    let only = std::env::var("CORPUS_ONLY").ok();
    for (case, mulaw) in &cases {
        if only
            .as_ref()
            .is_some_and(|o| !case.name.contains(o.as_str()))
        {
            continue;
        }
        let wav = out.join(format!("{}.wav", case.name));
        write(&wav, &corpus::wav_bytes(case, *mulaw))?;
        write(
            &out.join(format!("{}.truth.json", case.name)),
            corpus::truth_json(case).as_bytes(),
        )?;
        let t = Instant::now();
        let segs = segment_file(&wav)?;
        let secs = t.elapsed().as_secs_f64();
        write(
            &out.join(format!("{}.ours.json", case.name)),
            ours_json(&segs, secs).as_bytes(),
        )?;
        let sc = corpus::score(case, &segs);
        if verbose {
            corpus::explain(case, &segs);
        }
        let dur = case.audio.len() as f64 / case.rate as f64;
        println!(
            "{:<22} {:>6} {:>6.2} {:>5} {:>6} {:>8.2} {:>7.2} {:>7.3} {:>6} {:>7.0}",
            case.name,
            sc.utterances,
            sc.whole_pct(),
            sc.split,
            sc.missed,
            sc.coverage_pct(),
            sc.music_pct(),
            sc.billed_ratio(),
            sc.requests,
            dur / secs
        );
        if case.kind != "music" && case.kind != "silence" {
            totals.add(&sc);
        }
    }
    println!(
        "speech cases: {} utterances, {:.2} % whole, {} split, {} missed, {:.2} % covered, billed ratio {:.3}, longest request {:.2} s",
        totals.utterances,
        totals.whole_pct(),
        totals.split,
        totals.missed,
        totals.coverage_pct(),
        totals.billed_ratio(),
        totals.longest as f64 / 16_000.0
    );
    Ok(())
}

/// The pipeline's segmentation of a file: the front end (decode, 16 kHz, DC removal) and the
/// segmenter with the pipeline's defaults.
fn segment_file(path: &Path) -> anyhow::Result<Vec<Segment>> {
    let mut s = AudioStream::open(path, StreamOptions::default())?;
    let mut opts = SegmenterOptions::requests();
    // Experiments: ASR_SEG_<FIELD>_MS overrides a duration.
    let ms = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(|v| v * 16)
    };
    if let Some(v) = ms("ASR_SEG_MAX_GAP_MS") {
        opts.max_gap = v;
    }
    if let Some(v) = ms("ASR_SEG_PADDING_MS") {
        opts.padding = v;
    }
    if let Some(v) = ms("ASR_SEG_MIN_SPEECH_MS") {
        opts.min_speech = v;
    }
    if let Some(v) = ms("ASR_SEG_MIN_SILENCE_MS") {
        opts.min_silence = v;
    }
    if let Some(v) = std::env::var("ASR_VAD_NEG")
        .ok()
        .and_then(|v| v.parse::<f32>().ok())
    {
        opts.vad.neg_threshold = v;
    }
    if let Some(v) = std::env::var("ASR_VAD_THR")
        .ok()
        .and_then(|v| v.parse::<f32>().ok())
    {
        opts.vad.threshold = v;
    }
    let mut seg = Segmenter::new(opts)?;
    let mut out = Vec::new();
    while let Some(b) = s.next_block()? {
        seg.push(b.samples, &mut out);
    }
    seg.finish(&mut out);
    Ok(out)
}

fn ours_json(segs: &[Segment], secs: f64) -> String {
    let reqs: Vec<String> = segs
        .iter()
        .map(|s| {
            let spans: Vec<String> = s
                .kept
                .spans()
                .iter()
                .map(|p| format!("[{}, {}]", p.original, p.original + p.len))
                .collect();
            format!(
                "{{\"start\": {}, \"end\": {}, \"spans\": [{}]}}",
                s.start,
                s.end,
                spans.join(", ")
            )
        })
        .collect();
    format!(
        "{{\"system\": \"ours\", \"rate\": 16000, \"seconds\": {secs:.6},\n \"requests\": [{}]}}\n",
        reqs.join(",\n  ")
    )
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
