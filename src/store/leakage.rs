//! Writing the leakage check's rows (`leakage` table); `leakage.rs` computes them, `query/leakage.rs`
//! reads them.
use rusqlite::{params, Connection};

/// The nearest training image of one audited image (`None` when no training image could be hashed).
#[derive(Debug, Clone, PartialEq)]
pub struct LeakageRow {
    pub image_id: String,
    /// (Hamming distance, path of the training image).
    pub nearest: Option<(u32, String)>,
}

/// Stores the rows of one check of `run_id` against `train_dir` in one transaction (a row already
/// there is replaced). An image is a near-duplicate when its distance is at most `max_distance`.
/// Returns the number of near-duplicates among `rows`.
pub fn write_leakage(
    conn: &Connection,
    run_id: &str,
    train_dir: &str,
    max_distance: u32,
    rows: &[LeakageRow],
) -> rusqlite::Result<usize> {
    let tx = conn.unchecked_transaction()?;
    let mut dupes = 0;
    {
        let mut ins = tx.prepare(
            "INSERT OR REPLACE INTO leakage
             (run_id, image_id, train_dir, distance, nearest_path, max_distance, near_duplicate)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for row in rows {
            let near = row.nearest.as_ref();
            let dup = near.is_some_and(|(d, _)| *d <= max_distance);
            dupes += dup as usize;
            ins.execute(params![
                run_id,
                row.image_id,
                train_dir,
                near.map(|(d, _)| *d as i64),
                near.map(|(_, p)| p.as_str()),
                max_distance as i64,
                dup as i64
            ])?;
        }
    }
    tx.commit()?;
    Ok(dupes)
}
