//! Runs of a database: which run a command is about, the `query runs` listing, the stored record of
//! one run (for `sanity` and the report's header) and the headline counts the commands print.
use rusqlite::{Connection, OptionalExtension as _};

use super::{Cell, QueryError, Table};
use crate::store::{from_row, real_or_nan, RunRecord};

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

/// The columns of `runs` (as `r`) that make a [`RunRecord`], in the order [`read_record`] reads them.
const RECORD_COLUMNS: &str = "r.run_id, r.config_yaml, r.model_path, r.model_sha256, r.data_root, \
     r.tool_version, r.device, r.seed, r.profile, r.methods, r.baseline_value, r.reference_value, \
     r.images_total, r.model_description, r.explains";

/// The [`RunRecord`] in the row's columns from `at` on ([`RECORD_COLUMNS`]). What a run did not
/// record reads as not known: NULL values as NaN (the database's convention), a model description or
/// `explains` from before they were stored as empty text, a method list that does not parse as
/// empty.
fn read_record(r: &rusqlite::Row, at: usize) -> rusqlite::Result<RunRecord> {
    let methods: String = r.get(at + 9)?;
    let text = |i: usize| -> rusqlite::Result<String> {
        Ok(r.get::<_, Option<String>>(at + i)?.unwrap_or_default())
    };
    Ok(RunRecord {
        run_id: r.get(at)?,
        config_yaml: r.get(at + 1)?,
        model_path: r.get(at + 2)?,
        model_sha256: r.get(at + 3)?,
        data_root: r.get(at + 4)?,
        tool_version: r.get(at + 5)?,
        device: r.get(at + 6)?,
        seed: r.get(at + 7)?,
        profile: r.get(at + 8)?,
        methods: serde_json::from_str(&methods).unwrap_or_default(),
        baseline_value: real_or_nan(r, at + 10)?,
        reference_value: real_or_nan(r, at + 11)?,
        images_total: r.get(at + 12)?,
        model_description: text(13)?,
        explains: text(14)?,
    })
}

/// What `run` was begun with, as its row in `runs` holds it (`sanity` and `shortcuts` rebuild the
/// run's model and data from it); `None` when the database has no such run.
pub fn stored_run(conn: &Connection, run: &str) -> rusqlite::Result<Option<RunRecord>> {
    conn.query_row(
        &format!("SELECT {RECORD_COLUMNS} FROM runs AS r WHERE r.run_id = ?1"),
        [run],
        |r| read_record(r, 0),
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

/// Where a run stands: its status, and when it started and finished.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStatus {
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// From start to finish (or to the start when not finished), in seconds.
    pub seconds: Option<f64>,
}

/// Everything the report's header shows about one run: what it was begun with, where it stands and
/// its counts.
#[derive(Debug, Clone, PartialEq)]
pub struct RunHeader {
    pub record: RunRecord,
    pub status: RunStatus,
    pub summary: RunSummary,
}

/// The header of `run`; an error when the run does not exist.
pub fn run_header(conn: &Connection, run: &str) -> rusqlite::Result<RunHeader> {
    let summary = run_summary(conn, run)?;
    conn.query_row(
        &format!(
            "SELECT r.status, r.started_at, r.finished_at,
                    (julianday(coalesce(r.finished_at, r.started_at)) - julianday(r.started_at)) * 86400.0,
                    {RECORD_COLUMNS}
             FROM runs AS r WHERE r.run_id = ?1"
        ),
        [run],
        |r| {
            let status = from_row!(RunStatus {
                status,
                started_at,
                finished_at,
                seconds
            })(r)?;
            Ok(RunHeader {
                record: read_record(r, 4)?,
                status,
                summary,
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
    /// Rows in `errors` (an image can have several).
    pub errors: i64,
}

pub fn run_summary(conn: &Connection, run: &str) -> rusqlite::Result<RunSummary> {
    conn.query_row(
        "SELECT images_done, images_failed, accuracy, labelled, errors FROM v_run_summary \
         WHERE run_id = ?1",
        [run],
        from_row!(RunSummary {
            images_done,
            images_failed,
            accuracy,
            labelled,
            errors,
        }),
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
