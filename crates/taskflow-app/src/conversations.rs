//! Conversations with the assistant: read them back, and record each exchange. Inside a unit
//! of work the record is written in the unit's transaction, with the tasks the turn changed.

use taskflow_core::User;
use taskflow_store::{Conversation, Message};

use crate::{App, AppError};

/// The most conversations one read returns.
const MAX_CONVERSATIONS: i64 = 100;
/// The most messages of a conversation one read returns.
pub const MAX_MESSAGES: i64 = 1000;

impl App {
    /// `user`'s conversation `id`.
    pub async fn conversation(&self, user: &User, id: &str) -> Result<Conversation, AppError> {
        self.chats
            .conversation(user.id, id)
            .await?
            .ok_or(AppError::NotFound)
    }

    /// `user`'s conversations, most recent first.
    pub async fn conversations(&self, user: &User) -> Result<Vec<Conversation>, AppError> {
        Ok(self.chats.conversations(user.id, MAX_CONVERSATIONS).await?)
    }

    /// The messages of `user`'s conversation `id`, oldest first; a conversation that is not
    /// theirs is not found.
    pub async fn messages(&self, user: &User, id: &str) -> Result<Vec<Message>, AppError> {
        self.conversation(user, id).await?;
        self.history_of(user, id).await
    }

    /// The messages of a conversation known to be `user`'s, oldest first.
    pub async fn history_of(&self, user: &User, id: &str) -> Result<Vec<Message>, AppError> {
        Ok(self.chats.messages(user.id, id, MAX_MESSAGES).await?)
    }

    /// Writes the conversation (created when new) and appends `messages`, in one transaction.
    pub async fn record_exchange(
        &self,
        conversation: &Conversation,
        messages: &[Message],
    ) -> Result<(), AppError> {
        Ok(self.chats.save_exchange(conversation, messages).await?)
    }
}
