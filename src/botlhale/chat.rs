//! Vela chats upload (`POST` to a path the vendor does not publish: set it with
//! [`super::ClientBuilder::chats_path`]).

use reqwest::multipart::Form;
use serde::Serialize;

use super::types::Language;
use super::Client;
use crate::error::{Error, Result};

/// Who sent a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ChatSender {
    /// The human agent.
    Agent,
    /// The customer.
    User,
    /// A bot.
    Bot,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ChatMessage {
    /// The text.
    pub message: String,
    /// When it was sent, `DD/MM/YYYY, HH:mm`.
    pub time: String,
    /// Who sent it.
    pub sender: ChatSender,
    /// Its language, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,
}

impl ChatMessage {
    /// A message without a language.
    pub fn new(message: impl Into<String>, time: impl Into<String>, sender: ChatSender) -> Self {
        ChatMessage {
            message: message.into(),
            time: time.into(),
            sender,
            language: None,
        }
    }
    /// Sets the language.
    #[must_use]
    pub fn language(mut self, l: Language) -> Self {
        self.language = Some(l);
        self
    }
}

/// Chat metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ChatMetadata {
    /// The agent's email; omitted leaves the agent unspecified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// When the chat took place (`DD/MM/YYYY, HH:mm`); omitted means now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}

/// A chat to upload.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ChatUpload {
    /// The messages, in order.
    pub chats: Vec<ChatMessage>,
    /// Optional metadata.
    pub metadata: Option<ChatMetadata>,
}

impl ChatUpload {
    /// A chat of `messages` without metadata.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        ChatUpload {
            chats: messages,
            metadata: None,
        }
    }
}

impl Client {
    /// Uploads a chat to Vela (form fields `org_id`, `chats` as JSON, optional `metadata`).
    /// Returns the server's JSON answer as is (undocumented).
    pub async fn vela_upload_chats(&self, req: &ChatUpload) -> Result<serde_json::Value> {
        let path = self.inner.chats_path.clone().ok_or_else(|| {
            Error::config(
                "Vela chats upload: set ClientBuilder::chats_path (the vendor does not publish it)",
            )
        })?;
        let endpoint = format!("POST {path}");
        let org = self.require_org_id(&endpoint)?.to_string();
        let chats =
            serde_json::to_string(&req.chats).map_err(|e| Error::config(format!("chats: {e}")))?;
        let meta = match &req.metadata {
            Some(m) => Some(
                serde_json::to_string(m)
                    .map_err(|e| Error::config(format!("chat metadata: {e}")))?,
            ),
            None => None,
        };
        let url = self.url(&path);
        self.call_json(&endpoint, true, |http| {
            let mut form = Form::new()
                .text("org_id", org.clone())
                .text("chats", chats.clone());
            if let Some(m) = &meta {
                form = form.text("metadata", m.clone());
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
    fn chats_serialise_as_documented() {
        let m = ChatMessage::new("Sawubona", "06/08/2024, 09:15", ChatSender::User)
            .language(Language::IsiZulu);
        let j = serde_json::to_string(&vec![
            m,
            ChatMessage::new("hi", "06/08/2024, 09:16", ChatSender::Bot),
        ])
        .unwrap();
        assert_eq!(
            j,
            r#"[{"message":"Sawubona","time":"06/08/2024, 09:15","sender":"user","language":"zu-ZA"},{"message":"hi","time":"06/08/2024, 09:16","sender":"bot"}]"#
        );
    }
}
