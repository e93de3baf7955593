-- Jobs and batches belong to the tenant (token name) that submitted them; older rows to none.
-- IF NOT EXISTS: a store that a pre-migration coordinator already gave the column adopts it.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE batches ADD COLUMN IF NOT EXISTS tenant TEXT NOT NULL DEFAULT '';
