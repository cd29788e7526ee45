//! `tumor-audit export`: a run as CSV files for statistical analysis, plus the mean maps.
use super::run_output;
use crate::cli::ExportArgs;
use crate::config::Settings;
use crate::query::export;

pub fn run(settings: &Settings, args: &ExportArgs) -> anyhow::Result<()> {
    let (store, run, dir) = run_output(settings, &args.target)?;
    let done = export::export_run(store.conn(), &run, &dir)?;
    println!("run {run} exported to {}:", dir.display());
    for (path, rows) in &done.files {
        println!(
            "  {:<40} {rows:>7} rows",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    if let Some(grid) = &done.mean_map_grid {
        println!("  mean maps per class x method: {}", grid.display());
    }
    Ok(())
}
