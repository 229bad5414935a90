//! The SQLite adapter: one writer connection (SQLite serialises writes anyway; one
//! connection avoids lock contention) and a pool of read-only readers, in WAL mode.

use std::{str::FromStr, time::Duration};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Tasks, users and the event log in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `sqlite:PATH`.
    pub async fn open(url: &str) -> crate::Result<Self> {
        let base = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-16000")
            .pragma("temp_store", "memory");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.clone().create_if_missing(true))
            .await?;
        let readers = std::thread::available_parallelism().map_or(4, |n| n.get().max(2) * 2) as u32;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.read_only(true))
            .await?;
        Ok(Self { writer, reader })
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }
}

mod dialect {
    pub(super) const MIGRATIONS: &[(i64, &str, &str)] =
        &[(1, "init", include_str!("migrations/0001_init.sql"))];
    pub(super) const MIGRATION_LOCK: Option<&str> = None;
    pub(super) const FTS_CONDITION: &str =
        "t.seq IN (SELECT rowid FROM tasks_fts WHERE tasks_fts MATCH ?)";

    pub(super) fn sql(s: &str) -> String {
        s.to_owned()
    }

    /// Every word as a quoted FTS5 string: matched literally, all required.
    pub(super) fn fts_query(words: &[String]) -> String {
        words
            .iter()
            .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

crate::shared::impl_store!(SqliteStore, sqlx::Sqlite, "sqlite");
