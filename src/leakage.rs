//! Near-duplicate leakage check: for each audited image, the nearest image of the training folder by
//! the split's 256-bit average hash. A model that is "right" on a near-copy of a training image proves
//! little, so the audit stores the distance and the query/report show it. This file hashes and
//! matches; the rows are read by `query::leakage` and written by `store::leakage`.
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::dataset::{self, Limits};
use crate::split::{self, AHash};
use crate::store::{self, leakage::LeakageRow};

/// The average hashes of every readable image under a class-folder training set.
pub struct TrainIndex {
    pub dir: PathBuf,
    entries: Vec<(AHash, PathBuf)>,
    /// Files that could not be read or decoded (not part of the index).
    pub unreadable: usize,
}

impl TrainIndex {
    /// Hashes every image file under `dir/<class>/` in parallel (decode + 16x16 resize each).
    pub fn build(dir: &Path, classes: &[String], limits: Limits) -> crate::Result<TrainIndex> {
        let ds = dataset::Dataset::scan(dir, classes)?;
        let hashed: Vec<Option<(AHash, PathBuf)>> = ds
            .samples
            .par_iter()
            .map(|s| {
                dataset::read_image(&s.path, limits)
                    .ok()
                    .map(|d| (split::average_hash(&d.image), s.path.clone()))
            })
            .collect();
        let unreadable = hashed.iter().filter(|h| h.is_none()).count() + ds.skipped.len();
        Ok(TrainIndex {
            dir: dir.to_path_buf(),
            entries: hashed.into_iter().flatten().collect(),
            unreadable,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The nearest training image: (Hamming distance, path); ties go to the first in folder order.
    pub fn nearest(&self, h: &AHash) -> Option<(u32, &Path)> {
        let mut best: Option<(u32, &Path)> = None;
        for (e, p) in &self.entries {
            let d = split::hamming(h, e);
            if best.is_none_or(|(b, _)| d < b) {
                best = Some((d, p));
                if d == 0 {
                    break;
                }
            }
        }
        best
    }
}

/// Fills the `leakage` table for the images of `run_id` that have no row yet (so a resumed run only
/// checks its new images). Returns (images checked, near-duplicates among them).
pub fn check_run(
    conn: &rusqlite::Connection,
    run_id: &str,
    index: &TrainIndex,
    max_distance: u32,
    limits: Limits,
) -> rusqlite::Result<(usize, usize)> {
    let todo = crate::query::leakage::unchecked_images(conn, run_id)?;
    let found: Vec<LeakageRow> = todo
        .par_iter()
        .map(|(id, path)| LeakageRow {
            image_id: id.clone(),
            nearest: dataset::read_image(Path::new(path), limits)
                .ok()
                .and_then(|d| index.nearest(&split::average_hash(&d.image)))
                .map(|(dist, p)| (dist, p.to_string_lossy().into_owned())),
        })
        .collect();
    let dupes = store::leakage::write_leakage(
        conn,
        run_id,
        &index.dir.to_string_lossy(),
        max_distance,
        &found,
    )?;
    Ok((found.len(), dupes))
}
