-- Jobs and batches belong to the tenant (token name) that submitted them; older rows to none.
ALTER TABLE jobs ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE batches ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
