-- 0008_shortcut_tests.sql: per image, what the shortcut check's causal tests did (issue 17: the
-- report's page of an image shows its shortcut results next to its maps).

-- One row per region x tested image x test: 'occlusion' (the region filled in an image predicted the
-- region's class) or 'paste' (the region copied from `donor`, an image of that class, into an image
-- predicted otherwise). class_before / class_after: the region's class's probability; flipped: the
-- prediction left the class (occlusion) or moved to it (paste). The moved controls are not kept per
-- image: they only calibrate the rates in shortcut_regions.
CREATE TABLE shortcut_tests (
    run_id          TEXT NOT NULL,
    region          INTEGER NOT NULL,
    image_id        TEXT NOT NULL REFERENCES images (image_id),
    test            TEXT NOT NULL CHECK (test IN ('occlusion', 'paste')),
    donor           TEXT REFERENCES images (image_id),
    class_before    REAL NOT NULL,
    class_after     REAL NOT NULL,
    predicted_after TEXT NOT NULL,
    flipped         INTEGER NOT NULL CHECK (flipped IN (0, 1)),
    PRIMARY KEY (run_id, region, image_id, test),
    FOREIGN KEY (run_id, region) REFERENCES shortcut_regions (run_id, region) ON DELETE CASCADE
) STRICT;

CREATE INDEX shortcut_tests_image ON shortcut_tests (run_id, image_id);
