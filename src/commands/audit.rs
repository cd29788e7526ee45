//! `tumor-audit audit`: the main job. Everything that can be wrong with the inputs fails before any
//! work; then the test set streams through the pipeline into the run's database, the leakage check
//! runs, and the summary is printed.
use std::time::Instant;

use anyhow::{bail, Context as _};

use super::{progress, Plan};
use crate::attribution::Method;
use crate::bench::peak_memory;
use crate::cli::AuditArgs;
use crate::exit::Exit;
use crate::pipeline;
use crate::store::{RunLock, Store, Writer};

pub fn run(ctx: &Plan, args: &AuditArgs) -> anyhow::Result<Exit> {
    let mut faithfulness = ctx.settings.faithfulness.clone();
    if args.faithfulness {
        faithfulness.enabled = true;
    }
    let dir = args.data.clone().unwrap_or_else(|| ctx.test_dir());
    let shard = audit_shard(args)?;
    let db = args.db.clone().unwrap_or_else(|| {
        ctx.settings.output.dir.join(
            shard
                .map(|s| s.db_file_name())
                .unwrap_or_else(|| "audit.sqlite".into()),
        )
    });
    let run_id = args.run.clone().unwrap_or_else(pipeline::default_run_name);
    let t0 = Instant::now();
    // Everything that can be wrong with the inputs fails here, before any work. The batch sizes
    // the memory budget leaves run; the run record keeps the configured ones.
    let plan = ctx.model_plan(&args.methods)?;
    let (model, cfg, run_cfg) = (&plan.model, &plan.configured, &plan.explain);
    let (samples, not_images, outlines) =
        pipeline::test_samples(&dir, &ctx.classes, args.limit, &ctx.settings.data.masks)?;
    if ctx.settings.data.masks.layout != crate::outline::MaskLayout::None {
        let with = samples
            .iter()
            .filter(|s| outlines.mask_of(&s.path).is_some())
            .count();
        println!(
            "outlines: {with} of {} images have a mask (data.masks)",
            samples.len()
        );
    }
    // Not images, so not failures: said once each, and the run goes on.
    for s in &not_images {
        tracing::info!("skipped {}: {}", s.path.display(), s.reason);
    }
    if samples.is_empty() {
        bail!("{}: no image files in the class folders", dir.display());
    }
    // A shard keeps its images by content hash; the others are read and hashed, never decoded.
    let (samples, source) = match shard {
        Some(s) => {
            let sel = crate::shard::select(samples, s);
            println!(
                "{s}: {} of {} images (by content hash)",
                sel.own.len(),
                sel.all
            );
            let source = crate::store::ShardSource {
                images_listed: sel.all,
                image_list_sha256: sel.fingerprint,
                image_limit: args.limit,
            };
            (sel.own, Some(source))
        }
        None => (samples, None),
    };
    let model_path = ctx.model_path();
    // One process per run: a second audit of the same --run is refused before it writes anything.
    let _lock = RunLock::acquire(&db, &run_id)?;
    let store = Store::open(&db)?;
    // A --reference that names no run fails here, before any work.
    if let Some(r) = &args.reference {
        if !crate::query::runs::run_exists(store.conn(), r)? {
            bail!("--reference {r}: no such run in {}", db.display());
        }
    }
    let record = ctx.run_record(
        &run_id,
        cfg,
        &faithfulness,
        model,
        Some(&model_path),
        &dir,
        samples.len(),
    )?;
    // A shard resumed on another image list is refused before its run row changes.
    if let Some(source) = &source {
        store.record_shard_source(&run_id, source)?;
    }
    let resuming = store.begin_shard_run(&record, shard)?;
    if let Some(source) = &source {
        store.record_shard_source(&run_id, source)?;
    }
    let done = if args.force {
        Default::default()
    } else {
        store.done_images(&run_id)?
    };
    if resuming && !args.force {
        println!(
            "resuming run {run_id}: {} of {} images already done",
            done.len(),
            samples.len()
        );
    }
    let writer = Writer::spawn(&db, 16, 64)?;
    let job = ctx.audit_job(
        &run_id,
        run_cfg,
        faithfulness.enabled.then_some(&faithfulness),
        &outlines,
        done,
    );
    let pb = progress(samples.len() as u64, "auditing", "images");
    let result = pipeline::run(model, &job, samples, &writer.sender(), &|| pb.inc(1));
    pb.finish_and_clear();
    let written = writer.finish();
    let (stats, writes) = match (result, written) {
        (Ok(stats), Ok(writes)) => (stats, writes),
        // The writer's error is the cause (a full disk, a lock held too long); the pipeline only saw
        // its channel close.
        (_, Err(w)) => return Err(fail_run(&store, &run_id, w.into())),
        (Err(r), Ok(_)) => return Err(fail_run(&store, &run_id, r.into())),
    };
    // The run is finished only once the leakage check and the shortcut check have stored their rows:
    // a kill during either leaves it 'running', and the rerun does them again.
    if !args.no_leakage_check {
        if let Err(e) = leakage_check(ctx, args, &store, &run_id) {
            return Err(fail_run(&store, &run_id, e));
        }
    }
    // The run's verdict: shortcut discovery, causal test, trust-weighted flags.
    let verdict = if args.no_shortcuts {
        None
    } else if shard.is_some() {
        println!("shortcut check skipped: a shard holds part of the test set");
        None
    } else {
        let t = Instant::now();
        let result =
            ctx.check_shortcuts(model, &store, &run_id, args.reference.as_deref(), run_cfg);
        let result = match result {
            Ok(r) => r,
            Err(e) => return Err(fail_run(&store, &run_id, e)),
        };
        tracing::info!("shortcut check: {:.1} s", t.elapsed().as_secs_f64());
        Some(result)
    };
    store.finish_run(&run_id, "finished")?;
    let flagged = crate::query::runs::suspicious_image_count(store.conn(), &run_id).unwrap_or(0);
    let secs = t0.elapsed().as_secs_f64();
    let failed_now = stats.failed + writes.failed_writes;
    let line = format!(
        "run {run_id}: {} images audited, {} resumed as done, {} failed; {:.0} s ({:.3} images/s, {} decode threads, peak memory {})",
        stats.images,
        stats.skipped_done,
        failed_now,
        secs,
        stats.images as f64 / secs.max(1e-9),
        rayon::current_num_threads(),
        peak_memory().map(|kb| format!("{:.0} MiB", kb as f64 / 1024.0)).unwrap_or_else(|| "unknown".into())
    );
    super::progress::summary(&line);
    // The run's totals over every invocation (a resumed run's accuracy is the run's, not the rerun's).
    let run = store.run_counts(&run_id)?;
    let mut line = format!(
        "run {run_id} totals: {} of {} images done, {} failed",
        run.done, run.images_total, run.failed
    );
    if run.labelled > 0 {
        line += &format!(
            "; accuracy {:.2}% ({} / {})",
            100.0 * run.correct as f64 / run.labelled as f64,
            run.correct,
            run.labelled
        );
    }
    super::progress::summary(&line);
    println!(
        "{:<22} {:>10} {:>10} {:>8}",
        "method", "s/image", "images/s", "errors"
    );
    for m in &cfg.methods {
        let (sec, n) = stats
            .method_seconds
            .get(m.name())
            .copied()
            .unwrap_or((0.0, 0));
        let per = if n > 0 { sec / n as f64 } else { 0.0 };
        let errs = stats.method_errors.get(m.name()).copied().unwrap_or(0);
        println!(
            "{:<22} {:>10.3} {:>10.2} {:>8}",
            m.title(),
            per,
            if per > 0.0 { 1.0 / per } else { 0.0 },
            errs
        );
    }
    if faithfulness.enabled {
        let (sec, n) = stats
            .method_seconds
            .get(pipeline::FAITHFULNESS)
            .copied()
            .unwrap_or((0.0, 0));
        let per = if n > 0 { sec / n as f64 } else { 0.0 };
        let errs = stats
            .method_errors
            .get(pipeline::FAITHFULNESS)
            .copied()
            .unwrap_or(0);
        println!(
            "{:<22} {:>10.3} {:>10.2} {:>8}   ({} forward passes per image: K = {}, {} maps + random)",
            "faithfulness curves",
            per,
            if per > 0.0 { 1.0 / per } else { 0.0 },
            errs,
            faithfulness.forward_passes(cfg.methods.len()),
            faithfulness.steps,
            cfg.methods.len()
        );
        let rows = crate::store::trust::faithfulness_summary(store.conn(), Some(&run_id))
            .context("reading v_faithfulness_summary")?;
        print_faithfulness(&rows, faithfulness.score.name());
    }
    // The verdict (calibrated, trust-weighted) is the run's answer and its flagged count the run's
    // one count; the per-map rules fire on any method with one fixed threshold, so their count comes
    // after it and says what it is.
    println!("results in {}", db.display());
    if let Some(v) = &verdict {
        // Shares of the whole audit: the images, the leakage check and the shortcut check.
        super::print_verdict(v, Some(secs));
    }
    super::print_localisation(store.conn(), &run_id)?;
    println!(
        "raw per-map rules (not the verdict: one fixed threshold, every method, untrusted ones too): \
         {flagged} image(s) in v_suspicious"
    );
    if run.failed > 0 {
        let line = format!(
            "{} image(s) of run {run_id} failed: each is a row of the errors table (exit code {})",
            run.failed,
            Exit::Partial.code()
        );
        println!("{line}");
        tracing::warn!("{line}");
        return Ok(Exit::Partial);
    }
    Ok(Exit::Ok)
}

/// Marks the run 'failed' and returns `e`, saying so when even that could not be written (the run then
/// stays 'running' and is resumed by the next audit of the same --run).
fn fail_run(store: &Store, run_id: &str, e: anyhow::Error) -> anyhow::Error {
    match store.finish_run(run_id, "failed") {
        Ok(()) => e.context(format!("run {run_id} stopped; its status is 'failed' (rerun it to resume)")),
        Err(s) => e.context(format!(
            "run {run_id} stopped; its status could not be set to 'failed' ({s}), so it still reads \
             'running' (rerun it to resume)"
        )),
    }
}

/// The near-duplicate check of the run's images against the training folder (see [`crate::leakage`]);
/// near-duplicate = within the split's Hamming distance (split.json), 2 by default.
fn leakage_check(
    ctx: &Plan,
    args: &AuditArgs,
    store: &crate::store::Store,
    run_id: &str,
) -> anyhow::Result<()> {
    let root = &ctx.settings.data.root;
    let train = args
        .train
        .clone()
        .unwrap_or_else(|| root.join(&ctx.settings.data.train_dir));
    if !train.is_dir() {
        println!(
            "leakage check skipped: no training folder {} (give --train DIR)",
            train.display()
        );
        return Ok(());
    }
    let max_distance = std::fs::read_to_string(root.join("split.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["max_hamming_distance"].as_u64())
        .unwrap_or(2) as u32;
    let t0 = Instant::now();
    tracing::info!(
        "leakage check: hashing the training images in {} (the run is finished after this)",
        train.display()
    );
    let index = crate::leakage::TrainIndex::build(&train, &ctx.classes, ctx.limits())?;
    let (checked, dupes) =
        crate::leakage::check_run(store.conn(), run_id, &index, max_distance, ctx.limits())
            .map_err(|e| {
                anyhow::anyhow!("database {}: leakage check: {e}", store.path().display())
            })?;
    println!(
        "leakage check: {checked} image(s) against {} training images in {}: {dupes} near-duplicate(s) \
         (average-hash distance <= {max_distance}); {:.1} s",
        index.len(),
        train.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The faithfulness summary as a table (AUCs of the target-class score over the fraction of pixels).
pub fn print_faithfulness(rows: &[crate::store::trust::FaithfulnessSummary], score: &str) {
    let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "-".into());
    println!(
        "faithfulness ({score} of the explained class; deletion: lower is better, insertion: higher is better)"
    );
    println!(
        "{:<22} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "method", "images", "del AUC", "random", "del<rnd", "ins AUC", "random", "ins>rnd"
    );
    for r in rows {
        let title = Method::parse(&r.method)
            .map(|m| m.title().to_string())
            .unwrap_or_else(|_| r.method.clone());
        println!(
            "{:<22} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            title,
            r.images,
            f(r.mean_deletion_auc),
            f(r.random_deletion_auc),
            f(r.share_deletion_below_random),
            f(r.mean_insertion_auc),
            f(r.random_insertion_auc),
            f(r.share_insertion_above_random)
        );
    }
}

/// The shard `audit --shard` names (the environment is read for `auto` only).
fn audit_shard(args: &AuditArgs) -> anyhow::Result<Option<crate::shard::Shard>> {
    let env = |k: &str| std::env::var(k).ok();
    let Some(arg) = &args.shard else {
        if let Some(var) = crate::shard::ENV_VARS.iter().find(|v| env(v).is_some()) {
            tracing::warn!("{var} is set but --shard is not given: auditing the whole test set (use --shard auto to audit this task's shard)");
        }
        return Ok(None);
    };
    // A refused --shard (an irregular array, a count that disagrees) fails the same way on every
    // retry: exit code 2, like a bad command line.
    let (shard, source) = arg
        .resolve(env)
        .map_err(|e| crate::exit::UsageError(e.to_string()))?;
    tracing::info!("{shard}, from {source}");
    Ok(Some(shard))
}
