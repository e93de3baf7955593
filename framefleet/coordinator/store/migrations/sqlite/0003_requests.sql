-- Idempotent submits: the client's request id, unique per tenant among jobs submitted alone
-- and among batches. The tenant index serves scoped listing and the queued-jobs cap.
ALTER TABLE jobs ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
ALTER TABLE batches ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX jobs_request ON jobs (tenant, request_id)
    WHERE request_id <> '' AND batch_id IS NULL;
CREATE UNIQUE INDEX batches_request ON batches (tenant, request_id) WHERE request_id <> '';
CREATE INDEX jobs_tenant ON jobs (tenant, state);
