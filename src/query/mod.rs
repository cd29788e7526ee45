//! Reading an audit database: every SELECT of the project outside the store's own bookkeeping. The
//! `query` answers (suspicious images, one image, raw SQL) live here; runs (runs.rs), the bias
//! summaries and mean maps (bias.rs), the CSV export (export.rs), the run-to-run diff (diff.rs), the
//! trust summaries (trust.rs), the leakage rows (leakage.rs) and the report's readers (report.rs) in
//! their files. Everything reads through the SQL views of `migrations/`, so sqlite3, Python or R users
//! get the same answers.

use rusqlite::{named_params, Connection};

pub mod bias;
pub mod diff;
pub mod export;
pub mod leakage;
pub mod localisation;
pub mod report;
pub mod runs;
pub mod shortcuts;
pub mod table;
pub mod trust;

pub use runs::{resolve_run, runs};
pub use table::{Cell, Format, Table};

/// What can go wrong when reading a database; every message says what was asked and what was found.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),

    /// A statement given by the user (`query sql`) that SQLite refused.
    #[error("SQL: {sql}")]
    Sql {
        sql: String,
        #[source]
        source: rusqlite::Error,
    },

    #[error("the database has no runs yet: run `tumor-audit audit` first")]
    NoRuns,

    #[error("no run {want:?}; runs: {runs}")]
    UnknownRun { want: String, runs: String },

    #[error("run {want:?} is ambiguous: it starts {matches}")]
    AmbiguousRun { want: String, matches: String },

    #[error("run {run} has no image whose id starts with, or whose path ends with, {key:?}")]
    NoImage { run: String, key: String },

    #[error(
        "{key:?} matches {count} images of run {run}, e.g. {examples}; give more of the id or path"
    )]
    AmbiguousImage {
        key: String,
        count: usize,
        run: String,
        examples: String,
    },

    #[error(
        "refused: `query sql` is read-only and this statement would change the database ({keyword}); \
         nothing was changed"
    )]
    WouldWrite { keyword: String },

    #[error("runs {a} and {b} have no image in common: nothing to compare")]
    NoCommonImages { a: String, b: String },

    /// A setting out of its range (the message names the option and the range).
    #[error("{0}")]
    Invalid(String),

    /// The output folder of `export` cannot take the export (see [`crate::output`]).
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),

    /// A file of the export or the mean maps that could not be made.
    #[error(transparent)]
    File(#[from] crate::output::FileError),
}

impl QueryError {
    /// Whether the error is a mistake in what the user asked for (a run or image that does not exist or
    /// is ambiguous, a setting out of range, a `query sql` statement that would write): nothing was done,
    /// and the exit code is [`crate::exit::Exit::Usage`].
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            QueryError::UnknownRun { .. }
                | QueryError::AmbiguousRun { .. }
                | QueryError::NoImage { .. }
                | QueryError::AmbiguousImage { .. }
                | QueryError::Invalid(_)
                | QueryError::WouldWrite { .. }
        )
    }

    pub(crate) fn file(
        what: &'static str,
        path: &std::path::Path,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        crate::output::FileError::new(what, path, source).into()
    }
}

/// Thresholds of `query suspicious`; the defaults are the rules of the `v_suspicious_images` view.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// A method's map is misplaced when its background mass exceeds this...
    pub background: f64,
    /// ...or its border-band mass exceeds this.
    pub border: f64,
    /// A wrong prediction above this confidence is suspicious.
    pub confidence: f64,
    /// Methods disagree when the mean Spearman correlation between their maps is below this.
    pub agreement: f64,
    /// An image needs this many misplaced methods for the location rule to fire.
    pub min_methods: i64,
    /// Only this method's maps count for the location rule (None: all methods).
    pub method: Option<String>,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            background: 0.5,
            border: 0.5,
            confidence: 0.9,
            agreement: 0.05,
            min_methods: 1,
            method: None,
        }
    }
}

/// `query suspicious`: one row per suspicious image, most suspicious first (score, then the largest
/// value-to-threshold ratio), with the rules that fired spelled out in `reasons`.
pub fn suspicious(conn: &Connection, run: &str, rules: &Rules) -> Result<Table, QueryError> {
    if rules.background <= 0.0 || rules.border <= 0.0 {
        return Err(QueryError::Invalid(
            "--background and --border must be above 0".into(),
        ));
    }
    let sql = "
WITH marked AS (
    SELECT *,
        coalesce(mass_background, 0) > :bg AS r_bg,
        coalesce(mass_border, 0) > :border AS r_border
    FROM v_image_method
    WHERE run_id = :run AND (:method IS NULL OR method = :method)
),
per_image AS (
    SELECT run_id, image_id, path, label, predicted, confidence, correct,
        count(*) AS methods,
        sum(r_bg OR r_border) AS methods_flagged,
        group_concat(CASE WHEN r_bg OR r_border THEN method END, ',') AS flagged_by,
        group_concat(CASE WHEN r_bg OR r_border THEN
            method || ' ' || trim(
                CASE WHEN r_bg THEN 'background ' || printf('%.2f', mass_background) ELSE '' END ||
                CASE WHEN r_bg AND r_border THEN ', ' ELSE ' ' END ||
                CASE WHEN r_border THEN 'border ' || printf('%.2f', mass_border) ELSE '' END)
            END, '; ') AS location_reasons,
        max(max(coalesce(mass_background, 0) / :bg, coalesce(mass_border, 0) / :border)) AS location_ratio
    FROM marked
    GROUP BY run_id, image_id
),
rules AS (
    SELECT p.*,
        a.mean_spearman AS agreement,
        (coalesce(p.correct, 1) = 0 AND coalesce(p.confidence, 0) > :conf) AS confidently_wrong,
        (a.mean_spearman IS NOT NULL AND a.mean_spearman < :agree) AS methods_disagree,
        l.distance AS train_distance,
        l.near_duplicate
    FROM per_image AS p
    LEFT JOIN v_image_agreement AS a ON a.run_id = p.run_id AND a.image_id = p.image_id
    LEFT JOIN leakage AS l ON l.run_id = p.run_id AND l.image_id = p.image_id
)
SELECT
    CASE WHEN methods_flagged >= :min_methods THEN methods_flagged ELSE 0 END
      + confidently_wrong + methods_disagree AS score,
    image_id, path, label, predicted, confidence, correct,
    methods_flagged, methods, flagged_by, location_ratio, agreement,
    confidently_wrong, methods_disagree, train_distance, near_duplicate,
    ltrim(
        CASE WHEN methods_flagged >= :min_methods THEN '; ' || location_reasons ELSE '' END ||
        CASE WHEN confidently_wrong THEN '; wrong with confidence ' || printf('%.2f', confidence) ELSE '' END ||
        CASE WHEN methods_disagree THEN '; methods disagree (mean Spearman ' || printf('%.2f', agreement) || ')'
             ELSE '' END,
        '; ') AS reasons
FROM rules
WHERE methods_flagged >= :min_methods OR confidently_wrong OR methods_disagree
ORDER BY score DESC, location_ratio DESC, image_id";
    let t = Table::query(
        conn,
        sql,
        named_params! {
            ":run": run,
            ":bg": rules.background,
            ":border": rules.border,
            ":conf": rules.confidence,
            ":agree": rules.agreement,
            ":min_methods": rules.min_methods,
            ":method": rules.method,
        },
    )?;
    Ok(t)
}

/// Finds one image of a run by id prefix, by its path as stored or a path ending
/// (`glioma/Te-gl_0010.jpg`), or by its file name without the extension (`Te-gl_0010`).
pub fn find_image(conn: &Connection, run: &str, key: &str) -> Result<String, QueryError> {
    let ids: Vec<(String, String)> = conn
        .prepare(
            "SELECT i.image_id, i.path FROM run_images AS r JOIN images AS i USING (image_id)
             WHERE r.run_id = ?1 AND (i.image_id LIKE ?2 || '%' ESCAPE '\\' OR i.path = ?3
                                     OR i.path LIKE '%' || ?2 ESCAPE '\\'
                                     OR i.path LIKE '%/' || ?2 || '.%' ESCAPE '\\'
                                     OR i.path LIKE ?2 || '.%' ESCAPE '\\')
             ORDER BY i.image_id",
        )?
        .query_map(rusqlite::params![run, like_escape(key), key], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    match ids.as_slice() {
        [(id, _)] => Ok(id.clone()),
        [] => Err(QueryError::NoImage {
            run: run.to_string(),
            key: key.to_string(),
        }),
        many => Err(QueryError::AmbiguousImage {
            key: key.to_string(),
            count: many.len(),
            run: run.to_string(),
            examples: many
                .iter()
                .take(3)
                .map(|(_, p)| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// `query image`: everything stored for one image of a run, as named sections.
pub fn image(
    conn: &Connection,
    run: &str,
    image_id: &str,
) -> Result<Vec<(String, Table)>, QueryError> {
    let p = rusqlite::params![run, image_id];
    let sections = [
        (
            "image",
            "SELECT i.image_id, i.path, i.label, i.width, i.height, i.brain_area_fraction, i.mask_fallback,
                    ri.status, ri.seconds
             FROM images AS i JOIN run_images AS ri ON ri.image_id = i.image_id AND ri.run_id = ?1
             WHERE i.image_id = ?2",
        ),
        (
            "prediction",
            "SELECT predicted, confidence, target, correct, probabilities FROM predictions
             WHERE run_id = ?1 AND image_id = ?2",
        ),
        (
            "leakage",
            "SELECT distance AS train_distance, near_duplicate, max_distance, nearest_path, train_dir
             FROM leakage WHERE run_id = ?1 AND image_id = ?2",
        ),
        (
            "methods",
            "SELECT v.method, v.flagged, v.mass_inside, v.mass_background, v.mass_border,
                    v.concentration_inside, v.top5_inside, v.gini, a.mean_spearman AS agreement,
                    v.completeness_error, v.segments, v.seconds
             FROM v_image_method AS v
             LEFT JOIN v_method_agreement AS a USING (run_id, image_id, method)
             WHERE v.run_id = ?1 AND v.image_id = ?2 ORDER BY v.method",
        ),
        (
            "agreement",
            "SELECT method_a, method_b, spearman, iou_top10 FROM agreement
             WHERE run_id = ?1 AND image_id = ?2 ORDER BY method_a, method_b",
        ),
        (
            "errors",
            "SELECT stage, message, at FROM errors WHERE run_id = ?1 AND image_id = ?2 ORDER BY id",
        ),
    ];
    sections
        .iter()
        .map(|(name, sql)| Ok((name.to_string(), Table::query(conn, sql, p)?)))
        .collect()
}

/// `query sql`: one statement on a read-only connection. A statement that would write is refused
/// before it runs (SQLite's own read-only check), and the connection itself cannot write either.
pub fn sql(conn: &Connection, text: &str) -> Result<Table, QueryError> {
    let mut stmt = conn.prepare(text).map_err(|source| QueryError::Sql {
        sql: text.trim().to_string(),
        source,
    })?;
    if !stmt.readonly() {
        return Err(QueryError::WouldWrite {
            keyword: text.split_whitespace().next().unwrap_or("").to_uppercase(),
        });
    }
    Ok(Table::from_statement(&mut stmt, [])?)
}
