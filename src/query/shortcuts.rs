//! The shortcut check of a run (issue 15), read from the tables and views of
//! `migrations/0007_verdicts.sql` and `0011_acquisition.sql`: the verdict, the candidate regions with
//! their causal test, each method's trust and calibrated thresholds, the flagged images, the maps'
//! reproducibility, and the acquisition part (the class-difference table, the counterfactuals' flip
//! table with their before / after examples).
//! `query shortcuts` and `export` read them from here.
use std::collections::HashMap;

use rusqlite::Connection;

use super::table::Table;
use crate::store::from_row;
use crate::store::shortcuts::AcquisitionTestRecord;

/// The run's verdict (`v_verdict`): one row, or none when the check did not run.
pub fn verdict(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT verdict, summary, images, flagged_images, round(flagged_share, 4) AS flagged_share,
                confirmed_regions, candidate_regions, untrusted_methods, reference_run, forward_passes,
                round(seconds, 1) AS seconds, confirmed_acquisition, acquisition_kinds,
                acquisition_forward_passes, round(acquisition_seconds, 1) AS acquisition_seconds
         FROM v_verdict WHERE run_id = ?1",
        [run],
    )
}

/// The run's one flagged count: (verdict state, images flagged for review by trusted methods), `None`
/// when the check did not run. `query runs`, the report and the audit's summary all show this one.
pub fn flagged_count(conn: &Connection, run: &str) -> rusqlite::Result<Option<(String, i64)>> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT verdict, flagged_images FROM shortcut_checks WHERE run_id = ?1",
        [run],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// The `min_flip_rate` the run's check used (its stored parameters; the current default when they do
/// not say).
pub fn min_flip_rate(conn: &Connection, run: &str) -> rusqlite::Result<f64> {
    use rusqlite::OptionalExtension;
    let stored: Option<Option<f64>> = conn
        .query_row(
            "SELECT json_extract(params, '$.min_flip_rate') FROM shortcut_checks WHERE run_id = ?1",
            [run],
            |r| r.get(0),
        )
        .optional()?;
    Ok(stored
        .flatten()
        .unwrap_or(crate::trust::shortcut::ShortcutConfig::default().min_flip_rate))
}

/// The candidate regions, confirmed first (`v_shortcuts`).
pub fn regions(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT region, class, verdict, methods, round(x0, 3) AS x0, round(x1, 3) AS x1,
                round(y0, 3) AS y0, round(y1, 3) AS y1, round(area, 4) AS area, round(lift, 2) AS lift,
                occluded_images, round(occlusion_rate, 3) AS occlusion_rate,
                round(occlusion_low, 3) AS occlusion_low, round(occlusion_high, 3) AS occlusion_high,
                round(occlusion_drop, 3) AS occlusion_drop,
                pasted_images, round(paste_rate, 3) AS paste_rate, round(paste_low, 3) AS paste_low,
                round(paste_high, 3) AS paste_high, round(paste_gain, 3) AS paste_gain,
                round(control_occlusion_rate, 3) AS control_occlusion_rate,
                round(control_paste_rate, 3) AS control_paste_rate
         FROM v_shortcuts WHERE run_id = ?1",
        [run],
    )
}

/// Per method: trusted or not (and why), the evidence, the calibrated thresholds, images flagged.
pub fn methods(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT method, trusted, reason, trust_source, trust_images,
                round(deletion_auc, 3) AS deletion_auc, round(random_deletion_auc, 3) AS random_deletion_auc,
                sanity_verdict, round(median_reproducibility, 3) AS median_reproducibility,
                round(threshold_background, 3) AS threshold_background,
                round(threshold_border, 3) AS threshold_border, threshold_source, flagged_images
         FROM shortcut_methods WHERE run_id = ?1 ORDER BY trusted DESC, method",
        [run],
    )
}

/// The flagged images, one row per image: the methods and reasons, the largest value over its
/// threshold first.
pub fn flagged(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT f.image_id, i.path, i.label, p.predicted, round(p.confidence, 3) AS confidence,
                group_concat(f.method || ' ' || f.reason || ' ' || printf('%.2f > %.2f', f.value, f.threshold), '; ')
                  AS reasons,
                round(max(f.value / f.threshold), 3) AS ratio
         FROM shortcut_flags AS f
         JOIN images AS i ON i.image_id = f.image_id
         LEFT JOIN predictions AS p ON p.run_id = f.run_id AND p.image_id = f.image_id
         WHERE f.run_id = ?1
         GROUP BY f.image_id ORDER BY ratio DESC, f.image_id",
        [run],
    )
}

/// Reproducibility of the stochastic maps per method: images, median, lowest, share below the level
/// the check uses.
pub fn reproducibility(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "WITH m AS (
             SELECT method, reproducibility AS r,
                    row_number() OVER (PARTITION BY method ORDER BY reproducibility) AS k,
                    count(*) OVER (PARTITION BY method) AS n
             FROM attribution_metrics WHERE run_id = ?1 AND reproducibility IS NOT NULL)
         SELECT method, max(n) AS images,
                round(avg(CASE WHEN k IN ((n + 1) / 2, (n + 2) / 2) THEN r END), 3) AS median,
                round(min(r), 3) AS lowest,
                round(avg(CASE WHEN r < coalesce((SELECT min_reproducibility FROM shortcut_checks
                                                  WHERE run_id = ?1), 0.5) THEN 1.0 ELSE 0.0 END), 3)
                  AS share_below_level
         FROM m GROUP BY method ORDER BY method",
        [run],
    )
}

/// One region of the check, with its mask, for pictures (the report draws it over the class's mean
/// map and over an example image of the class).
#[derive(Debug, Clone, PartialEq)]
pub struct RegionMask {
    pub region: i64,
    pub class: String,
    pub verdict: String,
    /// The methods whose mean map found it (the first one's mean map is drawn).
    pub methods: Vec<String>,
    pub grid: usize,
    pub mask: Vec<bool>,
    pub occlusion_rate: Option<f64>,
    pub paste_rate: Option<f64>,
    /// The first image (by id) predicted `class`: its recorded path.
    pub example_path: Option<String>,
}

/// The regions of a run's check, confirmed first, then by the larger flip rate.
pub fn region_masks(conn: &Connection, run: &str) -> rusqlite::Result<Vec<RegionMask>> {
    conn.prepare(
        "SELECT r.region, r.class, r.verdict, r.methods, r.grid, r.mask, r.occlusion_rate, r.paste_rate,
                (SELECT i.path FROM predictions AS p JOIN images AS i USING (image_id)
                 WHERE p.run_id = r.run_id AND p.predicted = r.class ORDER BY i.image_id LIMIT 1)
         FROM shortcut_regions AS r WHERE r.run_id = ?1
         ORDER BY r.verdict <> 'confirmed', max(coalesce(r.occlusion_rate, 0), coalesce(r.paste_rate, 0)) DESC,
                  r.region",
    )?
    .query_map([run], |r| {
        let methods: String = r.get(3)?;
        let mask: Vec<u8> = r.get(5)?;
        Ok(RegionMask {
            region: r.get(0)?,
            class: r.get(1)?,
            verdict: r.get(2)?,
            methods: serde_json::from_str(&methods).unwrap_or_default(),
            grid: r.get::<_, i64>(4)? as usize,
            mask: mask.into_iter().map(|b| b != 0).collect(),
            occlusion_rate: r.get(6)?,
            paste_rate: r.get(7)?,
            example_path: r.get(8)?,
        })
    })?
    .collect()
}

/// Every image's outcomes in the causal tests, image by image (`shortcut_tests` with the region's
/// class, verdict and box), for `export`.
pub fn tests(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT t.image_id, i.path, t.region, r.class, r.verdict AS region_verdict, t.test, t.donor,
                round(t.class_before, 4) AS class_before, round(t.class_after, 4) AS class_after,
                t.predicted_after, t.flipped
         FROM shortcut_tests AS t
         JOIN shortcut_regions AS r ON r.run_id = t.run_id AND r.region = t.region
         JOIN images AS i ON i.image_id = t.image_id
         WHERE t.run_id = ?1 ORDER BY t.image_id, t.region, t.test",
        [run],
    )
}

/// One image's part in the shortcut check: a region's test it took part in.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageTest {
    pub region: i64,
    pub class: String,
    pub region_verdict: String,
    /// The region's box, fractions of the image's side.
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
    /// `occlusion` or `paste`.
    pub test: String,
    /// For a paste: the donor's file.
    pub donor_path: Option<String>,
    pub class_before: f64,
    pub class_after: f64,
    pub predicted_after: String,
    pub flipped: bool,
}

/// One image's calibrated flag.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFlag {
    pub method: String,
    pub reason: String,
    pub value: f64,
    pub threshold: f64,
}

/// Per image id: the causal tests it took part in (by region) and its calibrated flags, for the
/// report's image pages.
#[derive(Debug, Default)]
pub struct ImageShortcuts {
    pub checked: bool,
    pub tests: HashMap<String, Vec<ImageTest>>,
    pub flags: HashMap<String, Vec<ImageFlag>>,
}

pub fn image_shortcuts(conn: &Connection, run: &str) -> rusqlite::Result<ImageShortcuts> {
    let checked = conn.query_row(
        "SELECT count(*) FROM shortcut_checks WHERE run_id = ?1",
        [run],
        |r| r.get::<_, i64>(0),
    )? > 0;
    let tests = by_image(
        conn,
        "SELECT t.region, r.class, r.verdict, r.x0, r.y0, r.x1, r.y1, t.test,
                (SELECT path FROM images WHERE image_id = t.donor), t.class_before, t.class_after,
                t.predicted_after, t.flipped, t.image_id
         FROM shortcut_tests AS t
         JOIN shortcut_regions AS r ON r.run_id = t.run_id AND r.region = t.region
         WHERE t.run_id = ?1 ORDER BY t.image_id, t.region, t.test",
        run,
        from_row!(ImageTest {
            region,
            class,
            region_verdict,
            x0,
            y0,
            x1,
            y1,
            test,
            donor_path,
            class_before,
            class_after,
            predicted_after,
            flipped,
        }),
    )?;
    let flags = by_image(
        conn,
        "SELECT method, reason, value, threshold, image_id FROM shortcut_flags
         WHERE run_id = ?1 ORDER BY image_id, value / threshold DESC",
        run,
        from_row!(ImageFlag {
            method,
            reason,
            value,
            threshold
        }),
    )?;
    Ok(ImageShortcuts {
        checked,
        tests,
        flags,
    })
}

/// The rows of `sql` (the run bound to `?1`), each read by `read`, grouped by their column `image_id`.
fn by_image<T>(
    conn: &Connection,
    sql: &str,
    run: &str,
    read: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<HashMap<String, Vec<T>>> {
    let mut out: HashMap<String, Vec<T>> = HashMap::new();
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([run])?;
    while let Some(r) = rows.next()? {
        out.entry(r.get("image_id")?).or_default().push(read(r)?);
    }
    Ok(out)
}

/// The class-difference table of the acquisition part: per property and pair of classes, both
/// classes' medians, quartiles and means and the rank separation (0.5: no difference).
pub fn acquisition_properties(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT property, unit, class_a, class_b, images_a, images_b,
                round(median_a, 3) AS median_a, round(q1_a, 3) AS q1_a, round(q3_a, 3) AS q3_a,
                round(mean_a, 3) AS mean_a,
                round(median_b, 3) AS median_b, round(q1_b, 3) AS q1_b, round(q3_b, 3) AS q3_b,
                round(mean_b, 3) AS mean_b,
                round(separation, 3) AS separation, grouped_by
         FROM acquisition_properties WHERE run_id = ?1
         ORDER BY class_a, class_b, rowid",
        [run],
    )
}

/// The acquisition counterfactuals' flip table: confirmed first, then by flip rate; the kinds not
/// tested last, with why.
pub fn acquisition_tests(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT test, kind, from_class, to_class, verdict, parameter, images, flips,
                round(rate, 3) AS rate, round(low, 3) AS low, round(high, 3) AS high,
                round(mean_shift, 3) AS mean_shift, control_images, control_flips,
                round(control_rate, 3) AS control_rate, round(control_high, 3) AS control_high,
                example_image, summary
         FROM acquisition_tests WHERE run_id = ?1
         ORDER BY verdict <> 'confirmed', verdict = 'not_tested', coalesce(rate, 0) DESC, test",
        [run],
    )
}

/// The tested counterfactuals that kept an example pair (the image at the model's side before and
/// after, grey PNG, with its `to_class` probability), for pictures: confirmed first, then by flip rate.
pub fn acquisition_examples(
    conn: &Connection,
    run: &str,
) -> rusqlite::Result<Vec<AcquisitionTestRecord>> {
    conn.prepare(
        "SELECT * FROM acquisition_tests
         WHERE run_id = ?1 AND example_before IS NOT NULL AND example_after IS NOT NULL
         ORDER BY verdict <> 'confirmed', coalesce(rate, 0) DESC, test",
    )?
    .query_map([run], AcquisitionTestRecord::read)?
    .collect()
}
