//! The async route: analysis pass (loudness + speech), part plan, encoding pass (FLAC parts in
//! temporary files), upload, poll, fetch, merge.

use std::collections::BTreeMap;
use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::try_join_all;
use tokio::sync::mpsc;

use super::plan::{plan_parts, PartPlan};
use super::source::{self, Cancel, CancelOnDrop, DecodeReporter, Drove, Input};
use super::{api, Ctx, Inner, Progress, ProgressFn, UploadedPart};
use crate::encode::FlacWriter;
use crate::merge::{async_parts, PartResult};
use crate::normalize::{Loudness, NormalizeOptions};
use crate::segment::{Segment, Segmenter, SegmenterOptions};
use crate::stream::{Normalization, StreamOptions};
use crate::time::{to_secs, Samples, RATE, RATE_NZ};
use crate::transcript::{Metadata, PartInfo, Route, Transcript, Truncation};
use crate::{Error, ErrorKind, Result};

/// Silence kept on each side of speech when silences are removed: 250 ms.
const REMOVAL_MARGIN: Samples = RATE as Samples / 4;

/// What the analysis pass found.
struct Analysis {
    speech: Vec<(Samples, Samples)>,
    duration: Samples,
    loudness: Option<Loudness>,
    truncated: Option<Truncation>,
}

/// Pass 1: decode, measure loudness, find speech. Runs on a blocking thread.
fn analyse(
    input: &Input,
    path: &Path,
    seg_opts: SegmenterOptions,
    keep_truncated: bool,
    progress: Option<ProgressFn>,
    cancel: &Cancel,
) -> Result<Analysis> {
    let mut opts = StreamOptions::with_normalization(Normalization::DcOnly);
    opts.measure = true;
    let (mut stream, hint) = source::open(input, path, opts)?;
    if let (Some(f), Some(h)) = (&progress, hint) {
        f(&Progress::DurationHint {
            seconds: to_secs(h),
        });
    }
    let mut seg = Segmenter::new(seg_opts)?;
    let mut out: Vec<Segment> = Vec::new();
    let mut speech = Vec::new();
    let mut report = DecodeReporter::new(progress, 1);
    let drove = source::drive(&mut stream, path, keep_truncated, &mut report, |block| {
        if cancel.is_set() {
            return Err(source::cancelled());
        }
        seg.push(block.samples, &mut out);
        speech.extend(out.drain(..).map(|s| (s.start, s.end)));
        Ok(true)
    })?;
    let truncated = match drove {
        Drove::End(t) => t,
        Drove::Stopped => None,
    };
    seg.finish(&mut out);
    speech.extend(out.drain(..).map(|s| (s.start, s.end)));
    let duration = stream.position();
    report.emit(duration);
    Ok(Analysis {
        speech,
        duration,
        loudness: stream.loudness(),
        truncated,
    })
}

/// A temporary file removed when dropped.
pub(super) struct TempFile {
    pub(super) path: PathBuf,
}

impl TempFile {
    pub(super) fn create(dir: &Path, hint: &str) -> Result<(TempFile, fs::File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = dir.join(format!(
            ".asr-pipeline-{}-{}-{hint}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(Some(&path), e))?;
        Ok((TempFile { path }, file))
    }
}

impl TempFile {
    /// Removes the file without blocking the runtime (tokio's blocking pool); use this in
    /// async code rather than dropping.
    pub(super) async fn remove(mut self) {
        let path = std::mem::take(&mut self.path);
        if let Err(e) = tokio::fs::remove_file(&path).await {
            tracing::debug!(file = %path.display(), error = %e, "temporary file not removed");
        }
    }
}

impl Drop for TempFile {
    /// The fallback for drops on a blocking thread or on an early exit.
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// An encoded part, ready to upload.
struct Encoded {
    part: usize,
    file: TempFile,
    bytes: u64,
}

struct PartWriter {
    part: usize,
    file: TempFile,
    flac: FlacWriter<BufWriter<fs::File>>,
}

impl PartWriter {
    fn finish(self) -> Result<Encoded> {
        let w = self.flac.finish_seekable()?;
        let f = w
            .into_inner()
            .map_err(|e| Error::io(Some(&self.file.path), e.into_error()))?;
        f.sync_all()
            .map_err(|e| Error::io(Some(&self.file.path), e))?;
        let bytes = f
            .metadata()
            .map_err(|e| Error::io(Some(&self.file.path), e))?
            .len();
        Ok(Encoded {
            part: self.part,
            file: self.file,
            bytes,
        })
    }
}

/// Pass 2: decode again (with the whole-file gain), write the kept audio of each part in
/// `todo` as 16 kHz FLAC into a temporary file and send it as soon as it is complete.
#[allow(clippy::too_many_arguments)]
fn encode_parts(
    input: &Input,
    path: &Path,
    gain: Option<f32>,
    parts: &[PartPlan],
    todo: &[bool],
    temp_dir: &Path,
    keep_truncated: bool,
    progress: Option<ProgressFn>,
    tx: &mpsc::Sender<Result<Encoded>>,
) -> Result<()> {
    let mut opts = StreamOptions::with_normalization(match gain {
        Some(g) => Normalization::Fixed(g),
        None => Normalization::DcOnly,
    });
    opts.measure = false;
    let (mut stream, _) = source::open(input, path, opts)?;
    let spans: Vec<Vec<(Samples, Samples)>> = parts.iter().map(PartPlan::spans).collect();
    let mut report = DecodeReporter::new(progress, 2);
    let mut pi = 0usize;
    let mut si = 0usize;
    let mut writer: Option<PartWriter> = None;
    let open = |pi: usize| -> Result<Option<PartWriter>> {
        if !todo.get(pi).copied().unwrap_or(false) {
            return Ok(None);
        }
        let (file, f) = TempFile::create(temp_dir, &format!("part{pi}.flac"))?;
        let flac = FlacWriter::new(BufWriter::with_capacity(1 << 16, f), RATE_NZ)
            .map_err(|e| e.with_path(&file.path))?;
        Ok(Some(PartWriter {
            part: pi,
            file,
            flac,
        }))
    };
    if !parts.is_empty() {
        writer = open(0)?;
    }
    // A truncated input: the analysis pass met the same break and planned the parts up to it.
    let drove = source::drive(&mut stream, path, keep_truncated, &mut report, |block| {
        if tx.is_closed() {
            return Ok(false);
        }
        let (bs, be) = (block.start, block.end());
        while let Some(part_spans) = spans.get(pi) {
            let Some(&(a, b)) = part_spans.get(si) else {
                // This part is complete.
                if let Some(w) = writer.take() {
                    if tx.blocking_send(w.finish()).is_err() {
                        return Ok(false);
                    }
                }
                pi += 1;
                si = 0;
                if pi < parts.len() {
                    writer = open(pi)?;
                }
                continue;
            };
            if be <= a {
                break;
            }
            let (from, to) = (a.max(bs), b.min(be));
            if to > from {
                if let Some(w) = writer.as_mut() {
                    let s = &block.samples[(from - bs) as usize..(to - bs) as usize];
                    w.flac.write(s).map_err(|e| e.with_path(&w.file.path))?;
                }
            }
            if be >= b {
                si += 1;
            } else {
                break;
            }
        }
        Ok(true)
    })?;
    if matches!(drove, Drove::Stopped) {
        return Ok(());
    }
    report.emit(stream.position());
    // The stream ended: whatever part is open is complete (a shorter second pass only happens
    // if the input changed; the part then simply holds what there was).
    if let Some(w) = writer.take() {
        let _ = tx.blocking_send(w.finish());
    }
    Ok(())
}

/// The resumed parts, when they describe a whole file consistently: every part
/// `0..parts_total` present once, same total and file length.
fn complete_resume(resume: &[UploadedPart]) -> Option<Vec<UploadedPart>> {
    let first = resume.first()?;
    let mut by_part = BTreeMap::new();
    for u in resume {
        if u.parts_total != first.parts_total || u.file_len != first.file_len {
            return None;
        }
        by_part.insert(u.part, u.clone());
    }
    let all: Vec<UploadedPart> = by_part.into_values().collect();
    let complete = all.len() == first.parts_total
        && all
            .iter()
            .enumerate()
            .all(|(i, u)| u.part == i && u.end >= u.offset);
    complete.then_some(all)
}

/// Runs the async route for one file.
pub(super) async fn run(inner: &Inner, ctx: &Ctx, resume: Vec<UploadedPart>) -> Result<Transcript> {
    let mut truncated = None;
    let (uploaded, file_len) = match complete_resume(&resume) {
        Some(all) => {
            let file_len = all.first().map_or(0, |u| u.file_len);
            (all, file_len)
        }
        None => match upload_file(inner, ctx, &resume).await? {
            (Some(all), file_len, t) => {
                truncated = t;
                (all, file_len)
            }
            (None, file_len, t) => {
                let mut out = no_speech(inner, ctx, file_len);
                out.metadata.truncated = t;
                return Ok(out);
            }
        },
    };
    // Poll and fetch every part (concurrently).
    let fetches = uploaded.iter().map(|u| async move {
        ctx.emit(Progress::Polling {
            part: u.part,
            file_name: u.file_name.clone(),
        });
        let audio = Duration::from_secs_f64(to_secs(
            u.time_map
                .as_ref()
                .map_or(u.end - u.offset, |m| m.uploaded_len()),
        ));
        let r = api::wait(&inner.client, &u.file_name, audio, inner.poll.as_ref()).await?;
        ctx.emit(Progress::PartDone {
            part: u.part,
            pieces: r.pieces.len(),
        });
        Ok::<_, Error>(r)
    });
    let results = try_join_all(fetches).await?;
    let mut requests = 0u64;
    let mut sent = 0;
    let mut parts = Vec::with_capacity(uploaded.len());
    let mut infos = Vec::with_capacity(uploaded.len());
    for (u, r) in uploaded.iter().zip(results) {
        requests += r.requests;
        let len = u.end - u.offset;
        sent += u.time_map.as_ref().map_or(len, |m| m.uploaded_len());
        infos.push(PartInfo {
            part: u.part,
            offset: u.offset,
            duration: len,
            file_name: u.file_name.clone(),
        });
        parts.push(PartResult {
            part: u.part,
            offset: u.offset,
            len,
            time_map: u.time_map.clone(),
            pieces: r.pieces,
        });
    }
    let mut metadata = base_metadata(inner, ctx, file_len);
    metadata.requests = requests + 2 * uploaded.len() as u64;
    metadata.audio_seconds_sent = to_secs(sent);
    metadata.parts = infos;
    metadata.truncated = truncated;
    Ok(Transcript {
        segments: async_parts(&parts, &inner.merge, file_len),
        metadata,
    })
}

fn base_metadata(inner: &Inner, ctx: &Ctx, file_len: Samples) -> Metadata {
    Metadata {
        source: ctx.name.clone(),
        duration: file_len,
        route: Route::Async,
        language: inner.language.clone(),
        diarization: inner.diarization,
        ..Metadata::default()
    }
}

fn no_speech(inner: &Inner, ctx: &Ctx, file_len: Samples) -> Transcript {
    ctx.emit(Progress::NoSpeech);
    Transcript {
        segments: Vec::new(),
        metadata: {
            let mut m = base_metadata(inner, ctx, file_len);
            m.no_speech = true;
            m
        },
    }
}

/// Analyses, plans, encodes and uploads the parts not already in `resume`; also returns the
/// file's length. `None` for the parts when the file has no speech.
async fn upload_file(
    inner: &Inner,
    ctx: &Ctx,
    resume: &[UploadedPart],
) -> Result<(Option<Vec<UploadedPart>>, Samples, Option<Truncation>)> {
    let analysis = {
        let input = ctx.input.clone();
        let path = ctx.path.clone();
        let seg_opts = inner.segmenter.clone();
        let keep = inner.keep_truncated;
        let progress = ctx.progress.clone();
        let guard = CancelOnDrop(Cancel::default());
        let cancel = guard.0.clone();
        let r = tokio::task::spawn_blocking(move || {
            analyse(&input, &path, seg_opts, keep, progress, &cancel)
        })
        .await
        .map_err(|e| Error::internal(format!("analysis thread failed: {e}")))?
        .map_err(|e| e.with_path(&ctx.path));
        drop(guard);
        r?
    };
    let file_len = analysis.duration;
    ctx.emit(Progress::Duration {
        seconds: to_secs(file_len),
    });
    let truncated = analysis.truncated.clone();
    if analysis.speech.is_empty() {
        return Ok((None, file_len, truncated));
    }
    let removal = inner.remove_silence.map(|g| (g, REMOVAL_MARGIN));
    let parts = plan_parts(&analysis.speech, file_len, inner.max_part, removal);
    let parts_total = parts.len();
    ctx.emit(Progress::PartsPlanned {
        parts: parts_total,
        upload_seconds: to_secs(parts.iter().map(PartPlan::uploaded_len).sum()),
    });
    let as_uploaded = |p: &PartPlan, file_name: String| UploadedPart {
        part: p.index,
        parts_total,
        file_name,
        offset: p.start,
        end: p.end,
        time_map: p.time_map.clone(),
        file_len,
    };
    // Journaled parts that match this plan exactly are not uploaded again.
    let mut done: Vec<Option<UploadedPart>> = parts
        .iter()
        .map(|p| {
            resume
                .iter()
                .find(|u| **u == as_uploaded(p, u.file_name.clone()))
                .cloned()
        })
        .collect();
    let todo: Vec<bool> = done.iter().map(Option::is_none).collect();
    if todo.iter().any(|&t| t) {
        let gain = inner
            .normalize
            .as_ref()
            .zip(analysis.loudness)
            .map(|(n, l): (&NormalizeOptions, Loudness)| l.gain(n));
        let (tx, mut rx) = mpsc::channel::<Result<Encoded>>(1);
        let encoder = {
            let input = ctx.input.clone();
            let path = ctx.path.clone();
            let parts = parts.clone();
            let todo = todo.clone();
            let temp_dir = inner.temp_dir.clone();
            let keep = inner.keep_truncated;
            let progress = ctx.progress.clone();
            tokio::task::spawn_blocking(move || {
                let r = encode_parts(
                    &input, &path, gain, &parts, &todo, &temp_dir, keep, progress, &tx,
                );
                if let Err(e) = r {
                    let _ = tx.blocking_send(Err(e.with_path(&path)));
                }
            })
        };
        while let Some(msg) = rx.recv().await {
            let enc = msg?;
            let Some(plan) = parts.get(enc.part) else {
                continue;
            };
            let uploaded = api::upload(
                &inner.client,
                &enc.file.path,
                enc.bytes,
                inner.language.as_deref(),
                inner.diarization,
                enc.part,
                ctx,
            )
            .await;
            // Removed off the runtime thread, whatever the upload's outcome.
            enc.file.remove().await;
            let file_name = uploaded?;
            let u = as_uploaded(plan, file_name);
            ctx.emit(Progress::Uploaded(u.clone()));
            if let Some(slot) = done.get_mut(plan.index) {
                *slot = Some(u);
            }
        }
        encoder
            .await
            .map_err(|e| Error::internal(format!("encoding thread failed: {e}")))?;
    }
    let mut all = Vec::with_capacity(parts_total);
    for (p, d) in parts.iter().zip(done) {
        match d {
            Some(u) => all.push(u),
            None => {
                return Err(Error::new(ErrorKind::Truncated {
                    path: Some(ctx.path.clone()),
                    decoded_frames: p.start,
                    sample_rate: RATE,
                    what: format!(
                        "the encoding pass ended before part {} of {parts_total} (the input changed between passes?)",
                        p.index + 1
                    ),
                }))
            }
        }
    }
    Ok((Some(all), file_len, truncated))
}
