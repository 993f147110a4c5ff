//! The sync route: decoding threads cut segments into a bounded channel; the async side keeps
//! up to `concurrency` `POST /asr` requests in flight.

use std::path::Path;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use super::ahead;
use super::source::{self, DecodeReporter, Drove, Input};
use super::{api, Ctx, Inner, Progress, ProgressFn};
use crate::channels::{ChannelMode, Choice};
use crate::merge::SyncPiece;
use crate::normalize::{normalize_in_place, NormalizeOptions};
use crate::segment::{Cutter, Segment, SegmenterOptions};
use crate::time::{to_secs, Samples};
use crate::transcript::{FailedSegment, Metadata, Route, Transcript, Truncation};
use crate::{Error, Result};
use source::Select;

/// Errors after which no other request of the file can succeed: stop at once (the crate's
/// one error policy, [`Error::stops_batch`]).
fn dooms_the_rest(e: &Error) -> bool {
    e.stops_batch()
}

/// What the decoding thread sends.
enum Item {
    /// Which tracks come (before the first segment).
    Tracks(Announced),
    /// A segment of track `track`, ready to send.
    Segment {
        index: usize,
        track: usize,
        seg: Segment,
        wav: Vec<u8>,
    },
    /// The end of the input (early when it was truncated and that is allowed).
    End {
        duration: Samples,
        truncated: Option<Truncation>,
    },
}

/// The tracks of a file, as the decoding thread decided them.
struct Announced {
    file_channels: u16,
    choice: Choice,
}

/// The decoding thread: stream → cutter → per-segment normalisation → WAV → channel.
/// Returns when the input ends, on an error (sent as the last item), or when the receiver is
/// gone (the run was abandoned).
#[allow(clippy::too_many_arguments)]
fn produce(
    input: Input,
    path: &Path,
    mode: &ChannelMode,
    seg_opts: SegmenterOptions,
    norm: Option<NormalizeOptions>,
    keep_truncated: bool,
    progress: Option<ProgressFn>,
    tx: &mpsc::Sender<Result<Item>>,
) {
    let run = || -> Result<()> {
        let (mut stream, hint) =
            source::open_tracks(&input, path, Select::Mode(mode), ahead::track_options())?;
        if let (Some(f), Some(h)) = (&progress, hint) {
            f(&Progress::DurationHint {
                seconds: to_secs(h),
            });
        }
        // One cutter per track, created on the decoding thread (where they run) once the
        // tracks are known.
        let mut cutters: Vec<(Cutter, Option<u16>)> = Vec::new();
        let mut out: Vec<(Segment, Vec<f32>)> = Vec::new();
        let mut index = 0usize;
        let mut report = DecodeReporter::new(progress.clone(), 1);
        let file_channels = stream.file_channels();
        let send = |out: &mut Vec<(Segment, Vec<f32>)>,
                    (track, channel): (usize, Option<u16>),
                    index: &mut usize|
         -> Result<bool> {
            for (seg, mut audio) in out.drain(..) {
                if let Some(n) = &norm {
                    normalize_in_place(&mut audio, n);
                }
                let wav = crate::encode::wav_bytes(&audio, crate::time::RATE_NZ);
                drop(audio);
                if let Some(f) = &progress {
                    f(&Progress::SegmentPlanned {
                        index: *index,
                        channel,
                        start: to_secs(seg.start),
                        end: to_secs(seg.end),
                        kept: seg
                            .kept
                            .spans()
                            .iter()
                            .map(|k| [to_secs(k.original), to_secs(k.original + k.len)])
                            .collect(),
                    });
                }
                let item = Item::Segment {
                    index: *index,
                    track,
                    seg,
                    wav,
                };
                *index += 1;
                if tx.blocking_send(Ok(item)).is_err() {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        let vad = seg_opts.vad.clone();
        let drove = ahead::drive_ahead(
            &mut stream,
            path,
            keep_truncated,
            &mut report,
            &vad,
            |block| {
                if tx.is_closed() {
                    return Ok(false);
                }
                if cutters.is_empty()
                    && !announce(
                        Some(block.choice),
                        file_channels,
                        &seg_opts,
                        &mut cutters,
                        tx,
                    )?
                {
                    return Ok(false);
                }
                for (track, (((cutter, ch), samples), frames)) in cutters
                    .iter_mut()
                    .zip(block.tracks)
                    .zip(block.frames)
                    .enumerate()
                {
                    cutter.push_analysed(samples, frames, &mut out);
                    if !send(&mut out, (track, *ch), &mut index)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        )?;
        let Drove::End(truncated) = drove else {
            return Ok(());
        };
        if cutters.is_empty()
            && !announce(stream.choice(), file_channels, &seg_opts, &mut cutters, tx)?
        {
            return Ok(());
        }
        for (track, (cutter, ch)) in cutters.iter_mut().enumerate() {
            cutter.finish(&mut out);
            if !send(&mut out, (track, *ch), &mut index)? {
                return Ok(());
            }
        }
        let duration = stream.position();
        report.emit(duration);
        if let Some(f) = &progress {
            f(&Progress::Duration {
                seconds: to_secs(duration),
            });
        }
        let _ = tx.blocking_send(Ok(Item::End {
            duration,
            truncated,
        }));
        Ok(())
    };
    if let Err(e) = run() {
        let _ = tx.blocking_send(Err(e.with_path(path)));
    }
}

/// Creates one cutter per track of `choice` and tells the receiving side which tracks come;
/// `false` when the receiver is gone.
fn announce(
    choice: Option<&Choice>,
    file_channels: u16,
    seg_opts: &SegmenterOptions,
    cutters: &mut Vec<(Cutter, Option<u16>)>,
    tx: &mpsc::Sender<Result<Item>>,
) -> Result<bool> {
    let Some(choice) = choice else {
        return Ok(true);
    };
    match &choice.channels {
        None => cutters.push((Cutter::new(seg_opts.clone())?, None)),
        Some(c) => {
            for &i in c {
                cutters.push((Cutter::new(seg_opts.clone())?, Some(i)));
            }
        }
    }
    let t = Announced {
        file_channels,
        choice: choice.clone(),
    };
    Ok(tx.blocking_send(Ok(Item::Tracks(t))).is_ok())
}

/// Runs the sync route for one file.
pub(super) async fn run(inner: &Inner, ctx: &Ctx) -> Result<Transcript> {
    let (tx, mut rx) = mpsc::channel::<Result<Item>>(inner.concurrency);
    let producer = {
        let input = ctx.input.clone();
        let path = ctx.path.clone();
        let seg_opts = inner.segmenter.clone();
        let norm = inner.normalize;
        let keep = inner.keep_truncated;
        let progress = ctx.progress.clone();
        let mode = inner.channels.clone();
        tokio::task::spawn_blocking(move || {
            produce(input, &path, &mode, seg_opts, norm, keep, progress, &tx)
        })
    };
    let language = inner.language.as_deref();
    let mut inflight = FuturesUnordered::new();
    let mut pieces = Vec::new();
    let mut duration = None;
    let mut truncated = None;
    let mut failed: Vec<FailedSegment> = Vec::new();
    let mut first_error: Option<Error> = None;
    let mut open = true;
    let mut planned = 0usize;
    let mut requests = 0u64;
    let mut sent: Samples = 0;
    // Per track: (channel, speaker) when channels are separate.
    let mut labels: Vec<(Option<u16>, Option<String>)> = vec![(None, None)];
    let mut channels = None;
    loop {
        tokio::select! {
            Some((index, track, seg, res)) = inflight.next(), if !inflight.is_empty() => {
                let seg: Segment = seg;
                let (channel, speaker) = labels.get(track).cloned().unwrap_or_default();
                let r: api::SyncText = match res {
                    Ok(r) => r,
                    Err(e) if dooms_the_rest(&e) => return Err(e),
                    Err(e) => {
                        let error = e.to_string();
                        tracing::warn!(index, %error, "segment failed; the run goes on without it");
                        ctx.emit(Progress::SegmentFailed { index, error: error.clone() });
                        let channel = labels.get(track).and_then(|l: &(Option<u16>, Option<String>)| l.0);
                        failed.push(FailedSegment { index, start: seg.start, end: seg.end, error, channel });
                        first_error.get_or_insert(e);
                        continue;
                    }
                };
                ctx.emit(Progress::SegmentDone { index, seconds: to_secs(seg.len()) });
                pieces.push(SyncPiece {
                    segment: index,
                    start: seg.start,
                    end: seg.end,
                    text: r.text,
                    language: r.language,
                    speaker,
                    channel,
                });
            }
            item = rx.recv(), if open && inflight.len() < inner.concurrency => match item {
                Some(Ok(Item::Tracks(a))) => {
                    let meta = inner.channels_metadata(a.file_channels, &a.choice);
                    if let Some(m) = &meta {
                        ctx.emit(Progress::Channels(m.clone()));
                    }
                    labels = match &a.choice.channels {
                        None => vec![(None, None)],
                        Some(c) => c.iter().map(|&i| (Some(i), Some(inner.channel_name(i)))).collect(),
                    };
                    channels = meta;
                }
                Some(Ok(Item::Segment { index, track, seg, wav })) => {
                    planned += 1;
                    requests += 1;
                    sent += seg.billed();
                    ctx.emit(Progress::SegmentSent { index, bytes: wav.len() as u64 });
                    let client = &inner.client;
                    inflight.push(async move {
                        let r = api::transcribe_segment(client, wav, index, language).await;
                        (index, track, seg, r)
                    });
                }
                Some(Ok(Item::End { duration: d, truncated: t })) => {
                    duration = Some(d);
                    truncated = t;
                }
                Some(Err(e)) => return Err(e),
                None => open = false,
            },
            else => break,
        }
    }
    // The producer has ended (the channel closed); a panic there is a bug, reported as such.
    producer
        .await
        .map_err(|e| Error::internal(format!("decoding thread failed: {e}")))?;
    let duration = duration
        .ok_or_else(|| Error::internal(format!("{}: decoding ended without a result", ctx.name)))?;
    if planned == 0 {
        ctx.emit(Progress::NoSpeech);
    }
    if failed.len() == planned {
        if let Some(e) = first_error {
            // Every segment failed: nothing to keep.
            return Err(e);
        }
    }
    failed.sort_by_key(|f| f.index);
    let metadata = Metadata {
        source: ctx.name.clone(),
        duration,
        route: Route::Sync,
        language: inner.language.clone(),
        diarization: false,
        no_speech: planned == 0,
        requests,
        audio_seconds_sent: to_secs(sent),
        segments_planned: planned as u64,
        failed_segments: failed,
        truncated,
        channels,
        ..Metadata::default()
    };
    Ok(Transcript {
        segments: crate::merge::sync_segments(pieces),
        metadata,
    })
}
