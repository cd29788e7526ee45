-- 0007_verdicts.sql: verdicts a nightly gate can trust (issue 15): the reproducibility of each stochastic
-- map, the shortcut check of a run (candidate regions found in the class's mean maps, their causal test
-- on the model, each method's trust, calibrated flags) and one verdict per run.

-- SmoothGrad / LIME / Kernel SHAP: the split-half reproducibility of the map (predicted Spearman
-- correlation between two maps of the image drawn with independent seeds); NULL for the other methods.
ALTER TABLE attribution_metrics ADD COLUMN reproducibility REAL;

-- One shortcut check per run (written by `audit` at the end; a new check replaces the old one).
-- verdict: 'shortcut' (at least one region confirmed on the model) or 'no_shortcut'; summary: the
-- verdict as one sentence. reference_run: the run whose flag thresholds and mean maps were the
-- baseline (NULL: the run's own distribution and shifted mean maps).
CREATE TABLE shortcut_checks (
    run_id          TEXT PRIMARY KEY REFERENCES runs (run_id) ON DELETE CASCADE,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    reference_run   TEXT,
    images          INTEGER NOT NULL CHECK (images >= 0),   -- images with a prediction and maps
    verdict         TEXT NOT NULL CHECK (verdict IN ('shortcut', 'no_shortcut')),
    summary         TEXT NOT NULL,
    flagged_images  INTEGER NOT NULL CHECK (flagged_images >= 0),
    min_reproducibility REAL NOT NULL,
    params          TEXT NOT NULL CHECK (json_valid(params)),   -- the check's parameters
    forward_passes  INTEGER NOT NULL CHECK (forward_passes >= 0),
    seconds         REAL
) STRICT;

-- Per run x method: whether its maps may raise flags, and why not; its calibrated thresholds.
-- trust_source: where the faithfulness figures come from ('faithfulness' = the run's own curves,
-- 'probe' = the check's own deletion curves on a sample, NULL = none).
CREATE TABLE shortcut_methods (
    run_id               TEXT NOT NULL REFERENCES shortcut_checks (run_id) ON DELETE CASCADE,
    method               TEXT NOT NULL,
    trusted              INTEGER NOT NULL CHECK (trusted IN (0, 1)),
    reason               TEXT,            -- why untrusted (NULL when trusted)
    trust_source         TEXT,
    trust_images         INTEGER,
    deletion_auc         REAL,
    random_deletion_auc  REAL,
    sanity_verdict       TEXT,            -- from `tumor-audit sanity`, when run before
    median_reproducibility REAL,          -- stochastic methods
    threshold_background REAL,            -- flag when above (calibrated per method)
    threshold_border     REAL,
    threshold_source     TEXT NOT NULL,   -- 'run' or 'reference:<run>'
    flagged_images       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, method)
) STRICT;

-- Candidate shortcut regions and their causal test. The region is a mask on the stored maps' grid
-- (grid x grid cells, one byte per cell, row-major) with its bounding box as fractions of the image
-- side [x0, x1) x [y0, y1). class = the class whose mean maps hold the region; methods = the methods
-- whose mean map found it (JSON array); lift = the mean map's mass in the region over the baseline's.
-- Occlusion: the region filled from its surroundings in `class` images -> share no longer predicted
-- `class`; paste: the region copied from `class` images into other images -> share now predicted
-- `class`; control_*: the same tests with the region moved to a random place of the image. Rates with
-- 95% Wilson intervals. verdict: 'confirmed' (a causal effect of at least the minimum flip rate,
-- significantly above the control), 'artefact' (the model does not depend on it: both rates' upper
-- bounds below the minimum), 'not_significant' (neither).
CREATE TABLE shortcut_regions (
    run_id          TEXT NOT NULL REFERENCES shortcut_checks (run_id) ON DELETE CASCADE,
    region          INTEGER NOT NULL CHECK (region >= 1),
    class           TEXT NOT NULL,
    methods         TEXT NOT NULL CHECK (json_valid(methods) AND json_type(methods) = 'array'),
    x0              REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,
    area            REAL NOT NULL,   -- fraction of the image
    grid            INTEGER NOT NULL CHECK (grid > 0),
    mask            BLOB NOT NULL CHECK (length(mask) = grid * grid),
    mass_share      REAL,            -- share of the class's mean |map| inside (best method)
    lift            REAL,
    occluded_images INTEGER NOT NULL, occlusion_flips INTEGER NOT NULL,
    occlusion_rate  REAL, occlusion_low REAL, occlusion_high REAL,
    occlusion_drop  REAL,            -- mean fall of the class's probability
    pasted_images   INTEGER NOT NULL, paste_flips INTEGER NOT NULL,
    paste_rate      REAL, paste_low REAL, paste_high REAL,
    paste_gain      REAL,            -- mean rise of the class's probability
    control_occlusion_rate REAL, control_occlusion_high REAL,
    control_paste_rate     REAL, control_paste_high     REAL,
    verdict         TEXT NOT NULL CHECK (verdict IN ('confirmed', 'artefact', 'not_significant')),
    PRIMARY KEY (run_id, region)
) STRICT;

-- Per run x image x method: a calibrated flag raised by a trusted, reproducible map.
CREATE TABLE shortcut_flags (
    run_id    TEXT NOT NULL REFERENCES shortcut_checks (run_id) ON DELETE CASCADE,
    image_id  TEXT NOT NULL REFERENCES images (image_id),
    method    TEXT NOT NULL,
    reason    TEXT NOT NULL CHECK (reason IN ('background', 'border')),
    value     REAL NOT NULL,
    threshold REAL NOT NULL,
    PRIMARY KEY (run_id, image_id, method, reason)
) STRICT;

-- The regions in reading order (confirmed first, strongest effect first), each with its sentence.
CREATE VIEW v_shortcuts AS
SELECT
    r.run_id,
    r.region,
    r.class,
    r.verdict,
    r.methods,
    r.x0, r.y0, r.x1, r.y1, r.area,
    r.lift,
    r.occluded_images, r.occlusion_rate, r.occlusion_low, r.occlusion_high, r.occlusion_drop,
    r.pasted_images, r.paste_rate, r.paste_low, r.paste_high, r.paste_gain,
    r.control_occlusion_rate, r.control_paste_rate,
    printf('region %d (x %.2f-%.2f, y %.2f-%.2f of the image) for class %s: occluding it flips %.0f%% of %d %s predictions (control %.0f%%), pasting it flips %.0f%% of %d others (control %.0f%%): %s',
           r.region, r.x0, r.x1, r.y0, r.y1, r.class,
           100.0 * coalesce(r.occlusion_rate, 0), r.occluded_images, r.class, 100.0 * coalesce(r.control_occlusion_rate, 0),
           100.0 * coalesce(r.paste_rate, 0), r.pasted_images, 100.0 * coalesce(r.control_paste_rate, 0),
           replace(r.verdict, '_', ' ')) AS summary
FROM shortcut_regions AS r
ORDER BY r.run_id, r.verdict <> 'confirmed', max(coalesce(r.occlusion_rate, 0), coalesce(r.paste_rate, 0)) DESC, r.region;

-- One row per run: the verdict a gate reads.
CREATE VIEW v_verdict AS
SELECT
    c.run_id,
    c.verdict,
    c.summary,
    c.images,
    c.flagged_images,
    CASE WHEN c.images > 0 THEN CAST(c.flagged_images AS REAL) / c.images END AS flagged_share,
    (SELECT count(*) FROM shortcut_regions AS r WHERE r.run_id = c.run_id AND r.verdict = 'confirmed')
        AS confirmed_regions,
    (SELECT count(*) FROM shortcut_regions AS r WHERE r.run_id = c.run_id) AS candidate_regions,
    (SELECT json_group_array(m.method) FROM shortcut_methods AS m WHERE m.run_id = c.run_id AND m.trusted = 0)
        AS untrusted_methods,
    c.reference_run,
    c.forward_passes,
    c.seconds
FROM shortcut_checks AS c;
