-- 0002_views.sql: the views behind the reports, so that sqlite3, Python or R get the same answers
-- as the tumor-audit CLI. The "suspicious" rule lives in one place, v_image_method.flagged:
--   mass_background > 0.5  OR  mass_border > 0.25  OR  (correct = 0 AND confidence > 0.9)

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
           OR coalesce(m.mass_border, 0) > 0.25
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
        CASE WHEN coalesce(mass_border, 0) > 0.25
             THEN '; border mass ' || printf('%.2f', mass_border) || ' > 0.25' ELSE '' END ||
        CASE WHEN coalesce(correct, 1) = 0 AND coalesce(confidence, 0) > 0.9
             THEN '; wrong with confidence ' || printf('%.2f', confidence) || ' > 0.9' ELSE '' END,
        '; ') AS reason,
    max(coalesce(mass_background, 0) / 0.5,
        coalesce(mass_border, 0) / 0.25,
        CASE WHEN coalesce(correct, 1) = 0 THEN coalesce(confidence, 0) / 0.9 ELSE 0 END) AS score
FROM v_image_method
WHERE flagged = 1;

-- Per run x label x correct x method: where the maps point, split by class and by right/wrong.
CREATE VIEW v_bias_summary AS
SELECT
    run_id,
    label,
    correct,
    method,
    count(*)             AS images,
    avg(mass_background) AS mean_mass_background,
    avg(mass_border)     AS mean_mass_border,
    avg(flagged)         AS share_flagged
FROM v_image_method
GROUP BY run_id, label, correct, method;

-- Per run: progress, accuracy over the labelled images, failures.
-- images_failed = images recorded as failed + files that failed before they had an id.
CREATE VIEW v_run_summary AS
SELECT
    r.run_id,
    r.status,
    r.started_at,
    r.finished_at,
    r.images_total,
    (SELECT count(*) FROM run_images AS ri WHERE ri.run_id = r.run_id AND ri.status = 'done') AS images_done,
    (SELECT count(*) FROM run_images AS ri WHERE ri.run_id = r.run_id AND ri.status = 'failed')
      + (SELECT count(DISTINCT e.path) FROM errors AS e WHERE e.run_id = r.run_id AND e.image_id IS NULL)
      AS images_failed,
    (SELECT count(p.correct) FROM predictions AS p WHERE p.run_id = r.run_id) AS labelled,
    (SELECT coalesce(sum(p.correct), 0) FROM predictions AS p WHERE p.run_id = r.run_id) AS correct,
    (SELECT avg(p.correct) FROM predictions AS p WHERE p.run_id = r.run_id) AS accuracy,
    (SELECT count(*) FROM errors AS e WHERE e.run_id = r.run_id) AS errors,
    (SELECT count(DISTINCT s.image_id) FROM v_suspicious AS s WHERE s.run_id = r.run_id) AS images_flagged
FROM runs AS r;
