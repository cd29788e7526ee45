//! `report`: one run of an audit database as static HTML pages a person opens from the file system.
//!
//! `report.html` holds the run header, the evaluation, the bias summary, the mean maps, the plots, the
//! leakage check, the errors and the first page of the gallery; `gallery-2.html`, `gallery-3.html`, ...
//! hold the rest of the gallery; `views/` the gallery filtered (by correctness, flag, true class,
//! flagging method) and ordered (suspicion, confidence), pre-rendered since the pages run no script;
//! `images/<id>.html` one page per image (full-resolution input, every method's map large with its
//! colour bar, metrics, faithfulness, agreement matrices). Assets go to `report-assets/` beside them
//! (JPEG gallery strips named by image id, the inputs and coloured maps of the image pages, PNG mean
//! maps, the colour bar, SVG plots), so the folder can be copied or zipped as it is. Nothing is loaded
//! from the network and the pages have no scripts; everything taken from the database goes through
//! minijinja's HTML auto-escaping.
//!
//! [`write_report`] reads the run through `query` (plain values), builds each section's view model
//! (`sections.rs`, `view.rs`), writes the assets (`assets.rs`: strips, mean maps, plots drawn by
//! `plots.rs`; `pictures.rs`: the image pages' pictures) and renders the pages (`render.rs`), all into a
//! fresh folder that replaces the previous report when complete ([`crate::output`]).
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::query::report as rq;
use crate::query::{bias, leakage, runs, trust, QueryError, Rules};

mod assets;
mod pictures;
pub mod plots;
mod render;
mod sections;
mod view;

pub use assets::JPEG_QUALITY;
use view::{
    asset_name, bias_html, html_table, method_title, pct, AcquisitionView, Common, IndexPage,
    Legend, Link, RegionPicture, Thresholds, VerdictSection,
};

/// Folder of the assets, beside the pages.
pub const ASSETS: &str = "report-assets";

/// Options of `report`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Images per gallery column (correct / incorrect) on each page.
    pub per_page: usize,
    /// Width and height of one thumbnail tile in the gallery strips, in pixels.
    pub thumb: u32,
    /// How maps are drawn (the config's `display:`).
    pub display: crate::display::DisplayParams,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            per_page: 50,
            thumb: 160,
            display: crate::display::DisplayParams::default(),
        }
    }
}

/// What `report` wrote.
#[derive(Debug)]
pub struct Written {
    pub index: PathBuf,
    pub pages: Vec<PathBuf>,
    /// The gallery's other views (`views/`) and the image pages (`images/`).
    pub view_pages: usize,
    pub image_pages: usize,
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

/// Everything that can stop a report; every message names the file or the query.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Query(#[from] QueryError),

    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),

    #[error(transparent)]
    Template(#[from] minijinja::Error),

    #[error(transparent)]
    Plot(#[from] plots::PlotError),

    #[error(transparent)]
    Output(#[from] crate::output::OutputError),

    /// A folder, page or picture that could not be made (an image or plot that could not be encoded
    /// into its file among them).
    #[error(transparent)]
    File(#[from] crate::output::FileError),
}

impl ReportError {
    fn io(what: &'static str, path: &Path, source: std::io::Error) -> ReportError {
        crate::output::FileError::new(what, path, source).into()
    }

    fn write(path: &Path, source: impl std::error::Error + Send + Sync + 'static) -> ReportError {
        crate::output::FileError::new("write", path, source).into()
    }
}

/// Writes the report of `run` into `dir` (created if needed): built in a fresh folder beside it, which
/// replaces the previous report only once complete; what else `dir` may hold, and what is refused, is
/// [`crate::output`]'s. Thumbnails are computed in parallel.
pub fn write_report(
    conn: &Connection,
    run: &str,
    dir: &Path,
    opts: &Options,
) -> Result<Written, ReportError> {
    let staged = crate::output::Staged::begin(dir, crate::output::Kind::Report)?;
    let work = staged.dir().to_path_buf();
    let w = write_into(conn, run, &work, opts)?;
    let target = staged.commit()?;
    let moved = |p: &PathBuf| crate::output::rebase(p, &work, &target);
    Ok(Written {
        index: moved(&w.index),
        pages: w.pages.iter().map(moved).collect(),
        ..w
    })
}

/// Writes every file of the report into the empty folder `dir`.
fn write_into(
    conn: &Connection,
    run: &str,
    dir: &Path,
    opts: &Options,
) -> Result<Written, ReportError> {
    let per_page = opts.per_page.max(1);
    let thumb = opts.thumb.clamp(32, 512);
    let rules = Rules::default();
    let mut assets = assets::Assets::prepare(dir)?;
    let header = runs::run_header(conn, run)?;
    let record = &header.record;
    let classes = rq::classes(conn, run)?;
    let methods = record.methods.clone();
    let method_titles: Vec<String> = methods.iter().map(|m| method_title(m)).collect();

    // Evaluation, bias summary and mean maps, histograms, agreement.
    let eval = sections::evaluation(&classes, &rq::labelled_predictions(conn, run)?);
    let confusion_svg = match &eval {
        Some(e) => Some(assets.confusion(&classes, &e.confusion)?),
        None => None,
    };
    let maps = bias::mean_maps(conn, run)?;
    let (mut mean_rows, mean_files) = sections::mean_map_rows(&maps, &methods);
    assets.mean_maps(&maps, &mean_files)?;
    // Beside each class's mean maps: where its ground-truth outlines lie (their mean density).
    let density = rq::mean_outlines(conn, run)?;
    let mut density_files = Vec::new();
    for (i, row) in mean_rows.iter_mut().enumerate() {
        if let Some(k) = density.iter().position(|d| d.label == row.label) {
            let name = format!("outline-{i}.png");
            row.outline = Some((format!("{ASSETS}/mean-maps/{name}"), density[k].images));
            density_files.push((k, name));
        }
    }
    assets.mean_maps(&density, &density_files)?;
    let has_outlines = !density_files.is_empty();
    let mean_bar = bias::mean_map_colorbar();
    let mean_legend = Legend {
        colorbar: pictures::write_colorbar(&assets.dir, "mean-maps/scale.png", &mean_bar.params)?,
        ticks: mean_bar.ticks.iter().map(|t| t.1.clone()).collect(),
        meaning: mean_bar.caption,
        alpha: 1.0,
    };
    let masses =
        (methods.iter().map(|m| rq::method_masses(conn, run, m))).collect::<Result<Vec<_>, _>>()?;
    let (bg_series, border_series) = sections::mass_series(&methods, &masses);
    let has_metrics = bg_series.iter().any(|s| !s.1.is_empty());
    if has_metrics {
        assets.histograms(&bg_series, &border_series, &rules)?;
    }
    let agreement = rq::agreement_means(conn, run)?;
    let has_agreement = !agreement.rows.is_empty();
    if has_agreement {
        let matrix = sections::agreement_matrix(&methods, &agreement);
        assets.agreement(&method_titles, &matrix)?;
    }

    // Trust checks: faithfulness (audit --faithfulness) and the sanity check (`sanity`).
    let (mut trust_section, faith_plot, sanity_plot) = sections::trust(&sections::TrustData {
        faithfulness: trust::faithfulness(conn, run)?,
        faithfulness_by_class: trust::faithfulness_by_class(conn, run)?,
        mean_curves: trust::mean_curves(conn, run)?,
        faithfulness_steps: trust::faithfulness_steps(conn, run)?,
        sanity_wide: trust::sanity_wide(conn, run)?,
        sanity_check: trust::sanity_check(conn, run)?,
        other_class: trust::other_class(conn, run)?,
    });
    if let Some(p) = faith_plot {
        trust_section.faithfulness_svg = Some(assets.faithfulness(p)?);
    }
    if let Some(p) = sanity_plot {
        trust_section.sanity_svg = Some(assets.sanity(p)?);
    }

    // The run's verdict (the shortcut check): its sentence, regions with pictures, methods' trust.
    let mut verdict = VerdictSection::default();
    let verdict_table = crate::query::shortcuts::verdict(conn, run)?;
    if let Some(row) = verdict_table.rows.first() {
        let text = |name: &str| {
            verdict_table
                .column(name)
                .and_then(|i| match &row[i] {
                    crate::query::Cell::Text(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        verdict.present = true;
        verdict.state = text("verdict");
        verdict.shortcut = verdict.state == "shortcut";
        verdict.heading = match verdict.state.as_str() {
            "shortcut" => "shortcut confirmed on the model",
            "inconclusive" => "inconclusive",
            _ => "no shortcut found",
        }
        .into();
        verdict.min_flip_rate_pct = format!(
            "{:.0}",
            100.0 * crate::query::shortcuts::min_flip_rate(conn, run)?
        );
        verdict.summary = text("summary");
        verdict.regions = Some(html_table(&crate::query::shortcuts::regions(conn, run)?));
        verdict.methods = Some(html_table(&crate::query::shortcuts::methods(conn, run)?));
        let regions = crate::query::shortcuts::region_masks(conn, run)?;
        // Confirmed regions first; at most six pictures.
        let shown: Vec<_> = regions.into_iter().take(6).collect();
        let pictures = assets.region_pictures(&shown, &maps, crate::dataset::Limits::default())?;
        verdict.pictures =
            pictures
                .into_iter()
                .zip(&shown)
                .map(|((src, _), r)| RegionPicture {
                    src,
                    caption: format!(
                    "region {} of class {} ({}; found by {}): occlusion flips {}, paste flips {}",
                    r.region,
                    r.class,
                    r.verdict.replace('_', " "),
                    r.methods.join(", "),
                    r.occlusion_rate.map_or("–".into(), |v| format!("{:.0}%", 100.0 * v)),
                    r.paste_rate.map_or("–".into(), |v| format!("{:.0}%", 100.0 * v)),
                ),
                })
                .collect();
        verdict.acquisition = acquisition_view(conn, run, &mut assets)?;
    }

    // Gallery: the maps are read here (one connection), the strips made in parallel.
    let entries = rq::gallery_entries(conn, run)?;
    let figures = rq::image_metrics(conn, run)?;
    let image_cfg = sections::image_config(&record.config_yaml);
    let params = opts.display;
    let strips = assets.strips(&entries, image_cfg.as_ref(), thumb, &params, |id| {
        Ok(rq::image_maps(conn, run, id, &methods)?)
    })?;
    let originals_missing = strips.iter().filter(|s| !s.1.is_empty()).count();
    let outlines = rq::outlines(conn, run)?;
    let localisation = rq::image_localisation(conn, run)?;
    let items: Vec<view::GalleryItem> = (entries.iter().zip(strips).enumerate())
        .map(|(i, (e, (name, note)))| {
            let mut item = sections::gallery_item(i, e, &name, note, &figures, &methods, &rules);
            let area = outlines.get(&e.image_id).map(|o| o.area);
            sections::add_localisation(&mut item, &e.image_id, &methods, &localisation, area);
            item
        })
        .collect();
    let views = sections::views(&items, &classes, &method_titles);
    let paged = sections::gallery_pages(items.clone(), per_page);
    // The image pages' pictures, and where each image sits in the main gallery (for its links).
    let names: Vec<String> = (entries.iter().enumerate())
        .map(|(i, e)| asset_name(&e.image_id, i))
        .collect();
    let pics = pictures::write_all(
        &assets.dir,
        &entries,
        &names,
        image_cfg.as_ref(),
        &params,
        &outlines,
        |id| Ok(rq::image_maps(conn, run, id, &methods)?),
    )?;
    let colorbar = pictures::write_colorbar(&assets.dir, "colorbar.png", &params)?;
    let bar = crate::display::ColorBar::per_map(&params);
    let legend = Legend {
        colorbar,
        ticks: bar.ticks.iter().map(|t| t.1.clone()).collect(),
        meaning: bar.caption,
        alpha: crate::display::opacity(&params),
    };

    let leak = leakage::summary(conn, run)?;
    let index = IndexPage {
        glance: sections::glance(
            &runs::run_summary(conn, run)?,
            &entries,
            &leak,
            crate::query::shortcuts::flagged_count(conn, run)?,
        ),
        info: sections::header(run, &header),
        accuracy: eval.as_ref().map(|e| pct(e.accuracy)),
        roc_auc: eval
            .as_ref()
            .and_then(|e| e.roc_auc)
            .map(|v| format!("{v:.4}")),
        labelled: eval.as_ref().map_or(0, |e| e.images),
        per_class: eval.as_ref().map(sections::per_class),
        confusion_svg,
        bias: bias_html(&bias::side_by_side(conn, run)?),
        localisation_table: html_table(&crate::query::localisation::side_by_side(conn, run)?),
        mean_rows,
        has_outlines,
        localisation: crate::query::localisation::run_line(conn, run)?.map(|l| l.line()),
        mean_legend,
        has_metrics,
        has_agreement,
        agreement_table: html_table(&agreement),
        trust: trust_section,
        verdict,
        leak_checked: leak.checked,
        leak_near: leak.near_duplicates,
        leak_max_distance: leak.max_distance,
        leak_train_dir: leak.train_dir.clone(),
        leak_table: html_table(&leakage::near_duplicates(conn, run)?),
        errors: html_table(&rq::errors(conn, run)?),
        originals_missing,
        config_yaml: record.config_yaml.clone(),
    };
    let common = Common {
        run,
        methods: &method_titles,
        per_page,
        pages: paged.len(),
        thumb,
        thresholds: Thresholds {
            background: rules.background,
            border: rules.border,
            agreement: rules.agreement,
            confidence: rules.confidence,
        },
        legend,
    };
    let first_strips = assets::strip_bytes(dir, paged.first().map_or(&[], |g| g.as_slice()));
    // Reading order of the main gallery (groups, then pages): previous / next on the image pages.
    let mut order: Vec<(usize, String)> = Vec::new();
    for (p, groups) in paged.iter().enumerate() {
        for g in groups {
            for it in &g.items {
                order.push((p + 1, it.anchor.clone()));
            }
        }
    }
    let nav = sections::view_nav(
        &views,
        "all",
        sections::SORTS[0].0,
        &sections::sorts(&items),
    );
    let pages = render::write_pages(dir, &common, &index, paged, &nav)?;
    let view_pages = render::write_views(dir, &common, &items, &views, per_page)?;
    let agreement_rows = rq::image_agreement(conn, run)?;
    let faithfulness = rq::image_faithfulness(conn, run)?;
    let shortcuts = crate::query::shortcuts::image_shortcuts(conn, run)?;
    let by_anchor: std::collections::HashMap<&str, usize> = (items.iter().enumerate())
        .map(|(i, it)| (it.anchor.as_str(), i))
        .collect();
    let link_to = |k: usize, label: &str| {
        let (_, anchor) = &order[k];
        Link {
            label: format!("{label}: {}", items[by_anchor[anchor.as_str()]].file),
            href: items[by_anchor[anchor.as_str()]].page.clone(),
        }
    };
    let total = order.len();
    let image_pages = (order.iter().enumerate()).map(|(k, (page, anchor))| {
        let i = by_anchor[anchor.as_str()];
        let e = &entries[i];
        sections::image_page(
            items[i].clone(),
            &e.image_id,
            pics[i].clone(),
            &sections::ImageFacts {
                methods: &methods,
                pairs: agreement_rows
                    .get(&e.image_id)
                    .map_or(&[], |v| v.as_slice()),
                faithfulness: &faithfulness,
                shortcuts: &shortcuts,
                localisation: &localisation,
                outline_area: outlines.get(&e.image_id).map(|o| o.area),
            },
            Link {
                label: format!("gallery page {page}"),
                href: format!("{}#{anchor}", sections::page_file(*page)),
            },
            (k > 0).then(|| link_to(k - 1, "previous")),
            (k + 1 < total).then(|| link_to(k + 1, "next")),
            k + 1,
            total,
        )
    });
    let image_pages = render::write_image_pages(dir, &common, image_pages)?;

    let html_bytes: u64 = (pages.iter().chain(&view_pages).chain(&image_pages))
        .map(|p| assets::file_size(p))
        .sum();
    let first_page_bytes = assets::file_size(&pages[0])
        + assets
            .first_page
            .iter()
            .map(|p| assets::file_size(p))
            .sum::<u64>()
        + first_strips;
    Ok(Written {
        index: pages[0].clone(),
        html_bytes,
        asset_bytes: assets::dir_size(&assets.dir),
        first_page_bytes,
        images: entries.len(),
        originals_missing,
        view_pages: view_pages.len(),
        image_pages: image_pages.len(),
        pages,
    })
}

/// The verdict's acquisition part: both tables, and the example pairs (confirmed first, at most
/// four); `None` when the check measured no class difference.
fn acquisition_view(
    conn: &Connection,
    run: &str,
    assets: &mut assets::Assets,
) -> Result<Option<AcquisitionView>, ReportError> {
    let differences = crate::query::shortcuts::acquisition_properties(conn, run)?;
    if differences.rows.is_empty() {
        return Ok(None);
    }
    let examples: Vec<_> = crate::query::shortcuts::acquisition_examples(conn, run)?
        .into_iter()
        .take(4)
        .collect();
    let pictures = assets.acquisition_pictures(&examples)?;
    Ok(Some(AcquisitionView {
        differences: html_table(&differences),
        // The example's image id (a sha256) is the export's; the page shows the example pairs.
        tests: html_table(&crate::query::shortcuts::acquisition_tests(conn, run)?)
            .without("example_image"),
        pictures: pictures
            .into_iter()
            .zip(&examples)
            .map(|(src, e)| RegionPicture {
                src,
                caption: format!(
                    "{} `{}` -> `{}` ({}): before / after ({}), `{}` probability {} -> {}; flips {} of the `{}` images (control {})",
                    crate::trust::shortcut::acquisition::kind_label(&e.kind),
                    e.from_class,
                    e.to_class,
                    e.verdict.replace('_', " "),
                    e.parameter,
                    e.to_class,
                    e.example_prob_before.map_or("–".into(), |v| format!("{v:.2}")),
                    e.example_prob_after.map_or("–".into(), |v| format!("{v:.2}")),
                    e.toward.rate.map_or("–".into(), |v| format!("{:.0}%", 100.0 * v)),
                    e.from_class,
                    e.control.rate.map_or("not run".into(), |v| format!("{:.0}%", 100.0 * v)),
                ),
            })
            .collect(),
    }))
}
