//! Rows of the shortcut check (migration 0006): what the check reads from a run (its images,
//! predictions, stored maps, metrics and trust-check summaries) and the rows it writes back (the check,
//! each method's trust and thresholds, the candidate regions with their causal test, the calibrated
//! flags, the acquisition part's class differences and counterfactuals: migration 0011), all of one run replaced in one transaction. `query shortcuts` reads them through
//! [`crate::query::shortcuts`].
use std::collections::BTreeMap;

use rusqlite::{params, Connection, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::{At, Result, Store};

/// One audited image of a run, with its prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct RunImage {
    pub image_id: String,
    pub path: String,
    pub label: Option<String>,
    pub predicted: String,
    /// The class the maps explain.
    pub target: String,
}

/// Per image x method: what the calibrated flags look at.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub image_id: String,
    pub method: String,
    pub mass_background: Option<f64>,
    pub mass_border: Option<f64>,
    pub reproducibility: Option<f64>,
}

/// A run's faithfulness summary for one method (`v_faithfulness_summary`).
#[derive(Debug, Clone, PartialEq)]
pub struct FaithRow {
    pub method: String,
    pub images: i64,
    pub deletion_auc: f64,
    pub random_deletion_auc: f64,
    pub share_below_random: f64,
}

/// Everything the shortcut check reads from one run.
#[derive(Debug, Clone, Default)]
pub struct RunInputs {
    pub images: Vec<RunImage>,
    /// (image id, method) -> the stored map decoded (grid x grid, row-major).
    pub maps: BTreeMap<(String, String), Vec<f32>>,
    /// The stored maps' side (0 when the run has none).
    pub grid: usize,
    pub metrics: Vec<MetricRow>,
    pub faithfulness: Vec<FaithRow>,
    /// method -> 'pass' / 'fail' from `tumor-audit sanity`.
    pub sanity: BTreeMap<String, String>,
    /// The run's methods, in its order.
    pub methods: Vec<String>,
}

/// Reads what the check needs from run `run_id` (images recorded 'done', with a prediction).
pub fn read_inputs(conn: &Connection, run_id: &str) -> rusqlite::Result<RunInputs> {
    let images = conn
        .prepare(
            "SELECT i.image_id, i.path, i.label, p.predicted, p.target
             FROM run_images AS r
             JOIN images AS i ON i.image_id = r.image_id
             JOIN predictions AS p ON p.run_id = r.run_id AND p.image_id = r.image_id
             WHERE r.run_id = ?1 AND r.status = 'done'
             ORDER BY i.image_id",
        )?
        .query_map([run_id], |r| {
            Ok(RunImage {
                image_id: r.get(0)?,
                path: r.get(1)?,
                label: r.get(2)?,
                predicted: r.get(3)?,
                target: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = RunInputs {
        images,
        ..Default::default()
    };
    let mut stmt = conn.prepare(
        "SELECT image_id, method, width, height, encoding, data FROM maps WHERE run_id = ?1",
    )?;
    let mut rows = stmt.query([run_id])?;
    while let Some(r) = rows.next()? {
        let (w, h): (i64, i64) = (r.get(2)?, r.get(3)?);
        let Some(values) = super::maps::decode(&r.get::<_, String>(4)?, r.get_ref(5)?.as_blob()?)
        else {
            continue;
        };
        if w != h || values.len() != (w * h) as usize || (out.grid != 0 && out.grid != w as usize) {
            continue;
        }
        out.grid = w as usize;
        out.maps.insert((r.get(0)?, r.get(1)?), values);
    }
    out.metrics = conn
        .prepare(
            "SELECT image_id, method, mass_background, mass_border, reproducibility
             FROM attribution_metrics WHERE run_id = ?1 ORDER BY image_id, method",
        )?
        .query_map([run_id], |r| {
            Ok(MetricRow {
                image_id: r.get(0)?,
                method: r.get(1)?,
                mass_background: r.get(2)?,
                mass_border: r.get(3)?,
                reproducibility: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    out.faithfulness = conn
        .prepare(
            "SELECT method, images, mean_deletion_auc, random_deletion_auc, share_deletion_below_random
             FROM v_faithfulness_summary
             WHERE run_id = ?1 AND mean_deletion_auc IS NOT NULL AND random_deletion_auc IS NOT NULL",
        )?
        .query_map([run_id], |r| {
            Ok(FaithRow {
                method: r.get(0)?,
                images: r.get(1)?,
                deletion_auc: r.get(2)?,
                random_deletion_auc: r.get(3)?,
                share_below_random: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    out.sanity = conn
        .prepare("SELECT method, verdict FROM v_sanity_verdict WHERE run_id = ?1")?
        .query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    out.methods = conn
        .query_row(
            "SELECT methods FROM runs WHERE run_id = ?1",
            [run_id],
            |r| r.get::<_, String>(0),
        )
        .ok()
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default();
    Ok(out)
}

/// A row of `shortcut_checks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShortcutCheckRecord {
    pub run_id: String,
    pub reference_run: Option<String>,
    pub images: i64,
    /// `shortcut`, `no_shortcut` or `inconclusive` (migration 0010).
    pub verdict: String,
    pub summary: String,
    pub flagged_images: i64,
    pub min_reproducibility: f64,
    /// The check's parameters, JSON.
    pub params: String,
    pub forward_passes: i64,
    pub seconds: f64,
}

/// A row of `shortcut_methods`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShortcutMethodRecord {
    pub method: String,
    pub trusted: bool,
    pub reason: Option<String>,
    pub trust_source: Option<String>,
    pub trust_images: Option<i64>,
    pub deletion_auc: Option<f64>,
    pub random_deletion_auc: Option<f64>,
    pub sanity_verdict: Option<String>,
    pub median_reproducibility: Option<f64>,
    pub threshold_background: Option<f64>,
    pub threshold_border: Option<f64>,
    pub threshold_source: String,
    pub flagged_images: i64,
}

/// A row of `shortcut_regions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShortcutRegionRecord {
    pub region: i64,
    pub class: String,
    pub methods: Vec<String>,
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
    pub area: f64,
    pub grid: i64,
    /// grid x grid bytes, 1 inside the region.
    pub mask: Vec<u8>,
    pub mass_share: f64,
    pub lift: f64,
    pub occluded_images: i64,
    pub occlusion_flips: i64,
    pub occlusion_rate: Option<f64>,
    pub occlusion_low: Option<f64>,
    pub occlusion_high: Option<f64>,
    pub occlusion_drop: Option<f64>,
    pub pasted_images: i64,
    pub paste_flips: i64,
    pub paste_rate: Option<f64>,
    pub paste_low: Option<f64>,
    pub paste_high: Option<f64>,
    pub paste_gain: Option<f64>,
    pub control_occlusion_rate: Option<f64>,
    pub control_occlusion_high: Option<f64>,
    pub control_paste_rate: Option<f64>,
    pub control_paste_high: Option<f64>,
    /// `confirmed`, `artefact` or `not_significant`.
    pub verdict: String,
}

/// A row of `shortcut_flags`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShortcutFlagRecord {
    pub image_id: String,
    pub method: String,
    /// `background` or `border`.
    pub reason: String,
    pub value: f64,
    pub threshold: f64,
}

/// A row of `shortcut_tests`: one image's outcome in one region's occlusion or paste test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShortcutTestRecord {
    pub region: i64,
    pub image_id: String,
    /// `occlusion` or `paste`.
    pub test: String,
    /// For a paste: the image of the region's class the region came from.
    pub donor: Option<String>,
    /// The region's class's probability before and after.
    pub class_before: f64,
    pub class_after: f64,
    pub predicted_after: String,
    pub flipped: bool,
}

/// Everything one shortcut check writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShortcutCheck {
    pub check: ShortcutCheckRecord,
    pub methods: Vec<ShortcutMethodRecord>,
    pub regions: Vec<ShortcutRegionRecord>,
    /// Per image: what each region's occlusion or paste did (the report's image pages show them).
    pub tests: Vec<ShortcutTestRecord>,
    pub flags: Vec<ShortcutFlagRecord>,
    /// The acquisition part (migration 0011): what differs between the classes, the counterfactuals.
    #[serde(default)]
    pub acquisition: Option<AcquisitionRecords>,
}

/// A row of `acquisition_properties`: one measured property of two classes' images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcquisitionPropertyRecord {
    pub property: String,
    pub unit: String,
    /// `label` or `predicted`: how the images were put in classes.
    pub grouped_by: String,
    pub class_a: String,
    pub class_b: String,
    pub images_a: i64,
    pub images_b: i64,
    pub median_a: Option<f64>,
    pub q1_a: Option<f64>,
    pub q3_a: Option<f64>,
    pub mean_a: Option<f64>,
    pub median_b: Option<f64>,
    pub q1_b: Option<f64>,
    pub q3_b: Option<f64>,
    pub mean_b: Option<f64>,
    /// P(a > b) + P(a = b) / 2 over image pairs.
    pub separation: Option<f64>,
}

/// A row of `acquisition_tests`: one counterfactual (kind, from one class toward another) and its
/// control, or a kind not tested (images 0, the reason in `summary`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcquisitionTestRecord {
    pub test: i64,
    pub kind: String,
    pub transform: String,
    /// The transformation and its strength in words.
    pub parameter: String,
    pub strength: Option<f64>,
    pub from_class: String,
    pub to_class: String,
    pub images: i64,
    pub flips: i64,
    pub rate: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// Mean rise of the `to_class` probability.
    pub mean_shift: Option<f64>,
    pub control_images: i64,
    pub control_flips: i64,
    pub control_rate: Option<f64>,
    pub control_high: Option<f64>,
    /// `confirmed`, `accepted`, `not_significant`, `no_effect` or `not_tested`.
    pub verdict: String,
    pub summary: String,
    pub example_image: Option<String>,
    /// The example at the model's side before and after, grey PNG.
    #[serde(skip)]
    pub example_before: Option<Vec<u8>>,
    #[serde(skip)]
    pub example_after: Option<Vec<u8>>,
    /// The `to_class` probability of the example before and after.
    pub example_prob_before: Option<f64>,
    pub example_prob_after: Option<f64>,
}

impl AcquisitionTestRecord {
    /// A kind not tested for this pair, and why.
    pub fn not_tested(test: i64, kind: &str, from: &str, to: &str, reason: &str) -> Self {
        AcquisitionTestRecord {
            test,
            kind: kind.into(),
            transform: String::new(),
            parameter: String::new(),
            strength: None,
            from_class: from.into(),
            to_class: to.into(),
            images: 0,
            flips: 0,
            rate: None,
            low: None,
            high: None,
            mean_shift: None,
            control_images: 0,
            control_flips: 0,
            control_rate: None,
            control_high: None,
            verdict: "not_tested".into(),
            summary: reason.into(),
            example_image: None,
            example_before: None,
            example_after: None,
            example_prob_before: None,
            example_prob_after: None,
        }
    }
}

/// The acquisition part of a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcquisitionRecords {
    pub properties: Vec<AcquisitionPropertyRecord>,
    pub tests: Vec<AcquisitionTestRecord>,
    pub images_measured: i64,
    pub forward_passes: i64,
    pub seconds: f64,
    /// Its parameters, JSON.
    pub params: String,
}

/// (kind, from, to) of the acquisition findings confirmed or accepted in run `run`: what a run
/// checked against it as `--reference` does not count as new.
pub fn accepted_acquisition(
    conn: &Connection,
    run: &str,
) -> rusqlite::Result<std::collections::BTreeSet<(String, String, String)>> {
    conn.prepare(
        "SELECT kind, from_class, to_class FROM acquisition_tests
         WHERE run_id = ?1 AND verdict IN ('confirmed', 'accepted')",
    )?
    .query_map([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
    .collect()
}

fn real(x: Option<f64>) -> Option<f64> {
    x.filter(|v| !v.is_nan())
}

impl Store {
    /// Writes a run's shortcut check, replacing an earlier one of the same run, in one transaction.
    pub fn write_shortcut_check(&self, s: &ShortcutCheck) -> Result<()> {
        let p = self.path();
        let tx = rusqlite::Transaction::new_unchecked(self.conn(), TransactionBehavior::Immediate)
            .at(p)?;
        write_all(&tx, s).at(p)?;
        tx.commit().at(p)
    }
}

fn write_all(conn: &Connection, s: &ShortcutCheck) -> rusqlite::Result<()> {
    let c = &s.check;
    let run = c.run_id.as_str();
    // The check's child rows go with it (ON DELETE CASCADE).
    conn.execute("DELETE FROM shortcut_checks WHERE run_id = ?1", [run])?;
    conn.execute(
        "INSERT INTO shortcut_checks (run_id, reference_run, images, verdict, summary, flagged_images, \
         min_reproducibility, params, forward_passes, seconds) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            run,
            c.reference_run,
            c.images,
            c.verdict,
            c.summary,
            c.flagged_images,
            c.min_reproducibility,
            c.params,
            c.forward_passes,
            real(Some(c.seconds))
        ],
    )?;
    let mut stmt = conn.prepare(
        "INSERT INTO shortcut_methods (run_id, method, trusted, reason, trust_source, trust_images, deletion_auc, \
         random_deletion_auc, sanity_verdict, median_reproducibility, threshold_background, threshold_border, \
         threshold_source, flagged_images) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    for m in &s.methods {
        stmt.execute(params![
            run,
            m.method,
            m.trusted,
            m.reason,
            m.trust_source,
            m.trust_images,
            real(m.deletion_auc),
            real(m.random_deletion_auc),
            m.sanity_verdict,
            real(m.median_reproducibility),
            real(m.threshold_background),
            real(m.threshold_border),
            m.threshold_source,
            m.flagged_images
        ])?;
    }
    let mut stmt = conn.prepare(
        "INSERT INTO shortcut_regions (run_id, region, class, methods, x0, y0, x1, y1, area, grid, mask, \
         mass_share, lift, occluded_images, occlusion_flips, occlusion_rate, occlusion_low, occlusion_high, \
         occlusion_drop, pasted_images, paste_flips, paste_rate, paste_low, paste_high, paste_gain, \
         control_occlusion_rate, control_occlusion_high, control_paste_rate, control_paste_high, verdict) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, \
         ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30)",
    )?;
    for r in &s.regions {
        let methods = serde_json::to_string(&r.methods).expect("a list of strings serializes");
        stmt.execute(params![
            run,
            r.region,
            r.class,
            methods,
            r.x0,
            r.y0,
            r.x1,
            r.y1,
            r.area,
            r.grid,
            r.mask,
            real(Some(r.mass_share)),
            real(Some(r.lift)),
            r.occluded_images,
            r.occlusion_flips,
            real(r.occlusion_rate),
            real(r.occlusion_low),
            real(r.occlusion_high),
            real(r.occlusion_drop),
            r.pasted_images,
            r.paste_flips,
            real(r.paste_rate),
            real(r.paste_low),
            real(r.paste_high),
            real(r.paste_gain),
            real(r.control_occlusion_rate),
            real(r.control_occlusion_high),
            real(r.control_paste_rate),
            real(r.control_paste_high),
            r.verdict
        ])?;
    }
    let mut stmt = conn.prepare(
        "INSERT INTO shortcut_tests (run_id, region, image_id, test, donor, class_before, class_after, \
         predicted_after, flipped) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for t in &s.tests {
        stmt.execute(params![
            run,
            t.region,
            t.image_id,
            t.test,
            t.donor,
            real(Some(t.class_before)),
            real(Some(t.class_after)),
            t.predicted_after,
            t.flipped
        ])?;
    }
    let mut stmt = conn.prepare(
        "INSERT INTO shortcut_flags (run_id, image_id, method, reason, value, threshold) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for f in &s.flags {
        stmt.execute(params![
            run,
            f.image_id,
            f.method,
            f.reason,
            f.value,
            f.threshold
        ])?;
    }
    if let Some(a) = &s.acquisition {
        write_acquisition(conn, run, a)?;
    }
    Ok(())
}

fn write_acquisition(conn: &Connection, run: &str, a: &AcquisitionRecords) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE shortcut_checks SET acquisition_images = ?2, acquisition_forward_passes = ?3, \
         acquisition_seconds = ?4, acquisition_params = ?5 WHERE run_id = ?1",
        params![
            run,
            a.images_measured,
            a.forward_passes,
            real(Some(a.seconds)),
            a.params
        ],
    )?;
    let mut stmt = conn.prepare(
        "INSERT INTO acquisition_properties (run_id, property, class_a, class_b, unit, grouped_by, \
         images_a, images_b, median_a, q1_a, q3_a, mean_a, median_b, q1_b, q3_b, mean_b, separation) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?;
    for p in &a.properties {
        stmt.execute(params![
            run,
            p.property,
            p.class_a,
            p.class_b,
            p.unit,
            p.grouped_by,
            p.images_a,
            p.images_b,
            real(p.median_a),
            real(p.q1_a),
            real(p.q3_a),
            real(p.mean_a),
            real(p.median_b),
            real(p.q1_b),
            real(p.q3_b),
            real(p.mean_b),
            real(p.separation)
        ])?;
    }
    let mut stmt = conn.prepare(
        "INSERT INTO acquisition_tests (run_id, test, kind, transform, parameter, strength, from_class, \
         to_class, images, flips, rate, low, high, mean_shift, control_images, control_flips, control_rate, \
         control_high, verdict, summary, example_image, example_before, example_after, example_prob_before, \
         example_prob_after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
         ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)",
    )?;
    for t in &a.tests {
        stmt.execute(params![
            run,
            t.test,
            t.kind,
            t.transform,
            t.parameter,
            real(t.strength),
            t.from_class,
            t.to_class,
            t.images,
            t.flips,
            real(t.rate),
            real(t.low),
            real(t.high),
            real(t.mean_shift),
            t.control_images,
            t.control_flips,
            real(t.control_rate),
            real(t.control_high),
            t.verdict,
            t.summary,
            t.example_image,
            t.example_before,
            t.example_after,
            real(t.example_prob_before),
            real(t.example_prob_after)
        ])?;
    }
    Ok(())
}
