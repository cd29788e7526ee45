//! The shortcut check of a finished run (issue 15), run by `audit` at its end: reads the run's maps and
//! metrics, decodes the images the causal tests need, runs [`crate::trust::shortcut::check_run`] on the
//! model, stores the result (migration 0006) and prints the verdict.
use std::path::Path;

use anyhow::Context as _;

use super::Context;
use crate::attribution::ExplainConfig;
use crate::model::Model;
use crate::store::shortcuts::{read_inputs, RunImage, ShortcutCheck};
use crate::store::Store;
use crate::trust::shortcut::{self, Reference, ShortcutConfig};

/// `tumor-audit shortcuts`: the check of a stored run, with the current config and model.
pub fn run(ctx: &Context, args: &crate::cli::ShortcutsArgs) -> anyhow::Result<()> {
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| ctx.settings.output.dir.join("audit.sqlite"));
    if !db.is_file() {
        anyhow::bail!(
            "database {} does not exist: run `tumor-audit audit` first, or pass --db",
            db.display()
        );
    }
    let store = Store::open(&db)?;
    let exists = crate::query::runs::run_exists(store.conn(), &args.run)?;
    if !exists {
        anyhow::bail!("database {}: there is no run {}", db.display(), args.run);
    }
    let model = ctx.load_model()?;
    let explain = ctx.fit_batches(&ctx.explain_config(&[])?, &model);
    let result = check(
        ctx,
        &model,
        &store,
        &args.run,
        args.reference.as_deref(),
        &explain,
    )?;
    print(&result, None);
    Ok(())
}

/// Runs and stores the check of `run_id`; `reference` = an accepted run whose thresholds and mean maps
/// are the baseline.
pub fn check(
    ctx: &Context,
    model: &Model,
    store: &Store,
    run_id: &str,
    reference: Option<&str>,
    explain: &ExplainConfig,
) -> anyhow::Result<ShortcutCheck> {
    let db = store.path().display();
    let inputs = read_inputs(store.conn(), run_id)
        .with_context(|| format!("database {db}: reading run {run_id} for the shortcut check"))?;
    let reference_inputs = match reference {
        Some(r) => {
            let exists = crate::query::runs::run_exists(store.conn(), r)
                .with_context(|| format!("database {db}: looking up reference run {r}"))?;
            if !exists {
                anyhow::bail!("--reference {r}: no such run in {db}");
            }
            Some(
                read_inputs(store.conn(), r)
                    .with_context(|| format!("database {db}: reading reference run {r}"))?,
            )
        }
        None => None,
    };
    let image_cfg = &ctx.settings.donnees.image;
    let limits = ctx.limits();
    // A file that moved or changed since the audit is left out of the tests (its id is its content).
    let decode = |img: &RunImage| {
        let d = crate::dataset::read_image(Path::new(&img.path), limits).ok()?;
        (d.id == img.image_id).then(|| crate::preprocess::prepare(&d.image, image_cfg))
    };
    let cfg = ShortcutConfig::default();
    let result = shortcut::check_run(
        model,
        run_id,
        &inputs,
        reference
            .zip(reference_inputs.as_ref())
            .map(|(run_id, inputs)| Reference { run_id, inputs }),
        &ctx.classes,
        explain,
        &cfg,
        &decode,
    )?;
    store.write_shortcut_check(&result)?;
    Ok(result)
}

/// The verdict and what stands behind it, for the terminal.
pub fn print(result: &ShortcutCheck, audit_seconds: Option<f64>) {
    let c = &result.check;
    println!("verdict: {}", c.summary);
    for r in &result.regions {
        println!(
            "  region {} class {} (x {:.2}-{:.2}, y {:.2}-{:.2}; {}): occlusion {}/{} flips, paste {}/{} flips -> {}",
            r.region,
            r.class,
            r.x0,
            r.x1,
            r.y0,
            r.y1,
            r.methods.join(", "),
            r.occlusion_flips,
            r.occluded_images,
            r.paste_flips,
            r.pasted_images,
            r.verdict.replace('_', " ")
        );
    }
    let cost = audit_seconds
        .filter(|s| *s > 0.0)
        .map(|s| format!(", {:.1}% of the audit's time", 100.0 * c.seconds / s))
        .unwrap_or_default();
    println!(
        "shortcut check: {} forward passes, {:.1} s{cost} (query shortcuts)",
        c.forward_passes, c.seconds
    );
}
