-- The event-driven services: consumer offsets, idempotency records, dead letters,
-- notifications, the audit log, and the place of a task in its series.
ALTER TABLE tasks ADD COLUMN occurrence INTEGER NOT NULL DEFAULT 1;
-- The next occurrence of a series is created exactly once.
CREATE UNIQUE INDEX tasks_series_occurrence ON tasks (series_id, occurrence) WHERE series_id IS NOT NULL;

CREATE TABLE consumer_offsets (
    consumer   TEXT PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Written in the same transaction as a handler's effect: an event is handled once per consumer.
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer   TEXT NOT NULL,
    position   INTEGER NOT NULL,
    event_id   TEXT NOT NULL,
    type       TEXT NOT NULL,
    error      TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE notifications (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    task_id    TEXT,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    read_at    INTEGER
);
CREATE INDEX notifications_by_user ON notifications (user_id, created_at, id);

-- Append-only: `id` is the event's log position, so a replay rebuilds it identically.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    task_id     TEXT,
    occurred_at INTEGER NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX audit_by_user ON audit_log (user_id, id);
CREATE INDEX audit_by_task ON audit_log (task_id, id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
