//! `tumor-audit merge`: shard databases into one run.
use std::time::Instant;

use crate::cli::MergeArgs;
use crate::exit::Exit;

/// `merge`: shard databases into one run; [`Exit::Incomplete`] when shards are missing or unfinished
/// (unless --allow-missing), [`Exit::Partial`] when images failed, else [`Exit::Ok`].
pub fn run(args: &MergeArgs) -> anyhow::Result<Exit> {
    use crate::store::{merge_shards, MergeOptions};
    let t0 = Instant::now();
    let report = merge_shards(
        &args.into,
        &args.shards,
        &MergeOptions {
            run_id: args.run.clone(),
        },
    )?;
    let n = report.shard_count;
    for s in &report.shards {
        let now = if report.merged_now.contains(&s.index) {
            "merged"
        } else {
            "merged before"
        };
        println!(
            "shard {} of {n} ({now}, {}): {}, {} of {} images done, {} failed",
            s.index, s.source, s.status, s.images_done, s.images_total, s.images_failed
        );
    }
    for k in &report.missing {
        eprintln!("shard {k} of {n} is missing: no database for it was given (now or in an earlier merge)");
    }
    for s in report.unfinished() {
        eprintln!(
            "shard {} of {n} ({}) was '{}' when merged: let it finish (or rerun the same audit command, which resumes), then merge again",
            s.index, s.source, s.status
        );
    }
    let state = if report.complete() {
        "complete"
    } else {
        "INCOMPLETE"
    };
    println!(
        "run {} in {}: {} ({state}: {} of {n} shards), {} of {} images done, {} failed; {:.1} s",
        report.run_id,
        report.target.display(),
        report.status,
        report.shards.len(),
        report.images_done,
        report.images_total,
        report.images_failed,
        t0.elapsed().as_secs_f64()
    );
    if !report.complete() && !args.allow_missing {
        eprintln!(
            "the merged run is incomplete (status 'interrupted'): exit code {} (--allow-missing to accept)",
            Exit::Incomplete.code()
        );
        return Ok(Exit::Incomplete);
    }
    Ok(if report.images_failed > 0 {
        Exit::Partial
    } else {
        Exit::Ok
    })
}
