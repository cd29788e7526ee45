//! The SQLite storage layer (the write side): schema migrations, the [`Store`] handle (open, runs, resume),
//! the record types, the stored maps' codec (`maps.rs`), trust-check and leakage rows. Reads live in `query/`.
//!
//! The schema lives in `migrations/NNNN_*.sql` (embedded at build time), applied in order, one
//! transaction each, the number applied kept in `PRAGMA user_version`. The database is in WAL mode,
//! so readers (`open_read_only`, sqlite3, Python, ...) are never blocked by the single [`Writer`]
//! thread, which owns its own connection and commits results in batches (see `writer.rs`).
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::shard::Shard;

pub mod leakage;
mod lock;
pub mod maps;
mod merge;
pub mod shortcuts;
pub mod trust;
mod writer;
pub use lock::RunLock;
pub use merge::{merge_shards, MergeError, MergeOptions, MergeReport, MergedShard};
pub use trust::FaithfulnessRecord;
pub use writer::{Writer, WriterMessage, WriterStats};

#[cfg(test)]
mod tests;

/// The migrations, in order; migration `i` (0-based) brings the database to `user_version = i + 1`.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_initial.sql",
        include_str!("../../migrations/0001_initial.sql"),
    ),
    (
        "0002_views.sql",
        include_str!("../../migrations/0002_views.sql"),
    ),
    (
        "0003_query.sql",
        include_str!("../../migrations/0003_query.sql"),
    ),
    (
        "0004_shards.sql",
        include_str!("../../migrations/0004_shards.sql"),
    ),
    (
        "0005_trust.sql",
        include_str!("../../migrations/0005_trust.sql"),
    ),
    (
        "0006_shard_source.sql",
        include_str!("../../migrations/0006_shard_source.sql"),
    ),
    (
        "0007_verdicts.sql",
        include_str!("../../migrations/0007_verdicts.sql"),
    ),
    (
        "0008_shortcut_tests.sql",
        include_str!("../../migrations/0008_shortcut_tests.sql"),
    ),
    (
        "0009_model_record.sql",
        include_str!("../../migrations/0009_model_record.sql"),
    ),
    (
        "0010_inconclusive_verdict.sql",
        include_str!("../../migrations/0010_inconclusive_verdict.sql"),
    ),
    (
        "0011_acquisition.sql",
        include_str!("../../migrations/0011_acquisition.sql"),
    ),
    (
        "0012_outlines.sql",
        include_str!("../../migrations/0012_outlines.sql"),
    ),
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a connection waits for a lock held by another connection before failing with "busy", by
/// default (`--lock-timeout`; see [`set_lock_timeout`]).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// The wait of every connection opened from now on, in milliseconds.
static LOCK_TIMEOUT_MS: AtomicU64 = AtomicU64::new(BUSY_TIMEOUT.as_millis() as u64);

/// Sets how long connections wait for a database locked by another process (the global
/// `--lock-timeout` option): they retry during that time, then fail with [`StoreError::Busy`].
pub fn set_lock_timeout(wait: Duration) {
    LOCK_TIMEOUT_MS.store(wait.as_millis() as u64, Ordering::Relaxed);
}

/// The current wait for a locked database.
pub fn lock_timeout() -> Duration {
    Duration::from_millis(LOCK_TIMEOUT_MS.load(Ordering::Relaxed))
}

/// `PRAGMA application_id` of tumor-audit databases ("TAud"): a database with another non-zero id, or
/// with tables but neither this id nor tumor-audit's schema, belongs to another application and is
/// never written (see [`Store::open`]).
pub const APPLICATION_ID: i32 = 0x5441_7564;

/// The statuses a run can have.
pub const RUN_STATUSES: &[&str] = &["running", "finished", "failed", "interrupted"];

/// Everything that can go wrong in the store; every message names the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("database {path}: cannot create its folder: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("database {path} does not exist")]
    NotFound { path: PathBuf },

    #[error(
        "database {path} has schema version {found}, this tumor-audit knows up to {known}; use a newer tumor-audit"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    #[error(
        "database {path} has schema version {found}, this tumor-audit expects {known}; open it once for writing \
         (e.g. with `tumor-audit audit`) to upgrade it"
    )]
    TooOld {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    #[error("database {path}: migration {name} failed: {source}")]
    Migration {
        path: PathBuf,
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    #[error(
        "database {path}: run {run_id} already exists with a different {what}; a run can only be resumed with the \
         same config and model: choose another run name or delete the old run"
    )]
    RunMismatch {
        path: PathBuf,
        run_id: String,
        what: &'static str,
    },

    #[error(
        "database {path}: run {run_id} was begun as {found}, not as {wanted}; resume it with the same --shard, \
         or choose another run name or database"
    )]
    ShardMismatch {
        path: PathBuf,
        run_id: String,
        found: String,
        wanted: String,
    },

    #[error("database {path}: there is no run {run_id}")]
    NoSuchRun { path: PathBuf, run_id: String },

    #[error("database {path}: invalid run status {status:?}, expected one of running, finished, failed, interrupted")]
    BadStatus { path: PathBuf, status: String },

    #[error("database {path}: the writer thread panicked")]
    WriterPanicked { path: PathBuf },

    #[error(
        "database {path} is locked by another process; waited {waited_secs} s (--lock-timeout) and gave up: \
         {source}"
    )]
    Busy {
        path: PathBuf,
        waited_secs: u64,
        #[source]
        source: rusqlite::Error,
    },

    #[error(
        "database {path}: run {run_id} is being audited by another process ({holder}; lock file {lock}); \
         wait for it to end, or choose another run name"
    )]
    RunLocked {
        path: PathBuf,
        run_id: String,
        lock: PathBuf,
        holder: String,
    },

    #[error(
        "database {path}: shard run {run_id} was begun on {what}; resume it on the same test set with the \
         same --limit, or choose another run name"
    )]
    SourceMismatch {
        path: PathBuf,
        run_id: String,
        what: String,
    },

    #[error("run lock {path}: {source}")]
    LockFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{path} is not a tumor-audit database ({found}); it is left untouched: give --db (or --into) a new \
         file or one tumor-audit wrote"
    )]
    Foreign { path: PathBuf, found: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches the database path to a rusqlite result.
pub(crate) trait At<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> At<T> for rusqlite::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| at(path, source))
    }
}

/// A rusqlite error with the database path; a lock held by another process past the wait is
/// [`StoreError::Busy`], which says how long it waited.
pub(crate) fn at(path: &Path, source: rusqlite::Error) -> StoreError {
    let busy = matches!(
        source.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    if busy {
        StoreError::Busy {
            path: path.to_path_buf(),
            waited_secs: lock_timeout().as_secs(),
            source,
        }
    } else {
        StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The closure that reads a `$ty` from a rusqlite row whose columns are the struct's fields in
/// order: `from_row!(RunCounts { images_total, done })` reads column 0 into `images_total` and
/// column 1 into `done`. For rows that need no conversion beyond [`rusqlite::Row::get`].
macro_rules! from_row {
    ($ty:ident { $($field:ident),+ $(,)? }) => {
        |r: &rusqlite::Row<'_>| -> rusqlite::Result<$ty> {
            let mut column = 0usize..;
            Ok($ty {
                $($field: r.get(column.next().expect("an unbounded range"))?,)+
            })
        }
    };
}
pub(crate) use from_row;

/// One column of a row to insert: its name and its value.
pub(crate) type Column<'a> = (&'static str, &'a dyn rusqlite::ToSql);

/// The [`Column`]s of a record's fields whose columns bear the fields' names:
/// `columns!(f: image_id, value)` is `[("image_id", &f.image_id), ("value", &f.value)]`.
macro_rules! columns {
    ($r:ident: $($field:ident),+ $(,)?) => {
        [$((stringify!($field), &$r.$field as &dyn rusqlite::ToSql)),+]
    };
}
pub(crate) use columns;

/// `names` beside `values`, an empty name leaving its value out: the columns of a part of a record
/// (a count, a distribution) under the names one table gives them.
pub(crate) fn named<'a, const N: usize>(
    names: [&'static str; N],
    values: [&'a dyn rusqlite::ToSql; N],
) -> Vec<Column<'a>> {
    names
        .into_iter()
        .zip(values)
        .filter(|c| !c.0.is_empty())
        .collect()
}

/// Inserts one row into `table`, its columns given in parts, each column named beside its value: no
/// list of `?N` has to line up with a list of values. The statement is cached per column list. A NaN
/// is stored as NULL (SQLite binds it so).
pub(crate) fn insert(conn: &Connection, table: &str, parts: &[&[Column]]) -> rusqlite::Result<()> {
    let row: Vec<&Column> = parts.iter().flat_map(|p| p.iter()).collect();
    let names: Vec<&str> = row.iter().map(|c| c.0).collect();
    let marks: Vec<String> = (1..=row.len()).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.join(", "),
        marks.join(", ")
    );
    conn.prepare_cached(&sql)?
        .execute(rusqlite::params_from_iter(row.iter().map(|c| c.1)))?;
    Ok(())
}

/// Column `i` of a row as a float, NULL read as NaN: the other way of the store's writing NaN as NULL.
pub(crate) fn real_or_nan(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<f64> {
    Ok(r.get::<_, Option<f64>>(i)?.unwrap_or(f64::NAN))
}

/// One audit run, as recorded in `runs` when it starts (and as `query::runs` reads it back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub config_yaml: String,
    pub model_path: String,
    pub model_sha256: String,
    pub data_root: String,
    pub tool_version: String,
    pub device: String,
    pub seed: i64,
    pub profile: String,
    pub methods: Vec<String>,
    pub baseline_value: f64,
    pub reference_value: f64,
    pub images_total: i64,
    /// The model in one line: kind and file, input, classes, how its outputs are taken.
    pub model_description: String,
    /// The scores the maps explain (`logits`, or the logits before a removed final softmax).
    pub explains: String,
}

/// A row of `images`: one distinct file content (`image_id` = sha256 of the bytes, hex).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub image_id: String,
    pub path: String,
    pub label: Option<String>,
    pub width: i64,
    pub height: i64,
    pub brain_area_fraction: f64,
    pub mask_fallback: bool,
}

/// A row of `predictions` (run and image come from the [`ImageResult`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    pub predicted: String,
    pub confidence: f64,
    /// JSON object class -> probability.
    pub probabilities: String,
    /// The class the attribution maps explain.
    pub target: String,
    /// `None` when the image has no label.
    pub correct: Option<bool>,
}

/// A row of `attribution_metrics` (run and image come from the [`ImageResult`]). NaN is stored as NULL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    pub method: String,
    pub mass_inside: f64,
    pub mass_background: f64,
    pub mass_border: f64,
    pub concentration_inside: f64,
    pub concentration_border: f64,
    pub top1_inside: f64,
    pub top5_inside: f64,
    pub gini: f64,
    pub empty: bool,
    pub completeness_error: Option<f64>,
    pub segments: Option<i64>,
    pub seconds: f64,
    /// Split-half reproducibility of a stochastic map (migration 0006); `None` for the others.
    #[serde(default)]
    pub reproducibility: Option<f64>,
}

/// A row of `agreement` between two methods on one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgreementRecord {
    pub method_a: String,
    pub method_b: String,
    pub spearman: f64,
    pub iou_top10: f64,
}

/// A row of `maps`: a downsampled attribution map in the encoding named by `encoding` (see [`maps`]:
/// built with [`MapRecord::f16le`], read with [`maps::decode`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapRecord {
    pub method: String,
    pub width: i64,
    pub height: i64,
    pub encoding: String,
    pub data: Vec<u8>,
}

/// A row of `errors`; the time is filled in by the database.
/// `stage`: "decode", "predict", "attribution:<method>", "metrics" or "write".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub run_id: String,
    pub image_id: Option<String>,
    pub path: String,
    pub stage: String,
    pub message: String,
}

/// Everything computed for one image in one run, written in one go.
///
/// The image is recorded in `run_images` as 'done' when `prediction` is `Some`, as 'failed' (and so
/// retried by a resumed run) when it is `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageResult {
    pub run_id: String,
    pub image: ImageRecord,
    pub prediction: Option<PredictionRecord>,
    pub metrics: Vec<MetricRecord>,
    pub agreement: Vec<AgreementRecord>,
    pub maps: Vec<MapRecord>,
    /// Deletion/insertion curves per method and the random baseline (empty unless the run asks for them).
    #[serde(default)]
    pub faithfulness: Vec<FaithfulnessRecord>,
    /// The image's ground-truth outline, when it has one (`data.masks`).
    #[serde(default)]
    pub outline: Option<OutlineRecord>,
    /// Localisation figures per method against that outline (empty without one).
    #[serde(default)]
    pub localisation: Vec<LocalisationRecord>,
    pub errors: Vec<ErrorRecord>,
    pub seconds: f64,
}

/// A row of `outlines` (migration 0012_outlines.sql).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutlineRecord {
    pub mask_path: String,
    /// Side of the map grid the mask was resized to.
    pub grid: i64,
    pub area_fraction: f64,
    pub tolerance_px: i64,
    /// Side of `outline`.
    pub outline_size: i64,
    /// Coverage bytes, row-major `outline_size x outline_size` (0 outside .. 255 inside).
    pub outline: Vec<u8>,
}

/// A row of `localisation`: one method's map against the image's outline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalisationRecord {
    pub method: String,
    pub mass_on_tumor: f64,
    pub pointing_hit: bool,
    pub energy_pointing: f64,
    pub iou_top_area: f64,
}

/// The full image list a shard was cut from (after `--limit`, before sharding); shards of one run must
/// share it (see `migrations/0006_shard_source.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSource {
    pub images_listed: usize,
    /// sha256 over the sorted image ids of the list (see [`crate::shard::select`]).
    pub image_list_sha256: String,
    pub image_limit: Option<usize>,
}

/// A run's counts over all its invocations (see [`Store::run_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// The images the run covers (its shard's, for a shard).
    pub images_total: i64,
    /// Images with all their results recorded ('done').
    pub done: i64,
    /// Distinct images (or unreadable files) with at least one row in `errors`.
    pub failed: i64,
    /// Predictions of images with a known class, and how many of them are right.
    pub labelled: i64,
    pub correct: i64,
}

/// A connection to an audit database, with its path for error messages.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database for reading and writing, creating it (and its parent folders) if missing,
    /// sets the connection pragmas and applies the migrations it lacks. A database of another
    /// application is refused before anything is written to it ([`StoreError::Foreign`]); ours are
    /// marked with [`APPLICATION_ID`].
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let mut conn = Connection::open(path).at(path)?;
        conn.busy_timeout(lock_timeout()).at(path)?;
        // Before any pragma that writes (journal mode, migrations): someone else's file, and one of a
        // newer schema this build will refuse, stay byte-identical.
        let app_id = check_ours(&conn, path)?;
        check_not_newer(&conn, path)?;
        configure(&conn, path, true)?;
        migrate(&mut conn, path)?;
        if app_id != APPLICATION_ID {
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .at(path)?;
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing database read-only (`SQLITE_OPEN_READ_ONLY`): every write statement fails
    /// with SQLite's "attempt to write a readonly database". The schema must be exactly this build's.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        if !path.is_file() {
            return Err(StoreError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).at(path)?;
        configure(&conn, path, false)?;
        check_ours(&conn, path)?;
        let found = check_not_newer(&conn, path)?;
        if found < SCHEMA_VERSION {
            return Err(StoreError::TooOld {
                path: path.to_path_buf(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The number of migrations applied (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64> {
        user_version(&self.conn).at(&self.path)
    }

    /// The connection, for queries the store has no method for.
    pub fn conn(&self) -> &rusqlite::Connection {
        &self.conn
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records the start of a run. Returns `false` for a new run; `true` when `run_id` already exists
    /// with the same `config_yaml` and `model_sha256` (a resume: its status goes back to 'running' and
    /// `finished_at` is cleared). A `run_id` that exists with another config or model is an error.
    pub fn begin_run(&self, run: &RunRecord) -> Result<bool> {
        self.begin_shard_run(run, None)
    }

    /// [`Store::begin_run`] for shard `shard` of a run (`None`: the whole test set). The shard is
    /// recorded in the run row; resuming with another shard (or none) is refused.
    pub fn begin_shard_run(&self, run: &RunRecord, shard: Option<Shard>) -> Result<bool> {
        let p = &self.path;
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .at(p)?;
        let existing: Option<(String, String, Option<u32>, Option<u32>)> = tx
            .query_row(
                "SELECT config_yaml, model_sha256, shard_index, shard_count FROM runs WHERE run_id = ?1",
                [&run.run_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .at(p)?;
        let resuming = match existing {
            Some((config, model, index, count)) => {
                let describe = |index: Option<u32>, count: Option<u32>| match (index, count) {
                    (Some(k), Some(n)) => format!("shard {k} of {n}"),
                    (None, Some(n)) => format!("a run merged from {n} shards"),
                    _ => "a run over the whole test set".to_string(),
                };
                let wanted = (shard.map(|s| s.index), shard.map(|s| s.count));
                if (index, count) != wanted {
                    return Err(StoreError::ShardMismatch {
                        path: p.clone(),
                        run_id: run.run_id.clone(),
                        found: describe(index, count),
                        wanted: describe(wanted.0, wanted.1),
                    });
                }
                if model != run.model_sha256 {
                    return Err(StoreError::RunMismatch {
                        path: p.clone(),
                        run_id: run.run_id.clone(),
                        what: "model (sha256)",
                    });
                }
                if config != run.config_yaml {
                    return Err(StoreError::RunMismatch {
                        path: p.clone(),
                        run_id: run.run_id.clone(),
                        what: "config",
                    });
                }
                tx.execute(
                    "UPDATE runs SET status = 'running', finished_at = NULL, tool_version = ?2, device = ?3, \
                     images_total = ?4, model_description = ?5, explains = ?6 WHERE run_id = ?1",
                    params![
                        run.run_id,
                        run.tool_version,
                        run.device,
                        run.images_total,
                        run.model_description,
                        run.explains
                    ],
                )
                .at(p)?;
                true
            }
            None => {
                let methods =
                    serde_json::to_string(&run.methods).expect("a list of strings serializes");
                tx.execute(
                    "INSERT INTO runs (run_id, status, config_yaml, model_path, model_sha256, data_root, tool_version, \
                     device, seed, profile, methods, baseline_value, reference_value, images_total, shard_index, \
                     shard_count, model_description, explains) \
                     VALUES (?1, 'running', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                    params![
                        run.run_id,
                        run.config_yaml,
                        run.model_path,
                        run.model_sha256,
                        run.data_root,
                        run.tool_version,
                        run.device,
                        run.seed,
                        run.profile,
                        methods,
                        run.baseline_value,
                        run.reference_value,
                        run.images_total,
                        shard.map(|s| s.index),
                        shard.map(|s| s.count),
                        run.model_description,
                        run.explains
                    ],
                )
                .at(p)?;
                false
            }
        };
        tx.commit().at(p)?;
        Ok(resuming)
    }

    /// Sets the final status of a run ('finished', 'failed', 'interrupted'; or 'running') and its end time.
    pub fn finish_run(&self, run_id: &str, status: &str) -> Result<()> {
        if !RUN_STATUSES.contains(&status) {
            return Err(StoreError::BadStatus {
                path: self.path.clone(),
                status: status.to_string(),
            });
        }
        let n = self
            .conn
            .execute(
                "UPDATE runs SET status = ?2, \
                 finished_at = CASE WHEN ?2 = 'running' THEN NULL ELSE strftime('%Y-%m-%dT%H:%M:%fZ', 'now') END \
                 WHERE run_id = ?1",
                params![run_id, status],
            )
            .at(&self.path)?;
        if n == 0 {
            return Err(StoreError::NoSuchRun {
                path: self.path.clone(),
                run_id: run_id.to_string(),
            });
        }
        Ok(())
    }

    /// What run `run_id` holds now, over all the invocations that wrote it (the summary and exit code
    /// of a resumed run are the run's, not only the last invocation's).
    pub fn run_counts(&self, run_id: &str) -> Result<RunCounts> {
        self.conn
            .query_row(
                "SELECT images_total, \
                 (SELECT count(*) FROM run_images WHERE run_id = ?1 AND status = 'done'), \
                 (SELECT count(DISTINCT coalesce(image_id, path)) FROM errors WHERE run_id = ?1), \
                 (SELECT count(correct) FROM predictions WHERE run_id = ?1), \
                 (SELECT count(*) FROM predictions WHERE run_id = ?1 AND correct = 1) \
                 FROM runs WHERE run_id = ?1",
                [run_id],
                from_row!(RunCounts {
                    images_total,
                    done,
                    failed,
                    labelled,
                    correct,
                }),
            )
            .optional()
            .at(&self.path)?
            .ok_or_else(|| StoreError::NoSuchRun {
                path: self.path.clone(),
                run_id: run_id.to_string(),
            })
    }

    /// Records what shard run `run_id` was cut from (see [`ShardSource`]), or, when the run already
    /// records one, checks it: a shard resumed on another image list or with another `--limit` is
    /// refused (its images would not be the shard's). A run that does not exist yet is left alone, so
    /// `audit` calls this before [`Store::begin_shard_run`] (nothing changes when refused) and after it.
    pub fn record_shard_source(&self, run_id: &str, source: &ShardSource) -> Result<()> {
        let p = &self.path;
        let found: Option<(Option<i64>, Option<String>, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT images_listed, image_list_sha256, image_limit FROM runs WHERE run_id = ?1",
                [run_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .at(p)?;
        let Some(found) = found else {
            return Ok(());
        };
        if let (Some(listed), Some(sha)) = (found.0, &found.1) {
            let limit = |l: Option<i64>| l.map(|n| n.to_string()).unwrap_or_else(|| "none".into());
            if found.2 != source.image_limit.map(|n| n as i64) {
                return Err(StoreError::SourceMismatch {
                    path: p.clone(),
                    run_id: run_id.to_string(),
                    what: format!(
                        "--limit {}, now --limit {}",
                        limit(found.2),
                        limit(source.image_limit.map(|n| n as i64))
                    ),
                });
            }
            if *sha != source.image_list_sha256 {
                return Err(StoreError::SourceMismatch {
                    path: p.clone(),
                    run_id: run_id.to_string(),
                    what: format!(
                        "a list of {listed} images (sha256 {}), now {} images (sha256 {})",
                        &sha[..12.min(sha.len())],
                        source.images_listed,
                        &source.image_list_sha256[..12]
                    ),
                });
            }
            return Ok(());
        }
        self.conn
            .execute(
                "UPDATE runs SET images_listed = ?2, image_list_sha256 = ?3, image_limit = ?4 WHERE run_id = ?1",
                params![
                    run_id,
                    source.images_listed as i64,
                    source.image_list_sha256,
                    source.image_limit.map(|n| n as i64)
                ],
            )
            .at(p)?;
        Ok(())
    }

    /// The images of a run recorded as 'done' (a resumed run skips them).
    pub fn done_images(&self, run_id: &str) -> Result<HashSet<String>> {
        let p = &self.path;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT image_id FROM run_images WHERE run_id = ?1 AND status = 'done'")
            .at(p)?;
        let ids = stmt.query_map([run_id], |r| r.get::<_, String>(0)).at(p)?;
        ids.collect::<rusqlite::Result<HashSet<String>>>().at(p)
    }
}

/// Whether the database is tumor-audit's: marked with [`APPLICATION_ID`], or empty (new), or (written
/// before the mark existed) unmarked with tumor-audit's schema version and core tables. Anything else is
/// [`StoreError::Foreign`]. Returns the application id found.
fn check_ours(conn: &Connection, path: &Path) -> Result<i32> {
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .at(path)?;
    if app_id == APPLICATION_ID {
        return Ok(app_id);
    }
    let foreign = |found: String| {
        Err(StoreError::Foreign {
            path: path.to_path_buf(),
            found,
        })
    };
    if app_id != 0 {
        return foreign(format!("its application id is {app_id:#010x}"));
    }
    let mut st = conn
        .prepare("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
        .at(path)?;
    let names = st
        .query_map([], |r| r.get::<_, String>(0))
        .at(path)?
        .collect::<rusqlite::Result<Vec<String>>>()
        .at(path)?;
    if names.is_empty() {
        return Ok(app_id);
    }
    let version = user_version(conn).at(path)?;
    let has = |t: &str| names.iter().any(|n| n == t);
    if version >= 1 && has("runs") && has("run_images") && has("images") {
        return Ok(app_id);
    }
    let mut shown: Vec<&str> = names.iter().map(String::as_str).take(5).collect();
    if names.len() > 5 {
        shown.push("...");
    }
    foreign(format!(
        "it holds {} other schema object(s): {}",
        names.len(),
        shown.join(", ")
    ))
}

/// The schema version, refused ([`StoreError::TooNew`]) when it is newer than this build's. Reads only.
fn check_not_newer(conn: &Connection, path: &Path) -> Result<i64> {
    let found = user_version(conn).at(path)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Connection settings; they live outside any transaction (SQLite ignores some of them inside one).
fn configure(conn: &Connection, path: &Path, writable: bool) -> Result<()> {
    conn.busy_timeout(lock_timeout()).at(path)?;
    if writable {
        // Persistent in the file: read-only connections find the database already in WAL mode.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .at(path)?;
        debug_assert!(
            mode.eq_ignore_ascii_case("wal") || mode.eq_ignore_ascii_case("memory"),
            "journal_mode {mode}"
        );
        conn.pragma_update(None, "synchronous", "NORMAL").at(path)?;
    }
    conn.pragma_update(None, "foreign_keys", "ON").at(path)?;
    Ok(())
}

/// Applies the migrations the database lacks, each in its own IMMEDIATE transaction that also sets
/// `user_version` (so a crash leaves the database at the previous version). Returns how many it applied.
fn migrate(conn: &mut Connection, path: &Path) -> Result<usize> {
    let found = check_not_newer(conn, path)?;
    let mut applied = 0;
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if found >= version {
            continue;
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(path)?;
        // Read again under the write lock: another process may have migrated meanwhile.
        if user_version(&tx).at(path)? >= version {
            continue;
        }
        let fail = |source| StoreError::Migration {
            path: path.to_path_buf(),
            name,
            source,
        };
        tx.execute_batch(sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        applied += 1;
    }
    Ok(applied)
}
