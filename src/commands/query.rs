//! `tumor-audit query`: runs, suspicious images, one image, bias summaries, trust summaries and
//! read-only SQL, as aligned tables, CSV or JSON. Needs only the database, never the model.
use super::{open_db as open, print_table as print};
use crate::cli::{QueryArgs, QueryWhat};
use crate::config::Settings;
use crate::exit::UsageError;
use crate::query::{self, bias, trust, Format, Rules, Table};

pub fn run(settings: &Settings, args: &QueryArgs) -> anyhow::Result<()> {
    let store = open(settings, &args.db)?;
    let conn = store.conn();
    match &args.what {
        QueryWhat::Runs => print(&query::runs(conn)?, args.format),
        QueryWhat::Suspicious(s) => {
            let run = query::resolve_run(conn, s.run.as_deref())?;
            // A misspelt method would count nothing and report "0 suspicious".
            if let Some(m) = &s.method {
                let methods = query::runs::run_header(conn, &run)?.record.methods;
                if !methods.contains(m) {
                    return Err(UsageError(format!(
                        "--method {m}: run {run} has no method `{m}`; its methods: {}",
                        methods.join(", ")
                    ))
                    .into());
                }
            }
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
        QueryWhat::Bias {
            run,
            long,
            localisation,
        } => {
            let run = query::resolve_run(conn, run.as_deref())?;
            let located = || -> rusqlite::Result<query::Table> {
                if *long {
                    query::localisation::summary(conn, &run)
                } else {
                    query::localisation::side_by_side(conn, &run)
                }
            };
            if *localisation {
                if args.format == Format::Table {
                    println!("run {run}: {LOCALISATION_HEADER}");
                }
                return print(&located()?, args.format);
            }
            let t = if *long {
                bias::summary(conn, &run)?
            } else {
                bias::side_by_side(conn, &run)?
            };
            if args.format == Format::Table {
                println!("run {run}: right = correct predictions, wrong = incorrect (bg = background mass)");
            }
            print(&t, args.format)?;
            if args.format == Format::Table && query::localisation::has_figures(conn, &run)? {
                println!("\n{LOCALISATION_HEADER}");
                print(&located()?, args.format)?;
                super::print_localisation(conn, &run)?;
            }
            Ok(())
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
                (
                    "reproducibility",
                    query::shortcuts::reproducibility(conn, &run)?,
                ),
                (
                    "acquisition",
                    query::shortcuts::acquisition_properties(conn, &run)?,
                ),
                (
                    "acquisition_tests",
                    query::shortcuts::acquisition_tests(conn, &run)?,
                ),
            ];
            if args.format != Format::Table {
                return print_sections(&sections, args.format);
            }
            println!("run {run}");
            let Some(summary) = sections[0]
                .1
                .rows
                .first()
                .and_then(|r| sections[0].1.column("summary").map(|i| r[i].clone()))
            else {
                println!("no shortcut check for this run: run `tumor-audit shortcuts --run {run}`");
                return Ok(());
            };
            if let query::Cell::Text(s) = summary {
                println!("verdict: {s}");
            }
            super::print_localisation(conn, &run)?;
            // The terminal view: the columns a person reads first; CSV / JSON get them all.
            let keep: [&[&str]; 7] = [
                &[
                    "verdict",
                    "images",
                    "flagged_images",
                    "flagged_share",
                    "confirmed_regions",
                    "candidate_regions",
                    "untrusted_methods",
                    "reference_run",
                    "forward_passes",
                    "seconds",
                    "confirmed_acquisition",
                    "acquisition_forward_passes",
                ],
                &[
                    "region",
                    "class",
                    "verdict",
                    "methods",
                    "x0",
                    "x1",
                    "y0",
                    "y1",
                    "occluded_images",
                    "occlusion_rate",
                    "control_occlusion_rate",
                    "pasted_images",
                    "paste_rate",
                    "control_paste_rate",
                ],
                &[
                    "method",
                    "trusted",
                    "reason",
                    "trust_source",
                    "deletion_auc",
                    "random_deletion_auc",
                    "sanity_verdict",
                    "median_reproducibility",
                    "threshold_background",
                    "threshold_border",
                    "flagged_images",
                ],
                &["path", "label", "predicted", "confidence", "reasons"],
                &["method", "images", "median", "lowest", "share_below_level"],
                &[
                    "property",
                    "class_a",
                    "class_b",
                    "median_a",
                    "median_b",
                    "mean_a",
                    "mean_b",
                    "separation",
                ],
                &[
                    "kind",
                    "from_class",
                    "to_class",
                    "verdict",
                    "parameter",
                    "images",
                    "rate",
                    "low",
                    "control_rate",
                ],
            ];
            for ((name, t), keep) in sections.iter().zip(keep) {
                println!("\n{name}:");
                if t.rows.is_empty() {
                    println!("  none");
                } else {
                    print(&project(t, keep), Format::Table)?;
                }
            }
            Ok(())
        }
        QueryWhat::Sql { statement } => print(&query::sql(conn, statement)?, args.format),
    }
}

/// Named tables: one JSON object keyed by name, CSV blocks each after a `# name` line, or aligned
/// tables each under its name.
/// What the localisation tables hold.
const LOCALISATION_HEADER: &str = "localisation on images with a ground-truth outline (data.masks): \
    tumor_mass = median share of |map| on the tumour (chance = outline_area), pointing = share of maps \
    whose maximum is on it, iou = top-k pixels vs the outline; right / wrong = correct / incorrect";

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
