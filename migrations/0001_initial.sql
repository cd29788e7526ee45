-- 0001_initial.sql: the tables of a tumor-audit database (runs, images and the per-run results).
-- Floats are REAL; a NULL value means "not applicable" (or a NaN the caller produced).
-- Times are UTC ISO-8601 text, e.g. 2026-11-25T02:14:07.123Z.

CREATE TABLE runs (
    run_id          TEXT PRIMARY KEY,
    started_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at     TEXT,
    status          TEXT NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
    config_yaml     TEXT NOT NULL,
    model_path      TEXT NOT NULL,
    model_sha256    TEXT NOT NULL,
    data_root       TEXT NOT NULL,
    tool_version    TEXT NOT NULL,
    device          TEXT NOT NULL,
    seed            INTEGER NOT NULL,
    profile         TEXT NOT NULL,
    methods         TEXT NOT NULL CHECK (json_valid(methods) AND json_type(methods) = 'array'),
    baseline_value  REAL,
    reference_value REAL,
    images_total    INTEGER NOT NULL,
    notes           TEXT
) STRICT;

-- One row per distinct file content; path and label are those last seen.
-- width .. mask_fallback are NULL for a file that never decoded.
CREATE TABLE images (
    image_id            TEXT PRIMARY KEY,   -- sha256 of the file bytes, hex
    path                TEXT NOT NULL,
    label               TEXT,               -- class name, NULL when unlabelled
    width               INTEGER,
    height              INTEGER,
    brain_area_fraction REAL,
    mask_fallback       INTEGER CHECK (mask_fallback IN (0, 1))
) STRICT;

-- One row per image finished in a run, written in the same transaction as its results:
-- a resumed run skips the images whose status is 'done'.
CREATE TABLE run_images (
    run_id   TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    image_id TEXT NOT NULL REFERENCES images (image_id),
    status   TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    seconds  REAL,
    PRIMARY KEY (run_id, image_id)
) STRICT;
CREATE INDEX run_images_image ON run_images (image_id);

CREATE TABLE predictions (
    run_id        TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    image_id      TEXT NOT NULL REFERENCES images (image_id),
    predicted     TEXT NOT NULL,
    confidence    REAL,
    probabilities TEXT NOT NULL CHECK (json_valid(probabilities)),  -- JSON object class -> probability
    target        TEXT NOT NULL,                                    -- the class the maps explain
    correct       INTEGER CHECK (correct IN (0, 1)),                -- NULL when the image has no label
    PRIMARY KEY (run_id, image_id)
) STRICT;

CREATE TABLE attribution_metrics (
    run_id               TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    image_id             TEXT NOT NULL REFERENCES images (image_id),
    method               TEXT NOT NULL,
    mass_inside          REAL,
    mass_background      REAL,
    mass_border          REAL,
    concentration_inside REAL,
    concentration_border REAL,
    top1_inside          REAL,
    top5_inside          REAL,
    gini                 REAL,
    empty                INTEGER NOT NULL CHECK (empty IN (0, 1)),
    completeness_error   REAL,      -- methods with a completeness property only
    segments             INTEGER,   -- segment-based methods only
    seconds              REAL,
    PRIMARY KEY (run_id, image_id, method)
) STRICT;
CREATE INDEX attribution_metrics_run_method ON attribution_metrics (run_id, method);

CREATE TABLE agreement (
    run_id    TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    image_id  TEXT NOT NULL REFERENCES images (image_id),
    method_a  TEXT NOT NULL,
    method_b  TEXT NOT NULL,
    spearman  REAL,
    iou_top10 REAL,
    PRIMARY KEY (run_id, image_id, method_a, method_b)
) STRICT;
CREATE INDEX agreement_run_methods ON agreement (run_id, method_a, method_b);

-- A log of what went wrong. image_id is NULL for a file that failed before it had an id, and is
-- deliberately not a foreign key: a file may fail before it has a row in images.
CREATE TABLE errors (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id   TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    image_id TEXT,
    path     TEXT NOT NULL,
    stage    TEXT NOT NULL
             CHECK (stage IN ('decode', 'predict', 'metrics', 'write') OR stage LIKE 'attribution:_%'),
    message  TEXT NOT NULL,
    at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
CREATE INDEX errors_run_stage ON errors (run_id, stage);
CREATE INDEX errors_run_image ON errors (run_id, image_id);

-- Downsampled attribution maps; 'f16le' = row-major little-endian IEEE half floats.
CREATE TABLE maps (
    run_id   TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    image_id TEXT NOT NULL REFERENCES images (image_id),
    method   TEXT NOT NULL,
    width    INTEGER NOT NULL CHECK (width > 0),
    height   INTEGER NOT NULL CHECK (height > 0),
    encoding TEXT NOT NULL DEFAULT 'f16le',
    data     BLOB NOT NULL,
    CHECK (encoding <> 'f16le' OR length(data) = 2 * width * height),
    PRIMARY KEY (run_id, image_id, method)
) STRICT;
