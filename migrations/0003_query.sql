-- 0003_query.sql: near-duplicate leakage per audited image, and the image-level views behind
-- `tumor-audit query` (suspicious images, agreement, bias summary with agreement).

-- The per-method "suspicious" rule of 0002 (v_image_method.flagged, v_suspicious) with the border-band
-- threshold of `query suspicious`: mass_border > 0.5 instead of 0.25. The band (10% of each side) is 36%
-- of the image, so an evenly spread map already has 0.36 there and 0.25 flagged nearly every LIME and
-- Kernel SHAP map. The rule is now:
--   mass_background > 0.5  OR  mass_border > 0.5  OR  (correct = 0 AND confidence > 0.9)
DROP VIEW v_suspicious;
DROP VIEW v_image_method;

-- One row per run x image x method: the metrics with the prediction and the image.
CREATE VIEW v_image_method AS
SELECT
    m.run_id,
    m.image_id,
    i.path,
    i.label,
    p.predicted,
    p.confidence,
    p.target,
    p.correct,
    m.method,
    m.mass_inside,
    m.mass_background,
    m.mass_border,
    m.concentration_inside,
    m.concentration_border,
    m.top1_inside,
    m.top5_inside,
    m.gini,
    m.empty,
    m.completeness_error,
    m.segments,
    m.seconds,
    CASE WHEN coalesce(m.mass_background, 0) > 0.5
           OR coalesce(m.mass_border, 0) > 0.5
           OR (coalesce(p.correct, 1) = 0 AND coalesce(p.confidence, 0) > 0.9)
         THEN 1 ELSE 0 END AS flagged
FROM attribution_metrics AS m
JOIN images AS i ON i.image_id = m.image_id
LEFT JOIN predictions AS p ON p.run_id = m.run_id AND p.image_id = m.image_id;

-- The flagged rows, with every rule that fired in `reason` and `score` = the largest ratio of a
-- value to its threshold (>= 1 for every row here; sort by it descending).
CREATE VIEW v_suspicious AS
SELECT
    run_id,
    image_id,
    path,
    label,
    predicted,
    confidence,
    correct,
    method,
    mass_background,
    mass_border,
    ltrim(
        CASE WHEN coalesce(mass_background, 0) > 0.5
             THEN '; background mass ' || printf('%.2f', mass_background) || ' > 0.5' ELSE '' END ||
        CASE WHEN coalesce(mass_border, 0) > 0.5
             THEN '; border mass ' || printf('%.2f', mass_border) || ' > 0.5' ELSE '' END ||
        CASE WHEN coalesce(correct, 1) = 0 AND coalesce(confidence, 0) > 0.9
             THEN '; wrong with confidence ' || printf('%.2f', confidence) || ' > 0.9' ELSE '' END,
        '; ') AS reason,
    max(coalesce(mass_background, 0) / 0.5,
        coalesce(mass_border, 0) / 0.5,
        CASE WHEN coalesce(correct, 1) = 0 THEN coalesce(confidence, 0) / 0.9 ELSE 0 END) AS score
FROM v_image_method
WHERE flagged = 1;

-- For each audited image: the nearest training image by 256-bit average hash (the split's hash).
-- distance and nearest_path are NULL when the training folder had no readable image.
CREATE TABLE leakage (
    run_id         TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    image_id       TEXT NOT NULL REFERENCES images (image_id),
    train_dir      TEXT NOT NULL,
    distance       INTEGER CHECK (distance BETWEEN 0 AND 256),
    nearest_path   TEXT,
    max_distance   INTEGER NOT NULL,   -- near-duplicate when distance <= max_distance
    near_duplicate INTEGER NOT NULL CHECK (near_duplicate IN (0, 1)),
    PRIMARY KEY (run_id, image_id)
) STRICT;

-- Per run x image x method: the mean Spearman correlation of this method's map with each other
-- method's map on the same image (from the agreement pairs).
CREATE VIEW v_method_agreement AS
SELECT run_id, image_id, method, avg(spearman) AS mean_spearman, count(*) AS pairs
FROM (
    SELECT run_id, image_id, method_a AS method, spearman FROM agreement
    UNION ALL
    SELECT run_id, image_id, method_b AS method, spearman FROM agreement
)
GROUP BY run_id, image_id, method;

-- Per run x image: how much the methods agree with each other overall.
CREATE VIEW v_image_agreement AS
SELECT run_id, image_id, avg(spearman) AS mean_spearman, min(spearman) AS min_spearman,
       avg(iou_top10) AS mean_iou_top10, count(*) AS pairs
FROM agreement
GROUP BY run_id, image_id;

-- The bias summary of 0002 plus the mean agreement of each method with the others.
-- (Medians are not in SQL; `tumor-audit query bias` adds them.)
DROP VIEW v_bias_summary;
CREATE VIEW v_bias_summary AS
SELECT
    v.run_id,
    v.label,
    v.correct,
    v.method,
    count(*)               AS images,
    avg(v.mass_background) AS mean_mass_background,
    avg(v.mass_border)     AS mean_mass_border,
    avg(v.flagged)         AS share_flagged,
    avg(a.mean_spearman)   AS mean_agreement
FROM v_image_method AS v
LEFT JOIN v_method_agreement AS a
       ON a.run_id = v.run_id AND a.image_id = v.image_id AND a.method = v.method
GROUP BY v.run_id, v.label, v.correct, v.method;

-- One row per suspicious image, with the default rules of `tumor-audit query suspicious`:
--   location:   a method's mass_background > 0.5 or mass_border > 0.5 (counted per method; the border
--               band is 36% of the image, so an evenly spread map has 0.36 there)
--   wrong:      correct = 0 and confidence > 0.9
--   disagree:   the mean Spearman correlation between the methods' maps < 0.05
-- score = methods flagged for location + wrong + disagree; sort by score, then location_ratio
-- (the largest value / threshold over the methods).
CREATE VIEW v_suspicious_images AS
WITH per_image AS (
    SELECT
        run_id, image_id, path, label, predicted, confidence, correct,
        count(*) AS methods,
        sum(coalesce(mass_background, 0) > 0.5 OR coalesce(mass_border, 0) > 0.5) AS methods_flagged,
        group_concat(CASE WHEN coalesce(mass_background, 0) > 0.5 OR coalesce(mass_border, 0) > 0.5
                          THEN method END, ',') AS flagged_by,
        max(max(coalesce(mass_background, 0) / 0.5, coalesce(mass_border, 0) / 0.5)) AS location_ratio
    FROM v_image_method
    GROUP BY run_id, image_id
),
rules AS (
    SELECT
        p.*,
        a.mean_spearman AS agreement,
        (coalesce(p.correct, 1) = 0 AND coalesce(p.confidence, 0) > 0.9) AS confidently_wrong,
        (a.mean_spearman IS NOT NULL AND a.mean_spearman < 0.05) AS methods_disagree,
        l.distance AS train_distance,
        l.near_duplicate
    FROM per_image AS p
    LEFT JOIN v_image_agreement AS a ON a.run_id = p.run_id AND a.image_id = p.image_id
    LEFT JOIN leakage AS l ON l.run_id = p.run_id AND l.image_id = p.image_id
)
SELECT
    run_id, image_id, path, label, predicted, confidence, correct,
    methods_flagged + confidently_wrong + methods_disagree AS score,
    methods_flagged, methods, flagged_by, location_ratio,
    confidently_wrong, agreement, methods_disagree, train_distance, near_duplicate
FROM rules
WHERE methods_flagged > 0 OR confidently_wrong OR methods_disagree;
