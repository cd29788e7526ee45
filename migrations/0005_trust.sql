-- 0005_trust.sql: trust checks on the maps themselves (issue 8): faithfulness curves per image x method
-- (written by `audit` with explain.faithfulness.enabled / --faithfulness) and the cascading model
-- randomisation sanity check per run x method (written by `tumor-audit sanity`).

-- Deletion / insertion curves. method = an attribution method, or 'random' (the random pixel order,
-- the baseline every method is compared with). Curves are JSON arrays of steps + 1 scores at the
-- fractions 0, 1/steps, ..., 1 of the pixels; AUC = trapezoid rule over the fraction.
CREATE TABLE faithfulness (
    run_id          TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    image_id        TEXT NOT NULL REFERENCES images (image_id),
    method          TEXT NOT NULL,
    steps           INTEGER NOT NULL CHECK (steps > 0),
    score           TEXT NOT NULL CHECK (score IN ('probability', 'logit')),
    deletion_auc    REAL,
    insertion_auc   REAL,
    deletion_curve  TEXT NOT NULL
                    CHECK (json_valid(deletion_curve) AND json_array_length(deletion_curve) = steps + 1),
    insertion_curve TEXT NOT NULL
                    CHECK (json_valid(insertion_curve) AND json_array_length(insertion_curve) = steps + 1),
    seconds         REAL,
    PRIMARY KEY (run_id, image_id, method)
) STRICT;

-- One model-randomisation check per run (a new check of the same run replaces the old one).
-- layers: the cascade, JSON array of 'index:kind', entry s-1 = the layer stage s re-initialised.
CREATE TABLE sanity_checks (
    run_id     TEXT PRIMARY KEY REFERENCES runs (run_id) ON DELETE CASCADE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    images     INTEGER NOT NULL CHECK (images > 0),
    seed       INTEGER NOT NULL,
    threshold  REAL NOT NULL,
    stages     INTEGER NOT NULL CHECK (stages >= 0),   -- the last stage (all parametrised layers random)
    layers     TEXT NOT NULL CHECK (json_valid(layers) AND json_type(layers) = 'array'),
    methods    TEXT NOT NULL CHECK (json_valid(methods) AND json_type(methods) = 'array'),
    seconds    REAL
) STRICT;

-- Per image x method x stage: Spearman rank correlation of the stage's map with the stage-0 map,
-- of the absolute maps and of the signed maps; empty = the stage's map is all zero.
CREATE TABLE sanity_stages (
    run_id          TEXT NOT NULL REFERENCES sanity_checks (run_id) ON DELETE CASCADE,
    image_id        TEXT NOT NULL REFERENCES images (image_id),
    method          TEXT NOT NULL,
    stage           INTEGER NOT NULL CHECK (stage >= 0),
    layer           TEXT,   -- the layer re-initialised at this stage; NULL at stage 0
    spearman_abs    REAL,
    spearman_signed REAL,
    empty           INTEGER NOT NULL CHECK (empty IN (0, 1)),
    PRIMARY KEY (run_id, image_id, method, stage)
) STRICT;

-- The other-class check, on the trained model: the map explaining class `other` compared with the map
-- explaining `target` (the class the run's maps explain).
CREATE TABLE sanity_other_class (
    run_id          TEXT NOT NULL REFERENCES sanity_checks (run_id) ON DELETE CASCADE,
    image_id        TEXT NOT NULL REFERENCES images (image_id),
    method          TEXT NOT NULL,
    target          TEXT NOT NULL,
    other           TEXT NOT NULL,
    spearman_abs    REAL,
    spearman_signed REAL,
    empty           INTEGER NOT NULL CHECK (empty IN (0, 1)),
    PRIMARY KEY (run_id, image_id, method, other)
) STRICT;

-- Per run x image x method: the method's AUCs next to the random baseline's, with label and prediction.
CREATE VIEW v_faithfulness_image AS
SELECT
    f.run_id,
    f.image_id,
    i.path,
    i.label,
    p.predicted,
    p.correct,
    f.method,
    f.steps,
    f.score,
    f.deletion_auc,
    f.insertion_auc,
    r.deletion_auc  AS random_deletion_auc,
    r.insertion_auc AS random_insertion_auc
FROM faithfulness AS f
JOIN images AS i ON i.image_id = f.image_id
LEFT JOIN predictions AS p ON p.run_id = f.run_id AND p.image_id = f.image_id
LEFT JOIN faithfulness AS r ON r.run_id = f.run_id AND r.image_id = f.image_id AND r.method = 'random'
WHERE f.method <> 'random';

-- Per run x method: mean AUCs against the random baseline. A faithful method has
-- mean_deletion_auc < random_deletion_auc and mean_insertion_auc > random_insertion_auc;
-- share_deletion_below_random = share of images where its deletion AUC is below the random one.
CREATE VIEW v_faithfulness_summary AS
SELECT
    run_id,
    method,
    count(*)                                   AS images,
    avg(deletion_auc)                          AS mean_deletion_auc,
    avg(random_deletion_auc)                   AS random_deletion_auc,
    avg(insertion_auc)                         AS mean_insertion_auc,
    avg(random_insertion_auc)                  AS random_insertion_auc,
    avg(CASE WHEN deletion_auc < random_deletion_auc THEN 1.0 ELSE 0.0 END)   AS share_deletion_below_random,
    avg(CASE WHEN insertion_auc > random_insertion_auc THEN 1.0 ELSE 0.0 END) AS share_insertion_above_random
FROM v_faithfulness_image
GROUP BY run_id, method;

-- The same per run x label x correct x method.
CREATE VIEW v_faithfulness_by_class AS
SELECT
    run_id,
    label,
    correct,
    method,
    count(*)                  AS images,
    avg(deletion_auc)         AS mean_deletion_auc,
    avg(random_deletion_auc)  AS random_deletion_auc,
    avg(insertion_auc)        AS mean_insertion_auc,
    avg(random_insertion_auc) AS random_insertion_auc
FROM v_faithfulness_image
GROUP BY run_id, label, correct, method;

-- The sanity-check curve: per run x method x stage, the mean over the sample of the Spearman
-- correlations with the stage-0 maps.
CREATE VIEW v_sanity_curve AS
SELECT
    run_id,
    method,
    stage,
    max(layer)                 AS layer,
    count(*)                   AS images,
    avg(spearman_abs)          AS mean_spearman_abs,
    avg(abs(spearman_abs))     AS mean_abs_spearman_abs,
    avg(spearman_signed)       AS mean_spearman_signed,
    sum(empty)                 AS empty_maps
FROM sanity_stages
GROUP BY run_id, method, stage;

-- Per run x method: the verdict at the last stage (every parametrised layer random). The rule, in one
-- place: the method fails when the mean |Spearman of the absolute maps| stays above the threshold.
CREATE VIEW v_sanity_verdict AS
SELECT
    c.run_id,
    v.method,
    c.stages                   AS final_stage,
    c.threshold,
    v.images,
    v.mean_abs_spearman_abs    AS final_mean_abs_spearman_abs,
    v.mean_spearman_signed     AS final_mean_spearman_signed,
    CASE WHEN v.mean_abs_spearman_abs > c.threshold THEN 'fail' ELSE 'pass' END AS verdict
FROM sanity_checks AS c
JOIN v_sanity_curve AS v ON v.run_id = c.run_id AND v.stage = c.stages;

-- Per run x method: the other-class check (high similarity = the map hardly depends on the class).
CREATE VIEW v_sanity_other_class AS
SELECT
    run_id,
    method,
    count(*)             AS images,
    avg(spearman_abs)    AS mean_spearman_abs,
    avg(spearman_signed) AS mean_spearman_signed,
    sum(empty)           AS empty_maps
FROM sanity_other_class
GROUP BY run_id, method;
