//! `tumor-audit diff`: tonight's run against last night's, with `--fail-on` gates.
use anyhow::Context as _;

use super::{open_db as open, print_table as print};
use crate::cli::DiffArgs;
use crate::config::Settings;
use crate::exit::{Exit, UsageError};
use crate::query::{self, diff, Cell, Format, Table};

/// [`Exit::Gate`] when a `--fail-on` rule is crossed.
pub fn run(settings: &Settings, args: &DiffArgs) -> anyhow::Result<Exit> {
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
    check_rule_names(&args.fail_on, &d.table, &a, &b)?;
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
        return Ok(Exit::Ok);
    }
    for v in &d.violations {
        eprintln!("FAIL: {v}");
    }
    eprintln!(
        "{} rule violation(s): exit code {}",
        d.violations.len(),
        Exit::Gate.code()
    );
    Ok(Exit::Gate)
}

/// Every `--fail-on` rule must name a metric, class or method the two runs have: a misspelt name would
/// match nothing, and the gate would pass whatever happened. `table` holds the diff's (metric, scope)
/// rows, i.e. every figure either run has.
fn check_rule_names(rules: &[diff::Rule], table: &Table, a: &str, b: &str) -> anyhow::Result<()> {
    let (Some(mi), Some(si)) = (table.column("metric"), table.column("scope")) else {
        return Ok(());
    };
    let text = |c: &Cell| match c {
        Cell::Text(t) => t.clone(),
        _ => String::new(),
    };
    for r in rules {
        let scopes: Vec<String> = table
            .rows
            .iter()
            .filter(|row| text(&row[mi]) == r.metric)
            .map(|row| text(&row[si]))
            .collect();
        let (kind, kinds) = if ["precision", "recall", "f1"].contains(&r.metric.as_str()) {
            ("class", "classes")
        } else {
            ("method", "methods")
        };
        let problem = if scopes.is_empty() {
            Some(format!(
                "runs {a} and {b} have no `{}` to compare (no labelled images or no such maps)",
                r.metric
            ))
        } else {
            match &r.scope {
                Some(s) if r.metric == "accuracy" => Some(format!(
                    "accuracy is run-wide: it has no scope (`@{s}`); write `accuracy up|down N`"
                )),
                Some(s) if !scopes.contains(s) => Some(format!(
                    "no {kind} `{s}` in runs {a} and {b}; the {kinds} are: {} (or `any`)",
                    scopes.join(", ")
                )),
                _ => None,
            }
        };
        if let Some(p) = problem {
            return Err(UsageError(format!("--fail-on \"{r}\": {p}")).into());
        }
    }
    Ok(())
}
