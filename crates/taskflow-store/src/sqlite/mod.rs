//! The SQLite adapter: one writer connection (SQLite serialises writes anyway; one
//! connection avoids lock contention) and a pool of read-only readers, in WAL mode. The reads
//! every request makes run on direct readers instead (see `direct`), and the task writes on
//! a writer thread that commits them in groups (see `writer`).

mod direct;
mod writer;

pub(crate) use direct::Direct;
pub(crate) use writer::Writer;

use std::{str::FromStr, time::Duration};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// When a commit waits for the disk. `FULL` syncs the log at every commit, so an
/// acknowledged write survives a power cut too, not only a crash of the process (`NORMAL` in
/// WAL mode). Commits are grouped (see `writer`), so the sync is paid once per group: it cost
/// 3–18 % of the create and update throughput when measured (bench/RESULTS.md).
const SYNCHRONOUS: &str = "FULL";

/// Tasks, users and the event log in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// The hot reads as one job each; none for a database in memory, which other
    /// connections cannot open.
    direct: Option<Direct>,
    /// The task writes, committed in groups; none for a database in memory.
    jobs: Option<Writer>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `sqlite:PATH`.
    pub async fn open(url: &str) -> crate::Result<Self> {
        let base = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::from_str(SYNCHRONOUS)?)
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
            .connect_with(base.clone().read_only(true))
            .await?;
        let file = base.get_filename();
        let (direct, jobs) = if file.as_os_str().is_empty()
            || file.as_os_str() == ":memory:"
            || file.to_string_lossy().starts_with("file:")
        {
            (None, None)
        } else {
            (
                Some(Direct::open(file, readers as usize)?),
                Some(Writer::open(file, writer.clone(), SYNCHRONOUS)?),
            )
        };
        Ok(Self {
            writer,
            reader,
            direct,
            jobs,
        })
    }

    pub(crate) fn direct(&self) -> Option<&Direct> {
        self.direct.as_ref()
    }

    pub(crate) fn jobs(&self) -> Option<&Writer> {
        self.jobs.as_ref()
    }

    /// A migrated store on a new file in a temporary directory (kept while the directory
    /// lives), and the file's path.
    #[cfg(test)]
    pub(crate) async fn temporary() -> (tempfile::TempDir, std::path::PathBuf, Self) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("taskflow.db");
        let store = Self::open(&format!("sqlite:{}", path.display()))
            .await
            .expect("a store on a new file");
        crate::Store::migrate(&store).await.expect("migrations");
        (dir, path, store)
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }
}

mod dialect {
    pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
        (1, "init", include_str!("migrations/0001_init.sql")),
        (2, "services", include_str!("migrations/0002_services.sql")),
        (
            3,
            "conversations",
            include_str!("migrations/0003_conversations.sql"),
        ),
        (4, "leases", include_str!("migrations/0004_leases.sql")),
    ];
    pub(super) const MIGRATION_LOCK: Option<&str> = None;
    /// A unit of work takes the write lock at once: a read first and a write later could
    /// otherwise find the snapshot stale when another process wrote meanwhile.
    pub(super) const BEGIN_UNIT: Option<&str> = Some("BEGIN IMMEDIATE");
    /// A consistent copy while readers and the writer go on.
    pub(super) const BACKUP: Option<&str> = Some("VACUUM INTO ?");
    /// Everything in the WAL into the database file, and the WAL emptied.
    pub(super) const ON_CLOSE: Option<&str> = Some("PRAGMA wal_checkpoint(TRUNCATE)");
    /// Changes are serialised by the one writer: nothing to lock.
    pub(super) const FOR_UPDATE: &str = "";
    /// One writer: a claimed row cannot be claimed by anyone else meanwhile.
    pub(super) const SKIP_LOCKED: &str = "";
    /// Positions are handed out by the one writer in commit order: a gap is never filled
    /// later, so readers need no snapshot.
    pub(super) const SNAPSHOT: Option<&str> = None;
    pub(super) const SETTLED: &str = "SELECT 1";
    /// No statement empties the audit log past its guard: a reset deletes between
    /// [`AUDIT_UNGUARD`] and [`AUDIT_GUARD`].
    pub(super) const AUDIT_RESET: Option<&str> = None;
    /// Lifts and restores the guard against deletes, around a reset.
    pub(super) const AUDIT_UNGUARD: &str = "DROP TRIGGER audit_log_no_delete";
    pub(super) const AUDIT_GUARD: &str = "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log \
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END";

    /// No partitions on SQLite.
    pub(super) fn audit_partition(_occurred_at: i64) -> Option<String> {
        None
    }
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
