//! The PostgreSQL adapter.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

/// Tasks, users and the event log in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `postgres://…`; fails within seconds when the server is unreachable.
    pub async fn open(url: &str) -> crate::Result<Self> {
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
}

mod dialect {
    pub(super) const MIGRATIONS: &[(i64, &str, &str)] =
        &[(1, "init", include_str!("migrations/0001_init.sql"))];
    /// Two instances starting together migrate one after the other.
    pub(super) const MIGRATION_LOCK: Option<&str> = Some("SELECT pg_advisory_xact_lock(7294561)");
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
