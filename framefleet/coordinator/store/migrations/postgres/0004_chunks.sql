-- Chunked jobs: a parent job (chunks > 0) is split into chunk rows (parent_id, chunk_index,
-- frames [first_frame, end_frame)) that are leased like any job. The parent counts its
-- chunks that succeeded; while they run it is leased to nobody, then queued as the assembly.
ALTER TABLE jobs ADD COLUMN parent_id TEXT;
ALTER TABLE jobs ADD COLUMN chunk_index INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN first_frame INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN end_frame INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN chunks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN chunks_done INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_parent ON jobs (parent_id, chunk_index) WHERE parent_id IS NOT NULL;
