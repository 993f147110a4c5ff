//! The sync route: a decoding thread cuts segments into a bounded channel; the async side keeps
//! up to `concurrency` `POST /asr` requests in flight.

use std::path::Path;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use super::source::{self, DecodeReporter, Drove, Input};
use super::{api, Ctx, Inner, Progress, ProgressFn};
use crate::merge::SyncPiece;
use crate::normalize::{normalize_in_place, NormalizeOptions};
use crate::segment::{Cutter, Segment, SegmenterOptions};
use crate::stream::{Normalization, StreamOptions};
use crate::time::{to_secs, Samples};
use crate::transcript::{FailedSegment, Metadata, Route, Transcript, Truncation};
use crate::{Error, Result};

/// Errors after which no other request of the file can succeed: stop at once (the crate's
/// one error policy, [`Error::stops_batch`]).
fn dooms_the_rest(e: &Error) -> bool {
    e.stops_batch()
}

/// What the decoding thread sends.
enum Item {
    /// A segment, ready to send.
    Segment {
        index: usize,
        seg: Segment,
        wav: Vec<u8>,
    },
    /// The end of the input (early when it was truncated and that is allowed).
    End {
        duration: Samples,
        truncated: Option<Truncation>,
    },
}

/// The decoding thread: stream → cutter → per-segment normalisation → WAV → channel.
/// Returns when the input ends, on an error (sent as the last item), or when the receiver is
/// gone (the run was abandoned).
fn produce(
    input: Input,
    path: &Path,
    seg_opts: SegmenterOptions,
    norm: Option<NormalizeOptions>,
    keep_truncated: bool,
    progress: Option<ProgressFn>,
    tx: &mpsc::Sender<Result<Item>>,
) {
    let run = || -> Result<()> {
        let mut opts = StreamOptions::with_normalization(Normalization::DcOnly);
        opts.measure = false;
        let (mut stream, hint) = source::open(&input, path, opts)?;
        if let (Some(f), Some(h)) = (&progress, hint) {
            f(&Progress::DurationHint {
                seconds: to_secs(h),
            });
        }
        // Created on the decoding thread, where it runs.
        let mut cutter = Cutter::new(seg_opts)?;
        let mut out: Vec<(Segment, Vec<f32>)> = Vec::new();
        let mut index = 0usize;
        let mut report = DecodeReporter::new(progress.clone(), 1);
        let send = |out: &mut Vec<(Segment, Vec<f32>)>, index: &mut usize| -> Result<bool> {
            for (seg, mut audio) in out.drain(..) {
                if let Some(n) = &norm {
                    normalize_in_place(&mut audio, n);
                }
                let wav = crate::encode::wav_bytes(&audio, crate::time::RATE_NZ);
                drop(audio);
                if let Some(f) = &progress {
                    f(&Progress::SegmentPlanned {
                        index: *index,
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
        let drove = source::drive(&mut stream, path, keep_truncated, &mut report, |block| {
            if tx.is_closed() {
                return Ok(false);
            }
            cutter.push(block.samples, &mut out);
            send(&mut out, &mut index)
        })?;
        let Drove::End(truncated) = drove else {
            return Ok(());
        };
        cutter.finish(&mut out);
        if !send(&mut out, &mut index)? {
            return Ok(());
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
        tokio::task::spawn_blocking(move || {
            produce(input, &path, seg_opts, norm, keep, progress, &tx)
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
    loop {
        tokio::select! {
            Some((index, seg, res)) = inflight.next(), if !inflight.is_empty() => {
                let seg: Segment = seg;
                let r: api::SyncText = match res {
                    Ok(r) => r,
                    Err(e) if dooms_the_rest(&e) => return Err(e),
                    Err(e) => {
                        let error = e.to_string();
                        tracing::warn!(index, %error, "segment failed; the run goes on without it");
                        ctx.emit(Progress::SegmentFailed { index, error: error.clone() });
                        failed.push(FailedSegment { index, start: seg.start, end: seg.end, error });
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
                });
            }
            item = rx.recv(), if open && inflight.len() < inner.concurrency => match item {
                Some(Ok(Item::Segment { index, seg, wav })) => {
                    planned += 1;
                    requests += 1;
                    sent += seg.billed();
                    ctx.emit(Progress::SegmentSent { index, bytes: wav.len() as u64 });
                    let client = &inner.client;
                    inflight.push(async move {
                        let r = api::transcribe_segment(client, wav, index, language).await;
                        (index, seg, r)
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
        ..Metadata::default()
    };
    Ok(Transcript {
        segments: crate::merge::sync_segments(pieces),
        metadata,
    })
}
