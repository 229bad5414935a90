-- The event-driven services: consumer offsets, idempotency records, dead letters,
-- notifications, the audit log, and the place of a task in its series.
ALTER TABLE tasks ADD COLUMN occurrence BIGINT NOT NULL DEFAULT 1;
-- The next occurrence of a series is created exactly once.
CREATE UNIQUE INDEX tasks_series_occurrence ON tasks (series_id, occurrence) WHERE series_id IS NOT NULL;

CREATE TABLE consumer_offsets (
    consumer   TEXT PRIMARY KEY,
    position   BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Written in the same transaction as a handler's effect: an event is handled once per consumer.
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE dead_letters (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer   TEXT NOT NULL,
    position   BIGINT NOT NULL,
    event_id   TEXT NOT NULL,
    type       TEXT NOT NULL,
    error      TEXT NOT NULL,
    attempts   BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE notifications (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    task_id    TEXT,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    read_at    BIGINT
);
CREATE INDEX notifications_by_user ON notifications (user_id, created_at, id);

-- Append-only, partitioned by month of `occurred_at` (microseconds); the audit consumer
-- creates each month's partition before writing to it. `id` is the event's log position,
-- so a replay rebuilds the log identically.
CREATE TABLE audit_log (
    id          BIGINT NOT NULL,
    event_id    TEXT NOT NULL,
    type        TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    task_id     TEXT,
    occurred_at BIGINT NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (id, occurred_at),
    UNIQUE (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX audit_by_user ON audit_log (user_id, id);
CREATE INDEX audit_by_task ON audit_log (task_id, id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
