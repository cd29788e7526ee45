-- 0006_shard_source.sql: what a shard was cut from, so that `merge` refuses shards of different test sets.
--
-- A shard (`audit --shard K/N`) records the full image list it selected its images from (after --limit,
-- before sharding): its size and a sha256 over the sorted image ids (files that cannot be read count by
-- name), and the --limit it was given. Shards of one run must agree on these and on data_root.
-- NULL for runs that are not shards and for shards written before this migration.
ALTER TABLE runs ADD COLUMN images_listed INTEGER CHECK (images_listed >= 0);
ALTER TABLE runs ADD COLUMN image_list_sha256 TEXT;
ALTER TABLE runs ADD COLUMN image_limit INTEGER CHECK (image_limit >= 0);
