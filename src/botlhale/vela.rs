//! Vela (call-centre analytics): `POST /asr/async/upload/vela` and the upload it returns.
//!
//! Before issuing the form the server checks the organisation's `minute_allocation`; when it
//! is used up the call fails with [`crate::ErrorKind::QuotaExhausted`] (never retried; see
//! [`super::retry::is_quota_exhausted`] for how it is recognised).

use std::path::PathBuf;

use reqwest::multipart::Form;
use serde::Serialize;

use super::types::PresignedPost;
use super::upload::ReceivedForm;
use super::{AsyncJob, Client};
use crate::error::{Error, Result};

/// The optional metadata of a Vela call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct VelaMetadata {
    /// The agent's email address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// When the call took place, as the caller writes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_of_call: Option<String>,
}

impl VelaMetadata {
    /// Metadata with both fields.
    pub fn new(email: impl Into<String>, date_of_call: impl Into<String>) -> Self {
        VelaMetadata {
            email: Some(email.into()),
            date_of_call: Some(date_of_call.into()),
        }
    }
}

/// A call recording to upload to Vela.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VelaCallUpload {
    /// The recording.
    pub path: PathBuf,
    /// Its MIME type. Default: from the extension.
    pub mime: String,
    /// Optional metadata.
    pub metadata: Option<VelaMetadata>,
}

impl VelaCallUpload {
    /// An upload of `path` without metadata.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        VelaCallUpload {
            mime: super::sync::mime_for(&path.to_string_lossy()).to_string(),
            path,
            metadata: None,
        }
    }
    /// Sets the metadata.
    #[must_use]
    pub fn metadata(mut self, m: VelaMetadata) -> Self {
        self.metadata = Some(m);
        self
    }
}

impl Client {
    /// Asks `POST /asr/async/upload/vela` for an upload form.
    pub async fn vela_upload_form(&self, req: &VelaCallUpload) -> Result<PresignedPost> {
        const EP: &str = "POST /asr/async/upload/vela";
        let org = self.require_org_id(EP)?.to_string();
        let meta = match &req.metadata {
            Some(m) => Some(
                serde_json::to_string(m)
                    .map_err(|e| Error::config(format!("Vela metadata: {e}")))?,
            ),
            None => None,
        };
        let url = self.url("/asr/async/upload/vela");
        self.call_json_withheld(EP, true, |http| {
            let mut form = Form::new().text("org_id", org.clone());
            if let Some(m) = &meta {
                form = form.text("metadata", m.clone());
            }
            Ok(http.post(&url).multipart(form))
        })
        .await
    }

    /// Uploads a call recording to Vela: form, then the streamed upload (with form renewal).
    pub async fn vela_upload_call(&self, req: VelaCallUpload) -> Result<AsyncJob> {
        let first = ReceivedForm::new(self.vela_upload_form(&req).await?);
        self.upload_with_renewal(first, &req.path, &req.mime, None, || {
            self.vela_upload_form(&req)
        })
        .await
    }
}
