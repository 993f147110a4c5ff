//! Translation to English: `POST /translate`.

use super::types::{Language, Translation};
use super::Client;
use crate::error::Result;

/// Text to translate to English.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TranslateRequest {
    /// The text.
    pub text: String,
    /// Its language; omitted, the service guesses.
    pub language: Option<Language>,
}

impl TranslateRequest {
    /// A request for `text` in `language` (if known).
    pub fn new(text: impl Into<String>, language: Option<Language>) -> Self {
        TranslateRequest {
            text: text.into(),
            language,
        }
    }
}

impl Client {
    /// `POST /translate`: translates to English.
    pub async fn translate(&self, req: &TranslateRequest) -> Result<Translation> {
        const EP: &str = "POST /translate";
        let url = self.url("/translate");
        self.call_json(EP, true, |http| {
            let mut f: Vec<(&str, &str)> = vec![("Text", req.text.as_str())];
            if let Some(l) = &req.language {
                f.push(("LanguageCode", l.tag()));
            }
            Ok(http.post(&url).form(&f))
        })
        .await
    }
}
