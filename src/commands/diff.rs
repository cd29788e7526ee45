//! `tumor-audit diff`: tonight's run against last night's, with `--fail-on` gates.
use anyhow::Context as _;

use super::{open_db as open, print_table as print};
use crate::cli::DiffArgs;
use crate::config::Settings;
use crate::query::{self, diff, Format};

/// Exit code when a `--fail-on` rule is crossed.
pub const DIFF_FAILED: u8 = 3;

pub fn run(settings: &Settings, args: &DiffArgs) -> anyhow::Result<u8> {
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
