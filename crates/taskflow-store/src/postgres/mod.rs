//! The PostgreSQL adapter.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

/// Tasks, users and the event log in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// The cause of a failed connection in a few words: the server's own message (`database
/// "x" does not exist`), or the operating system's (`Connection refused`).
fn connect_error(e: sqlx::Error) -> crate::StoreError {
    let text = match &e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Tls(t) => format!("TLS: {t}"),
        other => other.to_string(),
    };
    crate::StoreError::Connect(text)
}

impl PgStore {
    /// Connects to `postgres://…`; fails within seconds when the server is unreachable.
    pub async fn open(url: &str) -> crate::Result<Self> {
        use sqlx::{ConnectOptions as _, Connection as _};
        // One connection first: its error names the cause (connection refused, no such
        // database, wrong password), where the pool would only say that it timed out.
        let options: sqlx::postgres::PgConnectOptions = url.parse()?;
        let first = tokio::time::timeout(Duration::from_secs(5), options.connect())
            .await
            .map_err(|_| crate::StoreError::Connect("no answer within 5 s".into()))?
            .map_err(connect_error)?;
        let _ = first.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    /// Every read goes through sqlx here.
    pub(crate) fn direct(&self) -> Option<&crate::sqlite::Direct> {
        None
    }

    /// Every write goes through sqlx here.
    pub(crate) fn jobs(&self) -> Option<&crate::sqlite::Writer> {
        None
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
    /// Locks the row a change reads, so no other change lands between its read and write.
    pub(super) const FOR_UPDATE: &str = " FOR UPDATE";
    /// Two instances claiming due reminders take different rows.
    pub(super) const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";
    /// Positions come from an identity column, handed out at insert time, not at commit: a
    /// reader may see position 7 before 6 commits. A gap is final once every transaction that
    /// was running when it was seen has ended ([`SETTLED`]).
    pub(super) const SNAPSHOT: Option<&str> = Some("SELECT pg_current_snapshot()::text");
    pub(super) const SETTLED: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= pg_snapshot_xmax(CAST(? AS pg_snapshot))";
    /// Empties the audit log at once: TRUNCATE does not fire the row triggers that keep the
    /// log append-only.
    pub(super) const AUDIT_RESET: Option<&str> = Some("TRUNCATE audit_log");
    /// Lifts and restores the guard against updates and deletes (on every partition), around
    /// a partial reset.
    pub(super) const AUDIT_UNGUARD: &str = "DROP TRIGGER audit_log_no_change ON audit_log";
    pub(super) const AUDIT_GUARD: &str = "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE \
        ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()";

    /// The statement creating the month's partition `occurred_at` (µs) falls in.
    pub(super) fn audit_partition(occurred_at: i64) -> Option<String> {
        use chrono::{Datelike as _, NaiveDate};
        let t = chrono::DateTime::from_timestamp_micros(occurred_at)?;
        let first = NaiveDate::from_ymd_opt(t.year(), t.month(), 1)?;
        let next = first.checked_add_months(chrono::Months::new(1))?;
        let micros = |d: NaiveDate| {
            d.and_hms_opt(0, 0, 0)
                .map(|x| x.and_utc().timestamp_micros())
        };
        Some(format!(
            "CREATE TABLE IF NOT EXISTS audit_log_{:04}_{:02} PARTITION OF audit_log FOR VALUES FROM ({}) TO ({})",
            first.year(),
            first.month(),
            micros(first)?,
            micros(next)?
        ))
    }
    /// Two instances starting together migrate one after the other.
    pub(super) const MIGRATION_LOCK: Option<&str> = Some("SELECT pg_advisory_xact_lock(7294561)");
    /// Row locks keep concurrent units apart; a plain BEGIN is enough.
    pub(super) const BEGIN_UNIT: Option<&str> = None;
    /// PostgreSQL is backed up with its own tools (pg_dump, base backups).
    pub(super) const BACKUP: Option<&str> = None;
    pub(super) const ON_CLOSE: Option<&str> = None;
    pub(super) const FTS_CONDITION: &str = "t.search @@ plainto_tsquery('simple', ?)";

    /// `?` placeholders become `$1`, `$2`, …
    pub(super) fn sql(s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 16);
        let mut n = 0;
        for c in s.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }

    pub(super) fn fts_query(words: &[String]) -> String {
        words.join(" ")
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn placeholders_are_numbered_in_order() {
            assert_eq!(
                super::sql("a = ? AND b IN (?, ?)"),
                "a = $1 AND b IN ($2, $3)"
            );
        }
    }
}

crate::shared::impl_store!(PgStore, sqlx::Postgres, "postgres");
