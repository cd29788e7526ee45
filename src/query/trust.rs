//! Trust summaries of a run (issue 8), read from the views of `migrations/0005_trust.sql`: how faithful
//! each method's maps are (deletion / insertion AUCs against the random pixel order, overall, by class
//! and correct vs incorrect, and the mean curves) and the model-randomisation sanity check (the curve
//! per method over the cascade's stages, and the verdict). `query trust`, `export` and `report` all
//! read them from here.
use rusqlite::Connection;

use super::table::{Cell, Table};

/// Per method: mean deletion / insertion AUC next to the random order's, the share of images where the
/// method beats random, and the deletion / insertion AUC over correct and incorrect predictions.
/// Sorted by mean deletion AUC (lower = the pixels the method ranks first matter more).
pub fn faithfulness(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT method, count(*) AS images,
                avg(deletion_auc) AS deletion_auc, avg(random_deletion_auc) AS random_deletion_auc,
                avg(CASE WHEN deletion_auc < random_deletion_auc THEN 1.0 ELSE 0.0 END)
                  AS share_deletion_below_random,
                avg(insertion_auc) AS insertion_auc, avg(random_insertion_auc) AS random_insertion_auc,
                avg(CASE WHEN insertion_auc > random_insertion_auc THEN 1.0 ELSE 0.0 END)
                  AS share_insertion_above_random,
                avg(CASE WHEN correct = 1 THEN deletion_auc END) AS deletion_auc_right,
                avg(CASE WHEN correct = 0 THEN deletion_auc END) AS deletion_auc_wrong,
                avg(CASE WHEN correct = 1 THEN insertion_auc END) AS insertion_auc_right,
                avg(CASE WHEN correct = 0 THEN insertion_auc END) AS insertion_auc_wrong
         FROM v_faithfulness_image WHERE run_id = ?1
         GROUP BY method ORDER BY avg(deletion_auc), method",
        [run],
    )
}

/// Per class x correctness x method (`v_faithfulness_by_class`).
pub fn faithfulness_by_class(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT label, correct, method, images, mean_deletion_auc, random_deletion_auc,
                mean_insertion_auc, random_insertion_auc
         FROM v_faithfulness_by_class WHERE run_id = ?1
         ORDER BY label, correct DESC, method",
        [run],
    )
}

/// Per image x method: the AUCs with the random baseline's (`v_faithfulness_image`).
pub fn faithfulness_images(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT run_id, image_id, path, label, predicted, correct, method, steps, score,
                deletion_auc, insertion_auc, random_deletion_auc, random_insertion_auc
         FROM v_faithfulness_image WHERE run_id = ?1 ORDER BY image_id, method",
        [run],
    )
}

/// The mean deletion and insertion curves per method (`random` included), one row per method x step:
/// the mean over the images of the score after deleting / inserting `fraction` of the pixels.
pub fn mean_curves(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT f.method, CAST(d.key AS INTEGER) AS step,
                CAST(d.key AS REAL) / f.steps AS fraction,
                count(*) AS images, avg(d.value) AS deletion_score, avg(i.value) AS insertion_score
         FROM faithfulness AS f, json_each(f.deletion_curve) AS d, json_each(f.insertion_curve) AS i
         WHERE f.run_id = ?1 AND i.key = d.key
         GROUP BY f.method, f.steps, d.key
         ORDER BY f.method = 'random', f.method, f.steps, CAST(d.key AS INTEGER)",
        [run],
    )
}

/// The sanity-check curve, one row per method x stage (`v_sanity_curve`), with the run's verdict per
/// method (`v_sanity_verdict`) on every row of that method.
pub fn sanity_curve(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT c.method, c.stage, c.layer, c.images, c.mean_abs_spearman_abs, c.mean_spearman_abs,
                c.mean_spearman_signed, c.empty_maps, v.threshold, v.verdict
         FROM v_sanity_curve AS c
         LEFT JOIN v_sanity_verdict AS v ON v.run_id = c.run_id AND v.method = c.method
         WHERE c.run_id = ?1 ORDER BY c.method, c.stage",
        [run],
    )
}

/// The sanity-check curve as one row per method: the verdict, then the mean |Spearman| of the
/// absolute maps with the trained model's maps at each stage (columns `<stage> <layer>`, the layer the stage
/// re-initialised, the whole network random in the last one), and the signed maps' value at the last
/// stage. Sorted by the last stage's similarity, highest (least sensitive to the model) first.
pub fn sanity_wide(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    let long = sanity_curve(conn, run)?;
    let col = |n: &str| long.column(n).expect("sanity_curve column");
    let (c_method, c_stage, c_layer, c_abs, c_signed, c_verdict) = (
        col("method"),
        col("stage"),
        col("layer"),
        col("mean_abs_spearman_abs"),
        col("mean_spearman_signed"),
        col("verdict"),
    );
    // Stage labels in stage order.
    let mut stages: Vec<(i64, String)> = Vec::new();
    for r in &long.rows {
        if let Cell::Int(s) = r[c_stage] {
            if !stages.iter().any(|(x, _)| *x == s) {
                let label = match &r[c_layer] {
                    Cell::Text(l) => format!("{s} {l}"),
                    _ => format!("{s} trained"),
                };
                stages.push((s, label));
            }
        }
    }
    stages.sort();
    let mut columns = vec!["method".to_string(), "verdict".to_string()];
    columns.extend(stages.iter().map(|(_, l)| l.clone()));
    columns.push("signed_last".into());
    let mut t = Table::new(columns);
    let mut methods: Vec<String> = Vec::new();
    for r in &long.rows {
        if let Cell::Text(m) = &r[c_method] {
            if !methods.contains(m) {
                methods.push(m.clone());
            }
        }
    }
    let last = stages.last().map(|s| s.0);
    for m in methods {
        let rows: Vec<&Vec<Cell>> = long
            .rows
            .iter()
            .filter(|r| matches!(&r[c_method], Cell::Text(x) if *x == m))
            .collect();
        let at = |s: i64, c: usize| -> Cell {
            rows.iter()
                .find(|r| matches!(r[c_stage], Cell::Int(x) if x == s))
                .map_or(Cell::Null, |r| r[c].clone())
        };
        let mut row = vec![Cell::Text(m.clone()), rows[0][c_verdict].clone()];
        row.extend(stages.iter().map(|(s, _)| at(*s, c_abs)));
        row.push(last.map_or(Cell::Null, |s| at(s, c_signed)));
        t.push(row);
    }
    let last_col = t.columns.len() - 2;
    t.rows.sort_by(|a, b| {
        let v = |r: &Vec<Cell>| match r[last_col] {
            Cell::Real(x) => x,
            _ => f64::NEG_INFINITY,
        };
        v(b).total_cmp(&v(a))
    });
    Ok(t)
}

/// The other-class check per method (`v_sanity_other_class`): similarity of the map explaining
/// another class with the map of the explained class, on the trained model.
pub fn other_class(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT method, images, mean_spearman_abs, mean_spearman_signed, empty_maps
         FROM v_sanity_other_class WHERE run_id = ?1 ORDER BY method",
        [run],
    )
}

/// The facts of the run's sanity check (`sanity_checks`): images, seed, threshold, stages, seconds.
pub fn sanity_check(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT created_at, images, seed, threshold, stages, seconds FROM sanity_checks
         WHERE run_id = ?1",
        [run],
    )
}

/// The threshold of the run's stored sanity check; `None` when the run has no sanity check.
pub fn sanity_threshold(conn: &Connection, run: &str) -> rusqlite::Result<Option<f64>> {
    use rusqlite::OptionalExtension as _;
    conn.query_row(
        "SELECT threshold FROM sanity_checks WHERE run_id = ?1",
        [run],
        |r| r.get(0),
    )
    .optional()
}

/// The largest number of curve steps among the run's faithfulness rows (`None` without rows).
pub fn faithfulness_steps(conn: &Connection, run: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT max(steps) FROM faithfulness WHERE run_id = ?1",
        [run],
        |r| r.get(0),
    )
}
