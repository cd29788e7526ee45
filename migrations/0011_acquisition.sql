-- 0011_acquisition.sql: acquisition shortcuts (the scanner, the site, the protocol), the part of the
-- shortcut check that has no place in the image: what differs between the classes' images, and the
-- counterfactuals that move one class's images toward another's acquisition, against a control.

-- The acquisition part's cost and parameters, on the run's check (NULL: the check ran without it).
ALTER TABLE shortcut_checks ADD COLUMN acquisition_images INTEGER;
ALTER TABLE shortcut_checks ADD COLUMN acquisition_forward_passes INTEGER;
ALTER TABLE shortcut_checks ADD COLUMN acquisition_seconds REAL;
ALTER TABLE shortcut_checks ADD COLUMN acquisition_params TEXT CHECK (acquisition_params IS NULL OR json_valid(acquisition_params));

-- Per run x property x pair of classes (class_a before class_b in the model's order): the two classes'
-- medians, quartiles and means, and the rank separation P(a > b) + P(a = b) / 2 over image pairs
-- (0.5: no difference; near 0 or 1: the property alone tells the classes apart). Properties: the source
-- file's source_width, source_height (px), aspect (w/h), grey_file, colour, jpeg (shares: the mean of a
-- 0/1 per image), jpeg_quality (IJG quality of the luminance table, JPEG files only); at the model's
-- side: noise (sigma, grey levels), intensity (mean grey level), contrast (std), sharpness (% of the grey
-- range per px at the steepest edges), background (share of pixels within 15% of the grey range above the darkest level, median-filtered). grouped_by: 'label' or
-- 'predicted' (a run without labels).
CREATE TABLE acquisition_properties (
    run_id      TEXT NOT NULL REFERENCES shortcut_checks (run_id) ON DELETE CASCADE,
    property    TEXT NOT NULL,
    class_a     TEXT NOT NULL,
    class_b     TEXT NOT NULL,
    unit        TEXT NOT NULL,
    grouped_by  TEXT NOT NULL CHECK (grouped_by IN ('label', 'predicted')),
    images_a    INTEGER NOT NULL, images_b INTEGER NOT NULL,
    median_a    REAL, q1_a REAL, q3_a REAL, mean_a REAL,
    median_b    REAL, q1_b REAL, q3_b REAL, mean_b REAL,
    separation  REAL CHECK (separation IS NULL OR separation BETWEEN 0 AND 1),
    PRIMARY KEY (run_id, property, class_a, class_b)
) STRICT;

-- Per run x counterfactual: kind ('noise', 'intensity', 'sharpness', 'resolution', 'jpeg', 'aspect',
-- 'framing', 'flip'), the transformation that moves `from_class` images toward `to_class`'s acquisition
-- (transform, parameter in words, strength), its flips (a from_class image now predicted to_class) with
-- the 95% Wilson interval, the mean rise of the to_class probability, and the control: the same
-- transformation on to_class images, a control flip being one no longer predicted to_class. verdict:
-- 'confirmed' (rate >= the minimum, interval above the control's), 'accepted' (confirmed, and confirmed
-- or accepted in the --reference run), 'not_significant', 'no_effect' (upper bound below the minimum),
-- 'not_tested' (the classes do not differ in that property: summary says how). example_*: one tested
-- image (the first that flipped) at the model's side before and after (grey PNG), with its to_class
-- probability.
CREATE TABLE acquisition_tests (
    run_id          TEXT NOT NULL REFERENCES shortcut_checks (run_id) ON DELETE CASCADE,
    test            INTEGER NOT NULL CHECK (test >= 1),
    kind            TEXT NOT NULL,
    transform       TEXT NOT NULL,
    parameter       TEXT NOT NULL,
    strength        REAL,
    from_class      TEXT NOT NULL,
    to_class        TEXT NOT NULL,
    images          INTEGER NOT NULL CHECK (images >= 0),
    flips           INTEGER NOT NULL CHECK (flips >= 0),
    rate REAL, low REAL, high REAL,
    mean_shift      REAL,
    control_images  INTEGER NOT NULL, control_flips INTEGER NOT NULL,
    control_rate REAL, control_high REAL,
    verdict         TEXT NOT NULL CHECK (verdict IN ('confirmed', 'accepted', 'not_significant', 'no_effect', 'not_tested')),
    summary         TEXT NOT NULL,
    example_image   TEXT REFERENCES images (image_id),
    example_before  BLOB,
    example_after   BLOB,
    example_prob_before REAL,
    example_prob_after  REAL,
    PRIMARY KEY (run_id, test)
) STRICT;

-- The run's verdict, now with the confirmed acquisition findings and the acquisition part's cost.
DROP VIEW v_verdict;
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
    c.seconds,
    (SELECT count(*) FROM acquisition_tests AS t WHERE t.run_id = c.run_id AND t.verdict = 'confirmed')
        AS confirmed_acquisition,
    (SELECT json_group_array(DISTINCT t.kind) FROM acquisition_tests AS t
     WHERE t.run_id = c.run_id AND t.verdict = 'confirmed') AS acquisition_kinds,
    c.acquisition_forward_passes,
    c.acquisition_seconds
FROM shortcut_checks AS c;
