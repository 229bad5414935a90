-- taskflow schema, PostgreSQL. Instants are microseconds since the Unix epoch (UTC).
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    task_seq      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- `seq` keeps insertion order.
CREATE TABLE tasks (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    user_id           TEXT NOT NULL REFERENCES users(id),
    number            BIGINT NOT NULL,
    title             TEXT NOT NULL,
    title_key         TEXT NOT NULL,
    description       TEXT NOT NULL,
    status            TEXT NOT NULL,
    priority          TEXT NOT NULL,
    priority_pos      BIGINT NOT NULL,
    tags              TEXT NOT NULL,
    due_at            BIGINT,
    due_date          TEXT,
    due_sort          BIGINT,
    due_last          BIGINT,
    recurrence        TEXT,
    recurrence_anchor TEXT NOT NULL,
    series_id         TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    completed_at      BIGINT,
    version           BIGINT NOT NULL,
    UNIQUE (user_id, number)
);
CREATE INDEX tasks_by_due ON tasks (user_id, (CASE WHEN due_sort IS NULL THEN 1 ELSE 0 END), COALESCE(due_sort, 0), number);
CREATE INDEX tasks_by_priority ON tasks (user_id, priority_pos, number);
CREATE INDEX tasks_by_created ON tasks (user_id, created_at, number);
CREATE INDEX tasks_by_title ON tasks (user_id, title_key, number);

CREATE TABLE task_tags (
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    tag     TEXT NOT NULL,
    PRIMARY KEY (task_id, tag)
);
CREATE INDEX task_tags_by_tag ON task_tags (user_id, tag);

CREATE TABLE reminders (
    id             TEXT PRIMARY KEY,
    task_id        TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    user_id        TEXT NOT NULL,
    ordinal        BIGINT NOT NULL,
    fire_at        BIGINT NOT NULL,
    before_minutes BIGINT,
    status         TEXT NOT NULL
);
CREATE INDEX reminders_by_task ON reminders (task_id, ordinal);
CREATE INDEX reminders_due ON reminders (fire_at) WHERE status = 'pending';

-- The transactional outbox; on the embedded bus it is the event log itself.
CREATE TABLE events (
    position     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    topic        TEXT NOT NULL,
    type         TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    subject      TEXT,
    payload      TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX events_by_user ON events (user_id, position);

-- Full-text search over title and description; 'simple' matches words as SQLite's unicode61 does.
ALTER TABLE tasks ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', title || ' ' || description)) STORED;
CREATE INDEX tasks_search ON tasks USING GIN (search);
