//! Rows of the shortcut check (migration 0006): what the check reads from a run (its images,
//! predictions, stored maps, metrics and trust-check summaries) and the rows it writes back (the check,
//! each method's trust and thresholds, the candidate regions with their causal test, the calibrated
//! flags, the acquisition part's class differences and counterfactuals: migration 0011), all of one run replaced in one transaction. `query shortcuts` reads them through
//! [`crate::query::shortcuts`].
use std::collections::BTreeMap;

use rusqlite::{params, Connection, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::{columns, from_row, insert, named, At, Column, Result, Store};

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

/// A method's deletion evidence, as the trust rule reads it: a run's faithfulness summary
/// ([`super::trust::FaithfulnessSummary`] with both AUCs measured) or the check's own probe.
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
        .query_map(
            [run_id],
            from_row!(RunImage {
                image_id,
                path,
                label,
                predicted,
                target
            }),
        )?
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
        .query_map(
            [run_id],
            from_row!(MetricRow {
                image_id,
                method,
                mass_background,
                mass_border,
                reproducibility
            }),
        )?
        .collect::<rusqlite::Result<_>>()?;
    // The methods whose deletion curves were measured on both orders.
    out.faithfulness = super::trust::faithfulness_summary(conn, Some(run_id))?
        .into_iter()
        .filter_map(|f| {
            Some(FaithRow {
                deletion_auc: f.mean_deletion_auc?,
                random_deletion_auc: f.random_deletion_auc?,
                share_below_random: f.share_deletion_below_random?,
                method: f.method,
                images: f.images,
            })
        })
        .collect();
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
    /// Occluding the region in images of its class (`shift`: the class's mean probability drop).
    pub occlusion: FlipCount,
    /// Pasting it into images of the other classes (`shift`: the class's mean probability gain).
    pub paste: FlipCount,
    /// The controls, the same tests with a random region of the same size (rate and upper bound
    /// stored).
    pub control_occlusion: FlipCount,
    pub control_paste: FlipCount,
    /// `confirmed`, `artefact` or `not_significant`.
    pub verdict: String,
}

/// What one causal test or counterfactual did: images tested, predictions flipped, the flip rate
/// with its 95% Wilson interval and the mean shift of the probability it moves (`None` without
/// images). Region and acquisition rows keep one per test and per control.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FlipCount {
    pub images: i64,
    pub flips: i64,
    pub rate: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub shift: Option<f64>,
}

impl FlipCount {
    /// Its parts (images, flips, rate, low, high, shift) under a table's column names; an empty name
    /// leaves that part out of the table.
    fn columns<'a>(&'a self, names: [&'static str; 6]) -> Vec<Column<'a>> {
        named(
            names,
            [
                &self.images,
                &self.flips,
                &self.rate,
                &self.low,
                &self.high,
                &self.shift,
            ],
        )
    }

    /// The parts a row holds under those names (the others 0 or `None`).
    fn read(r: &rusqlite::Row<'_>, names: [&'static str; 6]) -> rusqlite::Result<FlipCount> {
        let int = |n: &str| if n.is_empty() { Ok(0) } else { r.get(n) };
        let real = |n: &str| if n.is_empty() { Ok(None) } else { r.get(n) };
        Ok(FlipCount {
            images: int(names[0])?,
            flips: int(names[1])?,
            rate: real(names[2])?,
            low: real(names[3])?,
            high: real(names[4])?,
            shift: real(names[5])?,
        })
    }
}

/// One class's values of a measured property: how many, quartiles and mean (`None` without values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub images: i64,
    pub median: Option<f64>,
    pub q1: Option<f64>,
    pub q3: Option<f64>,
    pub mean: Option<f64>,
}

impl Distribution {
    /// Its parts (images, median, q1, q3, mean) under a table's column names.
    fn columns<'a>(&'a self, names: [&'static str; 5]) -> Vec<Column<'a>> {
        named(
            names,
            [&self.images, &self.median, &self.q1, &self.q3, &self.mean],
        )
    }
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
    pub a: Distribution,
    pub b: Distribution,
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
    /// The counterfactual on `from_class` images (`shift`: the mean rise of the `to_class`
    /// probability).
    pub toward: FlipCount,
    /// Its control (images, flips, rate and upper bound stored).
    pub control: FlipCount,
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
            toward: FlipCount::default(),
            control: FlipCount::default(),
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

/// The columns of a region's four tests in `shortcut_regions`.
const OCCLUSION: [&str; 6] = [
    "occluded_images",
    "occlusion_flips",
    "occlusion_rate",
    "occlusion_low",
    "occlusion_high",
    "occlusion_drop",
];
const PASTE: [&str; 6] = [
    "pasted_images",
    "paste_flips",
    "paste_rate",
    "paste_low",
    "paste_high",
    "paste_gain",
];
const CONTROL_OCCLUSION: [&str; 6] = [
    "",
    "",
    "control_occlusion_rate",
    "",
    "control_occlusion_high",
    "",
];
const CONTROL_PASTE: [&str; 6] = ["", "", "control_paste_rate", "", "control_paste_high", ""];
/// The columns of a counterfactual and its control in `acquisition_tests`.
const TOWARD: [&str; 6] = ["images", "flips", "rate", "low", "high", "mean_shift"];
const CONTROL: [&str; 6] = [
    "control_images",
    "control_flips",
    "control_rate",
    "",
    "control_high",
    "",
];

impl AcquisitionTestRecord {
    /// Reads a row of `acquisition_tests` (every column, by name).
    pub fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<AcquisitionTestRecord> {
        Ok(AcquisitionTestRecord {
            test: r.get("test")?,
            kind: r.get("kind")?,
            transform: r.get("transform")?,
            parameter: r.get("parameter")?,
            strength: r.get("strength")?,
            from_class: r.get("from_class")?,
            to_class: r.get("to_class")?,
            toward: FlipCount::read(r, TOWARD)?,
            control: FlipCount::read(r, CONTROL)?,
            verdict: r.get("verdict")?,
            summary: r.get("summary")?,
            example_image: r.get("example_image")?,
            example_before: r.get("example_before")?,
            example_after: r.get("example_after")?,
            example_prob_before: r.get("example_prob_before")?,
            example_prob_after: r.get("example_prob_after")?,
        })
    }
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
    let run_id: [Column; 1] = [("run_id", &run)];
    // The check's child rows go with it (ON DELETE CASCADE).
    conn.execute("DELETE FROM shortcut_checks WHERE run_id = ?1", [run])?;
    let check = columns!(c: run_id, reference_run, images, verdict, summary, flagged_images,
        min_reproducibility, params, forward_passes, seconds);
    insert(conn, "shortcut_checks", &[&check])?;
    for m in &s.methods {
        let method = columns!(m: method, trusted, reason, trust_source, trust_images, deletion_auc,
            random_deletion_auc, sanity_verdict, median_reproducibility, threshold_background,
            threshold_border, threshold_source, flagged_images);
        insert(conn, "shortcut_methods", &[&run_id, &method])?;
    }
    for r in &s.regions {
        let methods = serde_json::to_string(&r.methods).expect("a list of strings serializes");
        let region =
            columns!(r: region, class, x0, y0, x1, y1, area, grid, mask, mass_share, lift, verdict);
        insert(
            conn,
            "shortcut_regions",
            &[
                &run_id,
                &region,
                &[("methods", &methods)],
                &r.occlusion.columns(OCCLUSION),
                &r.paste.columns(PASTE),
                &r.control_occlusion.columns(CONTROL_OCCLUSION),
                &r.control_paste.columns(CONTROL_PASTE),
            ],
        )?;
    }
    for t in &s.tests {
        let test = columns!(t: region, image_id, test, donor, class_before, class_after,
            predicted_after, flipped);
        insert(conn, "shortcut_tests", &[&run_id, &test])?;
    }
    for f in &s.flags {
        let flag = columns!(f: image_id, method, reason, value, threshold);
        insert(conn, "shortcut_flags", &[&run_id, &flag])?;
    }
    if let Some(a) = &s.acquisition {
        write_acquisition(conn, &run_id, a)?;
    }
    Ok(())
}

fn write_acquisition(
    conn: &Connection,
    run_id: &[Column; 1],
    a: &AcquisitionRecords,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE shortcut_checks SET acquisition_images = ?2, acquisition_forward_passes = ?3, \
         acquisition_seconds = ?4, acquisition_params = ?5 WHERE run_id = ?1",
        params![
            run_id[0].1,
            a.images_measured,
            a.forward_passes,
            a.seconds,
            a.params
        ],
    )?;
    for p in &a.properties {
        let property = columns!(p: property, class_a, class_b, unit, grouped_by, separation);
        insert(
            conn,
            "acquisition_properties",
            &[
                run_id,
                &property,
                &p.a.columns(["images_a", "median_a", "q1_a", "q3_a", "mean_a"]),
                &p.b.columns(["images_b", "median_b", "q1_b", "q3_b", "mean_b"]),
            ],
        )?;
    }
    for t in &a.tests {
        let test = columns!(t: test, kind, transform, parameter, strength, from_class, to_class,
            verdict, summary, example_image, example_before, example_after, example_prob_before,
            example_prob_after);
        insert(
            conn,
            "acquisition_tests",
            &[
                run_id,
                &test,
                &t.toward.columns(TOWARD),
                &t.control.columns(CONTROL),
            ],
        )?;
    }
    Ok(())
}
