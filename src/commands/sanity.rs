//! `tumor-audit sanity`: the cascading model-randomisation check of a run's methods (on the run's own
//! config, model and test set when the run exists; on the current ones for a new run).
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _};
use rayon::prelude::*;

use super::{progress, Plan};
use crate::attribution::{Method, Subject};
use crate::cli::{Cli, SanityArgs};
use crate::config::Settings;
use crate::dataset;
use crate::model;
use crate::preprocess::{self, Prepared};
use crate::store::trust::{OtherClassRecord, SanityCheckRecord, SanityImage, SanityStageRecord};
use crate::store::Store;
use crate::trust::sanity;

/// One test image of the check: content id, sample, prepared input and the model's reading of it.
struct Picked {
    id: String,
    sample: dataset::Sample,
    prep: Prepared,
    subject: Subject,
}

pub fn run(cli: &Cli, args: &SanityArgs) -> anyhow::Result<()> {
    if args.images == 0 {
        bail!("--images must be at least 1");
    }
    if !(args.threshold.is_finite() && (0.0..=1.0).contains(&args.threshold)) {
        bail!("--threshold must be in [0, 1], found {}", args.threshold);
    }
    let current = Plan::new(cli)?;
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| current.settings.output.dir.join("audit.sqlite"));
    let t0 = Instant::now();
    let store = Store::open(&db)?;
    let (ctx, dir, existing) = run_context(current, &store, args)?;
    if let Some(ts) = &ctx.settings.model.torchscript {
        bail!(
            "the model-randomisation check re-initialises a model's layers in order; {} is a TorchScript \
             module, whose layers' order along the forward pass and initialisers are unknown: not supported \
             ({}); {}",
            ts.display(),
            crate::model::TORCHSCRIPT_OPAQUE,
            crate::model::TORCHSCRIPT_TO_ONNX
        );
    }
    let methods: Vec<Method> = if args.methods.is_empty() {
        let mut m = ctx.settings.explain.methods.clone();
        if !m.contains(&Method::Gradient) {
            m.push(Method::Gradient);
        }
        m
    } else {
        args.methods.clone()
    };
    let crate::plan::ModelPlan {
        model,
        explain: cfg,
        ..
    } = ctx.model_plan(&methods)?;
    let picked = pick_images(&ctx, &model, &dir, args.images)?;
    let inputs: Vec<_> = picked
        .iter()
        .map(|p| p.subject.input(&p.id, &p.prep.grey))
        .collect();
    let layers = sanity::cascade_labels(&model)?;
    println!(
        "model randomisation of run {}: {} image(s), {} method(s), {} stages ({} parametrised layers, output first: {})",
        args.run,
        inputs.len(),
        methods.len(),
        layers.len() + 1,
        layers.len(),
        layers.join(", ")
    );
    let pb = progress((layers.len() + 1) as u64, "sanity check", "stages");
    let result = sanity::randomise(
        &model,
        &cfg,
        &methods,
        &inputs,
        ctx.classes.len() as i64,
        args.seed,
        &mut |_, _| pb.inc(1),
    )?;
    pb.finish_and_clear();
    if !existing {
        let record = ctx.run_record(
            &args.run,
            &cfg,
            &ctx.settings.faithfulness,
            &model,
            Some(&ctx.model_path()),
            &dir,
            0,
        )?;
        store.begin_run(&record)?;
        store.finish_run(&args.run, "finished")?;
    }
    let seconds = t0.elapsed().as_secs_f64();
    store_result(&store, &ctx, args, &methods, &picked, &result, seconds)?;
    print_sanity(store.conn(), &args.run)?;
    println!(
        "{seconds:.0} s; results in {} (sanity_stages, v_sanity_curve, v_sanity_verdict)",
        db.display()
    );
    Ok(())
}

/// The run's own context (stored config, unchanged model file, its test folder) when the run exists,
/// else the current one; the bool says whether the run exists.
fn run_context(
    current: Plan,
    store: &Store,
    args: &SanityArgs,
) -> anyhow::Result<(Plan, PathBuf, bool)> {
    let stored = crate::query::runs::stored_run(store.conn(), &args.run)
        .with_context(|| format!("database {}", store.path().display()))?;
    let Some(stored) = stored else {
        let dir = args.data.clone().unwrap_or_else(|| current.test_dir());
        return Ok((current, dir, false));
    };
    let (model_path, sha) = (&stored.model_path, &stored.model_sha256);
    let settings = Settings::from_yaml(&stored.config_yaml, &[])
        .with_context(|| format!("run {}: its stored config no longer loads", args.run))?;
    let found = model::file_sha256(Path::new(model_path))?;
    if &found != sha {
        bail!(
            "run {}: the model file {model_path} has changed since the run (sha256 {} recorded, {} now)",
            args.run,
            &sha[..12.min(sha.len())],
            &found[..12]
        );
    }
    let ctx = Plan::from_settings(settings, current.device)?;
    let dir = args
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(&stored.data_root));
    Ok((ctx, dir, true))
}

/// The sample: the first `n` readable images of the test set by image id (so the same images
/// whatever the folder order), each predicted with its explained class resolved.
fn pick_images(
    ctx: &Plan,
    model: &model::Model,
    dir: &Path,
    n: usize,
) -> anyhow::Result<Vec<Picked>> {
    let (samples, _, _) =
        crate::pipeline::test_samples(dir, &ctx.classes, None, &ctx.settings.data.masks)?;
    let mut ids: Vec<(String, dataset::Sample)> = samples
        .par_iter()
        .filter_map(|s| {
            std::fs::read(&s.path)
                .ok()
                .map(|b| (dataset::content_id(&b), s.clone()))
        })
        .collect();
    ids.sort_by(|a, b| a.0.cmp(&b.0));
    ids.dedup_by(|a, b| a.0 == b.0);
    let mut picked = Vec::new();
    for (id, sample) in ids {
        if picked.len() == n {
            break;
        }
        match dataset::read_image(&sample.path, ctx.limits()) {
            Ok(d) => {
                let prep = preprocess::prepare(&d.image, &ctx.settings.donnees.image);
                let subject = Subject::new(model, &prep, sample.label, ctx.target)
                    .with_context(|| sample.path.display().to_string())?;
                picked.push(Picked {
                    id,
                    sample,
                    prep,
                    subject,
                });
            }
            Err(reason) => eprintln!("skipped {}: {reason}", sample.path.display()),
        }
    }
    if picked.is_empty() {
        bail!("{}: no usable test image", dir.display());
    }
    Ok(picked)
}

fn store_result(
    store: &Store,
    ctx: &Plan,
    args: &SanityArgs,
    methods: &[Method],
    picked: &[Picked],
    result: &sanity::SanityResult,
    seconds: f64,
) -> anyhow::Result<()> {
    let images: Vec<SanityImage> = picked
        .iter()
        .map(|p| SanityImage {
            image_id: p.id.clone(),
            path: p.sample.path.to_string_lossy().to_string(),
            label: p.sample.label.map(|l| ctx.classes[l].clone()),
        })
        .collect();
    let stages: Vec<SanityStageRecord> = result
        .stages
        .iter()
        .map(|r| SanityStageRecord {
            image_id: picked[r.image].id.clone(),
            method: r.method.name().to_string(),
            stage: r.stage as i64,
            layer: r.layer.clone(),
            spearman_abs: r.similarity.spearman_abs,
            spearman_signed: r.similarity.spearman_signed,
            empty: r.empty,
        })
        .collect();
    let other: Vec<OtherClassRecord> = result
        .other_class
        .iter()
        .map(|r| OtherClassRecord {
            image_id: picked[r.image].id.clone(),
            method: r.method.name().to_string(),
            target: ctx.classes[picked[r.image].subject.target].clone(),
            other: ctx.classes[r.other as usize].clone(),
            spearman_abs: r.similarity.spearman_abs,
            spearman_signed: r.similarity.spearman_signed,
            empty: r.empty,
        })
        .collect();
    store.write_sanity(
        &SanityCheckRecord {
            run_id: args.run.clone(),
            seed: args.seed as i64,
            threshold: args.threshold,
            layers: result.layers.clone(),
            methods: methods.iter().map(|m| m.name().to_string()).collect(),
            seconds,
        },
        &images,
        &stages,
        &other,
    )?;
    Ok(())
}

/// The stored sanity check of a run as tables (the `query trust` ones): per method the verdict and the
/// randomisation curve, then the other-class check.
pub fn print_sanity(conn: &rusqlite::Connection, run_id: &str) -> anyhow::Result<()> {
    use std::io::Write as _;

    use crate::query::{trust, Format};
    let threshold = trust::sanity_threshold(conn, run_id)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "mean |Spearman| of |map| with the trained model's maps, per stage (column `s index:kind`: stage s \
         re-initialises the s layers nearest the output, cumulatively); verdict at the last stage (all \
         layers random): fail when above {}",
        threshold.map_or_else(|| "the threshold".to_string(), |t| t.to_string())
    )?;
    trust::sanity_wide(conn, run_id)?.write(Format::Table, &mut out)?;
    let other = trust::other_class(conn, run_id)?;
    if !other.rows.is_empty() {
        writeln!(
            out,
            "other-class check (trained model): Spearman of the other class's map with the explained class's map"
        )?;
        other.write(Format::Table, &mut out)?;
    }
    Ok(())
}
