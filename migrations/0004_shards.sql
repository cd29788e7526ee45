-- 0004_shards.sql: sharded audits (`audit --shard K/N`) and their merge (`tumor-audit merge`).
--
-- runs.shard_count / runs.shard_index say what a run is:
--   both NULL                       a plain run over the whole test set
--   shard_index K, shard_count N    shard K of N: the images whose id falls in shard K (see src/shard.rs)
--   shard_index NULL, shard_count N a run merged from shards of N; run_shards lists what went in
ALTER TABLE runs ADD COLUMN shard_count INTEGER CHECK (shard_count >= 1);
ALTER TABLE runs ADD COLUMN shard_index INTEGER
    CHECK (shard_index IS NULL OR (shard_index >= 0 AND shard_count IS NOT NULL AND shard_index < shard_count));

-- One row per shard merged into a run: the shard run as it was when it was merged. A merged run is
-- 'finished' only when all shard_count shards are here and every one of them was 'finished'.
CREATE TABLE run_shards (
    run_id        TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    shard_index   INTEGER NOT NULL CHECK (shard_index >= 0),
    shard_count   INTEGER NOT NULL CHECK (shard_index < shard_count),
    status        TEXT NOT NULL,     -- the shard run's status
    images_total  INTEGER NOT NULL,  -- images in the shard
    images_done   INTEGER NOT NULL,
    images_failed INTEGER NOT NULL,  -- run_images 'failed' + files that failed before they had an id
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    source        TEXT NOT NULL,     -- the shard database file as given to merge
    PRIMARY KEY (run_id, shard_index)
) STRICT;
