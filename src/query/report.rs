//! The report's readers: plain values for its sections (class list, labelled predictions, method
//! agreement, the gallery's entries, per-image metrics, agreement and faithfulness, stored maps, mass
//! values for the histograms, errors). The report turns them into pages; nothing here knows about HTML.
use std::collections::{BTreeMap, HashMap};

use rusqlite::Connection;

use super::{export, suspicious, Cell, QueryError, Rules, Table};
use crate::store::{maps, real_or_nan, AgreementRecord};

/// Class list: the run's `data.classes`, then any other label or prediction seen.
pub fn classes(conn: &Connection, run: &str) -> rusqlite::Result<Vec<String>> {
    let mut classes = export::run_classes(conn, run);
    let seen: Vec<String> = conn
        .prepare(
            "SELECT DISTINCT x FROM (
                 SELECT i.label AS x FROM predictions AS p JOIN images AS i USING (image_id)
                 WHERE p.run_id = ?1 AND i.label IS NOT NULL
                 UNION SELECT predicted FROM predictions WHERE run_id = ?1)
             ORDER BY x",
        )?
        .query_map([run], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for s in seen {
        if !classes.contains(&s) {
            classes.push(s);
        }
    }
    Ok(classes)
}

/// The prediction of one labelled image.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledPrediction {
    pub label: String,
    pub predicted: String,
    /// Probability per class name (empty when the stored JSON does not parse).
    pub probabilities: BTreeMap<String, f64>,
}

/// The predictions of the labelled images of `run`.
pub fn labelled_predictions(
    conn: &Connection,
    run: &str,
) -> rusqlite::Result<Vec<LabelledPrediction>> {
    let mut stmt = conn.prepare(
        "SELECT i.label, p.predicted, p.probabilities FROM predictions AS p JOIN images AS i USING (image_id)
         WHERE p.run_id = ?1 AND i.label IS NOT NULL",
    )?;
    let rows = stmt.query_map([run], |r| {
        let json: String = r.get(2)?;
        Ok(LabelledPrediction {
            label: r.get(0)?,
            predicted: r.get(1)?,
            probabilities: serde_json::from_str(&json).unwrap_or_default(),
        })
    })?;
    rows.collect()
}

/// Per method pair: images, mean Spearman and mean top-10% IoU, best agreeing pair first. Columns
/// `method_a, method_b, images, mean_spearman, mean_iou_top10`.
pub fn agreement_means(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT method_a, method_b, count(*) AS images, avg(spearman) AS mean_spearman,
                avg(iou_top10) AS mean_iou_top10
         FROM agreement WHERE run_id = ?1 GROUP BY method_a, method_b ORDER BY mean_spearman DESC",
        [run],
    )
}

/// Background and border-band mass of every map of `method` in `run` (either may be missing).
pub fn method_masses(
    conn: &Connection,
    run: &str,
    method: &str,
) -> rusqlite::Result<Vec<(Option<f64>, Option<f64>)>> {
    conn.prepare_cached(
        "SELECT mass_background, mass_border FROM attribution_metrics
         WHERE run_id = ?1 AND method = ?2",
    )?
    .query_map([run, method], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// Everything that went wrong in the run, oldest first: path, stage, message, time.
pub fn errors(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    Table::query(
        conn,
        "SELECT path, stage, message, at FROM errors WHERE run_id = ?1 ORDER BY id",
        [run],
    )
}

/// One image of the gallery, with its place in the `query suspicious` order.
#[derive(Debug, Clone, PartialEq)]
pub struct GalleryEntry {
    pub image_id: String,
    pub path: String,
    pub label: Option<String>,
    pub predicted: String,
    pub confidence: Option<f64>,
    pub correct: Option<bool>,
    pub near_duplicate: bool,
    pub train_distance: Option<i64>,
    /// The suspicion score (0: no rule fired) and the rules that fired.
    pub score: i64,
    pub reasons: String,
    /// Position in the `query suspicious` answer (`usize::MAX` when not suspicious).
    pub rank: usize,
}

/// Every predicted image of `run`: most suspicious first (the order of `query suspicious` with the
/// default rules), then the rest, least confident first.
pub fn gallery_entries(conn: &Connection, run: &str) -> Result<Vec<GalleryEntry>, QueryError> {
    let suspicious = suspicious(conn, run, &Rules::default())?;
    let col = |n: &str| suspicious.column(n).expect("suspicious column");
    let (c_id, c_score, c_reasons) = (col("image_id"), col("score"), col("reasons"));
    let mut rank: HashMap<String, (usize, i64, String)> = HashMap::new();
    for (i, r) in suspicious.rows.iter().enumerate() {
        if let (Cell::Text(id), Cell::Int(score)) = (&r[c_id], &r[c_score]) {
            let reasons = match &r[c_reasons] {
                Cell::Text(s) => s.clone(),
                _ => String::new(),
            };
            rank.insert(id.clone(), (i, *score, reasons));
        }
    }
    let mut stmt = conn.prepare(
        "SELECT p.image_id, i.path, i.label, p.predicted, p.confidence, p.correct,
                l.near_duplicate, l.distance
         FROM predictions AS p JOIN images AS i USING (image_id)
         LEFT JOIN leakage AS l ON l.run_id = p.run_id AND l.image_id = p.image_id
         WHERE p.run_id = ?1",
    )?;
    let mut out: Vec<GalleryEntry> = stmt
        .query_map([run], |r| {
            let id: String = r.get(0)?;
            let (rk, score, reasons) =
                rank.get(&id)
                    .cloned()
                    .unwrap_or((usize::MAX, 0, String::new()));
            Ok(GalleryEntry {
                image_id: id,
                path: r.get(1)?,
                label: r.get(2)?,
                predicted: r.get(3)?,
                confidence: r.get(4)?,
                correct: r.get::<_, Option<i64>>(5)?.map(|c| c == 1),
                near_duplicate: r.get::<_, Option<i64>>(6)? == Some(1),
                train_distance: r.get(7)?,
                score,
                reasons,
                rank: rk,
            })
        })?
        .collect::<Result<_, _>>()?;
    out.sort_by(|a, b| {
        a.rank
            .cmp(&b.rank)
            .then(
                a.confidence
                    .unwrap_or(0.0)
                    .total_cmp(&b.confidence.unwrap_or(0.0)),
            )
            .then(a.image_id.cmp(&b.image_id))
    });
    Ok(out)
}

/// One image's figures for one method: background mass, border mass, mean Spearman with the other
/// methods.
pub type MethodFigures = (Option<f64>, Option<f64>, Option<f64>);

/// [`MethodFigures`] per (image id, method) of `run`.
pub fn image_metrics(
    conn: &Connection,
    run: &str,
) -> rusqlite::Result<HashMap<(String, String), MethodFigures>> {
    by_image_method(
        conn,
        "SELECT m.image_id, m.method, m.mass_background, m.mass_border, a.mean_spearman
         FROM attribution_metrics AS m
         LEFT JOIN v_method_agreement AS a USING (run_id, image_id, method)
         WHERE m.run_id = ?1",
        run,
        |r| Ok((r.get(2)?, r.get(3)?, r.get(4)?)),
    )
}

/// The rows of `sql` (the run as `?1`) by (image id, method), its first two columns; `value` reads
/// the rest of a row.
fn by_image_method<T>(
    conn: &Connection,
    sql: &str,
    run: &str,
    value: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<HashMap<(String, String), T>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([run], |r| Ok(((r.get(0)?, r.get(1)?), value(r)?)))?;
    rows.collect()
}

/// A stored map decoded: width, height, values (row-major).
pub type StoredMap = (usize, usize, Vec<f32>);

/// The stored maps of one image, in `methods` order (`None` for a method without a readable map).
pub fn image_maps(
    conn: &Connection,
    run: &str,
    image_id: &str,
    methods: &[String],
) -> rusqlite::Result<Vec<Option<StoredMap>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT method, width, height, encoding, data FROM maps WHERE run_id = ?1 AND image_id = ?2",
    )?;
    let mut found: HashMap<String, StoredMap> = HashMap::new();
    let mut rows = stmt.query([run, image_id])?;
    while let Some(r) = rows.next()? {
        let encoding: String = r.get(3)?;
        let Some(values) = maps::decode(&encoding, r.get_ref(4)?.as_blob()?) else {
            continue;
        };
        let (w, h): (i64, i64) = (r.get(1)?, r.get(2)?);
        if values.len() == (w * h) as usize {
            found.insert(r.get(0)?, (w as usize, h as usize, values));
        }
    }
    Ok(methods.iter().map(|m| found.remove(m)).collect())
}

/// The method-agreement rows of every image of `run`, by image id (a value stored as NULL reads as
/// NaN, as it was written).
pub fn image_agreement(
    conn: &Connection,
    run: &str,
) -> rusqlite::Result<HashMap<String, Vec<AgreementRecord>>> {
    let mut out: HashMap<String, Vec<AgreementRecord>> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT image_id, method_a, method_b, spearman, iou_top10 FROM agreement WHERE run_id = ?1",
    )?;
    let mut rows = stmt.query([run])?;
    while let Some(r) = rows.next()? {
        out.entry(r.get(0)?).or_default().push(AgreementRecord {
            method_a: r.get(1)?,
            method_b: r.get(2)?,
            spearman: real_or_nan(r, 3)?,
            iou_top10: real_or_nan(r, 4)?,
        });
    }
    Ok(out)
}

/// One image's faithfulness for one method: deletion and insertion AUC, and the random order's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageFaithfulness {
    pub deletion_auc: Option<f64>,
    pub insertion_auc: Option<f64>,
    pub random_deletion_auc: Option<f64>,
    pub random_insertion_auc: Option<f64>,
}

/// [`ImageFaithfulness`] per (image id, method) of `run` (empty when it ran without
/// `--faithfulness`).
pub fn image_faithfulness(
    conn: &Connection,
    run: &str,
) -> rusqlite::Result<HashMap<(String, String), ImageFaithfulness>> {
    by_image_method(
        conn,
        "SELECT image_id, method, deletion_auc, insertion_auc, random_deletion_auc, random_insertion_auc
         FROM v_faithfulness_image WHERE run_id = ?1",
        run,
        |r| {
            Ok(ImageFaithfulness {
                deletion_auc: r.get(2)?,
                insertion_auc: r.get(3)?,
                random_deletion_auc: r.get(4)?,
                random_insertion_auc: r.get(5)?,
            })
        },
    )
}

/// One image's ground-truth outline as stored: the side of its pooled grid, the coverage bytes
/// (0 outside .. 255 inside, row-major) and its area share of the map grid.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOutline {
    pub size: usize,
    pub coverage: Vec<u8>,
    pub area: f64,
}

/// The outline of every image of `run` that has one.
pub fn outlines(conn: &Connection, run: &str) -> rusqlite::Result<HashMap<String, StoredOutline>> {
    let mut out = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT image_id, outline_size, outline, area_fraction FROM outlines WHERE run_id = ?1",
    )?;
    let mut rows = stmt.query([run])?;
    while let Some(r) = rows.next()? {
        let size = r.get::<_, i64>(1)? as usize;
        let coverage: Vec<u8> = r.get(2)?;
        if coverage.len() == size * size {
            out.insert(
                r.get(0)?,
                StoredOutline {
                    size,
                    coverage,
                    area: r.get(3)?,
                },
            );
        }
    }
    Ok(out)
}

/// One image's localisation for one method: share of |map| on the tumour, the pointing game, the
/// IoU of the map's top-k pixels with the outline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageLocalisation {
    pub mass_on_tumor: Option<f64>,
    pub pointing_hit: bool,
    pub iou_top_area: Option<f64>,
}

/// [`ImageLocalisation`] per (image id, method) of `run` (empty without outlines).
pub fn image_localisation(
    conn: &Connection,
    run: &str,
) -> rusqlite::Result<HashMap<(String, String), ImageLocalisation>> {
    let mut out = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT image_id, method, mass_on_tumor, pointing_hit, iou_top_area
         FROM localisation WHERE run_id = ?1",
    )?;
    let mut rows = stmt.query([run])?;
    while let Some(r) = rows.next()? {
        out.insert(
            (r.get(0)?, r.get(1)?),
            ImageLocalisation {
                mass_on_tumor: r.get(2)?,
                pointing_hit: r.get::<_, i64>(3)? == 1,
                iou_top_area: r.get(4)?,
            },
        );
    }
    Ok(out)
}

/// The mean outline density per class (label `unlabelled` for images without one): the mean of the
/// stored coverage over the class's images with an outline, in [0, 1], as a [`super::bias::MeanMap`]
/// of method `outline`.
pub fn mean_outlines(conn: &Connection, run: &str) -> rusqlite::Result<Vec<super::bias::MeanMap>> {
    let mut acc: BTreeMap<String, super::bias::MeanMap> = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT coalesce(i.label, 'unlabelled'), o.outline_size, o.outline
         FROM outlines AS o JOIN images AS i USING (image_id) WHERE o.run_id = ?1",
    )?;
    let mut rows = stmt.query([run])?;
    while let Some(r) = rows.next()? {
        let label: String = r.get(0)?;
        let size = r.get::<_, i64>(1)? as usize;
        let coverage: Vec<u8> = r.get(2)?;
        let m = acc
            .entry(label.clone())
            .or_insert_with(|| super::bias::MeanMap {
                label,
                method: "outline".into(),
                images: 0,
                width: size,
                height: size,
                values: vec![0.0; size * size],
            });
        if coverage.len() != m.values.len() {
            continue;
        }
        m.images += 1;
        for (a, &c) in m.values.iter_mut().zip(&coverage) {
            *a += c as f32 / 255.0;
        }
    }
    Ok(acc
        .into_values()
        .map(|mut m| {
            let n = m.images.max(1) as f32;
            m.values.iter_mut().for_each(|v| *v /= n);
            m
        })
        .collect())
}
