//! Runs of a database: which run a command is about, the `query runs` listing, the stored record of
//! one run (for `sanity` and the report's header) and the headline counts the commands print.
use rusqlite::{Connection, OptionalExtension as _};

use super::{Cell, QueryError, Table};

/// The run a query is about: `None` = the most recently started run; otherwise an exact run id or a
/// prefix that matches exactly one run.
pub fn resolve_run(conn: &Connection, run: Option<&str>) -> Result<String, QueryError> {
    let ids: Vec<String> = conn
        .prepare("SELECT run_id FROM runs ORDER BY started_at DESC, run_id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Err(QueryError::NoRuns);
    }
    let Some(want) = run else {
        return Ok(ids[0].clone());
    };
    if ids.iter().any(|i| i == want) {
        return Ok(want.to_string());
    }
    let matches: Vec<&String> = ids.iter().filter(|i| i.starts_with(want)).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(QueryError::UnknownRun {
            want: want.to_string(),
            runs: ids.join(", "),
        }),
        many => Err(QueryError::AmbiguousRun {
            want: want.to_string(),
            matches: many
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// A stored device string as people write it: runs recorded before the record used `CPU` / `CUDA:0`
/// hold Rust's debug names (`Cpu`, `Cuda(0)`, `Mps`); anything else is shown as it is.
pub fn display_device(stored: &str) -> String {
    match stored {
        "Cpu" => "CPU".into(),
        "Mps" => "MPS".into(),
        s => match s.strip_prefix("Cuda(").and_then(|r| r.strip_suffix(')')) {
            Some(n) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => {
                format!("CUDA:{n}")
            }
            _ => s.to_string(),
        },
    }
}

/// `query runs`: every run, newest first, with its headline figures, what its maps explain and its
/// model in one line (empty for runs recorded before they were stored). `images_flagged` is the
/// verdict's count (trusted methods, calibrated thresholds; empty when the check did not run);
/// `raw_rule_images` the raw per-map rules' (`v_suspicious`: every method, one fixed threshold).
pub fn runs(conn: &Connection) -> rusqlite::Result<Table> {
    let mut t = runs_stored(conn)?;
    if let Some(c) = t.column("device") {
        for r in &mut t.rows {
            if let Cell::Text(d) = &r[c] {
                r[c] = Cell::Text(display_device(d));
            }
        }
    }
    Ok(t)
}

fn runs_stored(conn: &Connection) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT s.run_id, s.status, s.started_at,
                round((julianday(coalesce(s.finished_at, s.started_at)) - julianday(s.started_at)) * 86400.0, 1)
                  AS seconds,
                r.profile, substr(r.model_sha256, 1, 12) AS model, r.device,
                s.images_total, s.images_done, s.images_failed, s.accuracy,
                c.verdict, c.flagged_images AS images_flagged,
                s.images_flagged AS raw_rule_images,
                r.explains, r.model_description
         FROM v_run_summary AS s JOIN runs AS r USING (run_id)
         LEFT JOIN shortcut_checks AS c USING (run_id)
         ORDER BY s.started_at DESC, s.run_id",
        [],
    )
}

/// What a run was begun with, as stored: enough for `sanity` to rebuild the run's model and data.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRun {
    pub config_yaml: String,
    pub model_path: String,
    pub model_sha256: String,
    pub data_root: String,
}

/// The stored config, model and data root of `run`; `None` when the database has no such run.
pub fn stored_run(conn: &Connection, run: &str) -> rusqlite::Result<Option<StoredRun>> {
    conn.query_row(
        "SELECT config_yaml, model_path, model_sha256, data_root FROM runs WHERE run_id = ?1",
        [run],
        |r| {
            Ok(StoredRun {
                config_yaml: r.get(0)?,
                model_path: r.get(1)?,
                model_sha256: r.get(2)?,
                data_root: r.get(3)?,
            })
        },
    )
    .optional()
}

/// Number of images of `run` that at least one rule of `v_suspicious` flags (the audit's summary line).
pub fn suspicious_image_count(conn: &Connection, run: &str) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COUNT(DISTINCT image_id) FROM v_suspicious WHERE run_id = ?1",
        [run],
        |r| r.get(0),
    )
}

/// Everything stored about one run that the report's header shows (`runs` joined with
/// `v_run_summary`).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// From start to finish (or to the start when not finished), in seconds.
    pub seconds: Option<f64>,
    pub config_yaml: String,
    pub model_path: String,
    pub model_sha256: String,
    pub data_root: String,
    pub tool_version: String,
    pub device: String,
    pub seed: i64,
    pub profile: String,
    /// The run's methods in their configured order (empty when the stored list does not parse).
    pub methods: Vec<String>,
    pub baseline_value: Option<f64>,
    pub reference_value: Option<f64>,
    pub images_total: i64,
    pub images_done: i64,
    pub images_failed: i64,
    pub errors: i64,
    /// The model in one line and the scores the maps explain (`None` for runs recorded before
    /// they were stored).
    pub model_description: Option<String>,
    pub explains: Option<String>,
}

/// The header record of `run`; an error when the run does not exist.
pub fn run_record(conn: &Connection, run: &str) -> rusqlite::Result<RunRecord> {
    conn.query_row(
        "SELECT r.status, r.started_at, r.finished_at,
                (julianday(coalesce(r.finished_at, r.started_at)) - julianday(r.started_at)) * 86400.0,
                r.config_yaml, r.model_path, r.model_sha256, r.data_root, r.tool_version, r.device,
                r.seed, r.profile, r.methods, r.baseline_value, r.reference_value, r.images_total,
                s.images_done, s.images_failed, s.errors, r.model_description, r.explains
         FROM runs AS r JOIN v_run_summary AS s USING (run_id) WHERE r.run_id = ?1",
        [run],
        |r| {
            let methods_json: String = r.get(12)?;
            Ok(RunRecord {
                status: r.get(0)?,
                started_at: r.get(1)?,
                finished_at: r.get(2)?,
                seconds: r.get(3)?,
                config_yaml: r.get(4)?,
                model_path: r.get(5)?,
                model_sha256: r.get(6)?,
                data_root: r.get(7)?,
                tool_version: r.get(8)?,
                device: display_device(&r.get::<_, String>(9)?),
                seed: r.get(10)?,
                profile: r.get(11)?,
                methods: serde_json::from_str(&methods_json).unwrap_or_default(),
                baseline_value: r.get(13)?,
                reference_value: r.get(14)?,
                images_total: r.get(15)?,
                images_done: r.get(16)?,
                images_failed: r.get(17)?,
                errors: r.get(18)?,
                model_description: r.get(19)?,
                explains: r.get(20)?,
            })
        },
    )
}

/// The run's headline counts from `v_run_summary`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSummary {
    pub images_done: i64,
    pub images_failed: i64,
    /// Over the labelled images; `None` when none is labelled.
    pub accuracy: Option<f64>,
    pub labelled: i64,
}

pub fn run_summary(conn: &Connection, run: &str) -> rusqlite::Result<RunSummary> {
    conn.query_row(
        "SELECT images_done, images_failed, accuracy, labelled FROM v_run_summary WHERE run_id = ?1",
        [run],
        |r| {
            Ok(RunSummary {
                images_done: r.get(0)?,
                images_failed: r.get(1)?,
                accuracy: r.get(2)?,
                labelled: r.get(3)?,
            })
        },
    )
}

/// Whether the database holds run `run`.
pub fn run_exists(conn: &Connection, run: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM runs WHERE run_id = ?1",
        [run],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::display_device;

    // Older databases keep Rust's debug names; they read as people write devices.
    #[test]
    fn devices_read_as_people_write_them() {
        assert_eq!(display_device("Cpu"), "CPU");
        assert_eq!(display_device("Cuda(0)"), "CUDA:0");
        assert_eq!(display_device("Cuda(12)"), "CUDA:12");
        assert_eq!(display_device("Mps"), "MPS");
        assert_eq!(display_device("CUDA:1"), "CUDA:1");
        assert_eq!(display_device("Cuda(x)"), "Cuda(x)");
        assert_eq!(display_device(""), "");
    }
}
