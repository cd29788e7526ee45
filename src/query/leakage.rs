//! The leakage rows of a run (`leakage` table): which audited images still need the check, the
//! check's summary and the near-duplicates found. The hashing and matching live in `leakage.rs`,
//! the inserts in `store/leakage.rs`.
use rusqlite::Connection;

use super::Table;
use crate::store::from_row;

/// The images of `run` that are done and have no leakage row yet, as (image id, path), by id: a
/// resumed run only checks its new images.
pub fn unchecked_images(conn: &Connection, run: &str) -> rusqlite::Result<Vec<(String, String)>> {
    conn.prepare(
        "SELECT i.image_id, i.path FROM run_images AS r JOIN images AS i USING (image_id)
         WHERE r.run_id = ?1 AND r.status = 'done'
           AND NOT EXISTS (SELECT 1 FROM leakage AS l WHERE l.run_id = r.run_id AND l.image_id = r.image_id)
         ORDER BY i.image_id",
    )?
    .query_map([run], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// The leakage check of a run in figures.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LeakageSummary {
    /// Images checked (0: the check did not run).
    pub checked: i64,
    pub near_duplicates: i64,
    /// The Hamming distance at or below which an image counts as a near-duplicate.
    pub max_distance: Option<i64>,
    pub train_dir: Option<String>,
}

pub fn summary(conn: &Connection, run: &str) -> rusqlite::Result<LeakageSummary> {
    conn.query_row(
        "SELECT count(*), coalesce(sum(near_duplicate), 0), max(max_distance), max(train_dir)
         FROM leakage WHERE run_id = ?1",
        [run],
        from_row!(LeakageSummary {
            checked,
            near_duplicates,
            max_distance,
            train_dir,
        }),
    )
}

/// The near-duplicates of the run, nearest first: path, label, prediction, distance, training image.
pub fn near_duplicates(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT i.path, i.label, p.predicted, p.correct, l.distance, l.nearest_path
         FROM leakage AS l JOIN images AS i USING (image_id)
         LEFT JOIN predictions AS p ON p.run_id = l.run_id AND p.image_id = l.image_id
         WHERE l.run_id = ?1 AND l.near_duplicate = 1 ORDER BY l.distance, i.path",
        [run],
    )
}
