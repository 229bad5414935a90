//! Units of work: several use cases, and what the caller writes beside them, as one outcome.
//! The chat uses one per turn, so the tasks a message changes and the conversation's record
//! of the message are committed together or not at all.

use std::sync::{Arc, Mutex};

use taskflow_store::Unit;

use crate::{App, AppError};

/// Events written inside a unit, announced once it commits.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    written: Mutex<Vec<(&'static str, i64)>>,
}

impl Pending {
    pub(crate) fn written(&self, kind: &'static str, position: i64) {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((kind, position));
    }
}

/// An open unit of work. Its [`UnitOfWork::app`] runs task use cases inside it; dropped
/// without [`UnitOfWork::commit`], everything it wrote is rolled back. On SQLite it holds the
/// one writer: never keep it open across a wait on something outside (a model call).
#[derive(Debug)]
pub struct UnitOfWork {
    /// The use cases inside the unit (`app.unit` holds what they wrote).
    app: App,
    unit: Arc<dyn Unit>,
}

impl App {
    /// Opens a unit of work.
    pub async fn begin(&self) -> Result<UnitOfWork, AppError> {
        let unit = self.store.begin().await?;
        let mut app = self.clone();
        app.tasks = unit.clone();
        app.chats = unit.clone();
        app.unit = Some(Arc::new(Pending::default()));
        Ok(UnitOfWork { app, unit })
    }
}

impl UnitOfWork {
    /// The use cases, inside this unit.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Makes everything the unit wrote durable at once, then wakes the bus's readers.
    pub async fn commit(self) -> Result<(), AppError> {
        self.unit.commit().await?;
        if let Some(pending) = &self.app.unit {
            let written =
                std::mem::take(&mut *pending.written.lock().unwrap_or_else(|e| e.into_inner()));
            for (kind, position) in written {
                self.app.announce(kind, position);
            }
        }
        Ok(())
    }
}
