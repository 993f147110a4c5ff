//! The chatbot: `POST /startConversation` and `POST /message` (text or speech).

use bytes::Bytes;
use reqwest::multipart::Form;

use super::types::{BotReply, Conversation, Language};
use super::Client;
use crate::error::Result;

/// Starts a conversation (valid 24 hours).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StartConversation {
    /// The bot.
    pub bot_id: String,
    /// The user's language.
    pub language: Language,
    /// A conversation id of the caller's; omitted, the server makes one.
    pub conversation_id: Option<String>,
    /// A user id; omitted, the conversation id.
    pub user_id: Option<String>,
    /// The platform; omitted, `API`.
    pub platform: Option<String>,
}

impl StartConversation {
    /// A request for `bot_id` in `language`.
    pub fn new(bot_id: impl Into<String>, language: Language) -> Self {
        StartConversation {
            bot_id: bot_id.into(),
            language,
            conversation_id: None,
            user_id: None,
            platform: None,
        }
    }
}

/// What the user says.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MessageContent {
    /// A text message.
    Text(String),
    /// A spoken message: the encoded audio, its file name and MIME type.
    Speech {
        /// The encoded audio.
        audio: Bytes,
        /// Its file name.
        file_name: String,
        /// Its MIME type.
        mime: String,
    },
}

/// How the bot should answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ResponseType {
    /// Text only. The default.
    #[default]
    Text,
    /// Text and a URL to speech.
    Speech,
}

/// A message to the bot.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MessageRequest {
    /// The bot.
    pub bot_id: String,
    /// The language.
    pub language: Language,
    /// The conversation.
    pub conversation_id: String,
    /// What the user says.
    pub content: MessageContent,
    /// How the bot should answer.
    pub response: ResponseType,
}

impl MessageRequest {
    /// A text message in a conversation, answered in text.
    pub fn text(
        bot_id: impl Into<String>,
        language: Language,
        conversation_id: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        MessageRequest {
            bot_id: bot_id.into(),
            language,
            conversation_id: conversation_id.into(),
            content: MessageContent::Text(text.into()),
            response: ResponseType::Text,
        }
    }

    /// A spoken message in a conversation, answered in text.
    pub fn speech(
        bot_id: impl Into<String>,
        language: Language,
        conversation_id: impl Into<String>,
        audio: impl Into<Bytes>,
        file_name: impl Into<String>,
    ) -> Self {
        let file_name = file_name.into();
        MessageRequest {
            bot_id: bot_id.into(),
            language,
            conversation_id: conversation_id.into(),
            content: MessageContent::Speech {
                audio: audio.into(),
                mime: super::sync::mime_for(&file_name).to_string(),
                file_name,
            },
            response: ResponseType::Text,
        }
    }

    /// Sets the response type.
    #[must_use]
    pub fn respond_with(mut self, r: ResponseType) -> Self {
        self.response = r;
        self
    }
}

impl Client {
    /// `POST /startConversation`.
    pub async fn start_conversation(&self, req: &StartConversation) -> Result<Conversation> {
        const EP: &str = "POST /startConversation";
        let url = self.url("/startConversation");
        self.call_json(EP, true, |http| {
            let mut f: Vec<(&str, &str)> = vec![
                ("BotID", req.bot_id.as_str()),
                ("LanguageCode", req.language.tag()),
            ];
            if let Some(c) = &req.conversation_id {
                f.push(("ConversationID", c));
            }
            if let Some(u) = &req.user_id {
                f.push(("UserID", u));
            }
            if let Some(p) = &req.platform {
                f.push(("Platform", p));
            }
            Ok(http.post(&url).form(&f))
        })
        .await
    }

    /// `POST /message`.
    pub async fn message(&self, req: &MessageRequest) -> Result<BotReply> {
        const EP: &str = "POST /message";
        let url = self.url("/message");
        self.call_json(EP, true, |http| {
            let mut form = Form::new()
                .text("BotID", req.bot_id.clone())
                .text("LanguageCode", req.language.tag().to_string())
                .text("ConversationID", req.conversation_id.clone())
                .text(
                    "ResponseType",
                    match req.response {
                        ResponseType::Text => "text",
                        ResponseType::Speech => "speech",
                    },
                );
            form = match &req.content {
                MessageContent::Text(t) => {
                    form.text("MessageType", "text").text("TextMsg", t.clone())
                }
                MessageContent::Speech {
                    audio,
                    file_name,
                    mime,
                } => form.text("MessageType", "speech").part(
                    "SpeechFile",
                    super::sync::file_part(audio, file_name, mime)?,
                ),
            };
            Ok(http.post(&url).multipart(form))
        })
        .await
    }
}
