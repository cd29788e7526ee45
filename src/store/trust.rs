//! Rows of the trust checks (migration 0005): faithfulness curves (written by the [`super::Writer`] with
//! each image), the sanity check (written here in one transaction), and the faithfulness summary the
//! audit prints. The other summaries are read as tables by [`crate::query::trust`].
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::{from_row, At, Result, Store, StoreError};

/// A row of `faithfulness` (run and image come from the [`super::ImageResult`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaithfulnessRecord {
    /// An attribution method, or `random`.
    pub method: String,
    pub steps: i64,
    /// `probability` or `logit`.
    pub score: String,
    pub deletion_auc: f64,
    pub insertion_auc: f64,
    pub deletion_curve: Vec<f64>,
    pub insertion_curve: Vec<f64>,
    pub seconds: f64,
}

/// An image the sanity check used (created in `images` when the run never audited it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SanityImage {
    pub image_id: String,
    pub path: String,
    pub label: Option<String>,
}

/// A row of `sanity_checks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SanityCheckRecord {
    pub run_id: String,
    pub seed: i64,
    pub threshold: f64,
    /// The cascade, stage 1 first (`index:kind`).
    pub layers: Vec<String>,
    pub methods: Vec<String>,
    pub seconds: f64,
}

/// A row of `sanity_stages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SanityStageRecord {
    pub image_id: String,
    pub method: String,
    pub stage: i64,
    pub layer: Option<String>,
    pub spearman_abs: f64,
    pub spearman_signed: f64,
    pub empty: bool,
}

/// A row of `sanity_other_class`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherClassRecord {
    pub image_id: String,
    pub method: String,
    pub target: String,
    pub other: String,
    pub spearman_abs: f64,
    pub spearman_signed: f64,
    pub empty: bool,
}

fn real(x: f64) -> Option<f64> {
    (!x.is_nan()).then_some(x)
}

fn json_floats(v: &[f64]) -> String {
    // JSON has no NaN: such a point is written as null.
    let items: Vec<String> = v
        .iter()
        .map(|x| {
            if x.is_finite() {
                format!("{x}")
            } else {
                "null".into()
            }
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// Inserts the faithfulness rows of one image (called by the writer inside the image's savepoint).
pub(crate) fn insert_faithfulness(
    conn: &Connection,
    run_id: &str,
    image_id: &str,
    rows: &[FaithfulnessRecord],
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO faithfulness (run_id, image_id, method, steps, score, deletion_auc, insertion_auc, \
         deletion_curve, insertion_curve, seconds) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for f in rows {
        stmt.execute(params![
            run_id,
            image_id,
            f.method,
            f.steps,
            f.score,
            real(f.deletion_auc),
            real(f.insertion_auc),
            json_floats(&f.deletion_curve),
            json_floats(&f.insertion_curve),
            real(f.seconds)
        ])?;
    }
    Ok(())
}

impl Store {
    /// Writes a sanity check of an existing run in one transaction, replacing an earlier check of the
    /// same run. Images missing from `images` are added with their path and label.
    pub fn write_sanity(
        &self,
        check: &SanityCheckRecord,
        images: &[SanityImage],
        stages: &[SanityStageRecord],
        other_class: &[OtherClassRecord],
    ) -> Result<()> {
        let p = &self.path;
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .at(p)?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM runs WHERE run_id = ?1",
                [&check.run_id],
                |r| r.get(0),
            )
            .optional()
            .at(p)?;
        if exists.is_none() {
            return Err(StoreError::NoSuchRun {
                path: p.clone(),
                run_id: check.run_id.clone(),
            });
        }
        for img in images {
            tx.execute(
                "INSERT INTO images (image_id, path, label) VALUES (?1, ?2, ?3) ON CONFLICT (image_id) DO NOTHING",
                params![img.image_id, img.path, img.label],
            )
            .at(p)?;
        }
        // The stage and other-class rows go with it (ON DELETE CASCADE).
        tx.execute(
            "DELETE FROM sanity_checks WHERE run_id = ?1",
            [&check.run_id],
        )
        .at(p)?;
        let json = |v: &Vec<String>| serde_json::to_string(v).expect("strings serialize");
        let last_stage = check.layers.len() as i64;
        tx.execute(
            "INSERT INTO sanity_checks (run_id, images, seed, threshold, stages, layers, methods, seconds) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                check.run_id,
                images.len() as i64,
                check.seed,
                check.threshold,
                last_stage,
                json(&check.layers),
                json(&check.methods),
                real(check.seconds)
            ],
        )
        .at(p)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO sanity_stages (run_id, image_id, method, stage, layer, spearman_abs, \
                     spearman_signed, empty) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .at(p)?;
            for s in stages {
                stmt.execute(params![
                    check.run_id,
                    s.image_id,
                    s.method,
                    s.stage,
                    s.layer,
                    real(s.spearman_abs),
                    real(s.spearman_signed),
                    s.empty
                ])
                .at(p)?;
            }
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO sanity_other_class (run_id, image_id, method, target, other, spearman_abs, \
                     spearman_signed, empty) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .at(p)?;
            for o in other_class {
                stmt.execute(params![
                    check.run_id,
                    o.image_id,
                    o.method,
                    o.target,
                    o.other,
                    real(o.spearman_abs),
                    real(o.spearman_signed),
                    o.empty
                ])
                .at(p)?;
            }
        }
        tx.commit().at(p)
    }
}

/// A row of `v_faithfulness_summary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaithfulnessSummary {
    pub run_id: String,
    pub method: String,
    pub images: i64,
    pub mean_deletion_auc: Option<f64>,
    pub random_deletion_auc: Option<f64>,
    pub mean_insertion_auc: Option<f64>,
    pub random_insertion_auc: Option<f64>,
    pub share_deletion_below_random: Option<f64>,
    pub share_insertion_above_random: Option<f64>,
}

/// `v_faithfulness_summary` for one run (all runs with `None`), ordered by run and method.
pub fn faithfulness_summary(
    conn: &Connection,
    run_id: Option<&str>,
) -> rusqlite::Result<Vec<FaithfulnessSummary>> {
    let mut stmt = conn.prepare(
        "SELECT run_id, method, images, mean_deletion_auc, random_deletion_auc, mean_insertion_auc, \
         random_insertion_auc, share_deletion_below_random, share_insertion_above_random \
         FROM v_faithfulness_summary WHERE ?1 IS NULL OR run_id = ?1 ORDER BY run_id, method",
    )?;
    let rows = stmt.query_map(
        [run_id],
        from_row!(FaithfulnessSummary {
            run_id,
            method,
            images,
            mean_deletion_auc,
            random_deletion_auc,
            mean_insertion_auc,
            random_insertion_auc,
            share_deletion_below_random,
            share_insertion_above_random,
        }),
    )?;
    rows.collect()
}
