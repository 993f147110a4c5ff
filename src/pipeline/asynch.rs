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

use super::ahead;
use super::plan::{plan_parts, PartPlan};
use super::source::{self, Cancel, CancelOnDrop, DecodeReporter, Drove, Input};
use super::{api, Ctx, Inner, Progress, ProgressFn, UploadedPart};
use crate::channels::{ChannelMode, Choice, Lanes};
use crate::encode::FlacWriter;
use crate::merge::{merge_parts, PartResult};
use crate::normalize::{Loudness, NormalizeOptions};
use crate::segment::{Segment, Segmenter, SegmenterOptions};
use crate::stream::{Normalization, TrackOptions};
use crate::time::{to_secs, Samples, RATE, RATE_NZ};
use crate::transcript::Channels;
use crate::transcript::{Metadata, PartInfo, Route, Transcript, Truncation};
use crate::{Error, ErrorKind, Result};
use source::Select;

/// Silence kept on each side of speech when silences are removed: 250 ms.
const REMOVAL_MARGIN: Samples = RATE as Samples / 4;

/// What the analysis pass found for one track.
struct TrackAnalysis {
    /// The file's channel, when channels are transcribed separately.
    channel: Option<u16>,
    speech: Vec<(Samples, Samples)>,
    loudness: Option<Loudness>,
}

/// What the analysis pass found.
struct Analysis {
    tracks: Vec<TrackAnalysis>,
    choice: Option<Choice>,
    file_channels: u16,
    duration: Samples,
    truncated: Option<Truncation>,
}

/// Pass 1: decode, choose the tracks, measure each one's loudness, find its speech. Runs on a
/// blocking thread.
#[allow(clippy::too_many_arguments)]
fn analyse(
    input: &Input,
    path: &Path,
    mode: &ChannelMode,
    seg_opts: SegmenterOptions,
    keep_truncated: bool,
    progress: Option<ProgressFn>,
    cancel: &Cancel,
) -> Result<Analysis> {
    let opts = TrackOptions {
        measure: true,
        ..ahead::track_options()
    };
    let (mut stream, hint) = source::open_tracks(input, path, Select::Mode(mode), opts)?;
    if let (Some(f), Some(h)) = (&progress, hint) {
        f(&Progress::DurationHint {
            seconds: to_secs(h),
        });
    }
    let mut segs: Vec<Segmenter> = Vec::new();
    let mut out: Vec<Segment> = Vec::new();
    let mut speech: Vec<Vec<(Samples, Samples)>> = Vec::new();
    let mut report = DecodeReporter::new(progress, 1);
    let vad = seg_opts.vad.clone();
    let drove = ahead::drive_ahead(
        &mut stream,
        path,
        keep_truncated,
        &mut report,
        &vad,
        |block| {
            if cancel.is_set() {
                return Err(source::cancelled());
            }
            if segs.is_empty() {
                for _ in block.tracks {
                    segs.push(Segmenter::new(seg_opts.clone())?);
                    speech.push(Vec::new());
                }
            }
            for (((seg, sp), samples), frames) in segs
                .iter_mut()
                .zip(&mut speech)
                .zip(block.tracks)
                .zip(block.frames)
            {
                seg.push_analysed(samples.len(), frames, &mut out);
                sp.extend(out.drain(..).map(|s| (s.start, s.end)));
            }
            Ok(true)
        },
    )?;
    let truncated = match drove {
        Drove::End(t) => t,
        Drove::Stopped => None,
    };
    for (seg, sp) in segs.iter_mut().zip(&mut speech) {
        seg.finish(&mut out);
        sp.extend(out.drain(..).map(|s| (s.start, s.end)));
    }
    let duration = stream.position();
    report.emit(duration);
    let choice = stream.choice().cloned();
    let channels: Vec<Option<u16>> = match choice.as_ref().and_then(|c| c.channels.clone()) {
        Some(c) => c.into_iter().map(Some).collect(),
        None => vec![None],
    };
    let loudness = stream.loudness();
    let tracks = speech
        .into_iter()
        .enumerate()
        .map(|(i, speech)| TrackAnalysis {
            channel: channels.get(i).copied().flatten(),
            speech,
            loudness: loudness.get(i).copied(),
        })
        .collect();
    Ok(Analysis {
        tracks,
        choice,
        file_channels: stream.file_channels(),
        duration,
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
    track: usize,
    part: usize,
    file: TempFile,
    bytes: u64,
}

struct PartWriter {
    track: usize,
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
            track: self.track,
            part: self.part,
            file: self.file,
            bytes,
        })
    }
}

/// The parts of one track in the encoding pass. Parts with a lead-in overlap the part before
/// (see [`crate::pipeline::PipelineBuilder::speaker_overlap`]), so two can be open at once.
struct TrackParts<'a> {
    track: usize,
    spans: Vec<Vec<(Samples, Samples)>>,
    /// Where each part's own audio begins (after its lead-in).
    own_from: Vec<Samples>,
    todo: &'a [bool],
    temp_dir: &'a Path,
    /// The next part to open.
    next: usize,
    /// Parts being written, in order.
    open: Vec<OpenPart>,
}

/// A part of [`TrackParts`] being written.
struct OpenPart {
    part: usize,
    /// Its next span.
    span: usize,
    /// `None` when the part is not to do (already uploaded).
    writer: Option<PartWriter>,
    /// How far it has been written (original timeline).
    written: Samples,
}

impl<'a> TrackParts<'a> {
    fn new(track: usize, parts: &[PartPlan], todo: &'a [bool], temp_dir: &'a Path) -> Self {
        TrackParts {
            track,
            spans: parts.iter().map(PartPlan::spans).collect(),
            own_from: parts.iter().map(|p| p.start + p.lead_in).collect(),
            todo,
            temp_dir,
            next: 0,
            open: Vec::new(),
        }
    }

    fn open(&self, pi: usize) -> Result<Option<PartWriter>> {
        if !self.todo.get(pi).copied().unwrap_or(false) {
            return Ok(None);
        }
        let (file, f) = TempFile::create(self.temp_dir, &format!("t{}part{pi}.flac", self.track))?;
        let flac = FlacWriter::new(BufWriter::with_capacity(1 << 16, f), RATE_NZ)
            .map_err(|e| e.with_path(&file.path))?;
        Ok(Some(PartWriter {
            track: self.track,
            part: pi,
            file,
            flac,
        }))
    }

    /// Writes what `samples` (starting at `bs`) holds of this track's parts; sends each part
    /// as soon as it is complete. `false` when the receiver is gone.
    fn feed(
        &mut self,
        bs: Samples,
        samples: &[f32],
        tx: &mpsc::Sender<Result<Encoded>>,
    ) -> Result<bool> {
        let be = bs + samples.len() as Samples;
        // Open every part whose audio begins in this block (or before).
        while let Some(first) = self.spans.get(self.next) {
            if first.first().is_some_and(|&(a, _)| a >= be) {
                break;
            }
            let writer = self.open(self.next)?;
            self.open.push(OpenPart {
                part: self.next,
                span: 0,
                writer,
                written: 0,
            });
            self.next += 1;
        }
        let mut i = 0;
        while let Some(p) = self.open.get_mut(i) {
            let part_spans = self.spans.get(p.part).map_or(&[][..], Vec::as_slice);
            while let Some(&(a, b)) = part_spans.get(p.span) {
                if be <= a {
                    break;
                }
                let (from, to) = (a.max(bs), b.min(be));
                if to > from {
                    if let Some(w) = p.writer.as_mut() {
                        let s = &samples[(from - bs) as usize..(to - bs) as usize];
                        w.flac.write(s).map_err(|e| e.with_path(&w.file.path))?;
                    }
                    p.written = to;
                }
                if be >= b {
                    p.span += 1;
                } else {
                    break;
                }
            }
            if p.span >= part_spans.len() {
                // This part is complete.
                if let Some(w) = self.open.remove(i).writer {
                    if tx.blocking_send(w.finish()).is_err() {
                        return Ok(false);
                    }
                }
            } else {
                i += 1;
            }
        }
        Ok(true)
    }

    /// The stream ended: the open parts are complete (a shorter second pass only happens if
    /// the input changed; a part then simply holds what there was), except a part that holds
    /// nothing of its own audio yet, only some of its lead-in: it is not sent, and the run
    /// reports the part missing.
    fn finish(&mut self, tx: &mpsc::Sender<Result<Encoded>>) {
        for p in self.open.drain(..) {
            let own_from = self.own_from.get(p.part).copied().unwrap_or(0);
            if let Some(w) = p.writer.filter(|_| p.written > own_from) {
                let _ = tx.blocking_send(w.finish());
            }
        }
    }
}

/// Pass 2: decode again (same tracks as pass 1, each with its whole-track gain), write the
/// kept audio of each part still to do as 16 kHz FLAC into a temporary file and send it as
/// soon as it is complete.
#[allow(clippy::too_many_arguments)]
fn encode_parts(
    input: &Input,
    path: &Path,
    lanes: Lanes,
    gains: Vec<Option<f32>>,
    plans: &[Vec<PartPlan>],
    todo: &[Vec<bool>],
    temp_dir: &Path,
    keep_truncated: bool,
    progress: Option<ProgressFn>,
    tx: &mpsc::Sender<Result<Encoded>>,
) -> Result<()> {
    // Without normalisation the level goes up as recorded (DC removed), as for a mono file.
    let opts = if gains.iter().any(Option::is_some) {
        TrackOptions {
            normalize: Normalization::Fixed(1.0),
            gains: gains.iter().map(|g| g.unwrap_or(1.0)).collect(),
            ..ahead::track_options()
        }
    } else {
        ahead::track_options()
    };
    let (mut stream, _) = source::open_tracks(input, path, Select::Lanes(lanes), opts)?;
    // Decoding on a thread of its own (the FLAC encoding is parallel already), unless the
    // machine's cores are taken by other files.
    let (_active, threads) = ahead::enter();
    if threads {
        stream.read_ahead()?;
    }
    let mut report = DecodeReporter::new(progress, 2);
    let mut tracks = plans
        .iter()
        .zip(todo)
        .enumerate()
        .map(|(i, (p, t))| TrackParts::new(i, p, t, temp_dir))
        .collect::<Vec<_>>();
    // A truncated input: the analysis pass met the same break and planned the parts up to it.
    let drove = source::drive(&mut stream, path, keep_truncated, &mut report, |block| {
        if tx.is_closed() {
            return Ok(false);
        }
        for (t, samples) in tracks.iter_mut().zip(block.tracks) {
            if !t.feed(block.start, samples, tx)? {
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    if matches!(drove, Drove::Stopped) {
        return Ok(());
    }
    report.emit(stream.position());
    for t in &mut tracks {
        t.finish(tx);
    }
    Ok(())
}

/// The resumed parts, when they describe a whole file consistently: every part of every
/// track present once, same totals and file length.
fn complete_resume(resume: &[UploadedPart]) -> Option<Vec<UploadedPart>> {
    let first = resume.first()?;
    let mut by_track: BTreeMap<Option<u16>, BTreeMap<usize, UploadedPart>> = BTreeMap::new();
    for u in resume {
        if u.file_len != first.file_len
            || u.channels != first.channels
            || u.file_channels != first.file_channels
        {
            return None;
        }
        by_track
            .entry(u.channel)
            .or_default()
            .insert(u.part, u.clone());
    }
    let tracks: Vec<Option<u16>> = if first.channels.is_empty() {
        vec![None]
    } else {
        first.channels.iter().copied().map(Some).collect()
    };
    if by_track.keys().copied().collect::<Vec<_>>() != {
        let mut t = tracks.clone();
        t.sort();
        t
    } {
        return None;
    }
    let mut all = Vec::new();
    for t in tracks {
        let parts: Vec<UploadedPart> = by_track.remove(&t)?.into_values().collect();
        let total = parts.first()?.parts_total;
        let complete = parts.len() == total
            && parts
                .iter()
                .enumerate()
                .all(|(i, u)| u.part == i && u.parts_total == total && u.end >= u.offset);
        if !complete {
            return None;
        }
        all.extend(parts);
    }
    Some(all)
}

/// What the upload phase leaves for polling.
struct Uploads {
    parts: Vec<UploadedPart>,
    file_len: Samples,
    truncated: Option<Truncation>,
    channels: Option<Channels>,
}

/// Runs the async route for one file.
pub(super) async fn run(inner: &Inner, ctx: &Ctx, resume: Vec<UploadedPart>) -> Result<Transcript> {
    let up = match complete_resume(&resume) {
        Some(parts) => {
            let first = parts.first();
            let file_len = first.map_or(0, |u| u.file_len);
            let choice = Choice {
                channels: first
                    .filter(|u| !u.channels.is_empty())
                    .map(|u| u.channels.clone()),
                auto: None,
            };
            let file_channels = first.map_or(1, |u| u.file_channels);
            Uploads {
                parts,
                file_len,
                truncated: None,
                channels: inner.channels_metadata(file_channels, &choice),
            }
        }
        None => upload_file(inner, ctx, &resume).await?,
    };
    let file_len = up.file_len;
    if up.parts.is_empty() {
        let mut out = no_speech(inner, ctx, file_len);
        out.metadata.truncated = up.truncated;
        out.metadata.channels = up.channels;
        return Ok(out);
    }
    let uploaded = up.parts;
    // Poll and fetch every part (concurrently).
    let fetches = uploaded.iter().map(|u| async move {
        ctx.emit(Progress::Polling {
            part: u.part,
            channel: u.channel,
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
            channel: u.channel,
            pieces: r.pieces.len(),
        });
        Ok::<_, Error>(r)
    });
    let results = try_join_all(fetches).await?;
    let mut requests = 0u64;
    let mut sent = 0;
    let mut by_track: BTreeMap<Option<u16>, Vec<PartResult>> = BTreeMap::new();
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
            channel: u.channel,
            lead_in: u.lead_in,
            speakers: None,
        });
        by_track.entry(u.channel).or_default().push(PartResult {
            part: u.part,
            offset: u.offset,
            len,
            time_map: u.time_map.clone(),
            pieces: r.pieces,
            lead_in: u.lead_in,
        });
    }
    let mut segments = Vec::new();
    for (channel, parts) in by_track {
        let (mut v, matches) = merge_parts(&parts, &inner.merge, file_len);
        if inner.diarization {
            for (p, m) in parts.iter().zip(matches) {
                if let Some(info) = infos
                    .iter_mut()
                    .find(|i| i.part == p.part && i.channel == channel)
                {
                    info.speakers = m;
                }
            }
        }
        if let Some(c) = channel {
            // Speakers are labelled by channel first: `agent`, or `agent:speaker_1` with
            // diarization (which runs within the channel).
            let name = inner.channel_name(c);
            for s in &mut v {
                s.channel = Some(c);
                s.speaker = Some(match s.speaker.take() {
                    Some(spk) if inner.diarization => format!("{name}:{spk}"),
                    _ => name.clone(),
                });
            }
        }
        segments.extend(v);
    }
    crate::merge::sort_segments(&mut segments);
    let mut metadata = base_metadata(inner, ctx, file_len);
    metadata.requests = requests + 2 * uploaded.len() as u64;
    metadata.audio_seconds_sent = to_secs(sent);
    metadata.parts = infos;
    metadata.truncated = up.truncated;
    metadata.channels = up.channels;
    Ok(Transcript { segments, metadata })
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

/// Analyses, plans, encodes and uploads the parts not already in `resume`; the parts are
/// empty when the file has no speech.
async fn upload_file(inner: &Inner, ctx: &Ctx, resume: &[UploadedPart]) -> Result<Uploads> {
    let analysis = {
        let input = ctx.input.clone();
        let path = ctx.path.clone();
        let seg_opts = inner.segmenter.clone();
        let keep = inner.keep_truncated;
        let progress = ctx.progress.clone();
        let mode = inner.channels.clone();
        let guard = CancelOnDrop(Cancel::default());
        let cancel = guard.0.clone();
        let r = tokio::task::spawn_blocking(move || {
            analyse(&input, &path, &mode, seg_opts, keep, progress, &cancel)
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
    let choice = analysis.choice.clone().unwrap_or(Choice {
        channels: None,
        auto: None,
    });
    let channels_meta = inner.channels_metadata(analysis.file_channels, &choice);
    if let Some(m) = &channels_meta {
        ctx.emit(Progress::Channels(m.clone()));
    }
    let mut up = Uploads {
        parts: Vec::new(),
        file_len,
        truncated: analysis.truncated.clone(),
        channels: channels_meta,
    };
    if analysis.tracks.iter().all(|t| t.speech.is_empty()) {
        return Ok(up);
    }
    // Stretches without speech of `remove_silence` (2 s by default) or more are left out of
    // the upload (a time map keeps every timestamp exact): dead air and hold music are not
    // billed, and a separated channel, silent while the other party speaks, is not billed
    // for the whole call.
    let removal = inner.remove_silence.map(|g| (g, REMOVAL_MARGIN));
    let plans: Vec<Vec<PartPlan>> = analysis
        .tracks
        .iter()
        .map(|t| {
            if t.speech.is_empty() {
                Vec::new()
            } else {
                let lead = if inner.diarization && inner.merge.distinct_speakers_per_part {
                    inner.speaker_overlap
                } else {
                    0
                };
                plan_parts(&t.speech, file_len, inner.max_part, removal, lead)
            }
        })
        .collect();
    ctx.emit(Progress::PartsPlanned {
        parts: plans.iter().map(Vec::len).sum(),
        upload_seconds: to_secs(plans.iter().flatten().map(PartPlan::uploaded_len).sum()),
    });
    // The separated channels that have parts (a channel without speech has none): what a
    // complete journal must hold parts for.
    let separate: Vec<u16> = analysis
        .tracks
        .iter()
        .zip(&plans)
        .filter(|(_, p)| !p.is_empty())
        .filter_map(|(t, _)| t.channel)
        .collect();
    let as_uploaded = |track: usize, p: &PartPlan, file_name: String| UploadedPart {
        part: p.index,
        parts_total: plans.get(track).map_or(0, Vec::len),
        file_name,
        offset: p.start,
        end: p.end,
        time_map: p.time_map.clone(),
        lead_in: p.lead_in,
        file_len,
        channel: analysis.tracks.get(track).and_then(|t| t.channel),
        channels: separate.clone(),
        file_channels: analysis.file_channels,
    };
    // Journaled parts that match this plan exactly are not uploaded again.
    let mut done: Vec<Vec<Option<UploadedPart>>> = plans
        .iter()
        .enumerate()
        .map(|(t, parts)| {
            parts
                .iter()
                .map(|p| {
                    resume
                        .iter()
                        .find(|u| **u == as_uploaded(t, p, u.file_name.clone()))
                        .cloned()
                })
                .collect()
        })
        .collect();
    let todo: Vec<Vec<bool>> = done
        .iter()
        .map(|d| d.iter().map(Option::is_none).collect())
        .collect();
    if todo.iter().flatten().any(|&t| t) {
        let gains: Vec<Option<f32>> = analysis
            .tracks
            .iter()
            .map(|t| {
                inner
                    .normalize
                    .as_ref()
                    .zip(t.loudness)
                    .map(|(n, l): (&NormalizeOptions, Loudness)| l.gain(n))
            })
            .collect();
        let (tx, mut rx) = mpsc::channel::<Result<Encoded>>(1);
        let encoder = {
            let input = ctx.input.clone();
            let path = ctx.path.clone();
            let lanes = source::lanes_of(&choice);
            let plans = plans.clone();
            let todo = todo.clone();
            let temp_dir = inner.temp_dir.clone();
            let keep = inner.keep_truncated;
            let progress = ctx.progress.clone();
            tokio::task::spawn_blocking(move || {
                let r = encode_parts(
                    &input, &path, lanes, gains, &plans, &todo, &temp_dir, keep, progress, &tx,
                );
                if let Err(e) = r {
                    let _ = tx.blocking_send(Err(e.with_path(&path)));
                }
            })
        };
        while let Some(msg) = rx.recv().await {
            let enc = msg?;
            let Some(plan) = plans.get(enc.track).and_then(|p| p.get(enc.part)) else {
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
            let u = as_uploaded(enc.track, plan, file_name);
            ctx.emit(Progress::Uploaded(u.clone()));
            if let Some(slot) = done.get_mut(enc.track).and_then(|d| d.get_mut(plan.index)) {
                *slot = Some(u);
            }
        }
        encoder
            .await
            .map_err(|e| Error::internal(format!("encoding thread failed: {e}")))?;
    }
    for (parts, d) in plans.iter().zip(done) {
        let total = parts.len();
        for (p, d) in parts.iter().zip(d) {
            match d {
                Some(u) => up.parts.push(u),
                None => {
                    return Err(Error::new(ErrorKind::Truncated {
                        path: Some(ctx.path.clone()),
                        decoded_frames: p.start,
                        sample_rate: RATE,
                        what: format!(
                            "the encoding pass ended before part {} of {total} (the input changed between passes?)",
                            p.index + 1
                        ),
                    }))
                }
            }
        }
    }
    Ok(up)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two parts of a 10 s track, the second led in by the last 2 s of the first.
    fn two_parts() -> Vec<PartPlan> {
        let s = RATE as Samples;
        vec![
            PartPlan {
                index: 0,
                start: 0,
                end: 6 * s,
                time_map: None,
                lead_in: 0,
            },
            PartPlan {
                index: 1,
                start: 4 * s,
                end: 10 * s,
                time_map: None,
                lead_in: 2 * s,
            },
        ]
    }

    fn feed_until(until: Samples, plans: &[PartPlan]) -> Vec<(usize, u64)> {
        let dir = tempfile::tempdir().unwrap();
        let todo = [true, true];
        let mut t = TrackParts::new(0, plans, &todo, dir.path());
        let (tx, mut rx) = mpsc::channel(8);
        let block = vec![0.1f32; 4000];
        let mut at = 0;
        while at < until {
            let n = (until - at).min(block.len() as Samples) as usize;
            assert!(t.feed(at, &block[..n], &tx).unwrap());
            at += n as Samples;
        }
        t.finish(&tx);
        drop(tx);
        let mut sent = Vec::new();
        while let Ok(e) = rx.try_recv() {
            let e = e.unwrap();
            sent.push((e.part, e.bytes));
        }
        sent
    }

    #[test]
    fn overlapping_parts_are_written_side_by_side() {
        let sent = feed_until(10 * RATE as Samples, &two_parts());
        assert_eq!(sent.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 1]);
        assert!(sent.iter().all(|s| s.1 > 0));
    }

    /// A second pass that ends inside the second part's lead-in (the input changed) sends
    /// the first part only: a part holding none of its own audio is never uploaded.
    #[test]
    fn a_part_that_got_only_its_lead_in_is_not_sent() {
        let s = RATE as Samples;
        assert_eq!(
            feed_until(5 * s, &two_parts())
                .iter()
                .map(|s| s.0)
                .collect::<Vec<_>>(),
            [0]
        );
        // Past its lead-in, the part holds some of its own audio and is sent as it is.
        assert_eq!(
            feed_until(7 * s, &two_parts())
                .iter()
                .map(|s| s.0)
                .collect::<Vec<_>>(),
            [0, 1]
        );
    }
}
