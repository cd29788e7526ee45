//! The report's sections built from plain values (what `query` read): the run header, the
//! evaluation, the bias summary's mean-map grid and histogram series, the method agreement, the trust
//! checks, the gallery and the "at a glance" figures. No SQL and no file here: the builders return
//! view models (`view.rs`) and the data of the plots that `assets.rs` draws.
use std::collections::HashMap;
use std::path::Path;

use super::plots::Line;
use super::view::{
    asset_name, fmt2, fmt3, html_table, method_title, methods_html, pct, FaithCell, GalleryGroup,
    GalleryItem, Glance, ImageFlag, ImagePage, ImageShortcuts, ImageTest, KeyValue, Link,
    MapFigure, Matrix, MatrixCell, MeanMapRow, MethodCell, TrustSection, TumorCell, ViewFacet,
    ViewLink, ViewNav,
};
use super::ASSETS;
use crate::config::ImageConfig;
use crate::evaluate::{self, Evaluation};
use crate::query::bias::MeanMap;
use crate::query::leakage::LeakageSummary;
use crate::query::report::{
    GalleryEntry, ImageFaithfulness, ImageLocalisation, LabelledPrediction, MethodFigures,
};
use crate::query::runs::{RunHeader, RunSummary};
use crate::query::{Cell, Rules, Table};
use crate::store::AgreementRecord;

/// `données.image` of the run's config snapshot (how the gallery strips redo the model's input).
pub fn image_config(yaml: &str) -> Option<ImageConfig> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).ok()?;
    serde_yaml_ng::from_value(v.get("données")?.get("image")?.clone()).ok()
}

/// The run header: one line per fact of the run record (what the run did not record as a dash).
pub fn header(run: &str, h: &RunHeader) -> Vec<KeyValue> {
    let (rec, st, counts) = (&h.record, &h.status, &h.summary);
    let duration = match (st.seconds, &st.finished_at) {
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
    vec![
        kv("run", run.to_string()),
        kv("status", st.status.clone()),
        kv("started (UTC)", st.started_at.clone()),
        kv(
            "finished (UTC)",
            st.finished_at.clone().unwrap_or_else(|| "–".into()),
        ),
        kv("duration", duration),
        kv("model", rec.model_path.clone()),
        kv("model sha256", rec.model_sha256.clone()),
        kv(
            "model description",
            or_dash(
                &rec.model_description,
                "– (not recorded by the tool version of this run)",
            ),
        ),
        kv("maps explain", or_dash(&rec.explains, "–")),
        kv("data root", rec.data_root.clone()),
        kv(
            "images",
            format!(
                "{} done, {} failed, of {} listed ({} error rows)",
                counts.images_done, counts.images_failed, rec.images_total, counts.errors
            ),
        ),
        kv("device", crate::query::runs::display_device(&rec.device)),
        kv("tool version", format!("tumor-audit {}", rec.tool_version)),
        kv("profile", rec.profile.clone()),
        kv(
            "methods",
            rec.methods
                .iter()
                .map(|m| method_title(m))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        kv("seed", rec.seed.to_string()),
        kv(
            "preprocessing",
            image_config(&rec.config_yaml)
                .map(|c| c.describe())
                .unwrap_or_else(|| "– (the config snapshot has no readable données.image)".into()),
        ),
        kv(
            "baseline",
            crate::config::Settings::from_yaml(&rec.config_yaml, &[])
                .ok()
                .and_then(|s| {
                    let c = s.donnees.image.channels() as usize;
                    // A run recorded before pixel-space baselines used other values than its
                    // snapshot now means: then the recorded values below are what it used.
                    let now = s.explain.reference_values(c).value(0) as f64;
                    let recorded = rec.reference_value;
                    (recorded.is_nan() || (recorded - now).abs() < 1e-6)
                        .then(|| s.explain.describe_baseline(c))
                })
                .unwrap_or_else(|| "constants in model-input units: see the values below".into()),
        ),
        kv(
            "IG baseline / LIME-SHAP reference",
            format!(
                "{} / {}",
                fmt3(Some(rec.baseline_value)),
                fmt3(Some(rec.reference_value))
            ),
        ),
    ]
}

/// `text`, or `missing` when it is empty (not recorded).
fn or_dash(text: &str, missing: &str) -> String {
    if text.is_empty() { missing } else { text }.to_string()
}

/// Accuracy, per-class P/R/F1 and the confusion matrix over the labelled images (`None` without
/// any); a label outside `classes` is left out.
pub fn evaluation(classes: &[String], predictions: &[LabelledPrediction]) -> Option<Evaluation> {
    let mut labels = Vec::new();
    let mut probs = Vec::new();
    for lp in predictions {
        let Some(l) = classes.iter().position(|c| *c == lp.label) else {
            continue;
        };
        let mut p: Vec<f32> = classes
            .iter()
            .map(|c| lp.probabilities.get(c).copied().unwrap_or(0.0) as f32)
            .collect();
        // The stored prediction decides (ties in the probabilities must not flip it).
        if let Some(k) = classes.iter().position(|c| *c == lp.predicted) {
            if evaluate::argmax(&p) != k {
                p.iter_mut().for_each(|v| *v = 0.0);
                p[k] = 1.0;
            }
        }
        labels.push(l);
        probs.push(p);
    }
    if labels.is_empty() {
        return None;
    }
    Some(evaluate::evaluate(&labels, &probs, classes))
}

/// The per-class table of an evaluation.
pub fn per_class(e: &Evaluation) -> super::view::HtmlTable {
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
}

/// The mean-map grid: one row per label (in the order of `maps`), one tile per method of the run.
/// Returns the rows and, for each tile, the index of its map in `maps` and its file name under
/// `mean-maps/`.
pub fn mean_map_rows(
    maps: &[MeanMap],
    methods: &[String],
) -> (Vec<MeanMapRow>, Vec<(usize, String)>) {
    let mut labels: Vec<&String> = Vec::new();
    for m in maps {
        if !labels.contains(&&m.label) {
            labels.push(&m.label);
        }
    }
    let mut rows = Vec::new();
    let mut files = Vec::new();
    for (li, label) in labels.iter().enumerate() {
        let mut row = MeanMapRow {
            label: label.to_string(),
            images: 0,
            tiles: Vec::new(),
            outline: None,
        };
        for (mi, method) in methods.iter().enumerate() {
            match maps
                .iter()
                .position(|m| &m.label == *label && &m.method == method)
            {
                Some(k) => {
                    row.images = row.images.max(maps[k].images);
                    let name = format!("mean-{li}-{mi}.png");
                    row.tiles.push(Some(format!("{ASSETS}/mean-maps/{name}")));
                    files.push((k, name));
                }
                None => row.tiles.push(None),
            }
        }
        rows.push(row);
    }
    (rows, files)
}

/// A histogram's data: one series of values per method, named by its title.
pub type Series = Vec<(String, Vec<f64>)>;

/// The background and border-band mass series per method, from (background, border) per map.
pub fn mass_series(
    methods: &[String],
    masses: &[Vec<(Option<f64>, Option<f64>)>],
) -> (Series, Series) {
    let mut background = Vec::new();
    let mut border = Vec::new();
    for (m, vals) in methods.iter().zip(masses) {
        background.push((method_title(m), vals.iter().filter_map(|v| v.0).collect()));
        border.push((method_title(m), vals.iter().filter_map(|v| v.1).collect()));
    }
    (background, border)
}

/// Mean Spearman per method pair (from `query::report::agreement_means`), as a symmetric matrix in
/// `methods` order (diagonal 1).
pub fn agreement_matrix(methods: &[String], means: &Table) -> Vec<Vec<Option<f64>>> {
    let n = methods.len();
    let mut m = vec![vec![None; n]; n];
    for r in &means.rows {
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
    m
}

/// What the trust section is made of, as read by `query::trust`.
pub struct TrustData {
    pub faithfulness: Table,
    pub faithfulness_by_class: Table,
    pub mean_curves: Table,
    pub faithfulness_steps: Option<i64>,
    pub sanity_wide: Table,
    pub sanity_check: Table,
    pub other_class: Table,
}

/// The faithfulness plot: deletion and insertion curves per method, the y range that holds them.
pub struct FaithfulnessPlot {
    pub deletion: Vec<Line>,
    pub insertion: Vec<Line>,
    pub y: (f64, f64),
}

/// The sanity plot: the cascade's stages (x tick labels) and one curve per method.
pub struct SanityPlot {
    pub stages: Vec<String>,
    pub lines: Vec<Line>,
    pub threshold: Option<f64>,
}

/// The trust section's tables and the data of its plots (`None` when the run has no such rows).
/// The caller fills in the plots' asset paths once it has drawn them.
pub fn trust(d: &TrustData) -> (TrustSection, Option<FaithfulnessPlot>, Option<SanityPlot>) {
    let mut out = TrustSection::default();
    let mut faith_plot = None;
    if !d.faithfulness.rows.is_empty() {
        out.faithfulness = Some(methods_html(&d.faithfulness));
        out.faithfulness_by_class = Some(methods_html(&d.faithfulness_by_class));
        // The mean curves: one line per method, the random order dashed.
        let curves = &d.mean_curves;
        let col = |n: &str| curves.column(n).expect("mean_curves column");
        let (cm, cf, cd, ci) = (
            col("method"),
            col("fraction"),
            col("deletion_score"),
            col("insertion_score"),
        );
        let mut deletion: Vec<Line> = Vec::new();
        let mut insertion: Vec<Line> = Vec::new();
        for r in &curves.rows {
            let m = r[cm].as_text().unwrap_or_default();
            if deletion.last().is_none_or(|l| l.name != method_title(m)) {
                for lines in [&mut deletion, &mut insertion] {
                    lines.push(Line {
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
        out.faithfulness_steps = d.faithfulness_steps;
        // Probabilities fit [0, 1]; logits (explain.faithfulness.score: logit) get their own range.
        let y = deletion
            .iter()
            .chain(&insertion)
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .fold((0.0f64, 1.02f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        faith_plot = Some(FaithfulnessPlot {
            deletion,
            insertion,
            y,
        });
    }
    let wide = &d.sanity_wide;
    let mut sanity_plot = None;
    if !wide.rows.is_empty() {
        let check = &d.sanity_check;
        if let Some(r) = check.rows.first() {
            out.sanity_images = check
                .column("images")
                .and_then(|c| r[c].as_f64())
                .map(|v| v as i64);
            out.sanity_threshold = check.column("threshold").and_then(|c| r[c].as_f64());
        }
        // Stage columns sit between `verdict` and `signed_last`.
        let stages: Vec<String> = wide.columns[2..wide.columns.len() - 1].to_vec();
        let lines: Vec<Line> = wide
            .rows
            .iter()
            .map(|r| Line {
                name: method_title(r[0].as_text().unwrap_or_default()),
                points: r[2..r.len() - 1]
                    .iter()
                    .enumerate()
                    .filter_map(|(s, c)| c.as_f64().map(|v| (s as f64, v)))
                    .collect(),
                baseline: false,
            })
            .collect();
        sanity_plot = Some(SanityPlot {
            stages,
            lines,
            threshold: out.sanity_threshold,
        });
        out.sanity = Some(methods_html(wide));
        out.other_class = Some(methods_html(&d.other_class));
    }
    (out, faith_plot, sanity_plot)
}

/// One gallery image: its strip (file name under `strips/`, and the note when the original could not
/// be shown) and one cell of figures per method, the rules that fire marked.
pub fn gallery_item(
    index: usize,
    e: &GalleryEntry,
    strip: &str,
    note: String,
    figures: &HashMap<(String, String), MethodFigures>,
    methods: &[String],
    rules: &Rules,
) -> GalleryItem {
    let cells: Vec<Option<MethodCell>> = methods
        .iter()
        .map(|m| {
            figures
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
    let flagged = cells
        .iter()
        .enumerate()
        .filter(|(_, c): &(usize, &Option<MethodCell>)| {
            c.as_ref()
                .is_some_and(|c| c.bg_hot || c.border_hot || c.agree_low)
        })
        .map(|(k, _)| k)
        .collect();
    let name = asset_name(&e.image_id, index);
    GalleryItem {
        page: format!("images/{name}.html"),
        anchor: format!("img-{name}"),
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
        strip: format!("{ASSETS}/strips/{strip}"),
        note,
        cells,
        label_value: e.label.clone(),
        confidence_value: e.confidence,
        flagged,
        tumor_mass: String::new(),
        tumor_mass_value: None,
    }
}

/// Adds an item's localisation: the median over its methods of the share of |map| on the tumour,
/// beside the outline's area share (nothing when the image has no outline).
pub fn add_localisation(
    item: &mut GalleryItem,
    image_id: &str,
    methods: &[String],
    figures: &HashMap<(String, String), ImageLocalisation>,
    outline_area: Option<f64>,
) {
    let masses: Vec<f64> = methods
        .iter()
        .filter_map(|m| figures.get(&(image_id.to_string(), m.clone())))
        .filter_map(|f| f.mass_on_tumor)
        .collect();
    if let Some(v) = crate::metrics::median(&masses) {
        item.tumor_mass_value = Some(v);
        item.tumor_mass = format!(
            "the maps put a median {:.1}% of their mass on the tumour (chance {})",
            100.0 * v,
            outline_area.map_or_else(|| "–".into(), |a| format!("{:.1}%", 100.0 * a))
        );
    }
}

/// The gallery split into pages: groups incorrect, correct, then unlabelled, each only if it has
/// images (each keeps the order of `items`), `per_page` images of each group per page; at least one
/// page.
pub fn gallery_pages(items: Vec<GalleryItem>, per_page: usize) -> Vec<Vec<GalleryGroup>> {
    let mut groups: Vec<(String, String, Vec<GalleryItem>)> = vec![
        (
            "incorrect".into(),
            "Incorrect predictions".into(),
            Vec::new(),
        ),
        ("correct".into(), "Correct predictions".into(), Vec::new()),
        ("unlabelled".into(), "Unlabelled images".into(), Vec::new()),
    ];
    for it in items {
        let g = match it.correct {
            Some(false) => 0,
            Some(true) => 1,
            None => 2,
        };
        groups[g].2.push(it);
    }
    // A group without any image (no wrong prediction, no unlabelled image) is left out, not shown
    // as an empty column.
    groups.retain(|g| !g.2.is_empty());
    let pages = groups
        .iter()
        .map(|g| g.2.len().div_ceil(per_page))
        .max()
        .unwrap_or(0)
        .max(1);
    let totals: Vec<(usize, usize)> = groups
        .iter()
        .map(|g| (g.2.len(), g.2.iter().filter(|i| i.score > 0).count()))
        .collect();
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
    paged
}

/// The figures at the top of the report: accuracy, images audited, the verdict's flagged images (the
/// run's one flagged count; the raw per-map rules' count is its note), leakage. `verdict_flagged`:
/// (state, images flagged by trusted methods), `None` when the run has no shortcut check.
pub fn glance(
    summary: &RunSummary,
    entries: &[GalleryEntry],
    leak: &LeakageSummary,
    verdict_flagged: Option<(String, i64)>,
) -> Vec<Glance> {
    let raw = entries.iter().filter(|e| e.score > 0).count();
    let wrong = entries.iter().filter(|e| e.correct == Some(false)).count();
    let checked = leak.checked > 0;
    let raw_note = format!("raw per-map rules (every method, one fixed threshold): {raw}");
    vec![
        Glance {
            label: "accuracy".into(),
            value: summary.accuracy.map_or_else(|| "–".into(), pct),
            note: format!("{} wrong of {} labelled", wrong, summary.labelled),
            alert: wrong > 0,
        },
        Glance {
            label: "images audited".into(),
            value: summary.images_done.to_string(),
            note: format!("{} failed", summary.images_failed),
            alert: summary.images_failed > 0,
        },
        match &verdict_flagged {
            Some((state, n)) => Glance {
                label: "flagged images (verdict)".into(),
                value: n.to_string(),
                note: format!(
                    "flagged for review by trusted methods; verdict {}; {raw_note}",
                    state.replace('_', " ")
                ),
                alert: *n > 0 || state == "shortcut",
            },
            None => Glance {
                label: "flagged images (verdict)".into(),
                value: "–".into(),
                note: format!("no shortcut check for this run; {raw_note}"),
                alert: false,
            },
        },
        Glance {
            label: "near-duplicates of training images".into(),
            value: if checked {
                leak.near_duplicates.to_string()
            } else {
                "–".into()
            },
            note: if checked {
                format!("of {} checked", leak.checked)
            } else {
                "not checked".into()
            },
            alert: leak.near_duplicates > 0,
        },
    ]
}

/// One view of the gallery: a filter (`key`, e.g. `wrong`, `class-0`, `method-2`) and the images it
/// keeps, as indices into the items in the gallery's order.
pub struct View {
    pub key: String,
    pub label: String,
    pub facet: &'static str,
    pub members: Vec<usize>,
}

/// The orders of the gallery: key and words.
pub const SORTS: [(&str, &str); 3] = [
    ("score", "most suspicious first"),
    ("confidence", "least confident first"),
    ("tumor_mass", "least mass on the tumour first"),
];

/// The orders offered: the mass-on-tumour order only when some image has an outline.
pub fn sorts(items: &[GalleryItem]) -> Vec<(&'static str, &'static str)> {
    let outlined = items.iter().any(|i| i.tumor_mass_value.is_some());
    SORTS
        .iter()
        .copied()
        .filter(|(k, _)| *k != "tumor_mass" || outlined)
        .collect()
}

/// The gallery's filters, one facet at a time: every image, by correctness, flagged by any rule, by
/// true class (the classes that occur as labels), by the method a rule flags. Names used in file
/// names are indices, never text from the data.
pub fn views(items: &[GalleryItem], classes: &[String], method_titles: &[String]) -> Vec<View> {
    let keep = |f: &dyn Fn(&GalleryItem) -> bool| -> Vec<usize> {
        (0..items.len()).filter(|&i| f(&items[i])).collect()
    };
    // The "Show" facet: (key, label, member test, shown even when empty).
    type Test<'a> = &'a dyn Fn(&GalleryItem) -> bool;
    #[rustfmt::skip]
    let show: [(&str, &str, Test, bool); 6] = [
        ("all", "all images", &|_| true, true),
        ("wrong", "wrong predictions", &|i| i.correct == Some(false), true),
        ("right", "right predictions", &|i| i.correct == Some(true), true),
        ("flagged", "flagged by a raw per-map rule", &|i| i.score > 0, true),
        ("outlined", "with a ground-truth outline", &|i| i.tumor_mass_value.is_some(), false),
        ("unlabelled", "unlabelled", &|i| i.label_value.is_none(), false),
    ];
    let mut out = Vec::new();
    for (key, label, test, always) in show {
        let members = keep(test);
        if always || !members.is_empty() {
            out.push(View {
                key: key.into(),
                label: label.into(),
                facet: "Show",
                members,
            });
        }
    }
    for (k, c) in classes.iter().enumerate() {
        let members = keep(&|i| i.label_value.as_deref() == Some(c.as_str()));
        if !members.is_empty() {
            out.push(View {
                key: format!("class-{k}"),
                label: c.clone(),
                facet: "True class",
                members,
            });
        }
    }
    for (k, t) in method_titles.iter().enumerate() {
        out.push(View {
            key: format!("method-{k}"),
            label: t.clone(),
            facet: "Flagged by method",
            members: keep(&|i| i.flagged.contains(&k)),
        });
    }
    out
}

/// `members` in the order `sort` names: the gallery's own order (suspicion), or confidence or the
/// median mass on the tumour, lowest first (images without one last; ties keep the gallery's order).
pub fn sorted(items: &[GalleryItem], members: &[usize], sort: &str) -> Vec<usize> {
    let mut m = members.to_vec();
    let key = |i: usize| match sort {
        "confidence" => items[i].confidence_value,
        "tumor_mass" => items[i].tumor_mass_value,
        _ => Some(0.0),
    };
    m.sort_by(|&a, &b| {
        let c = |i: usize| key(i).unwrap_or(f64::INFINITY);
        c(a).total_cmp(&c(b)).then(a.cmp(&b))
    });
    m
}

/// The file of gallery page `p` (1-based): page 1 is `report.html` itself.
pub fn page_file(p: usize) -> String {
    if p == 1 {
        "report.html".to_string()
    } else {
        format!("gallery-{p}.html")
    }
}

/// The file of page `p` (1-based) of a view, relative to the report folder: the gallery of every
/// image by suspicion is `report.html` / `gallery-N.html`; the others live in `views/`.
pub fn view_file(key: &str, sort: &str, p: usize) -> String {
    if key == "all" && sort == SORTS[0].0 {
        page_file(p)
    } else {
        format!("views/{key}--{sort}-{p}.html")
    }
}

/// The view bar of the pages of view `current` in order `sort`, offering the orders `sorts`.
pub fn view_nav(
    views: &[View],
    current: &str,
    sort: &str,
    sorts: &[(&'static str, &'static str)],
) -> ViewNav {
    let mut facets: Vec<ViewFacet> = Vec::new();
    for v in views {
        let link = ViewLink {
            label: v.label.clone(),
            href: view_file(&v.key, sort, 1),
            count: v.members.len(),
            current: v.key == current,
        };
        match facets.iter_mut().find(|f| f.title == v.facet) {
            Some(f) => f.links.push(link),
            None => facets.push(ViewFacet {
                title: v.facet.to_string(),
                links: vec![link],
            }),
        }
    }
    let here = views.iter().find(|v| v.key == current);
    let count = here.map_or(0, |v| v.members.len());
    let links = sorts
        .iter()
        .map(|(k, label)| ViewLink {
            label: label.to_string(),
            href: view_file(current, k, 1),
            count,
            current: *k == sort,
        })
        .collect();
    let sort_words = SORTS.iter().find(|s| s.0 == sort).map_or("", |s| s.1);
    let title = match here {
        Some(v) if v.facet == "True class" => format!("true class {}", v.label),
        Some(v) if v.facet == "Flagged by method" => format!("flagged by a rule on {}", v.label),
        Some(v) => v.label.clone(),
        None => String::new(),
    };
    ViewNav {
        facets,
        sorts: links,
        title: format!("{title} ({count}), {sort_words}"),
    }
}

/// A light background for a value in [-1, 1]: red at -1 and 0 ... green at 1, so that low agreement
/// stands out.
fn agreement_style(v: Option<f64>) -> String {
    match v.filter(|v| v.is_finite()) {
        Some(v) => {
            let hue = (v.clamp(0.0, 1.0) * 120.0).round();
            format!("background: hsl({hue}, 65%, 85%)")
        }
        None => String::new(),
    }
}

/// The method x method matrices of one image: Spearman of the maps and overlap of their top 10%
/// (empty without agreement rows).
pub fn image_matrices(methods: &[String], pairs: &[AgreementRecord]) -> Vec<Matrix> {
    if pairs.is_empty() {
        return Vec::new();
    }
    let n = methods.len();
    type Pick = fn(&AgreementRecord) -> f64;
    let pick: [(&str, Pick); 2] = [
        (
            "Spearman rank correlation of the maps (1 = same ranking of pixels)",
            |p| p.spearman,
        ),
        ("Overlap (IoU) of the maps' top 10% pixels", |p| p.iou_top10),
    ];
    pick.iter()
        .map(|(title, value)| {
            let mut m = vec![vec![None; n]; n];
            for p in pairs {
                if let (Some(i), Some(j)) = (
                    methods.iter().position(|x| *x == p.method_a),
                    methods.iter().position(|x| *x == p.method_b),
                ) {
                    m[i][j] = Some(value(p));
                    m[j][i] = Some(value(p));
                }
            }
            Matrix {
                title: title.to_string(),
                methods: methods.iter().map(|m| method_title(m)).collect(),
                rows: (0..n)
                    .map(|i| {
                        (0..n)
                            .map(|j| {
                                let v = if i == j { Some(1.0) } else { m[i][j] };
                                MatrixCell {
                                    text: fmt2(v),
                                    style: agreement_style(v),
                                }
                            })
                            .collect()
                    })
                    .collect(),
            }
        })
        .collect()
}

/// What an image page needs besides the item and its pictures.
pub struct ImageFacts<'a> {
    pub methods: &'a [String],
    pub pairs: &'a [AgreementRecord],
    pub faithfulness: &'a HashMap<(String, String), ImageFaithfulness>,
    pub shortcuts: &'a crate::query::shortcuts::ImageShortcuts,
    pub localisation: &'a HashMap<(String, String), ImageLocalisation>,
    /// The image's outline area share of the map grid, when it has an outline.
    pub outline_area: Option<f64>,
}

/// The image's flags and causal tests from the run's shortcut check, for its page.
pub fn image_shortcuts(
    image_id: &str,
    all: &crate::query::shortcuts::ImageShortcuts,
) -> ImageShortcuts {
    let flags = (all.flags.get(image_id).into_iter().flatten())
        .map(|f| ImageFlag {
            method: method_title(&f.method),
            reason: match f.reason.as_str() {
                "background" => "mass outside the brain".to_string(),
                "border" => "mass in the border band".to_string(),
                other => other.to_string(),
            },
            value: fmt3(Some(f.value)),
            threshold: fmt3(Some(f.threshold)),
        })
        .collect();
    let tests = (all.tests.get(image_id).into_iter().flatten())
        .map(|t| {
            let file = |p: &str| {
                std::path::Path::new(p)
                    .file_name()
                    .map_or_else(|| p.to_string(), |f| f.to_string_lossy().into_owned())
            };
            let what = match (t.test.as_str(), &t.donor_path) {
                ("paste", Some(d)) => format!("region {} pasted in from {}", t.region, file(d)),
                ("paste", None) => format!("region {} pasted in", t.region),
                _ => format!("region {} filled in", t.region),
            };
            let pc = |v: f64| format!("{:.1}", 100.0 * v.clamp(0.0, 1.0));
            ImageTest {
                region: t.region,
                class: t.class.clone(),
                verdict: t.region_verdict.replace('_', " "),
                test: t.test.clone(),
                what,
                before: fmt3(Some(t.class_before)),
                after: fmt3(Some(t.class_after)),
                predicted_after: t.predicted_after.clone(),
                flipped: t.flipped,
                box_style: format!(
                    "left: {}%; top: {}%; width: {}%; height: {}%",
                    pc(t.x0),
                    pc(t.y0),
                    pc(t.x1 - t.x0),
                    pc(t.y1 - t.y0)
                ),
            }
        })
        .collect();
    ImageShortcuts {
        checked: all.checked,
        flags,
        tests,
    }
}

/// One image's page: its gallery item, its pictures, each method's figure with the colour bar's
/// ends, metrics and faithfulness, its agreement matrices, and the links around it.
#[allow(clippy::too_many_arguments)]
pub fn image_page(
    item: GalleryItem,
    image_id: &str,
    pics: super::pictures::ImagePictures,
    facts: &ImageFacts<'_>,
    gallery: Link,
    prev: Option<Link>,
    next: Option<Link>,
    position: usize,
    total: usize,
) -> ImagePage {
    let maps = facts
        .methods
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let heat = pics.maps.get(k).cloned().flatten();
            let f = facts
                .faithfulness
                .get(&(image_id.to_string(), m.clone()))
                .map(|f| FaithCell {
                    deletion: fmt3(f.deletion_auc),
                    insertion: fmt3(f.insertion_auc),
                    random_deletion: fmt3(f.random_deletion_auc),
                    random_insertion: fmt3(f.random_insertion_auc),
                    deletion_good: matches!((f.deletion_auc, f.random_deletion_auc), (Some(a), Some(r)) if a < r),
                    insertion_good: matches!((f.insertion_auc, f.random_insertion_auc), (Some(a), Some(r)) if a > r),
                });
            MapFigure {
                method: method_title(m),
                low: heat.as_ref().map_or_else(String::new, |h| {
                    crate::display::colorbar::fmt_value(h.1 .0)
                }),
                high: heat.as_ref().map_or_else(String::new, |h| {
                    crate::display::colorbar::fmt_value(h.1 .1)
                }),
                heat: heat.map(|h| h.0),
                cell: item.cells.get(k).cloned().flatten(),
                faithfulness: f,
                tumor: facts
                    .localisation
                    .get(&(image_id.to_string(), m.clone()))
                    .map(|l| TumorCell {
                        mass: l
                            .mass_on_tumor
                            .map_or_else(|| "–".into(), |v| format!("{:.1}%", 100.0 * v)),
                        chance: facts
                            .outline_area
                            .map_or_else(|| "–".into(), |v| format!("{:.1}%", 100.0 * v)),
                        hit: l.pointing_hit,
                        iou: fmt2(l.iou_top_area),
                    }),
            }
        })
        .collect();
    ImagePage {
        image_id: image_id.to_string(),
        original: pics.original,
        model_input: pics.model_input,
        model_size: pics.model_size,
        model_input_words: pics.model_input_words,
        outline: pics.outline,
        big: 320,
        maps,
        agreement: image_matrices(facts.methods, facts.pairs),
        shortcuts: image_shortcuts(image_id, facts.shortcuts),
        item,
        gallery,
        prev,
        next,
        position,
        total,
    }
}
