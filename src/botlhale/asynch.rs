//! Asynchronous transcription: upload form, upload, status and data.

use std::num::NonZeroU32;
use std::path::PathBuf;

use reqwest::multipart::Form;

use super::types::{AsyncResult, JobStatusReport, Language, PresignedPost, RawAsyncResult};
use super::upload::{is_expiry_rejection, ReceivedForm, UploadProgress};
use super::Client;
use crate::error::{Error, ErrorKind, Result};

/// A file to transcribe asynchronously (up to 400 minutes). It is streamed from disk.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AsyncUpload {
    /// The file to upload (WAV, FLAC, OGG or AMR).
    pub path: PathBuf,
    /// Its MIME type. Default: from the extension.
    pub mime: String,
    /// Its sample rate.
    pub sample_rate: NonZeroU32,
    /// The language; omitted, the service detects it per sentence.
    pub language: Option<Language>,
    /// Ask for speaker diarization. Default false.
    pub diarization: bool,
    /// Told how far the upload has got (about every MiB). Default none.
    pub progress: Option<UploadProgress>,
}

impl AsyncUpload {
    /// An upload of `path` at `sample_rate`, no language, no diarization.
    pub fn new(path: impl Into<PathBuf>, sample_rate: NonZeroU32) -> Self {
        let path = path.into();
        AsyncUpload {
            mime: super::sync::mime_for(&path.to_string_lossy()).to_string(),
            path,
            sample_rate,
            language: None,
            diarization: false,
            progress: None,
        }
    }
    /// Reports upload progress to `f(file bytes sent, file length)` (see [`UploadProgress`]).
    #[must_use]
    pub fn progress(mut self, f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(UploadProgress::new(f));
        self
    }
    /// Sets the language.
    #[must_use]
    pub fn language(mut self, l: Language) -> Self {
        self.language = Some(l);
        self
    }
    /// Turns diarization on or off.
    #[must_use]
    pub fn diarization(mut self, on: bool) -> Self {
        self.diarization = on;
        self
    }
    /// Sets the MIME type.
    #[must_use]
    pub fn mime(mut self, m: impl Into<String>) -> Self {
        self.mime = m.into();
        self
    }
}

/// An uploaded async job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AsyncJob {
    /// The server's file name (the form's `key`): all that is needed to poll, even from
    /// another process.
    pub file_name: String,
    /// How many times the upload form had to be replaced because it expired.
    pub form_renewals: u32,
}

impl AsyncJob {
    /// A job known by its server file name (to resume polling elsewhere).
    pub fn new(file_name: impl Into<String>) -> Self {
        AsyncJob {
            file_name: file_name.into(),
            form_renewals: 0,
        }
    }
}

impl Client {
    /// Asks `POST /asr/async/upload` for a presigned upload form.
    pub async fn upload_form(&self, req: &AsyncUpload) -> Result<PresignedPost> {
        const EP: &str = "POST /asr/async/upload";
        let org = self.require_org_id(EP)?.to_string();
        let url = self.url("/asr/async/upload");
        self.call_json_withheld(EP, true, |http| {
            let mut form = Form::new()
                .text("OrgID", org.clone())
                .text("SampleRate", req.sample_rate.get().to_string());
            if let Some(l) = &req.language {
                form = form.text("LanguageCode", l.tag().to_string());
            }
            form = form.text(
                "Diarization",
                if req.diarization { "True" } else { "False" },
            );
            Ok(http.post(&url).multipart(form))
        })
        .await
    }

    /// Uploads a file for asynchronous transcription: asks for a form, streams the file to
    /// it, and replaces the form when it expired (before uploading, or when storage refuses
    /// it as expired; once). Returns the server's file name to poll with.
    pub async fn upload_async(&self, req: AsyncUpload) -> Result<AsyncJob> {
        let first = ReceivedForm::new(self.upload_form(&req).await?);
        self.upload_with_renewal(first, &req.path, &req.mime, req.progress.as_ref(), || {
            self.upload_form(&req)
        })
        .await
    }

    /// Like [`Client::upload_async`] with a form obtained earlier (e.g. by
    /// [`Client::upload_form`]): a form whose policy has expired (or expires within the margin)
    /// is replaced before uploading, and one refused as expired is replaced after.
    pub async fn upload_async_with_form(
        &self,
        req: &AsyncUpload,
        form: PresignedPost,
    ) -> Result<AsyncJob> {
        self.upload_with_renewal(
            ReceivedForm::new(form),
            &req.path,
            &req.mime,
            req.progress.as_ref(),
            || self.upload_form(req),
        )
        .await
    }

    /// Streams `path` to `form`, renewing the form through `renew` when it is stale or refused
    /// as expired.
    pub(crate) async fn upload_with_renewal<'a, F, Fut>(
        &'a self,
        mut form: ReceivedForm,
        path: &'a std::path::Path,
        mime: &'a str,
        progress: Option<&'a UploadProgress>,
        renew: F,
    ) -> Result<AsyncJob>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<PresignedPost>>,
    {
        let mut renewals = 0u32;
        if self.form_is_stale(&form) {
            tracing::debug!("botlhale: upload form stale before upload, renewing");
            form = ReceivedForm::new(renew().await?);
            renewals += 1;
        }
        loop {
            let key = form
                .form
                .key()
                .ok_or_else(|| {
                    Error::new(ErrorKind::Parse {
                        endpoint: "POST /asr/async/upload".into(),
                        what: "the upload form has no `key` field".into(),
                    })
                })?
                .to_string();
            match self
                .upload_to_form_with_progress(&form.form, path, mime, progress.cloned())
                .await
            {
                Ok(()) => {
                    return Ok(AsyncJob {
                        file_name: key,
                        form_renewals: renewals,
                    })
                }
                Err(e) => {
                    let expired = matches!(e.kind(), ErrorKind::UploadRejected { code, message, .. }
                        if is_expiry_rejection(code, message));
                    // One renewal after a refusal (two at most in all).
                    if expired && renewals < 2 {
                        tracing::debug!("botlhale: upload refused as expired, renewing form");
                        form = ReceivedForm::new(renew().await?);
                        renewals += 1;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// `GET /asr/async/status` for the job `file_name`.
    pub async fn status(&self, file_name: &str) -> Result<JobStatusReport> {
        const EP: &str = "GET /asr/async/status";
        let org = self.require_org_id(EP)?.to_string();
        let url = self.url("/asr/async/status");
        self.call_json(EP, true, |http| {
            Ok(http
                .get(&url)
                .query(&[("OrgID", org.as_str()), ("FileName", file_name)]))
        })
        .await
    }

    /// `GET /asr/async/data` (or the configured path; on 404 the fallback path, remembered for
    /// later calls). Times in the result are in milliseconds whatever the server sent.
    pub async fn data(&self, file_name: &str) -> Result<AsyncResult> {
        let (primary, fallback) = self.data_paths();
        match self.data_at(&primary, file_name).await {
            Err(e)
                if fallback.is_some() && matches!(e.kind(), ErrorKind::Api { status: 404, .. }) =>
            {
                let Some(f) = fallback else { return Err(e) };
                let r = self.data_at(&f, file_name).await;
                if r.is_ok() {
                    self.remember_data_fallback();
                }
                r
            }
            other => other,
        }
    }

    async fn data_at(&self, path: &str, file_name: &str) -> Result<AsyncResult> {
        let endpoint = format!("GET {path}");
        let org = self.require_org_id(&endpoint)?.to_string();
        let url = self.url(path);
        let raw: RawAsyncResult = self
            .call_json(&endpoint, true, |http| {
                Ok(http
                    .get(&url)
                    .query(&[("OrgID", org.as_str()), ("FileName", file_name)]))
            })
            .await?;
        AsyncResult::from_raw(raw).map_err(|what| {
            Error::new(ErrorKind::Parse {
                endpoint: endpoint.clone(),
                what,
            })
        })
    }
}
