//! `export`: a run's results as CSV files for pandas / R / spreadsheets (RFC 4180, UTF-8, header row,
//! spreadsheet-safe text, see [`super::table::spreadsheet_safe`]) plus the mean-map pictures, written
//! into a fresh folder that replaces the previous export when complete ([`crate::output`]). The
//! columns are documented in docs/database.md ("Export files").
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::table::{Cell, Table};
use super::{bias, trust, Format, QueryError};

/// Per image x method metrics (tidy long format: one row per image x method).
pub fn metrics(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT v.run_id, v.image_id, v.path, v.label, v.predicted, v.confidence, v.correct, v.method,
                v.mass_inside, v.mass_background, v.mass_border, v.concentration_inside,
                v.concentration_border, v.top1_inside, v.top5_inside, v.gini, v.empty,
                v.completeness_error, v.segments, a.mean_spearman AS agreement, v.flagged, v.seconds
         FROM v_image_method AS v
         LEFT JOIN v_method_agreement AS a USING (run_id, image_id, method)
         WHERE v.run_id = ?1 ORDER BY v.image_id, v.method",
        [run],
    )
}

/// Per image: the prediction, one probability column per class (`p_<class>`), the leakage check.
pub fn predictions(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    let base = Table::query(
        conn,
        "SELECT p.run_id, p.image_id, i.path, i.label, p.predicted, p.confidence, p.target, p.correct,
                i.width, i.height, i.brain_area_fraction, i.mask_fallback,
                l.distance AS train_distance, l.near_duplicate, l.nearest_path AS train_nearest_path,
                p.probabilities
         FROM predictions AS p JOIN images AS i USING (image_id)
         LEFT JOIN leakage AS l ON l.run_id = p.run_id AND l.image_id = p.image_id
         WHERE p.run_id = ?1 ORDER BY p.image_id",
        [run],
    )?;
    let probs_col = base.columns.len() - 1;
    let parsed: Vec<serde_json::Map<String, serde_json::Value>> = base
        .rows
        .iter()
        .map(|r| match &r[probs_col] {
            Cell::Text(s) => serde_json::from_str(s).unwrap_or_default(),
            _ => Default::default(),
        })
        .collect();
    // Columns in the model's output order (the run's config), then any other key seen.
    let mut classes: Vec<String> = run_classes(conn, run);
    for p in &parsed {
        for k in p.keys() {
            if !classes.contains(k) {
                classes.push(k.clone());
            }
        }
    }
    let mut t = Table::new(
        base.columns[..probs_col]
            .iter()
            .cloned()
            .chain(classes.iter().map(|c| format!("p_{c}"))),
    );
    for (r, p) in base.rows.into_iter().zip(&parsed) {
        let mut row: Vec<Cell> = r.into_iter().take(probs_col).collect();
        row.extend(
            classes
                .iter()
                .map(|c| Cell::opt_real(p.get(c).and_then(|v| v.as_f64()))),
        );
        t.push(row);
    }
    Ok(t)
}

/// The class list of a run's config snapshot (`data.classes`), empty when it cannot be read.
pub fn run_classes(conn: &Connection, run: &str) -> Vec<String> {
    conn.query_row(
        "SELECT config_yaml FROM runs WHERE run_id = ?1",
        [run],
        |r| r.get::<_, String>(0),
    )
    .ok()
    .and_then(|y| serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&y).ok())
    .and_then(|v| {
        v.get("data")?.get("classes")?.as_sequence().map(|s| {
            s.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
    })
    .unwrap_or_default()
}

/// Per image x method pair: Spearman correlation and top-10% overlap of the two maps.
pub fn agreement(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT g.run_id, g.image_id, i.path, i.label, g.method_a, g.method_b, g.spearman, g.iou_top10
         FROM agreement AS g JOIN images AS i USING (image_id)
         WHERE g.run_id = ?1 ORDER BY g.image_id, g.method_a, g.method_b",
        [run],
    )
}

/// Per image x method with a ground-truth outline: where the map's evidence lies against it.
pub fn localisation(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT run_id, image_id, path, label, predicted, correct, method, outline_area, mass_on_tumor,
                tumor_concentration, pointing_hit, energy_pointing, iou_top_area
         FROM v_localisation WHERE run_id = ?1 ORDER BY image_id, method",
        [run],
    )
}

/// Everything that went wrong in the run.
pub fn errors(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT run_id, image_id, path, stage, message, at FROM errors WHERE run_id = ?1 ORDER BY id",
        [run],
    )
}

/// What `export` wrote.
pub struct Exported {
    pub files: Vec<(PathBuf, usize)>,
    pub mean_map_grid: Option<PathBuf>,
}

/// Writes `metrics.csv`, `predictions.csv`, `agreement.csv`, `bias_summary.csv`, `errors.csv`, the
/// trust checks (`faithfulness.csv`, `faithfulness_summary.csv`, `faithfulness_curves.csv`,
/// `sanity_curve.csv`), the verdict (`verdict.csv`, `shortcuts.csv`, `shortcut_methods.csv`,
/// `shortcut_flags.csv`, `shortcut_tests.csv`: each tested image's outcome, `acquisition_properties.csv`:
/// the class-difference table, `acquisition_tests.csv`: the acquisition counterfactuals), the
/// localisation figures (`localisation.csv`, `localisation_summary.csv`) and `mean-maps/` into `dir`,
/// which then holds this export and no file of an earlier one (see [`crate::output`] for what else it
/// may hold and what is refused). Returns each file with its row count.
pub fn export_run(conn: &Connection, run: &str, dir: &Path) -> Result<Exported, QueryError> {
    let staged = crate::output::Staged::begin(dir, crate::output::Kind::Export)?;
    let work = staged.dir().to_path_buf();
    let done = write_into(conn, run, &work)?;
    let target = staged.commit()?;
    let moved = |p: &PathBuf| crate::output::rebase(p, &work, &target);
    Ok(Exported {
        files: done.files.iter().map(|(p, n)| (moved(p), *n)).collect(),
        mean_map_grid: done.mean_map_grid.as_ref().map(moved),
    })
}

/// Writes the export's files into the empty folder `dir`.
fn write_into(conn: &Connection, run: &str, dir: &Path) -> Result<Exported, QueryError> {
    let tables = [
        ("metrics.csv", metrics(conn, run)?),
        ("predictions.csv", predictions(conn, run)?),
        ("agreement.csv", agreement(conn, run)?),
        ("bias_summary.csv", bias::summary(conn, run)?),
        ("errors.csv", errors(conn, run)?),
        // Trust checks (empty, header only, when the run has none).
        ("faithfulness.csv", trust::faithfulness_images(conn, run)?),
        (
            "faithfulness_summary.csv",
            trust::faithfulness_by_class(conn, run)?,
        ),
        ("faithfulness_curves.csv", trust::mean_curves(conn, run)?),
        ("sanity_curve.csv", trust::sanity_curve(conn, run)?),
        // The run's verdict (empty, header only, when the shortcut check did not run).
        ("verdict.csv", super::shortcuts::verdict(conn, run)?),
        ("shortcuts.csv", super::shortcuts::regions(conn, run)?),
        (
            "shortcut_methods.csv",
            super::shortcuts::methods(conn, run)?,
        ),
        ("shortcut_flags.csv", super::shortcuts::flagged(conn, run)?),
        ("shortcut_tests.csv", super::shortcuts::tests(conn, run)?),
        // The acquisition part: what differs between the classes, the counterfactuals' flip table.
        (
            "acquisition_properties.csv",
            super::shortcuts::acquisition_properties(conn, run)?,
        ),
        (
            "acquisition_tests.csv",
            super::shortcuts::acquisition_tests(conn, run)?,
        ),
        // Ground-truth outlines (empty, header only, when the run has none).
        ("localisation.csv", localisation(conn, run)?),
        (
            "localisation_summary.csv",
            super::localisation::summary(conn, run)?,
        ),
    ];
    let mut files = Vec::new();
    for (name, t) in &tables {
        let path = dir.join(name);
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&path).map_err(|e| QueryError::file("write", &path, e))?,
        );
        // Flushed here: an error in the buffered tail (a full disk) must not be lost on drop.
        (t.write(Format::Csv, &mut f).and_then(|()| f.flush()))
            .map_err(|e| QueryError::file("write", &path, e))?;
        files.push((path, t.rows.len()));
    }
    let maps = bias::mean_maps(conn, run)?;
    let mean_map_grid = if maps.is_empty() {
        None
    } else {
        Some(bias::write_mean_maps(&maps, &dir.join("mean-maps"))?)
    };
    Ok(Exported {
        files,
        mean_map_grid,
    })
}
