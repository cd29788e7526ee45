//! The read-side subcommands: `query`, `export`, `diff`. They only need the database (and the config
//! for the default database path), never the model.
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::cli::{DiffArgs, ExportArgs, QueryArgs, QueryWhat, ReportArgs, RunOutput};
use crate::config::Settings;
use crate::query::{self, bias, diff, export, trust, Format, Rules, Table};
use crate::store::Store;

fn db_path(settings: &Settings, db: &Option<PathBuf>) -> PathBuf {
    db.clone()
        .unwrap_or_else(|| settings.output.dir.join("audit.sqlite"))
}

fn open(settings: &Settings, db: &Option<PathBuf>) -> anyhow::Result<Store> {
    let path = db_path(settings, db);
    Store::open_read_only(&path).map_err(|e| match e {
        crate::store::StoreError::NotFound { .. } => anyhow::anyhow!(
            "database {} does not exist: run `tumor-audit audit` first, or pass --db",
            path.display()
        ),
        other => other.into(),
    })
}

fn print(table: &Table, format: Format) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    table.write(format, &mut out)?;
    out.flush()?;
    Ok(())
}

pub fn cmd_query(settings: &Settings, args: &QueryArgs) -> anyhow::Result<()> {
    let store = open(settings, &args.db)?;
    let conn = store.conn();
    match &args.what {
        QueryWhat::Runs => print(&query::runs(conn)?, args.format),
        QueryWhat::Suspicious(s) => {
            let run = query::resolve_run(conn, s.run.as_deref())?;
            let rules = Rules {
                background: s.background,
                border: s.border,
                confidence: s.confidence,
                agreement: s.agreement,
                min_methods: s.min_methods,
                method: s.method.clone(),
            };
            let mut t = query::suspicious(conn, &run, &rules)?;
            let total = t.rows.len();
            if s.limit > 0 {
                t.rows.truncate(s.limit);
            }
            if args.format == Format::Table {
                // The terminal view: the columns a person reads first; CSV / JSON get them all.
                let keep = [
                    "score",
                    "image_id",
                    "path",
                    "label",
                    "predicted",
                    "confidence",
                    "train_distance",
                    "reasons",
                ];
                t = project(&t, &keep);
                for r in &mut t.rows {
                    if let query::Cell::Text(id) = &mut r[1] {
                        id.truncate(12);
                    }
                }
                println!(
                    "run {run}: {total} suspicious image(s){}",
                    shown(total, s.limit)
                );
            }
            print(&t, args.format)
        }
        QueryWhat::Image { image, run } => {
            let run = query::resolve_run(conn, run.as_deref())?;
            let id = query::find_image(conn, &run, image)?;
            let sections = query::image(conn, &run, &id)?;
            if args.format == Format::Table {
                println!("run {run}, image {id}");
            }
            print_sections(&sections, args.format)
        }
        QueryWhat::Bias { run, long } => {
            let run = query::resolve_run(conn, run.as_deref())?;
            let t = if *long {
                bias::summary(conn, &run)?
            } else {
                bias::side_by_side(conn, &run)?
            };
            if args.format == Format::Table {
                println!("run {run}: right = correct predictions, wrong = incorrect (bg = background mass)");
            }
            print(&t, args.format)
        }
        QueryWhat::Trust { run } => {
            let run = query::resolve_run(conn, run.as_deref())?;
            const FAITH: &str = "audit the run with --faithfulness";
            const SANITY: &str = "run `tumor-audit sanity --run RUN`";
            // (name, table, what it means, how to get it when empty)
            let sections = [
                (
                    "faithfulness",
                    trust::faithfulness(conn, &run)?,
                    "AUC of the target score while the pixels a method ranks first are deleted (lower = \
                     more faithful) or inserted (higher = more faithful), next to the random pixel order; \
                     _right / _wrong = correct / incorrect predictions",
                    FAITH,
                ),
                (
                    "faithfulness by class",
                    trust::faithfulness_by_class(conn, &run)?,
                    "",
                    FAITH,
                ),
                ("sanity check", trust::sanity_check(conn, &run)?, "", SANITY),
                (
                    "sanity curve",
                    trust::sanity_wide(conn, &run)?,
                    "mean |Spearman| of the absolute maps with the trained model's maps, the layers \
                     re-initialised cumulatively from the output (column = stage, layer index:kind); a \
                     method still similar once the whole network is random fails",
                    SANITY,
                ),
                (
                    "other class",
                    trust::other_class(conn, &run)?,
                    "similarity of the map explaining another class with the explained class's map \
                     (high = the map hardly depends on the class)",
                    SANITY,
                ),
            ];
            if args.format != Format::Table {
                let tables: Vec<(&str, Table)> =
                    sections.into_iter().map(|(n, t, _, _)| (n, t)).collect();
                return print_sections(&tables, args.format);
            }
            println!("run {run}");
            for (name, t, hint, missing) in &sections {
                println!("\n{name}:");
                if !hint.is_empty() {
                    println!("  ({hint})");
                }
                if t.rows.is_empty() {
                    println!("  none: {missing}");
                } else {
                    print(t, Format::Table)?;
                }
            }
            Ok(())
        }
        QueryWhat::Shortcuts { run } => {
            let run = query::resolve_run(conn, run.as_deref())?;
            let sections = [
                ("verdict", query::shortcuts::verdict(conn, &run)?),
                ("regions", query::shortcuts::regions(conn, &run)?),
                ("methods", query::shortcuts::methods(conn, &run)?),
                ("flagged", query::shortcuts::flagged(conn, &run)?),
                ("reproducibility", query::shortcuts::reproducibility(conn, &run)?),
            ];
            if args.format != Format::Table {
                return print_sections(&sections, args.format);
            }
            println!("run {run}");
            if sections[0].1.rows.is_empty() {
                println!("no shortcut check for this run: run `tumor-audit shortcuts --run {run}`");
                return Ok(());
            }
            for (name, t) in &sections {
                println!("\n{name}:");
                if t.rows.is_empty() {
                    println!("  none");
                } else {
                    print(t, Format::Table)?;
                }
            }
            Ok(())
        }
        QueryWhat::Sql { statement } => print(&query::sql(conn, statement)?, args.format),
    }
}

/// Named tables: one JSON object keyed by name, CSV blocks each after a `# name` line, or aligned
/// tables each under its name.
fn print_sections<N: AsRef<str>>(sections: &[(N, Table)], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let obj: serde_json::Map<String, serde_json::Value> = sections
                .iter()
                .map(|(name, t)| (name.as_ref().to_string(), t.to_json()))
                .collect();
            println!("{}", serde_json::to_string_pretty(&obj)?);
            Ok(())
        }
        Format::Csv => {
            for (name, t) in sections {
                println!("# {}", name.as_ref());
                print(t, Format::Csv)?;
            }
            Ok(())
        }
        Format::Table => {
            for (name, t) in sections {
                println!("\n{}:", name.as_ref());
                print(t, Format::Table)?;
            }
            Ok(())
        }
    }
}

fn shown(total: usize, limit: usize) -> String {
    if limit > 0 && total > limit {
        format!(", the first {limit} shown (--limit 0 for all)")
    } else {
        String::new()
    }
}

/// The named columns of a table, in that order (missing names are skipped).
fn project(t: &Table, names: &[&str]) -> Table {
    let idx: Vec<usize> = names.iter().filter_map(|n| t.column(n)).collect();
    Table {
        columns: idx.iter().map(|&i| t.columns[i].clone()).collect(),
        rows: t
            .rows
            .iter()
            .map(|r| idx.iter().map(|&i| r[i].clone()).collect())
            .collect(),
    }
}

/// The store, the resolved run and the output folder of `export` / `report`.
fn run_output(settings: &Settings, target: &RunOutput) -> anyhow::Result<(Store, String, PathBuf)> {
    let store = open(settings, &target.db)?;
    let run = query::resolve_run(store.conn(), target.run.as_deref())?;
    let dir = target
        .out
        .clone()
        .unwrap_or_else(|| settings.output.dir.join(bias::file_safe(&run)));
    Ok((store, run, dir))
}

pub fn cmd_export(settings: &Settings, args: &ExportArgs) -> anyhow::Result<()> {
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

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn cmd_report(settings: &Settings, args: &ReportArgs) -> anyhow::Result<()> {
    let (store, run, dir) = run_output(settings, &args.target)?;
    let opts = crate::report::Options {
        per_page: args.per_page as usize,
        thumb: args.thumb,
    };
    let w = crate::report::write_report(store.conn(), &run, &dir, &opts)
        .with_context(|| format!("report of run {run}"))?;
    println!("run {run}: report written to {}", w.index.display());
    println!(
        "  {} image(s) in the gallery, {} page(s); HTML {}, assets {}; report.html with its plots, mean \
         maps and first gallery page: {} (the gallery strips load as the reader scrolls)",
        w.images,
        w.pages.len(),
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

/// Exit code when a `--fail-on` rule is crossed.
pub const DIFF_FAILED: u8 = 3;

pub fn cmd_diff(settings: &Settings, args: &DiffArgs) -> anyhow::Result<u8> {
    let store_a = open(settings, &args.db)?;
    let store_b = match &args.db_b {
        Some(p) => Some(open(settings, &Some(p.clone()))?),
        None => None,
    };
    let conn_b = store_b.as_ref().unwrap_or(&store_a).conn();
    let a = query::resolve_run(store_a.conn(), Some(&args.run_a))?;
    let b = query::resolve_run(conn_b, Some(&args.run_b))?;
    let d = diff::diff(store_a.conn(), &a, conn_b, &b, &args.fail_on)
        .with_context(|| format!("diff {a} {b}"))?;
    if args.format == Format::Table {
        println!(
            "A = {a}, B = {b}: {} image(s) in common ({} only in A, {} only in B); delta = B - A; \
             accuracy, precision, recall, f1 in %",
            d.common_images, d.only_a, d.only_b
        );
    }
    print(&d.table, args.format)?;
    if d.violations.is_empty() {
        if !args.fail_on.is_empty() {
            eprintln!("no --fail-on rule crossed");
        }
        return Ok(0);
    }
    for v in &d.violations {
        eprintln!("FAIL: {v}");
    }
    eprintln!(
        "{} rule violation(s): exit code {DIFF_FAILED}",
        d.violations.len()
    );
    Ok(DIFF_FAILED)
}
