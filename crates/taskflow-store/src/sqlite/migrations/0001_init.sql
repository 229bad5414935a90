-- taskflow schema, SQLite. Instants are microseconds since the Unix epoch (UTC).
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    task_seq      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- `seq` is the stable rowid the full-text index refers to.
CREATE TABLE tasks (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    user_id           TEXT NOT NULL REFERENCES users(id),
    number            INTEGER NOT NULL,
    title             TEXT NOT NULL,
    title_key         TEXT NOT NULL,
    description       TEXT NOT NULL,
    status            TEXT NOT NULL,
    priority          TEXT NOT NULL,
    priority_pos      INTEGER NOT NULL,
    tags              TEXT NOT NULL,
    due_at            INTEGER,
    due_date          TEXT,
    due_sort          INTEGER,
    due_last          INTEGER,
    recurrence        TEXT,
    recurrence_anchor TEXT NOT NULL,
    series_id         TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    completed_at      INTEGER,
    version           INTEGER NOT NULL,
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
    ordinal        INTEGER NOT NULL,
    fire_at        INTEGER NOT NULL,
    before_minutes INTEGER,
    status         TEXT NOT NULL
);
CREATE INDEX reminders_by_task ON reminders (task_id, ordinal);
CREATE INDEX reminders_due ON reminders (fire_at) WHERE status = 'pending';

-- The transactional outbox; on the embedded bus it is the event log itself.
CREATE TABLE events (
    position     INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    topic        TEXT NOT NULL,
    type         TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    subject      TEXT,
    payload      TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX events_by_user ON events (user_id, position);

CREATE VIRTUAL TABLE tasks_fts USING fts5(
    title, description, content='tasks', content_rowid='seq', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER tasks_fts_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO tasks_fts (rowid, title, description) VALUES (new.seq, new.title, new.description);
END;
CREATE TRIGGER tasks_fts_delete AFTER DELETE ON tasks BEGIN
    INSERT INTO tasks_fts (tasks_fts, rowid, title, description) VALUES ('delete', old.seq, old.title, old.description);
END;
CREATE TRIGGER tasks_fts_update AFTER UPDATE OF title, description ON tasks BEGIN
    INSERT INTO tasks_fts (tasks_fts, rowid, title, description) VALUES ('delete', old.seq, old.title, old.description);
    INSERT INTO tasks_fts (rowid, title, description) VALUES (new.seq, new.title, new.description);
END;
