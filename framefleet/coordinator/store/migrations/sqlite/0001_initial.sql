-- The job table as it was before versioned migrations. IF NOT EXISTS: a store created by
-- the old create-if-missing path adopts this version without change.
CREATE TABLE IF NOT EXISTS jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    state            TEXT NOT NULL,
    spec             BLOB NOT NULL,
    content_key      TEXT NOT NULL,
    output_url       TEXT NOT NULL,
    frames_total     INTEGER NOT NULL,
    priority         INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    created_at       REAL NOT NULL,
    available_at     REAL NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    fencing_token    INTEGER NOT NULL DEFAULT 0,
    lease_expires_at REAL,
    frames_done      INTEGER NOT NULL DEFAULT 0,
    output_bytes     INTEGER NOT NULL DEFAULT 0,
    error_class      TEXT,
    error_message    TEXT,
    started_at       REAL,
    finished_at      REAL,
    cache_hit        INTEGER NOT NULL DEFAULT 0,
    source_key       TEXT NOT NULL DEFAULT '',
    batch_id         TEXT,
    row_key          TEXT,
    fair_rank        INTEGER NOT NULL DEFAULT 0,
    trace_context    TEXT NOT NULL DEFAULT '',
    upload_id        TEXT,
    interruptions    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, priority DESC, fair_rank, seq);
CREATE INDEX IF NOT EXISTS jobs_batch ON jobs (batch_id, state);
CREATE TABLE IF NOT EXISTS sources (
    key    TEXT PRIMARY KEY,
    source BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    created_at   REAL NOT NULL,
    finished_at  REAL,
    digest       TEXT,
    manifest_url TEXT
);
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (state, lease_expires_at);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (lease_owner) WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS jobs_output ON jobs (output_url, state);
