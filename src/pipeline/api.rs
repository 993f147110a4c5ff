//! The pipeline's few calls into the client, in one place.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

use super::{Ctx, Progress};
use crate::botlhale::{AsyncUpload, Client, Language, PollOptions, SyncRequest};
use crate::merge::AsyncPiece;
use crate::time::RATE_NZ;
use crate::Result;

/// A sync transcription, reduced to what the merge needs.
pub(super) struct SyncText {
    pub(super) text: String,
    pub(super) language: Option<String>,
}

/// `POST /asr` with one segment's WAV.
pub(super) async fn transcribe_segment(
    client: &Client,
    wav: Vec<u8>,
    index: usize,
    language: Option<&str>,
) -> Result<SyncText> {
    let mut req = SyncRequest::new(Bytes::from(wav), format!("segment_{index:05}.wav"), RATE_NZ);
    if let Some(l) = language {
        req = req.language(Language::parse(l));
    }
    let r = client.transcribe_sync(req).await?;
    Ok(SyncText {
        text: r.transcription,
        language: r.language.map(|l| l.tag().to_string()),
    })
}

/// Uploads one part's FLAC file; returns the server's file name.
pub(super) async fn upload(
    client: &Client,
    path: &Path,
    bytes: u64,
    language: Option<&str>,
    diarization: bool,
    part: usize,
    ctx: &Ctx,
) -> Result<String> {
    ctx.emit(Progress::UploadBytes {
        part,
        sent: 0,
        total: bytes,
    });
    let mut req = AsyncUpload::new(path, RATE_NZ)
        .diarization(diarization)
        .mime("audio/flac");
    if let Some(f) = ctx.progress.clone() {
        // The client reports about every MiB and at the end of each attempt.
        req = req.progress(move |sent, total| {
            f(&Progress::UploadBytes { part, sent, total });
        });
    }
    if let Some(l) = language {
        req = req.language(Language::parse(l));
    }
    let job = client.upload_async(req).await?;
    Ok(job.file_name)
}

/// A fetched async result.
pub(super) struct Fetched {
    pub(super) pieces: Vec<AsyncPiece>,
    /// Requests made for it, as far as known (the client does not count its polls: 1).
    pub(super) requests: u64,
}

/// Waits for a job and fetches its result. `opts` `None`: the client's defaults with a
/// deadline scaled to `audio`.
pub(super) async fn wait(
    client: &Client,
    file_name: &str,
    audio: Duration,
    opts: Option<&PollOptions>,
) -> Result<Fetched> {
    let opts = opts
        .cloned()
        .unwrap_or_else(|| PollOptions::for_audio(audio));
    let r = client.poll(file_name, opts).await?;
    Ok(Fetched {
        pieces: r
            .timestamps
            .into_iter()
            .map(|t| AsyncPiece {
                start_ms: t.start_ms,
                end_ms: t.end_ms,
                speaker: t.speaker,
                language: t.language.map(|l| l.tag().to_string()),
                text: t.transcription,
            })
            .collect(),
        requests: 1,
    })
}
