-- 0012_outlines.sql: ground-truth tumour outlines (data.masks) and where each map's evidence lies
-- against them. Rows exist only for images that have an outline with tumour pixels on the map grid
-- (none for images without a mask, of a class listed in data.masks.tumor_free_classes, or whose mask
-- is empty); `audit` writes them with the image's other rows.

-- One outline per run x image, as it was used: the mask file, the side of the map grid it was resized
-- to (nearest), its area share of that grid, the pointing game's tolerance in grid pixels, and the
-- outline pooled to outline_size x outline_size as coverage bytes (0 = outside .. 255 = inside,
-- row-major) for the report's drawings and the class mean outline density.
CREATE TABLE outlines (
    run_id        TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    image_id      TEXT NOT NULL REFERENCES images (image_id),
    mask_path     TEXT NOT NULL,
    grid          INTEGER NOT NULL CHECK (grid > 0),
    area_fraction REAL NOT NULL CHECK (area_fraction > 0 AND area_fraction <= 1),
    tolerance_px  INTEGER NOT NULL CHECK (tolerance_px >= 0),
    outline_size  INTEGER NOT NULL CHECK (outline_size > 0),
    outline       BLOB NOT NULL CHECK (length(outline) = outline_size * outline_size),
    PRIMARY KEY (run_id, image_id)
) STRICT;

-- Per image x method (the image's outline above):
--   mass_on_tumor   share of |map| inside the outline (chance = the outline's area_fraction)
--   pointing_hit    1 when the maximum of |map| lies within tolerance_px of the outline
--   energy_pointing share of |map| inside the outline's bounding box
--   iou_top_area    IoU of the outline with the top-k pixels of |map|, k = the outline's pixel count
CREATE TABLE localisation (
    run_id          TEXT NOT NULL,
    image_id        TEXT NOT NULL,
    method          TEXT NOT NULL,
    mass_on_tumor   REAL,
    pointing_hit    INTEGER NOT NULL CHECK (pointing_hit IN (0, 1)),
    energy_pointing REAL,
    iou_top_area    REAL,
    PRIMARY KEY (run_id, image_id, method),
    FOREIGN KEY (run_id, image_id) REFERENCES outlines (run_id, image_id) ON DELETE CASCADE
) STRICT;

-- One row per image x method with an outline, with the image's label and prediction.
CREATE VIEW v_localisation AS
SELECT
    l.run_id,
    l.image_id,
    i.path,
    i.label,
    p.predicted,
    p.target,
    p.correct,
    l.method,
    o.area_fraction AS outline_area,
    l.mass_on_tumor,
    l.mass_on_tumor / o.area_fraction AS tumor_concentration,
    l.pointing_hit,
    l.energy_pointing,
    l.iou_top_area
FROM localisation AS l
JOIN outlines AS o ON o.run_id = l.run_id AND o.image_id = l.image_id
JOIN images AS i ON i.image_id = l.image_id
LEFT JOIN predictions AS p ON p.run_id = l.run_id AND p.image_id = l.image_id;

-- Per run x class x correctness x method: means over the images with an outline (medians: `query bias`).
CREATE VIEW v_localisation_summary AS
SELECT
    run_id,
    label,
    correct,
    method,
    count(*)             AS images,
    avg(outline_area)    AS mean_outline_area,
    avg(mass_on_tumor)   AS mean_mass_on_tumor,
    avg(pointing_hit)    AS pointing_rate,
    avg(energy_pointing) AS mean_energy_pointing,
    avg(iou_top_area)    AS mean_iou_top_area
FROM v_localisation
GROUP BY run_id, label, correct, method;
