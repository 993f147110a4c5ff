//! Speech synthesis: `POST /tts`.

use super::types::{Language, SpeechSynthesis};
use super::Client;
use crate::error::Result;

/// Text to speak.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TtsRequest {
    /// The text.
    pub text: String,
    /// The language to speak it in.
    pub language: Language,
}

impl TtsRequest {
    /// A request for `text` in `language`.
    pub fn new(text: impl Into<String>, language: Language) -> Self {
        TtsRequest {
            text: text.into(),
            language,
        }
    }
}

impl Client {
    /// `POST /tts`: returns where to fetch the synthesised speech.
    pub async fn tts(&self, req: &TtsRequest) -> Result<SpeechSynthesis> {
        const EP: &str = "POST /tts";
        let url = self.url("/tts");
        self.call_json(EP, true, |http| {
            Ok(http.post(&url).form(&[
                ("TextMsg", req.text.as_str()),
                ("LanguageCode", req.language.tag()),
            ]))
        })
        .await
    }
}
