//! What the templates see: the report's view models (plain serialisable values, all text escaped by
//! the template engine when rendered) and the formatting of numbers, tables and method names.
use serde::Serialize;

use crate::attribution::Method;
use crate::query::{Cell, Table};

#[derive(Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

#[derive(Serialize)]
pub struct HtmlTable {
    /// An optional header row above the column names: (title, columns spanned).
    pub groups: Vec<HeaderGroup>,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<HtmlCell>>,
}

#[derive(Serialize)]
pub struct HeaderGroup {
    pub title: String,
    pub span: usize,
}

#[derive(Serialize)]
pub struct HtmlCell {
    pub text: String,
    pub num: bool,
}

/// One figure of the "at a glance" strip at the top of the report.
#[derive(Serialize)]
pub struct Glance {
    pub label: String,
    pub value: String,
    pub note: String,
    pub alert: bool,
}

/// One class (or "all") of the mean-map grid: one tile per method, `None` where there is no map.
#[derive(Serialize)]
pub struct MeanMapRow {
    pub label: String,
    pub images: usize,
    pub tiles: Vec<Option<String>>,
    /// The class's mean ground-truth outline density and its image count, when it has outlines.
    pub outline: Option<(String, usize)>,
}

/// One method's figures for one gallery image, with the rules that fire marked.
#[derive(Serialize, Clone)]
pub struct MethodCell {
    pub background: String,
    pub border: String,
    pub agreement: String,
    pub bg_hot: bool,
    pub border_hot: bool,
    pub agree_low: bool,
}

#[derive(Serialize, Clone)]
pub struct GalleryItem {
    pub anchor: String,
    /// The image's own page, relative to the report folder.
    pub page: String,
    pub file: String,
    pub path: String,
    pub label: String,
    pub predicted: String,
    pub confidence: String,
    pub correct: Option<bool>,
    pub score: i64,
    pub reasons: String,
    pub near_duplicate: bool,
    pub train_distance: String,
    pub strip: String,
    pub note: String,
    pub cells: Vec<Option<MethodCell>>,
    /// For the views: the stored label, the confidence, and the methods (indices) a rule flags.
    #[serde(skip)]
    pub label_value: Option<String>,
    #[serde(skip)]
    pub confidence_value: Option<f64>,
    #[serde(skip)]
    pub flagged: Vec<usize>,
    /// With a ground-truth outline: the median share of the methods' |map| on the tumour, in words
    /// (empty without an outline), and as a number for the views.
    pub tumor_mass: String,
    #[serde(skip)]
    pub tumor_mass_value: Option<f64>,
}

/// A link of the gallery's view bar: a filter or an order, with the images it holds.
#[derive(Serialize, Clone)]
pub struct ViewLink {
    pub label: String,
    pub href: String,
    pub count: usize,
    pub current: bool,
}

/// One row of the view bar: "Show", "True class", "Flagged by method".
#[derive(Serialize, Clone)]
pub struct ViewFacet {
    pub title: String,
    pub links: Vec<ViewLink>,
}

/// The view bar of one gallery page: the filters (one facet at a time), the orders, and the words
/// for the view shown.
#[derive(Serialize, Clone)]
pub struct ViewNav {
    pub facets: Vec<ViewFacet>,
    pub sorts: Vec<ViewLink>,
    pub title: String,
}

/// The colour bar of the gallery and the image pages: the scale's picture, its tick labels, and
/// what it means.
#[derive(Serialize)]
pub struct Legend {
    pub colorbar: String,
    pub ticks: Vec<String>,
    pub meaning: String,
    /// Opacity of the maps over the scan (the image pages lay them over it in the browser).
    pub alpha: f32,
}

/// One method's map on an image page.
#[derive(Serialize)]
pub struct MapFigure {
    pub method: String,
    /// `heat/<id>-<k>.png`, `None` without a stored map.
    pub heat: Option<String>,
    /// The raw values the ends of the colour bar stand for.
    pub low: String,
    pub high: String,
    pub cell: Option<MethodCell>,
    pub faithfulness: Option<FaithCell>,
    /// Against the ground-truth outline, when the image has one.
    pub tumor: Option<TumorCell>,
}

/// One map against the image's ground-truth outline.
#[derive(Serialize)]
pub struct TumorCell {
    /// Share of |map| on the tumour, and the outline's area share (what an even map would put there).
    pub mass: String,
    pub chance: String,
    /// The map's maximum on the tumour (within the tolerance).
    pub hit: bool,
    /// IoU of the map's top-k pixels with the outline.
    pub iou: String,
}

/// One image's faithfulness for one method, against the random order.
#[derive(Serialize)]
pub struct FaithCell {
    pub deletion: String,
    pub insertion: String,
    pub random_deletion: String,
    pub random_insertion: String,
    /// Deletion below random, insertion above random: the map did better than chance.
    pub deletion_good: bool,
    pub insertion_good: bool,
}

/// A method x method matrix of one image (Spearman or top-10% overlap), coloured by value.
#[derive(Serialize)]
pub struct Matrix {
    pub title: String,
    pub methods: Vec<String>,
    pub rows: Vec<Vec<MatrixCell>>,
}

#[derive(Serialize)]
pub struct MatrixCell {
    pub text: String,
    /// An inline `background` colour (the report's CSP allows inline styles, not scripts).
    pub style: String,
}

/// A link to another page, relative to the report folder.
#[derive(Serialize)]
pub struct Link {
    pub label: String,
    pub href: String,
}

/// The page of one image.
#[derive(Serialize)]
pub struct ImagePage {
    pub item: GalleryItem,
    pub image_id: String,
    /// `inputs/<id>.jpg`, width, height.
    pub original: Option<(String, u32, u32)>,
    pub model_input: Option<String>,
    pub model_size: usize,
    /// The model input in words (see [`crate::preprocess::ImageConfig::describe`]).
    pub model_input_words: String,
    /// Side of the large overlays on the page, in CSS pixels.
    pub big: u32,
    pub maps: Vec<MapFigure>,
    /// `outline/<id>.png`, the ground-truth outline drawn over the input and each map.
    pub outline: Option<String>,
    pub agreement: Vec<Matrix>,
    /// The run's shortcut check as it concerns this image.
    pub shortcuts: ImageShortcuts,
    pub gallery: Link,
    pub prev: Option<Link>,
    pub next: Option<Link>,
    pub position: usize,
    pub total: usize,
}

/// An image's part in the run's shortcut check: its calibrated flags and the causal tests it took part
/// in, each with its region's box (CSS percentages over the model input).
#[derive(Serialize, Default)]
pub struct ImageShortcuts {
    /// False when the run has no shortcut check.
    pub checked: bool,
    pub flags: Vec<ImageFlag>,
    pub tests: Vec<ImageTest>,
}

#[derive(Serialize)]
pub struct ImageFlag {
    pub method: String,
    pub reason: String,
    pub value: String,
    pub threshold: String,
}

#[derive(Serialize)]
pub struct ImageTest {
    pub region: i64,
    pub class: String,
    pub verdict: String,
    /// `occlusion` or `paste`.
    pub test: String,
    /// What was done, in words ("region 2 filled in", "region 2 pasted from <file>").
    pub what: String,
    pub before: String,
    pub after: String,
    pub predicted_after: String,
    pub flipped: bool,
    /// `left: ..%; top: ..%; width: ..%; height: ..%`.
    pub box_style: String,
}

/// One group of the gallery (incorrect, correct, unlabelled) on one page.
#[derive(Serialize)]
pub struct GalleryGroup {
    pub id: String,
    pub title: String,
    pub total: usize,
    pub suspicious: usize,
    pub first: usize,
    pub items: Vec<GalleryItem>,
}

#[derive(Serialize)]
pub struct PageLink {
    pub number: usize,
    pub href: String,
    pub current: bool,
}

/// The report's trust section: tables with method titles, and the plots' asset paths (`None` when
/// the run has no such rows).
#[derive(Serialize, Default)]
pub struct TrustSection {
    pub faithfulness: Option<HtmlTable>,
    pub faithfulness_by_class: Option<HtmlTable>,
    pub faithfulness_svg: Option<String>,
    pub faithfulness_steps: Option<i64>,
    pub sanity: Option<HtmlTable>,
    pub sanity_svg: Option<String>,
    pub sanity_images: Option<i64>,
    pub sanity_threshold: Option<f64>,
    pub other_class: Option<HtmlTable>,
}

/// The run's verdict (the shortcut check, issue 15): the sentence, the regions with their causal
/// test, the methods' trust, and per region a picture (the region outlined in white over the class's
/// mean map and over an example image of the class). `present` is false when the check did not run.
#[derive(Serialize, Default)]
pub struct VerdictSection {
    pub present: bool,
    pub shortcut: bool,
    /// `shortcut`, `no_shortcut` or `inconclusive`.
    pub state: String,
    /// The heading's words for the state.
    pub heading: String,
    /// The check's own `min_flip_rate`, in percent, as the text quotes it.
    pub min_flip_rate_pct: String,
    pub summary: String,
    pub regions: Option<HtmlTable>,
    pub methods: Option<HtmlTable>,
    pub pictures: Vec<RegionPicture>,
    /// The acquisition part, when the check measured the classes.
    pub acquisition: Option<AcquisitionView>,
}

/// The acquisition part of the verdict: the class-difference table, the counterfactuals' flip table,
/// and the before / after pairs of the confirmed ones and of the strongest others.
#[derive(Serialize)]
pub struct AcquisitionView {
    pub differences: HtmlTable,
    pub tests: HtmlTable,
    pub pictures: Vec<RegionPicture>,
}

/// One region's picture and caption.
#[derive(Serialize)]
pub struct RegionPicture {
    pub src: String,
    pub caption: String,
}

/// The thresholds of the default rules, as the pages explain them.
#[derive(Serialize)]
pub struct Thresholds {
    pub background: f64,
    pub border: f64,
    pub agreement: f64,
    pub confidence: f64,
}

/// What every page sees.
#[derive(Serialize)]
pub struct Common<'a> {
    pub run: &'a str,
    pub methods: &'a [String],
    pub per_page: usize,
    pub pages: usize,
    pub thumb: u32,
    pub thresholds: Thresholds,
    pub legend: Legend,
}

/// What `report.html` sees besides [`Common`], the page number, its links and its gallery groups.
#[derive(Serialize)]
pub struct IndexPage {
    pub glance: Vec<Glance>,
    pub info: Vec<KeyValue>,
    pub config_yaml: String,
    pub accuracy: Option<String>,
    pub roc_auc: Option<String>,
    pub labelled: usize,
    pub per_class: Option<HtmlTable>,
    pub confusion_svg: Option<String>,
    pub bias: HtmlTable,
    /// Localisation against the ground-truth outlines per class x method, right / wrong side by side.
    pub localisation_table: HtmlTable,
    pub mean_rows: Vec<MeanMapRow>,
    /// Some class has a mean outline density (an extra column of the mean maps).
    pub has_outlines: bool,
    /// The run's localisation line (images with a ground-truth outline), for the verdict section.
    pub localisation: Option<String>,
    /// The mean maps' colour bar (jet, each map on its own maximum).
    pub mean_legend: Legend,
    pub has_metrics: bool,
    pub has_agreement: bool,
    pub agreement_table: HtmlTable,
    pub trust: TrustSection,
    pub verdict: VerdictSection,
    pub leak_checked: i64,
    pub leak_near: i64,
    pub leak_max_distance: Option<i64>,
    pub leak_train_dir: Option<String>,
    pub leak_table: HtmlTable,
    pub errors: HtmlTable,
    pub originals_missing: usize,
}

pub fn fmt3(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "–".to_string(), |v| format!("{v:.3}"))
}

pub fn fmt2(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "–".to_string(), |v| format!("{v:.2}"))
}

pub fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

impl HtmlTable {
    /// The table without the column `name` (when it has one): what a reader of the page does not need
    /// while the export keeps it.
    pub fn without(mut self, name: &str) -> HtmlTable {
        if let Some(k) = self.columns.iter().position(|c| c == name) {
            self.columns.remove(k);
            for r in &mut self.rows {
                r.remove(k);
            }
        }
        self
    }
}

pub fn html_table(t: &Table) -> HtmlTable {
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
pub fn bias_html(t: &Table) -> HtmlTable {
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

/// `html_table` with the `method` column's names as titles.
pub fn methods_html(t: &Table) -> HtmlTable {
    let mut h = html_table(t);
    if let Some(c) = t.column("method") {
        for r in &mut h.rows {
            r[c].text = method_title(&r[c].text);
        }
    }
    h
}

/// A method's display name ("Grad-CAM" for `gradcam`; an unknown name as it is).
pub fn method_title(m: &str) -> String {
    Method::parse(m).map_or_else(|_| m.to_string(), |m| m.title().to_string())
}

/// An asset name from an image id: the id when it is a plain hex digest (as tumor-audit writes it),
/// else the row number. Never a path or a name taken from the data.
pub fn asset_name(image_id: &str, index: usize) -> String {
    if !image_id.is_empty()
        && image_id.len() <= 64
        && image_id.chars().all(|c| c.is_ascii_hexdigit())
    {
        image_id.to_ascii_lowercase()
    } else {
        format!("row-{index}")
    }
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
}
