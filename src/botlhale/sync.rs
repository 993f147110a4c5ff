//! Synchronous transcription: `POST /asr` (a clip of at most 60 s).

use std::num::NonZeroU32;

use bytes::Bytes;
use reqwest::multipart::{Form, Part};

use super::types::{Language, SyncTranscription};
use super::Client;
use crate::error::{Error, Result};

/// A clip to transcribe synchronously. The bytes are the file as the service should see it
/// (WAV or FLAC, ≤ 60 s); they are shared, not copied, between retries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SyncRequest {
    /// The encoded clip.
    pub audio: Bytes,
    /// The file name sent with it (only the name matters to the service).
    pub file_name: String,
    /// Its MIME type. Default: from the file name's extension (`audio/wav`, `audio/flac`...).
    pub mime: String,
    /// The clip's sample rate.
    pub sample_rate: NonZeroU32,
    /// The spoken language; omitted lets the service decide.
    pub language: Option<Language>,
}

impl SyncRequest {
    /// A request for `audio` named `file_name` at `sample_rate`, no language.
    pub fn new(
        audio: impl Into<Bytes>,
        file_name: impl Into<String>,
        sample_rate: NonZeroU32,
    ) -> Self {
        let file_name = file_name.into();
        SyncRequest {
            audio: audio.into(),
            mime: mime_for(&file_name).to_string(),
            file_name,
            sample_rate,
            language: None,
        }
    }

    /// Sets the language.
    #[must_use]
    pub fn language(mut self, l: Language) -> Self {
        self.language = Some(l);
        self
    }

    /// Sets the MIME type.
    #[must_use]
    pub fn mime(mut self, m: impl Into<String>) -> Self {
        self.mime = m.into();
        self
    }
}

/// The MIME type for a file name's extension; `application/octet-stream` when unknown.
pub fn mime_for(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "wav" | "wave" => "audio/wav",
        "flac" => "audio/flac",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "amr" => "audio/amr",
        "mp3" => "audio/mpeg",
        "m4a" | "mp4" => "audio/mp4",
        _ => "application/octet-stream",
    }
}

/// Strips characters that would break a multipart header from a file name.
pub(crate) fn safe_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let s: String = base
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .collect();
    if s.is_empty() {
        "audio".into()
    } else {
        s
    }
}

pub(crate) fn file_part(audio: &Bytes, file_name: &str, mime: &str) -> Result<Part> {
    Part::stream_with_length(reqwest::Body::from(audio.clone()), audio.len() as u64)
        .file_name(safe_file_name(file_name))
        .mime_str(mime)
        .map_err(|e| Error::config(format!("MIME type {mime:?}: {e}")))
}

impl Client {
    /// Transcribes a clip of at most 60 s with `POST /asr`.
    pub async fn transcribe_sync(&self, req: SyncRequest) -> Result<SyncTranscription> {
        const EP: &str = "POST /asr";
        let url = self.url("/asr");
        self.call_json(EP, true, |http| {
            let mut form = Form::new()
                .part(
                    "SpeechFile",
                    file_part(&req.audio, &req.file_name, &req.mime)?,
                )
                .text("SampleRate", req.sample_rate.get().to_string());
            if let Some(l) = &req.language {
                form = form.text("LanguageCode", l.tag().to_string());
            }
            Ok(http.post(&url).multipart(form))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_and_names() {
        assert_eq!(mime_for("a.WAV"), "audio/wav");
        assert_eq!(mime_for("x.flac"), "audio/flac");
        assert_eq!(mime_for("noext"), "application/octet-stream");
        assert_eq!(safe_file_name("dir/sub/a\"b\r\n.wav"), "ab.wav");
        assert_eq!(safe_file_name("c:\\x\\y.wav"), "y.wav");
        assert_eq!(safe_file_name("/"), "audio");
    }
}
