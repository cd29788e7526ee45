//! `report`: one run of an audit database as static HTML pages a person opens from the file system.
//!
//! `report.html` holds the run header, the evaluation, the bias summary, the mean maps, the plots, the
//! leakage check, the errors and the first page of the gallery; `gallery-2.html`, `gallery-3.html`, ...
//! hold the rest of the gallery. Assets go to `report-assets/` beside them (PNG thumbnails named by
//! image id, SVG plots), so the folder can be copied or zipped as it is. Nothing is loaded from the
//! network and the pages have no scripts; everything taken from the database goes through minijinja's
//! HTML auto-escaping.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use image::RgbImage;
use rayon::prelude::*;
use rusqlite::Connection;
use serde::Serialize;

use crate::attribution::Method;
use crate::config::ImageConfig;
use crate::dataset::{self, Limits};
use crate::display::{self, DisplayParams};
use crate::evaluate;
use crate::metrics;
use crate::query::{self, bias, export, trust, Cell, Rules, Table};

pub mod plots;

/// Folder of the assets, beside the pages.
pub const ASSETS: &str = "report-assets";

/// Options of `report`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Images per gallery column (correct / incorrect) on each page.
    pub per_page: usize,
    /// Width and height of one thumbnail tile in the gallery strips, in pixels.
    pub thumb: u32,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            per_page: 50,
            thumb: 96,
        }
    }
}

/// What `report` wrote.
#[derive(Debug)]
pub struct Written {
    pub index: PathBuf,
    pub pages: Vec<PathBuf>,
    /// Bytes of all HTML pages.
    pub html_bytes: u64,
    /// Bytes of all assets.
    pub asset_bytes: u64,
    /// Bytes the browser fetches when it opens `report.html` and scrolls to its end: the page, its
    /// plots and mean maps, and the thumbnails of the first gallery page.
    pub first_page_bytes: u64,
    pub images: usize,
    /// Images whose original file could not be read (or changed since the audit): their strip shows
    /// the maps without the scan.
    pub originals_missing: usize,
}

// ------------------------------------------------------------------------------------------------
// What the templates see (all text is escaped by the template engine).
// ------------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct KeyValue {
    key: String,
    value: String,
}

#[derive(Serialize)]
struct HtmlTable {
    /// An optional header row above the column names: (title, columns spanned).
    groups: Vec<HeaderGroup>,
    columns: Vec<String>,
    rows: Vec<Vec<HtmlCell>>,
}

#[derive(Serialize)]
struct HeaderGroup {
    title: String,
    span: usize,
}

#[derive(Serialize)]
struct HtmlCell {
    text: String,
    num: bool,
}

#[derive(Serialize)]
struct Glance {
    label: String,
    value: String,
    note: String,
    alert: bool,
}

#[derive(Serialize)]
struct MeanMapRow {
    label: String,
    images: usize,
    tiles: Vec<Option<String>>,
}

#[derive(Serialize)]
struct MethodCell {
    background: String,
    border: String,
    agreement: String,
    bg_hot: bool,
    border_hot: bool,
    agree_low: bool,
}

#[derive(Serialize)]
struct GalleryItem {
    anchor: String,
    file: String,
    path: String,
    label: String,
    predicted: String,
    confidence: String,
    correct: Option<bool>,
    score: i64,
    reasons: String,
    near_duplicate: bool,
    train_distance: String,
    strip: String,
    note: String,
    cells: Vec<Option<MethodCell>>,
}

#[derive(Serialize)]
struct GalleryGroup {
    id: String,
    title: String,
    total: usize,
    suspicious: usize,
    first: usize,
    items: Vec<GalleryItem>,
}

#[derive(Serialize)]
struct PageLink {
    number: usize,
    href: String,
    current: bool,
}

// ------------------------------------------------------------------------------------------------

fn fmt3(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "–".to_string(), |v| format!("{v:.3}"))
}

fn fmt2(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "–".to_string(), |v| format!("{v:.2}"))
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn html_table(t: &Table) -> HtmlTable {
    HtmlTable {
        groups: Vec::new(),
        columns: t.columns.clone(),
        rows: t
            .rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|c| match c {
                        Cell::Null => HtmlCell {
                            text: "–".into(),
                            num: false,
                        },
                        Cell::Int(i) => HtmlCell {
                            text: i.to_string(),
                            num: true,
                        },
                        Cell::Real(v) => HtmlCell {
                            text: format!("{v:.3}"),
                            num: true,
                        },
                        Cell::Text(s) => HtmlCell {
                            text: s.clone(),
                            num: false,
                        },
                        Cell::Blob(n) => HtmlCell {
                            text: format!("<blob of {n} bytes>"),
                            num: false,
                        },
                    })
                    .collect()
            })
            .collect(),
    }
}

/// `bias::side_by_side` for a reader: method titles, and the right / wrong halves under a header.
fn bias_html(t: &Table) -> HtmlTable {
    let mut h = html_table(t);
    if h.columns.len() != 12 {
        return h;
    }
    for r in &mut h.rows {
        r[1].text = method_title(&r[1].text);
    }
    let half = [
        "images",
        "background mean",
        "background median",
        "border mean",
        "share flagged",
    ];
    h.columns = ["class", "method"]
        .into_iter()
        .chain(half)
        .chain(half)
        .map(str::to_string)
        .collect();
    h.groups = vec![
        HeaderGroup {
            title: String::new(),
            span: 2,
        },
        HeaderGroup {
            title: "correct predictions".into(),
            span: 5,
        },
        HeaderGroup {
            title: "incorrect predictions".into(),
            span: 5,
        },
    ];
    h
}

/// A method's display name ("Grad-CAM" for `gradcam`; an unknown name as it is).
fn method_title(m: &str) -> String {
    Method::parse(m).map_or_else(|_| m.to_string(), |m| m.title().to_string())
}

/// An asset name from an image id: the id when it is a plain hex digest (as tumor-audit writes it),
/// else the row number. Never a path or a name taken from the data.
fn asset_name(image_id: &str, index: usize) -> String {
    if !image_id.is_empty()
        && image_id.len() <= 64
        && image_id.chars().all(|c| c.is_ascii_hexdigit())
    {
        image_id.to_ascii_lowercase()
    } else {
        format!("row-{index}")
    }
}

/// `données.image` of the run's config snapshot.
fn run_image_config(yaml: &str) -> Option<ImageConfig> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).ok()?;
    serde_yaml_ng::from_value(v.get("données")?.get("image")?.clone()).ok()
}

/// Bilinear resize of a row-major map (half-pixel centres, edges clamped).
fn resize_map(src: &[f32], w: usize, h: usize, to_w: usize, to_h: usize) -> Vec<f32> {
    if (w, h) == (to_w, to_h) || w == 0 || h == 0 {
        return src.to_vec();
    }
    let at = |x: usize, y: usize| {
        let v = src.get(y * w + x).copied().unwrap_or(0.0);
        if v.is_finite() {
            v
        } else {
            0.0
        }
    };
    let mut out = Vec::with_capacity(to_w * to_h);
    for y in 0..to_h {
        let fy = ((y as f32 + 0.5) * h as f32 / to_h as f32 - 0.5).clamp(0.0, (h - 1) as f32);
        let (y0, ty) = (fy.floor() as usize, fy - fy.floor());
        let y1 = (y0 + 1).min(h - 1);
        for x in 0..to_w {
            let fx = ((x as f32 + 0.5) * w as f32 / to_w as f32 - 0.5).clamp(0.0, (w - 1) as f32);
            let (x0, tx) = (fx.floor() as usize, fx - fx.floor());
            let x1 = (x0 + 1).min(w - 1);
            let top = at(x0, y0) * (1.0 - tx) + at(x1, y0) * tx;
            let bottom = at(x0, y1) * (1.0 - tx) + at(x1, y1) * tx;
            out.push(top * (1.0 - ty) + bottom * ty);
        }
    }
    out
}

/// Gap (white pixels) to the right of each tile of a strip.
const STRIP_GAP: u32 = 4;

/// One image's strip: the preprocessed grey input as the model saw it, then each method's overlay
/// (the notebook's display: |map| clipped at the 0.5 / 99.5 percentiles, jet at 40% over the grey
/// image), each `thumb` x `thumb`. The stored 64 x 64 map is resized bilinearly to the model input
/// size first. Returns the strip and a note when the original could not be used.
fn strip(
    path: &Path,
    image_id: &str,
    cfg: Option<&ImageConfig>,
    maps: &[Option<StoredMap>],
    thumb: u32,
) -> (RgbImage, String) {
    let mut note = String::new();
    let grey: Option<(Vec<f32>, usize)> = match cfg {
        None => {
            note = "the run's config has no données.image: maps shown without the scan".into();
            None
        }
        Some(cfg) => match dataset::read_image(path, Limits::default()) {
            Ok(d) if d.id == image_id => {
                let prep = crate::preprocess::prepare(&d.image, cfg);
                Some((prep.grey, prep.size))
            }
            Ok(_) => {
                note = "the file changed since the audit: maps shown without the scan".into();
                None
            }
            Err(e) => {
                note = format!("original not readable ({e}): maps shown without the scan");
                None
            }
        },
    };
    let size = grey.as_ref().map_or_else(
        || {
            maps.iter()
                .flatten()
                .map(|m| m.0)
                .next()
                .unwrap_or(thumb as usize)
        },
        |g| g.1,
    );
    let black = vec![0f32; size * size];
    let grey_px: &[f32] = grey.as_ref().map_or(&black, |g| &g.0);
    let fit = |img: RgbImage| {
        if img.width() == thumb && img.height() == thumb {
            img
        } else {
            image::imageops::resize(&img, thumb, thumb, image::imageops::FilterType::Triangle)
        }
    };
    let mut tiles = vec![fit(display::grey_to_rgb(
        grey_px,
        size as u32,
        size as u32,
        1,
    ))];
    for m in maps {
        tiles.push(match m {
            Some((w, h, values)) => {
                let big = resize_map(values, *w, *h, size, size);
                fit(display::overlay(
                    grey_px,
                    1,
                    &big,
                    size as u32,
                    size as u32,
                    &DisplayParams::default(),
                ))
            }
            None => RgbImage::from_pixel(thumb, thumb, image::Rgb([235, 235, 235])),
        });
    }
    let step = thumb + STRIP_GAP;
    let mut out = RgbImage::from_pixel(
        step * tiles.len() as u32,
        thumb,
        image::Rgb([255, 255, 255]),
    );
    for (i, t) in tiles.iter().enumerate() {
        image::imageops::replace(&mut out, t, (i as u32 * step) as i64, 0);
    }
    (out, note)
}

fn save_png(img: &RgbImage, path: &Path) -> anyhow::Result<()> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder as _;
    let f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
    );
    PngEncoder::new_with_quality(f, CompressionType::Best, FilterType::Adaptive)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Gallery strips are JPEG: jet overlays compress badly as PNG (measured on real maps: about 134 KB
/// for a strip of seven 112-pixel tiles, 39 KB as JPEG at this quality). The mean maps and plots stay
/// lossless.
pub const JPEG_QUALITY: u8 = 85;

fn save_jpeg(img: &RgbImage, path: &Path) -> anyhow::Result<()> {
    let f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
    );
    image::codecs::jpeg::JpegEncoder::new_with_quality(f, JPEG_QUALITY)
        .encode_image(img)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// Everything about a run that the header shows.
struct RunInfo {
    fields: Vec<KeyValue>,
    config_yaml: String,
    methods: Vec<String>,
    image_cfg: Option<ImageConfig>,
}

fn run_info(conn: &Connection, run: &str) -> anyhow::Result<RunInfo> {
    let row = conn.query_row(
        "SELECT r.status, r.started_at, r.finished_at,
                (julianday(coalesce(r.finished_at, r.started_at)) - julianday(r.started_at)) * 86400.0,
                r.config_yaml, r.model_path, r.model_sha256, r.data_root, r.tool_version, r.device,
                r.seed, r.profile, r.methods, r.baseline_value, r.reference_value, r.images_total,
                s.images_done, s.images_failed, s.errors
         FROM runs AS r JOIN v_run_summary AS s USING (run_id) WHERE r.run_id = ?1",
        [run],
        |r| {
            Ok((
                (
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<f64>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                ),
                (
                    r.get::<_, i64>(10)?,
                    r.get::<_, String>(11)?,
                    r.get::<_, String>(12)?,
                    r.get::<_, Option<f64>>(13)?,
                    r.get::<_, Option<f64>>(14)?,
                    r.get::<_, i64>(15)?,
                    r.get::<_, i64>(16)?,
                    r.get::<_, i64>(17)?,
                    r.get::<_, i64>(18)?,
                ),
            ))
        },
    )?;
    let (
        (status, started, finished, seconds, yaml, model_path, sha, data_root, version, device),
        (seed, profile, methods_json, baseline, reference, total, done, failed, errors),
    ) = row;
    let methods: Vec<String> = serde_json::from_str(&methods_json).unwrap_or_default();
    let duration = match (seconds, &finished) {
        (Some(s), Some(_)) if s >= 60.0 => {
            format!("{:.0} min {:.0} s", (s / 60.0).floor(), s % 60.0)
        }
        (Some(s), Some(_)) => format!("{s:.1} s"),
        _ => "not finished".into(),
    };
    let kv = |k: &str, v: String| KeyValue {
        key: k.into(),
        value: v,
    };
    let fields = vec![
        kv("run", run.to_string()),
        kv("status", status),
        kv("started (UTC)", started),
        kv("finished (UTC)", finished.unwrap_or_else(|| "–".into())),
        kv("duration", duration),
        kv("model", model_path),
        kv("model sha256", sha),
        kv("data root", data_root),
        kv(
            "images",
            format!("{done} done, {failed} failed, of {total} listed ({errors} error rows)"),
        ),
        kv("device", device),
        kv("tool version", format!("tumor-audit {version}")),
        kv("profile", profile),
        kv(
            "methods",
            methods
                .iter()
                .map(|m| method_title(m))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        kv("seed", seed.to_string()),
        kv(
            "IG baseline / LIME-SHAP reference",
            format!("{} / {}", fmt3(baseline), fmt3(reference)),
        ),
    ];
    Ok(RunInfo {
        image_cfg: run_image_config(&yaml),
        fields,
        config_yaml: yaml,
        methods,
    })
}

/// Class list: the run's `data.classes`, then any other label or prediction seen.
fn classes(conn: &Connection, run: &str) -> anyhow::Result<Vec<String>> {
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

/// Accuracy, per-class P/R/F1 and the confusion matrix over the labelled images of the run.
fn evaluation(
    conn: &Connection,
    run: &str,
    classes: &[String],
) -> anyhow::Result<Option<evaluate::Evaluation>> {
    let mut labels = Vec::new();
    let mut probs = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT i.label, p.predicted, p.probabilities FROM predictions AS p JOIN images AS i USING (image_id)
         WHERE p.run_id = ?1 AND i.label IS NOT NULL",
    )?;
    let mut rows = stmt.query([run])?;
    while let Some(r) = rows.next()? {
        let (label, predicted, json): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let Some(l) = classes.iter().position(|c| *c == label) else {
            continue;
        };
        let map: BTreeMap<String, f64> = serde_json::from_str(&json).unwrap_or_default();
        let mut p: Vec<f32> = classes
            .iter()
            .map(|c| map.get(c).copied().unwrap_or(0.0) as f32)
            .collect();
        // The stored prediction decides (ties in the probabilities must not flip it).
        if let Some(k) = classes.iter().position(|c| *c == predicted) {
            if evaluate::argmax(&p) != k {
                p.iter_mut().for_each(|v| *v = 0.0);
                p[k] = 1.0;
            }
        }
        labels.push(l);
        probs.push(p);
    }
    if labels.is_empty() {
        return Ok(None);
    }
    Ok(Some(evaluate::evaluate(&labels, &probs, classes)))
}

/// Mean Spearman per method pair, as a symmetric matrix (diagonal 1).
fn agreement_matrix(
    conn: &Connection,
    run: &str,
    methods: &[String],
) -> anyhow::Result<(Vec<Vec<Option<f64>>>, HtmlTable)> {
    let n = methods.len();
    let mut m = vec![vec![None; n]; n];
    let t = Table::query(
        conn,
        "SELECT method_a, method_b, count(*) AS images, avg(spearman) AS mean_spearman,
                avg(iou_top10) AS mean_iou_top10
         FROM agreement WHERE run_id = ?1 GROUP BY method_a, method_b ORDER BY mean_spearman DESC",
        [run],
    )?;
    for r in &t.rows {
        let (Cell::Text(a), Cell::Text(b)) = (&r[0], &r[1]) else {
            continue;
        };
        let v = match r[3] {
            Cell::Real(v) => Some(v),
            _ => None,
        };
        if let (Some(i), Some(j)) = (
            methods.iter().position(|x| x == a),
            methods.iter().position(|x| x == b),
        ) {
            m[i][j] = v;
            m[j][i] = v;
        }
    }
    for (i, row) in m.iter_mut().enumerate() {
        row[i] = Some(1.0);
    }
    Ok((m, html_table(&t)))
}

/// One gallery entry before rendering.
struct Entry {
    image_id: String,
    path: String,
    label: Option<String>,
    predicted: String,
    confidence: Option<f64>,
    correct: Option<bool>,
    near_duplicate: bool,
    train_distance: Option<i64>,
    score: i64,
    reasons: String,
    rank: usize,
}

fn entries(conn: &Connection, run: &str) -> anyhow::Result<Vec<Entry>> {
    let suspicious = query::suspicious(conn, run, &Rules::default())?;
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
    let mut out: Vec<Entry> = stmt
        .query_map([run], |r| {
            let id: String = r.get(0)?;
            let (rk, score, reasons) =
                rank.get(&id)
                    .cloned()
                    .unwrap_or((usize::MAX, 0, String::new()));
            Ok(Entry {
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
    // Most suspicious first (the order of `query suspicious`), then the rest, least confident first.
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

/// Per image x method: (background, border, mean Spearman with the other methods).
type ImageMetrics = HashMap<(String, String), (Option<f64>, Option<f64>, Option<f64>)>;

fn image_metrics(conn: &Connection, run: &str) -> anyhow::Result<ImageMetrics> {
    let mut out = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT m.image_id, m.method, m.mass_background, m.mass_border, a.mean_spearman
         FROM attribution_metrics AS m
         LEFT JOIN v_method_agreement AS a USING (run_id, image_id, method)
         WHERE m.run_id = ?1",
    )?;
    let mut rows = stmt.query([run])?;
    while let Some(r) = rows.next()? {
        out.insert((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?, r.get(4)?));
    }
    Ok(out)
}

/// A stored map: width, height, values (row-major).
type StoredMap = (usize, usize, Vec<f32>);

/// The stored maps of one image, in `methods` order.
fn image_maps(
    conn: &Connection,
    run: &str,
    image_id: &str,
    methods: &[String],
) -> anyhow::Result<Vec<Option<StoredMap>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT method, width, height, encoding, data FROM maps WHERE run_id = ?1 AND image_id = ?2",
    )?;
    let mut found: HashMap<String, StoredMap> = HashMap::new();
    let mut rows = stmt.query([run, image_id])?;
    while let Some(r) = rows.next()? {
        if r.get::<_, String>(3)? != "f16le" {
            continue;
        }
        let (w, h): (i64, i64) = (r.get(1)?, r.get(2)?);
        let values = metrics::decode_f16(r.get_ref(4)?.as_blob()?);
        if values.len() == (w * h) as usize {
            found.insert(r.get(0)?, (w as usize, h as usize, values));
        }
    }
    Ok(methods.iter().map(|m| found.remove(m)).collect())
}

fn ser<T: Serialize>(x: &T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(x))
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template("base.html", include_str!("templates/base.html"))
        .expect("base.html template");
    env.add_template("report.html", include_str!("templates/report.html"))
        .expect("report.html template");
    env.add_template("gallery.html", include_str!("templates/gallery.html"))
        .expect("gallery.html template");
    env.add_template("pager", include_str!("templates/pager.html"))
        .expect("pager template");
    env
}

/// Writes the report of `run` into `dir` (created if needed). Thumbnails are computed in parallel.
pub fn write_report(
    conn: &Connection,
    run: &str,
    dir: &Path,
    opts: &Options,
) -> anyhow::Result<Written> {
    let per_page = opts.per_page.max(1);
    let thumb = opts.thumb.clamp(32, 512);
    let assets = dir.join(ASSETS);
    // A report written here before (another run, another --per-page) leaves nothing stale behind:
    // report-assets/ and gallery-N.html are this command's own.
    if assets.is_dir() {
        std::fs::remove_dir_all(&assets)
            .with_context(|| format!("cannot clear {}", assets.display()))?;
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_page = name
                .strip_prefix("gallery-")
                .and_then(|r| r.strip_suffix(".html"))
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if is_page {
                std::fs::remove_file(e.path())
                    .with_context(|| format!("cannot remove {}", e.path().display()))?;
            }
        }
    }
    let strips_dir = assets.join("strips");
    std::fs::create_dir_all(&strips_dir)
        .with_context(|| format!("cannot create {}", strips_dir.display()))?;
    let info = run_info(conn, run)?;
    let classes = classes(conn, run)?;
    let methods = info.methods.clone();
    let method_titles: Vec<String> = methods.iter().map(|m| method_title(m)).collect();
    let rules = Rules::default();

    // Evaluation.
    let eval = evaluation(conn, run, &classes)?;
    let mut first_page_assets: Vec<PathBuf> = Vec::new();
    let confusion_svg = match &eval {
        Some(e) => {
            let p = assets.join("confusion.svg");
            plots::confusion(&p, &classes, &e.confusion)?;
            first_page_assets.push(p);
            Some(format!("{ASSETS}/confusion.svg"))
        }
        None => None,
    };
    let per_class = eval.as_ref().map(|e| {
        let mut t = Table::new(["class", "precision", "recall", "F1", "support"]);
        for c in &e.per_class {
            t.push(vec![
                Cell::Text(c.class.clone()),
                Cell::Real(c.precision),
                Cell::Real(c.recall),
                Cell::Real(c.f1),
                Cell::Int(c.support as i64),
            ]);
        }
        html_table(&t)
    });

    // Bias summary, mean maps.
    let bias_table = bias_html(&bias::side_by_side(conn, run)?);
    let maps = bias::mean_maps(conn, run)?;
    let mut mean_rows: Vec<MeanMapRow> = Vec::new();
    let mean_dir = assets.join("mean-maps");
    std::fs::create_dir_all(&mean_dir)?;
    let mut labels: Vec<String> = Vec::new();
    for m in &maps {
        if !labels.contains(&m.label) {
            labels.push(m.label.clone());
        }
    }
    for (li, label) in labels.iter().enumerate() {
        let mut row = MeanMapRow {
            label: label.clone(),
            images: 0,
            tiles: Vec::new(),
        };
        for (mi, method) in methods.iter().enumerate() {
            match maps
                .iter()
                .find(|m| &m.label == label && &m.method == method)
            {
                Some(m) => {
                    row.images = row.images.max(m.images);
                    let name = format!("mean-{li}-{mi}.png");
                    let p = mean_dir.join(&name);
                    save_png(&bias::render(m, 128), &p)?;
                    first_page_assets.push(p);
                    row.tiles.push(Some(format!("{ASSETS}/mean-maps/{name}")));
                }
                None => row.tiles.push(None),
            }
        }
        mean_rows.push(row);
    }

    // Histograms of background / border mass per method.
    let mut bg_series = Vec::new();
    let mut border_series = Vec::new();
    for m in &methods {
        let vals: Vec<(Option<f64>, Option<f64>)> = conn
            .prepare_cached(
                "SELECT mass_background, mass_border FROM attribution_metrics
                 WHERE run_id = ?1 AND method = ?2",
            )?
            .query_map([run, m.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        bg_series.push((
            method_title(m),
            vals.iter().filter_map(|v| v.0).collect::<Vec<f64>>(),
        ));
        border_series.push((
            method_title(m),
            vals.iter().filter_map(|v| v.1).collect::<Vec<f64>>(),
        ));
    }
    let has_metrics = bg_series.iter().any(|s| !s.1.is_empty());
    if has_metrics {
        let p = assets.join("hist-background.svg");
        plots::mass_histograms(&p, "Background mass", rules.background, &bg_series)?;
        first_page_assets.push(p);
        let p = assets.join("hist-border.svg");
        plots::mass_histograms(&p, "Border-band mass", rules.border, &border_series)?;
        first_page_assets.push(p);
    }

    // Agreement.
    let (agree_m, agree_table) = agreement_matrix(conn, run, &methods)?;
    let has_agreement = !agree_table.rows.is_empty();
    if has_agreement {
        let p = assets.join("agreement.svg");
        plots::agreement(&p, &method_titles, &agree_m)?;
        first_page_assets.push(p);
    }

    // Trust checks: faithfulness (audit --faithfulness) and the sanity check (`sanity`).
    let trust_section = trust_section(conn, run, &assets, &mut first_page_assets)?;

    // Leakage.
    let leak: (i64, i64, Option<i64>, Option<String>) = conn.query_row(
        "SELECT count(*), coalesce(sum(near_duplicate), 0), max(max_distance), max(train_dir)
         FROM leakage WHERE run_id = ?1",
        [run],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let leak_table = html_table(&Table::query(
        conn,
        "SELECT i.path, i.label, p.predicted, p.correct, l.distance, l.nearest_path
         FROM leakage AS l JOIN images AS i USING (image_id)
         LEFT JOIN predictions AS p ON p.run_id = l.run_id AND p.image_id = l.image_id
         WHERE l.run_id = ?1 AND l.near_duplicate = 1 ORDER BY l.distance, i.path",
        [run],
    )?);

    // Errors.
    let errors_table = html_table(&Table::query(
        conn,
        "SELECT path, stage, message, at FROM errors WHERE run_id = ?1 ORDER BY id",
        [run],
    )?);

    // Gallery: the maps are read here (one connection), the pictures made in parallel.
    // In chunks, so memory does not grow with the number of images.
    let all = entries(conn, run)?;
    let metrics_of = image_metrics(conn, run)?;
    let mut notes: Vec<(usize, String, String)> = Vec::with_capacity(all.len());
    for chunk in (0..all.len()).collect::<Vec<_>>().chunks(64) {
        let mut jobs = Vec::with_capacity(chunk.len());
        for &i in chunk {
            jobs.push((i, image_maps(conn, run, &all[i].image_id, &methods)?));
        }
        let done: Vec<(usize, String, String)> = jobs
            .into_par_iter()
            .map(|(i, maps)| {
                let e = &all[i];
                let name = format!("{}.jpg", asset_name(&e.image_id, i));
                let (img, note) = strip(
                    Path::new(&e.path),
                    &e.image_id,
                    info.image_cfg.as_ref(),
                    &maps,
                    thumb,
                );
                save_jpeg(&img, &strips_dir.join(&name))?;
                Ok((i, name, note))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        notes.extend(done);
    }
    let originals_missing = notes.iter().filter(|n| !n.2.is_empty()).count();
    let mut items: Vec<Option<GalleryItem>> = Vec::new();
    for (i, name, note) in notes {
        let e = &all[i];
        let cells = methods
            .iter()
            .map(|m| {
                metrics_of
                    .get(&(e.image_id.clone(), m.clone()))
                    .map(|(bg, bd, ag)| MethodCell {
                        background: fmt2(*bg),
                        border: fmt2(*bd),
                        agreement: fmt2(*ag),
                        bg_hot: bg.is_some_and(|v| v > rules.background),
                        border_hot: bd.is_some_and(|v| v > rules.border),
                        agree_low: ag.is_some_and(|v| v < rules.agreement),
                    })
            })
            .collect();
        let file = Path::new(&e.path)
            .file_name()
            .map_or_else(|| e.path.clone(), |f| f.to_string_lossy().into_owned());
        if items.len() <= i {
            items.resize_with(i + 1, || None);
        }
        items[i] = Some(GalleryItem {
            anchor: format!("img-{}", asset_name(&e.image_id, i)),
            file,
            path: e.path.clone(),
            label: e.label.clone().unwrap_or_else(|| "(unlabelled)".into()),
            predicted: e.predicted.clone(),
            confidence: e
                .confidence
                .map_or_else(|| "–".into(), |c| format!("{c:.3}")),
            correct: e.correct,
            score: e.score,
            reasons: e.reasons.clone(),
            near_duplicate: e.near_duplicate,
            train_distance: e
                .train_distance
                .map_or_else(|| "–".into(), |d| d.to_string()),
            strip: format!("{ASSETS}/strips/{name}"),
            note,
            cells,
        });
    }
    // Groups: incorrect, correct, then unlabelled if any; each keeps the suspicious-first order.
    let mut groups: Vec<(String, String, Vec<GalleryItem>)> = vec![
        (
            "incorrect".into(),
            "Incorrect predictions".into(),
            Vec::new(),
        ),
        ("correct".into(), "Correct predictions".into(), Vec::new()),
        ("unlabelled".into(), "Unlabelled images".into(), Vec::new()),
    ];
    for it in items.into_iter().flatten() {
        let g = match it.correct {
            Some(false) => 0,
            Some(true) => 1,
            None => 2,
        };
        groups[g].2.push(it);
    }
    if groups[2].2.is_empty() {
        groups.pop();
    }
    let pages = groups
        .iter()
        .map(|g| g.2.len().div_ceil(per_page))
        .max()
        .unwrap_or(0)
        .max(1);
    let page_file = |p: usize| {
        if p == 1 {
            "report.html".to_string()
        } else {
            format!("gallery-{p}.html")
        }
    };
    let totals: Vec<(usize, usize)> = groups
        .iter()
        .map(|g| (g.2.len(), g.2.iter().filter(|i| i.score > 0).count()))
        .collect();
    // Split each group into pages.
    let mut paged: Vec<Vec<GalleryGroup>> = (0..pages).map(|_| Vec::new()).collect();
    for (gi, (id, title, items)) in groups.into_iter().enumerate() {
        let mut it = items.into_iter();
        for (p, page) in paged.iter_mut().enumerate() {
            page.push(GalleryGroup {
                id: id.clone(),
                title: title.clone(),
                total: totals[gi].0,
                suspicious: totals[gi].1,
                first: p * per_page + 1,
                items: it.by_ref().take(per_page).collect(),
            });
        }
    }

    // Glance.
    let summary: (i64, i64, Option<f64>, i64) = conn.query_row(
        "SELECT images_done, images_failed, accuracy, labelled FROM v_run_summary WHERE run_id = ?1",
        [run],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let suspicious_images = all.iter().filter(|e| e.score > 0).count();
    let wrong = all.iter().filter(|e| e.correct == Some(false)).count();
    let glance = vec![
        Glance {
            label: "accuracy".into(),
            value: summary.2.map_or_else(|| "–".into(), pct),
            note: format!("{} wrong of {} labelled", wrong, summary.3),
            alert: wrong > 0,
        },
        Glance {
            label: "images audited".into(),
            value: summary.0.to_string(),
            note: format!("{} failed", summary.1),
            alert: summary.1 > 0,
        },
        Glance {
            label: "suspicious images".into(),
            value: suspicious_images.to_string(),
            note: "map misplaced, confidently wrong or methods disagree".into(),
            alert: suspicious_images > 0,
        },
        Glance {
            label: "near-duplicates of training images".into(),
            value: if leak.0 > 0 {
                leak.1.to_string()
            } else {
                "–".into()
            },
            note: if leak.0 > 0 {
                format!("of {} checked", leak.0)
            } else {
                "not checked".into()
            },
            alert: leak.1 > 0,
        },
    ];

    let env = environment();
    let page_links = |current: usize| -> Vec<PageLink> {
        (1..=pages)
            .map(|p| PageLink {
                number: p,
                href: page_file(p),
                current: p == current,
            })
            .collect()
    };
    let common = minijinja::context! {
        run => run,
        methods => ser(&method_titles),
        per_page => per_page,
        pages => pages,
        thumb => thumb,
        thresholds => minijinja::context! {
            background => rules.background,
            border => rules.border,
            agreement => rules.agreement,
            confidence => rules.confidence,
        },
    };
    let mut written_pages = Vec::new();
    let mut paged = paged.into_iter();
    let first_groups = paged.next().unwrap_or_default();
    let first_strips: u64 = first_groups
        .iter()
        .flat_map(|g| &g.items)
        .map(|it| file_size(&dir.join(&it.strip)))
        .sum();
    let html = env
        .get_template("report.html")?
        .render(minijinja::context! {
            page => 1,
            page_links => ser(&page_links(1)),
            groups => ser(&first_groups),
            glance => ser(&glance),
            info => ser(&info.fields),
            config_yaml => info.config_yaml,
            accuracy => eval.as_ref().map(|e| pct(e.accuracy)),
            roc_auc => eval.as_ref().and_then(|e| e.roc_auc).map(|v| format!("{v:.4}")),
            labelled => eval.as_ref().map_or(0, |e| e.images),
            per_class => ser(&per_class),
            confusion_svg => confusion_svg,
            bias => ser(&bias_table),
            mean_rows => ser(&mean_rows),
            has_metrics => has_metrics,
            has_agreement => has_agreement,
            agreement_table => ser(&agree_table),
            trust => ser(&trust_section),
            leak_checked => leak.0,
            leak_near => leak.1,
            leak_max_distance => leak.2,
            leak_train_dir => leak.3,
            leak_table => ser(&leak_table),
            errors => ser(&errors_table),
            originals_missing => originals_missing,
            ..common.clone()
        })?;
    let index = dir.join("report.html");
    std::fs::write(&index, &html).with_context(|| format!("cannot write {}", index.display()))?;
    written_pages.push(index.clone());
    for (k, groups) in paged.enumerate() {
        let p = k + 2;
        let html = env
            .get_template("gallery.html")?
            .render(minijinja::context! {
                page => p,
                page_links => ser(&page_links(p)),
                groups => ser(&groups),
                ..common.clone()
            })?;
        let path = dir.join(page_file(p));
        std::fs::write(&path, &html).with_context(|| format!("cannot write {}", path.display()))?;
        written_pages.push(path);
    }

    // Sizes.
    let html_bytes: u64 = written_pages.iter().map(|p| file_size(p)).sum();
    let asset_bytes = dir_size(&assets);
    let first_page_bytes = file_size(&index)
        + first_page_assets.iter().map(|p| file_size(p)).sum::<u64>()
        + first_strips;
    Ok(Written {
        index,
        pages: written_pages,
        html_bytes,
        asset_bytes,
        first_page_bytes,
        images: all.len(),
        originals_missing,
    })
}

/// The report's trust section: tables with method titles, and the plots' asset paths (`None` when
/// the run has no such rows).
#[derive(Serialize, Default)]
struct TrustSection {
    faithfulness: Option<HtmlTable>,
    faithfulness_by_class: Option<HtmlTable>,
    faithfulness_svg: Option<String>,
    faithfulness_steps: Option<i64>,
    sanity: Option<HtmlTable>,
    sanity_svg: Option<String>,
    sanity_images: Option<i64>,
    sanity_threshold: Option<f64>,
    other_class: Option<HtmlTable>,
}

/// `html_table` with the `method` column's names as titles.
fn methods_html(t: &Table) -> HtmlTable {
    let mut h = html_table(t);
    if let Some(c) = t.column("method") {
        for r in &mut h.rows {
            r[c].text = method_title(&r[c].text);
        }
    }
    h
}

fn trust_section(
    conn: &Connection,
    run: &str,
    assets: &Path,
    first_page_assets: &mut Vec<PathBuf>,
) -> anyhow::Result<TrustSection> {
    let mut out = TrustSection::default();
    let faith = trust::faithfulness(conn, run)?;
    if !faith.rows.is_empty() {
        out.faithfulness = Some(methods_html(&faith));
        out.faithfulness_by_class = Some(methods_html(&trust::faithfulness_by_class(conn, run)?));
        // The mean curves: one line per method, the random order dashed.
        let curves = trust::mean_curves(conn, run)?;
        let col = |n: &str| curves.column(n).expect("mean_curves column");
        let (cm, cf, cd, ci) = (
            col("method"),
            col("fraction"),
            col("deletion_score"),
            col("insertion_score"),
        );
        let mut deletion: Vec<plots::Line> = Vec::new();
        let mut insertion: Vec<plots::Line> = Vec::new();
        for r in &curves.rows {
            let m = r[cm].as_text().unwrap_or_default();
            if deletion.last().is_none_or(|l| l.name != method_title(m)) {
                for lines in [&mut deletion, &mut insertion] {
                    lines.push(plots::Line {
                        name: method_title(m),
                        points: Vec::new(),
                        baseline: m == "random",
                    });
                }
            }
            if let (Some(f), Some(d), Some(i)) = (r[cf].as_f64(), r[cd].as_f64(), r[ci].as_f64()) {
                deletion.last_mut().expect("pushed").points.push((f, d));
                insertion.last_mut().expect("pushed").points.push((f, i));
            }
        }
        out.faithfulness_steps = conn.query_row(
            "SELECT max(steps) FROM faithfulness WHERE run_id = ?1",
            [run],
            |r| r.get(0),
        )?;
        // Probabilities fit [0, 1]; logits (explain.faithfulness.score: logit) get their own range.
        let (lo, hi) = deletion
            .iter()
            .chain(&insertion)
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .fold((0.0f64, 1.02f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let p = assets.join("faithfulness.svg");
        let panel = |title, lines, legend| plots::Panel {
            title,
            x_desc: "fraction of the pixels, most important first",
            y_desc: "mean score of the explained class",
            x: 0.0..1.0,
            y: lo..hi,
            x_ticks: None,
            threshold: None,
            lines,
            legend,
        };
        plots::line_panels(
            &p,
            &[
                panel(
                    "Deletion (lower = more faithful)",
                    deletion,
                    plots::SeriesLabelPosition::UpperRight,
                ),
                panel(
                    "Insertion (higher = more faithful)",
                    insertion,
                    plots::SeriesLabelPosition::LowerRight,
                ),
            ],
        )?;
        first_page_assets.push(p);
        out.faithfulness_svg = Some(format!("{ASSETS}/faithfulness.svg"));
    }
    let wide = trust::sanity_wide(conn, run)?;
    if !wide.rows.is_empty() {
        let check = trust::sanity_check(conn, run)?;
        if let Some(r) = check.rows.first() {
            out.sanity_images = check
                .column("images")
                .and_then(|c| r[c].as_f64())
                .map(|v| v as i64);
            out.sanity_threshold = check.column("threshold").and_then(|c| r[c].as_f64());
        }
        // Stage columns sit between `verdict` and `signed_last`.
        let stages: Vec<String> = wide.columns[2..wide.columns.len() - 1].to_vec();
        let lines: Vec<plots::Line> = wide
            .rows
            .iter()
            .map(|r| plots::Line {
                name: method_title(r[0].as_text().unwrap_or_default()),
                points: r[2..r.len() - 1]
                    .iter()
                    .enumerate()
                    .filter_map(|(s, c)| c.as_f64().map(|v| (s as f64, v)))
                    .collect(),
                baseline: false,
            })
            .collect();
        let p = assets.join("sanity.svg");
        plots::line_panels(
            &p,
            &[plots::Panel {
                title: "Similarity to the trained model's maps",
                x_desc: "stage: layer re-initialised (cumulative, from the output)",
                y_desc: "mean |Spearman| of |map|",
                x: -0.1..(stages.len() as f64 - 0.9),
                y: 0.0..1.02,
                x_ticks: Some(&stages),
                threshold: out.sanity_threshold,
                lines,
                legend: plots::SeriesLabelPosition::UpperRight,
            }],
        )?;
        first_page_assets.push(p);
        out.sanity_svg = Some(format!("{ASSETS}/sanity.svg"));
        out.sanity = Some(methods_html(&wide));
        out.other_class = Some(methods_html(&trust::other_class(conn, run)?));
    }
    Ok(out)
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                dir_size(&path)
            } else {
                file_size(&path)
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_names_never_come_from_paths() {
        let hex = "ab".repeat(32);
        assert_eq!(asset_name(&hex, 3), hex);
        assert_eq!(asset_name("../../etc/passwd", 3), "row-3");
        assert_eq!(asset_name("<img src=x>", 7), "row-7");
        assert_eq!(asset_name("", 0), "row-0");
    }

    #[test]
    fn resize_map_keeps_constants_and_sizes() {
        let m = vec![2.0f32; 4 * 4];
        let r = resize_map(&m, 4, 4, 8, 8);
        assert_eq!(r.len(), 64);
        assert!(r.iter().all(|v| (v - 2.0).abs() < 1e-6));
        // A left-to-right ramp stays monotone.
        let ramp: Vec<f32> = (0..16).map(|i| (i % 4) as f32).collect();
        let r = resize_map(&ramp, 4, 4, 8, 8);
        assert!(r[..8].windows(2).all(|w| w[0] <= w[1]), "{r:?}");
    }

    #[test]
    fn templates_escape_data() {
        let env = environment();
        let t = env.template_from_str("<p>{{ x }}</p>").expect("template");
        let out = t
            .render(minijinja::context! { x => "<img src=x onerror=alert(1)>" })
            .unwrap();
        assert_eq!(out, "<p>&lt;img src=x onerror=alert(1)&gt;</p>");
    }
}
