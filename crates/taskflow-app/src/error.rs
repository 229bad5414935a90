use taskflow_core::ValidationErrors;
use taskflow_store::StoreError;

/// Why a use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid input: {0}")]
    Validation(#[from] ValidationErrors),
    #[error("not found")]
    NotFound,
    /// `If-Match` named a version that is no longer current.
    #[error("the task was changed since version {expected}; it is now at version {current}")]
    PreconditionFailed { expected: i64, current: i64 },
    #[error("{0} is already taken")]
    Duplicate(&'static str),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    #[error("the change did not go through because of concurrent changes; try again")]
    Contended,
    /// Too much of one kind of work is already queued (password hashing); retry after this.
    #[error("the server is busy; retry in {0:?}")]
    Busy(std::time::Duration),
    #[error(transparent)]
    Store(StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AppError::NotFound,
            StoreError::Duplicate(what) => AppError::Duplicate(what),
            StoreError::InvalidCursor(m) => AppError::InvalidCursor(m),
            other => AppError::Store(other),
        }
    }
}
