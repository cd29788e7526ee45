//! `tumor-audit report`: a run's static HTML report.
use anyhow::Context as _;

use super::run_output;
use crate::cli::ReportArgs;
use crate::config::Settings;

pub fn run(settings: &Settings, args: &ReportArgs) -> anyhow::Result<()> {
    let (store, run, dir) = run_output(settings, &args.target)?;
    let opts = crate::report::Options {
        per_page: args.per_page as usize,
        thumb: args.thumb,
        display: settings.display,
    };
    let w = crate::report::write_report(store.conn(), &run, &dir, &opts)
        .with_context(|| format!("report of run {run}"))?;
    println!("run {run}: report written to {}", w.index.display());
    println!(
        "  {} image(s) in the gallery, {} page(s), {} filtered / sorted view page(s), {} image page(s); \
         HTML {}, assets {}; report.html with its plots, mean maps and first gallery page: {} (the \
         gallery strips load as the reader scrolls)",
        w.images,
        w.pages.len(),
        w.view_pages,
        w.image_pages,
        mib(w.html_bytes),
        mib(w.asset_bytes),
        mib(w.first_page_bytes)
    );
    if w.originals_missing > 0 {
        println!(
            "  {} original image(s) not readable at their recorded path: their rows show the maps alone",
            w.originals_missing
        );
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
