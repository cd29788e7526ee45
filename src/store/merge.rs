//! Merging shard databases (`audit --shard K/N`, one SQLite file each) into one run of a target database.
//!
//! Every shard file must hold the same run (run id, config, model sha256, tool version, shard count) cut
//! from the same test set (data root, `--limit`, fingerprint of the full image list);
//! anything else is refused before the target is touched. Each shard is then copied with `ATTACH` and
//! `INSERT ... SELECT` in one transaction: the run row (first time only), its images, `run_images`,
//! predictions, metrics, agreement, maps and errors (with new ids), and one `run_shards` row. A shard's
//! earlier rows in the target are replaced, so merging again (or merging a shard that has progressed
//! since) leaves exactly one copy of every row. Column lists are read from the schema, so columns that
//! later migrations add are copied too.
//!
//! The merged run has `shard_count = N` and no `shard_index`. It is 'finished' only when all N shards
//! have been merged and each was 'finished'; otherwise it is 'interrupted' (incomplete: merge again
//! once the missing shards exist), and [`MergeReport`] lists what is missing or unfinished.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{from_row, At, Store, StoreError};

/// Options of [`merge_shards`].
#[derive(Debug, Clone, Default)]
pub struct MergeOptions {
    /// The run to merge; `None`: the one sharded run each shard file holds.
    pub run_id: Option<String>,
}

/// A shard as recorded in the target's `run_shards`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedShard {
    pub index: u32,
    pub source: String,
    pub status: String,
    pub images_total: i64,
    pub images_done: i64,
    pub images_failed: i64,
}

/// What [`merge_shards`] did and what the merged run now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    pub target: PathBuf,
    pub run_id: String,
    pub shard_count: u32,
    /// The indices of the shards merged by this call.
    pub merged_now: Vec<u32>,
    /// Every shard the merged run holds (from this call and earlier ones), by index.
    pub shards: Vec<MergedShard>,
    /// Shard indices the merged run lacks.
    pub missing: Vec<u32>,
    /// The merged run's status: 'finished' or 'interrupted'.
    pub status: String,
    pub images_total: i64,
    pub images_done: i64,
    pub images_failed: i64,
}

impl MergeReport {
    /// Shards that are present but were not 'finished' when merged.
    pub fn unfinished(&self) -> Vec<&MergedShard> {
        self.shards
            .iter()
            .filter(|s| s.status != "finished")
            .collect()
    }

    /// All shards present and finished.
    pub fn complete(&self) -> bool {
        self.missing.is_empty() && self.unfinished().is_empty()
    }
}

/// Why a merge was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("no shard databases given")]
    NoShards,

    #[error("{path}: no sharded run in this database (shard files are written by `tumor-audit audit --shard K/N`)")]
    NoShardRun { path: PathBuf },

    #[error("{path}: several sharded runs ({runs}): choose one with --run")]
    SeveralRuns { path: PathBuf, runs: String },

    #[error("{path}: run {run_id} is {what}, not a shard (shard files are written by `tumor-audit audit --shard K/N`)")]
    NotAShard {
        path: PathBuf,
        run_id: String,
        what: &'static str,
    },

    #[error(
        "the shards differ in their {field}: {first} has {first_value}, {other} has {other_value}; only shards of \
         one run (the same run id, config, model, tool version, shard count, data root, --limit and image \
         list) can be merged"
    )]
    Mismatch {
        field: &'static str,
        first: PathBuf,
        first_value: String,
        other: PathBuf,
        other_value: String,
    },

    #[error("shard {index} of {count} is given twice: {first} and {other}")]
    Duplicate {
        index: u32,
        count: u32,
        first: PathBuf,
        other: PathBuf,
    },

    #[error("{path} is both the merge target and one of the shards")]
    TargetIsShard { path: PathBuf },

    #[error("{target}: run {run_id} already exists there and {reason}; merge into another database or delete that run")]
    TargetConflict {
        target: PathBuf,
        run_id: String,
        reason: String,
    },

    #[error("{path}: the path is not valid UTF-8, which SQLite's ATTACH needs")]
    NotUtf8 { path: PathBuf },
}

/// The run row of one shard file.
#[derive(Debug, Clone)]
struct ShardRun {
    path: PathBuf,
    run_id: String,
    config_yaml: String,
    model_sha256: String,
    tool_version: String,
    index: u32,
    count: u32,
    /// What the shard was cut from: the test folder, `--limit`, and the size and fingerprint of the full
    /// image list (NULL in shards written before they were recorded).
    data_root: String,
    image_limit: Option<i64>,
    images_listed: Option<i64>,
    image_list_sha256: Option<String>,
}

/// Merges the shard databases `shards` into `target` (created if missing). See the module doc.
pub fn merge_shards(
    target: &Path,
    shards: &[PathBuf],
    opts: &MergeOptions,
) -> Result<MergeReport, MergeError> {
    if shards.is_empty() {
        return Err(MergeError::NoShards);
    }
    // Read and check every shard before the target is touched.
    let mut runs: Vec<ShardRun> = Vec::new();
    for path in shards {
        let run = read_shard_run(path, opts.run_id.as_deref())?;
        if let Some(first) = runs.first() {
            check_same(first, &run)?;
        }
        if let Some(dup) = runs.iter().find(|r| r.index == run.index) {
            if same_file(&dup.path, &run.path) {
                continue; // the same file named twice
            }
            return Err(MergeError::Duplicate {
                index: run.index,
                count: run.count,
                first: dup.path.clone(),
                other: run.path.clone(),
            });
        }
        runs.push(run);
    }
    runs.sort_by_key(|r| r.index);
    for r in &runs {
        if same_file(target, &r.path) {
            return Err(MergeError::TargetIsShard {
                path: target.to_path_buf(),
            });
        }
        if r.path.to_str().is_none() {
            return Err(MergeError::NotUtf8 {
                path: r.path.clone(),
            });
        }
    }
    let first = runs[0].clone();
    let store = Store::open(target)?;
    check_target(&store, &first)?;
    for r in &runs {
        copy_shard(store.conn(), target, r)?;
    }
    report(
        &store,
        &first,
        runs.iter().map(|r| r.index).collect::<Vec<_>>(),
    )
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn read_shard_run(path: &Path, want: Option<&str>) -> Result<ShardRun, MergeError> {
    let store = Store::open_read_only(path)?;
    let at = |e| StoreError::Sqlite {
        path: path.to_path_buf(),
        source: e,
    };
    type Source = (String, Option<i64>, Option<i64>, Option<String>);
    type Row = (
        String,
        String,
        String,
        String,
        Option<u32>,
        Option<u32>,
        Source,
    );
    let rows: Vec<Row> = store
        .conn()
        .prepare(
            "SELECT run_id, config_yaml, model_sha256, tool_version, shard_index, shard_count, data_root, \
             image_limit, images_listed, image_list_sha256 FROM runs ORDER BY run_id",
        )
        .and_then(|mut st| {
            st.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    (r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?),
                ))
            })?
            .collect()
        })
        .map_err(at)?;
    let row = match want {
        Some(id) => rows
            .into_iter()
            .find(|r| r.0 == id)
            .ok_or_else(|| StoreError::NoSuchRun {
                path: path.to_path_buf(),
                run_id: id.to_string(),
            })?,
        None => {
            let mut sharded: Vec<Row> = rows.into_iter().filter(|r| r.4.is_some()).collect();
            match sharded.len() {
                0 => {
                    return Err(MergeError::NoShardRun {
                        path: path.to_path_buf(),
                    })
                }
                1 => sharded.remove(0),
                _ => {
                    return Err(MergeError::SeveralRuns {
                        path: path.to_path_buf(),
                        runs: sharded
                            .iter()
                            .map(|r| r.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                }
            }
        }
    };
    let (run_id, config_yaml, model_sha256, tool_version, index, count, source) = row;
    let (data_root, image_limit, images_listed, image_list_sha256) = source;
    let (Some(index), Some(count)) = (index, count) else {
        return Err(MergeError::NotAShard {
            path: path.to_path_buf(),
            run_id,
            what: if count.is_some() {
                "a merged run"
            } else {
                "a run over the whole test set"
            },
        });
    };
    Ok(ShardRun {
        path: path.to_path_buf(),
        run_id,
        config_yaml,
        model_sha256,
        tool_version,
        index,
        count,
        data_root,
        image_limit,
        images_listed,
        image_list_sha256,
    })
}

/// The first line where two texts differ, for a readable config mismatch.
fn first_difference(a: &str, b: &str) -> (String, String) {
    let (mut la, mut lb) = (a.lines(), b.lines());
    let mut n = 1;
    loop {
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => n += 1,
            (x, y) => {
                let show = |l: Option<&str>| match l {
                    Some(l) => format!("line {n} `{}`", l.trim()),
                    None => format!("no line {n}"),
                };
                return (show(x), show(y));
            }
        }
    }
}

fn check_same(first: &ShardRun, other: &ShardRun) -> Result<(), MergeError> {
    let mismatch = |field, (a, b): (String, String)| {
        Err(MergeError::Mismatch {
            field,
            first: first.path.clone(),
            first_value: a,
            other: other.path.clone(),
            other_value: b,
        })
    };
    // How the two shards' values read in the message.
    let each = |show: &dyn Fn(&ShardRun) -> String| (show(first), show(other));
    if first.run_id != other.run_id {
        return mismatch("run id", each(&|r| format!("run {}", r.run_id)));
    }
    if first.model_sha256 != other.model_sha256 {
        return mismatch("model (sha256)", each(&|r| r.model_sha256.clone()));
    }
    if first.config_yaml != other.config_yaml {
        let differ = first_difference(&first.config_yaml, &other.config_yaml);
        return mismatch("config", differ);
    }
    if first.tool_version != other.tool_version {
        return mismatch("tool version", each(&|r| r.tool_version.clone()));
    }
    if first.count != other.count {
        return mismatch("shard count", each(&|r| format!("{} shards", r.count)));
    }
    // Shards cut from different test sets would merge into a run that looks complete but is not one
    // test set: the folder, --limit and the full image list must be the same.
    if first.data_root != other.data_root {
        return mismatch("data root", each(&|r| r.data_root.clone()));
    }
    if first.image_limit != other.image_limit {
        return mismatch(
            "--limit",
            each(&|r| match r.image_limit {
                Some(n) => format!("--limit {n}"),
                None => "no --limit".into(),
            }),
        );
    }
    if (first.images_listed, &first.image_list_sha256)
        != (other.images_listed, &other.image_list_sha256)
    {
        return mismatch(
            "image list (the full test set the shard was cut from)",
            each(&|r| match (r.images_listed, &r.image_list_sha256) {
                (Some(n), Some(s)) => format!("{n} images (sha256 {})", &s[..12.min(s.len())]),
                _ => "no recorded list".into(),
            }),
        );
    }
    Ok(())
}

/// The target may already hold the run only as an earlier merge of the same shards' run.
fn check_target(store: &Store, run: &ShardRun) -> Result<(), MergeError> {
    type Existing = (String, String, String, Option<u32>, Option<u32>);
    let existing: Option<Existing> = store
        .conn()
        .query_row(
            "SELECT config_yaml, model_sha256, tool_version, shard_index, shard_count FROM runs WHERE run_id = ?1",
            [&run.run_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()
        .at(store.path())?;
    let Some((config, model, tool, index, count)) = existing else {
        return Ok(());
    };
    let reason = match (index, count) {
        (Some(k), Some(n)) => Some(format!("is shard {k} of {n} itself, not a merged run")),
        (None, None) => Some("is a run over the whole test set, not a merged run".to_string()),
        (None, Some(n)) if n != run.count => Some(format!(
            "was merged from {n} shards, these are shards of {}",
            run.count
        )),
        _ if model != run.model_sha256 => {
            Some("was merged from shards of another model (sha256)".into())
        }
        _ if config != run.config_yaml => Some("was merged from shards with another config".into()),
        _ if tool != run.tool_version => {
            Some("was merged from shards of another tool version".into())
        }
        _ => None,
    };
    match reason {
        Some(reason) => Err(MergeError::TargetConflict {
            target: store.path().to_path_buf(),
            run_id: run.run_id.clone(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The column names of a table in the main database, in order.
fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare(&format!("PRAGMA main.table_info({table})"))?;
    let cols = st
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(cols)
}

fn quoted(cols: &[String], prefix: &str) -> String {
    cols.iter()
        .map(|c| format!("{prefix}\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The per-image result tables: a shard's rows replace the target's rows of the same run and images.
const IMAGE_TABLES: &[&str] = &[
    "run_images",
    "predictions",
    "attribution_metrics",
    "agreement",
    "maps",
    "leakage",
    "faithfulness",
    "outlines",
    "localisation",
];

/// Copies one shard into the target in one transaction (the shard is attached for the duration).
fn copy_shard(conn: &Connection, target: &Path, run: &ShardRun) -> Result<(), MergeError> {
    let file = run.path.to_str().expect("checked to be UTF-8");
    conn.execute("ATTACH DATABASE ?1 AS shard", [file])
        .at(target)?;
    let result = copy_attached(conn, run).at(target);
    let detached = conn.execute_batch("DETACH DATABASE shard").at(target);
    result?;
    detached?;
    Ok(())
}

fn copy_attached(conn: &Connection, run: &ShardRun) -> rusqlite::Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let id = run.run_id.as_str();
    // The run row, the first time: the first shard's row, then the merge's own fields (summary below).
    let cols = columns(&tx, "runs")?;
    let c = quoted(&cols, "");
    tx.execute(
        &format!(
            "INSERT INTO main.runs ({c}) SELECT {c} FROM shard.runs WHERE run_id = ?1 \
             ON CONFLICT (run_id) DO NOTHING"
        ),
        [id],
    )?;
    tx.execute(
        "UPDATE main.runs SET shard_index = NULL WHERE run_id = ?1",
        [id],
    )?;

    let shard_images = "SELECT image_id FROM shard.run_images WHERE run_id = ?1";
    // Images: a decoded row replaces the target's row; a row of a file that never decoded (width NULL)
    // is only added where the target has none, as the writer does.
    let cols = columns(&tx, "images")?;
    let c = quoted(&cols, "");
    let set = cols
        .iter()
        .filter(|n| *n != "image_id")
        .map(|n| format!("\"{n}\" = excluded.\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    tx.execute(
        &format!(
            "INSERT INTO main.images ({c}) SELECT {c} FROM shard.images \
             WHERE image_id IN ({shard_images}) AND width IS NOT NULL \
             ON CONFLICT (image_id) DO UPDATE SET {set}"
        ),
        [id],
    )?;
    tx.execute(
        &format!(
            "INSERT INTO main.images ({c}) SELECT {c} FROM shard.images \
             WHERE image_id IN ({shard_images}) AND width IS NULL \
             ON CONFLICT (image_id) DO NOTHING"
        ),
        [id],
    )?;

    for table in IMAGE_TABLES {
        let c = quoted(&columns(&tx, table)?, "");
        tx.execute(
            &format!("DELETE FROM main.{table} WHERE run_id = ?1 AND image_id IN ({shard_images})"),
            [id],
        )?;
        tx.execute(
            &format!(
                "INSERT INTO main.{table} ({c}) SELECT {c} FROM shard.{table} WHERE run_id = ?1"
            ),
            [id],
        )?;
    }

    // Errors get new ids. Rows already in the target unchanged stay as they are (ids included); the
    // target's other rows for this shard's images (or, without an id, its paths) are replaced.
    let cols: Vec<String> = columns(&tx, "errors")?
        .into_iter()
        .filter(|c| c != "id")
        .collect();
    let c = quoted(&cols, "");
    let same = cols
        .iter()
        .map(|n| format!("x.\"{n}\" IS e.\"{n}\""))
        .collect::<Vec<_>>()
        .join(" AND ");
    tx.execute(
        &format!(
            "DELETE FROM main.errors AS e WHERE e.run_id = ?1 \
             AND (e.image_id IN ({shard_images}) \
                  OR e.image_id IN (SELECT image_id FROM shard.errors WHERE run_id = ?1) \
                  OR (e.image_id IS NULL AND e.path IN \
                      (SELECT path FROM shard.errors WHERE run_id = ?1 AND image_id IS NULL))) \
             AND NOT EXISTS (SELECT 1 FROM shard.errors AS x WHERE {same})"
        ),
        [id],
    )?;
    tx.execute(
        &format!(
            "INSERT INTO main.errors ({c}) SELECT {c} FROM shard.errors AS x WHERE x.run_id = ?1 \
             AND NOT EXISTS (SELECT 1 FROM main.errors AS e WHERE {same}) ORDER BY x.id"
        ),
        [id],
    )?;

    tx.execute(
        "INSERT INTO main.run_shards (run_id, shard_index, shard_count, status, images_total, images_done, \
         images_failed, started_at, finished_at, source) \
         SELECT r.run_id, r.shard_index, r.shard_count, r.status, r.images_total, \
           (SELECT count(*) FROM shard.run_images AS i WHERE i.run_id = r.run_id AND i.status = 'done'), \
           (SELECT count(*) FROM shard.run_images AS i WHERE i.run_id = r.run_id AND i.status = 'failed') \
             + (SELECT count(DISTINCT e.path) FROM shard.errors AS e WHERE e.run_id = r.run_id AND e.image_id IS NULL), \
           r.started_at, r.finished_at, ?2 \
         FROM shard.runs AS r WHERE r.run_id = ?1 \
         ON CONFLICT (run_id, shard_index) DO UPDATE SET shard_count = excluded.shard_count, \
           status = excluded.status, images_total = excluded.images_total, images_done = excluded.images_done, \
           images_failed = excluded.images_failed, started_at = excluded.started_at, \
           finished_at = excluded.finished_at, source = excluded.source",
        params![id, run.path.to_string_lossy()],
    )?;
    // The merged run's summary from every shard merged so far.
    tx.execute(
        "UPDATE main.runs SET \
           images_total = (SELECT coalesce(sum(images_total), 0) FROM main.run_shards WHERE run_id = ?1), \
           started_at = (SELECT min(started_at) FROM main.run_shards WHERE run_id = ?1), \
           status = CASE WHEN (SELECT count(*) FROM main.run_shards WHERE run_id = ?1 AND status = 'finished') \
                              = shard_count THEN 'finished' ELSE 'interrupted' END, \
           finished_at = CASE WHEN (SELECT count(*) FROM main.run_shards WHERE run_id = ?1 AND status = 'finished') \
                              = shard_count \
                         THEN (SELECT max(finished_at) FROM main.run_shards WHERE run_id = ?1) END \
         WHERE run_id = ?1",
        [id],
    )?;
    tx.commit()
}

fn report(store: &Store, run: &ShardRun, merged_now: Vec<u32>) -> Result<MergeReport, MergeError> {
    let conn = store.conn();
    let p = store.path();
    let id = run.run_id.as_str();
    let shards: Vec<MergedShard> = conn
        .prepare(
            "SELECT shard_index, source, status, images_total, images_done, images_failed FROM run_shards \
             WHERE run_id = ?1 ORDER BY shard_index",
        )
        .and_then(|mut st| {
            st.query_map(
                [id],
                from_row!(MergedShard {
                    index,
                    source,
                    status,
                    images_total,
                    images_done,
                    images_failed,
                }),
            )?
            .collect()
        })
        .at(p)?;
    let present: BTreeMap<u32, ()> = shards.iter().map(|s| (s.index, ())).collect();
    let missing = (0..run.count)
        .filter(|k| !present.contains_key(k))
        .collect();
    let (status, images_total): (String, i64) = conn
        .query_row(
            "SELECT status, images_total FROM runs WHERE run_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .at(p)?;
    Ok(MergeReport {
        target: p.to_path_buf(),
        run_id: id.to_string(),
        shard_count: run.count,
        merged_now,
        images_done: shards.iter().map(|s| s.images_done).sum(),
        images_failed: shards.iter().map(|s| s.images_failed).sum(),
        shards,
        missing,
        status,
        images_total,
    })
}

#[cfg(test)]
mod tests;
