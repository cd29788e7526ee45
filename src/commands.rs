//! The subcommands: each wires the library's steps together for one job.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::attribution::{self, ExplainConfig, ImageInput, Method};
use crate::cli::{
    AuditArgs, BenchArgs, Cli, Command, EvaluateArgs, ExplainArgs, MergeArgs, SanityArgs,
    SplitArgs, TrainArgs,
};
use crate::config::{ImageConfig, Settings};
use crate::dataset::{self, Dataset, Limits, Skipped};
use crate::display;
use crate::evaluate;
use crate::model::train::{self, LabelledTensors};
use crate::model::{self, InputSpec, Model, NativeCnn};
use crate::preprocess::{self, Prepared};
use crate::split;

mod query;

/// Runs a subcommand; the value is the process exit code (0, or 2 when an audit finished but some
/// images failed).
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    if let Some(n) = cli.threads {
        if n < 1 {
            bail!("--threads must be at least 1, found {n}");
        }
        tch::set_num_threads(n);
    }
    match &cli.command {
        Command::Split(args) => cmd_split(args),
        Command::Train(args) => cmd_train(&Context::new(&cli)?, args),
        Command::Evaluate(args) => cmd_evaluate(&Context::new(&cli)?, args),
        Command::Explain(args) => cmd_explain(&Context::new(&cli)?, args),
        Command::Bench(args) => cmd_bench(&Context::new(&cli)?, args),
        Command::Audit(args) => return cmd_audit(&Context::new(&cli)?, args),
        Command::Query(args) => {
            query::cmd_query(&Settings::load(&cli.config, &cli.overrides)?, args)
        }
        Command::Export(args) => {
            query::cmd_export(&Settings::load(&cli.config, &cli.overrides)?, args)
        }
        Command::Diff(args) => {
            return query::cmd_diff(&Settings::load(&cli.config, &cli.overrides)?, args)
        }
        Command::Merge(args) => return cmd_merge(args),
        Command::Sanity(args) => cmd_sanity(&cli, args),
        Command::Report(args) => {
            query::cmd_report(&Settings::load(&cli.config, &cli.overrides)?, args)
        }
    }?;
    Ok(0)
}

/// Settings, device and class list: what every model command starts from.
pub struct Context {
    pub settings: Settings,
    pub device: Device,
    pub classes: Vec<String>,
}

impl Context {
    pub fn new(cli: &Cli) -> anyhow::Result<Context> {
        let settings = Settings::load(&cli.config, &cli.overrides)?;
        let device = model::choose_device(&cli.device)?;
        let classes = resolve_classes(&settings)?;
        Ok(Context {
            settings,
            device,
            classes,
        })
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_file_bytes: self.settings.data.max_file_bytes,
            max_image_pixels: self.settings.data.max_image_pixels,
        }
    }

    pub fn input_spec(&self) -> InputSpec {
        let img = &self.settings.donnees.image;
        InputSpec {
            channels: img.channels(),
            size: img.size as i64,
            classes: self.classes.len() as i64,
        }
    }

    pub fn data_root(&self, over: &Option<PathBuf>) -> PathBuf {
        over.clone()
            .unwrap_or_else(|| self.settings.data.root.clone())
    }

    /// The model under audit: ONNX when `model.onnx` is set, TorchScript when `model.torchscript`
    /// is, else the native CNN with its weights. Shape mismatches fail here, before any work.
    pub fn load_model(&self) -> anyhow::Result<Model> {
        let spec = self.input_spec();
        if let Some(path) = &self.settings.model.onnx {
            let ex = &self.settings.explain;
            let batch = ex.batch_size.max(ex.perturbation_batch_size) as i64;
            let m = model::onnx::OnnxModel::load(
                path,
                spec,
                &self.settings.model.onnx_layout,
                self.device,
                batch,
            )?;
            eprintln!("{}", m.describe());
            return Ok(Model::Onnx(Box::new(m)));
        }
        if let Some(ts) = &self.settings.model.torchscript {
            return Ok(Model::load_torchscript(ts, spec)?);
        }
        let mut cnn = NativeCnn::new(&self.settings.layers(), spec, self.device)?;
        cnn.load(&self.settings.model.weights)?;
        // Inference only: no weight gradients are ever needed, only input gradients.
        cnn.vs.freeze();
        Ok(Model::Native(cnn))
    }
}

/// `data.classes`, or the sorted class folders of the training split.
pub fn resolve_classes(settings: &Settings) -> anyhow::Result<Vec<String>> {
    if !settings.data.classes.is_empty() {
        return Ok(settings.data.classes.clone());
    }
    let train = settings.data.root.join(&settings.data.train_dir);
    let found = dataset::class_folders(&train).with_context(|| {
        "data.classes is empty, so class names come from the training folders, which cannot be read".to_string()
    })?;
    if found.len() < 2 {
        bail!(
            "{}: found {} class folder(s), need at least 2 (or set data.classes)",
            train.display(),
            found.len()
        );
    }
    Ok(found)
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Decodes and preprocesses samples in parallel; failures are returned as skipped records.
pub fn prepare_samples(
    samples: &[dataset::Sample],
    cfg: &ImageConfig,
    limits: Limits,
    what: &str,
) -> (Vec<(dataset::Sample, String, Prepared)>, Vec<Skipped>) {
    let pb = progress(samples.len() as u64, what);
    let results: Vec<_> = samples
        .par_iter()
        .map(|s| {
            let r = dataset::read_image(&s.path, limits)
                .map(|d| (d.id.clone(), preprocess::prepare(&d.image, cfg)));
            pb.inc(1);
            (s.clone(), r)
        })
        .collect();
    pb.finish_and_clear();
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    for (s, r) in results {
        match r {
            Ok((id, p)) => ok.push((s, id, p)),
            Err(reason) => skipped.push(Skipped {
                path: s.path,
                reason,
            }),
        }
    }
    (ok, skipped)
}

/// Stacks prepared images into x [N, C, S, S].
pub fn stack_inputs(prepared: &[&Prepared]) -> Tensor {
    let Some(first) = prepared.first() else {
        return Tensor::zeros([0], (Kind::Float, Device::Cpu));
    };
    let (c, s) = (first.channels as i64, first.size as i64);
    let flat: Vec<f32> = prepared
        .iter()
        .flat_map(|p| p.input.iter().copied())
        .collect();
    Tensor::from_slice(&flat).view([prepared.len() as i64, c, s, s])
}

/// A labelled split as tensors, with the skipped files reported.
pub fn load_labelled(
    ctx: &Context,
    dir: &Path,
    what: &str,
) -> anyhow::Result<(LabelledTensors, Vec<String>)> {
    let ds = Dataset::scan(dir, &ctx.classes)?;
    let (ok, skipped) =
        prepare_samples(&ds.samples, &ctx.settings.donnees.image, ctx.limits(), what);
    report_skipped(&skipped, &ds.skipped);
    if ok.is_empty() {
        bail!("{}: no usable images", dir.display());
    }
    let refs: Vec<&Prepared> = ok.iter().map(|(_, _, p)| p).collect();
    let x = stack_inputs(&refs);
    let y: Vec<i64> = ok
        .iter()
        .map(|(s, _, _)| s.label.unwrap_or(0) as i64)
        .collect();
    let ids = ok.iter().map(|(_, id, _)| id.clone()).collect();
    Ok((
        LabelledTensors {
            x,
            y: Tensor::from_slice(&y),
        },
        ids,
    ))
}

fn report_skipped(skipped: &[Skipped], not_images: &[Skipped]) {
    for s in skipped {
        tracing::warn!("skipped {}: {}", s.path.display(), s.reason);
    }
    for s in not_images {
        tracing::debug!("ignored {}: {}", s.path.display(), s.reason);
    }
}

fn cmd_split(args: &SplitArgs) -> anyhow::Result<()> {
    if args.fractions.len() != 3 || args.fractions.iter().any(|f| !(0.0..=1.0).contains(f)) {
        bail!(
            "--fractions needs three values in [0, 1] (train,validation,test), found {:?}",
            args.fractions
        );
    }
    let total: f64 = args.fractions.iter().sum();
    if (total - 1.0).abs() > 1e-6 {
        bail!("--fractions must add up to 1, found {total}");
    }
    let opts = split::SplitOptions {
        fractions: [args.fractions[0], args.fractions[1], args.fractions[2]],
        max_distance: args.max_distance,
        seed: args.seed,
        keep_groups: !args.leaky,
        dir_names: ["Training".into(), "Validation".into(), "Testing".into()],
    };
    let report = split::split_dataset(&args.source, &args.dest, &opts, Limits::default())?;
    println!(
        "{} images, {} near-duplicate groups ({} images in groups, largest {}), {} groups spanning splits",
        report.images, report.near_duplicate_groups, report.images_in_groups, report.largest_group, report.groups_spanning_splits
    );
    for (split, classes) in &report.images_per_split {
        let groups = report.groups_per_split.get(split).copied().unwrap_or(0);
        println!("  {split:<10} {classes:?}, {groups} groups");
    }
    println!(
        "split hash {}; details in {}",
        &report.split_hash[..16],
        args.dest.join("split.json").display()
    );
    for s in &report.skipped {
        println!("  skipped {}: {}", s.path.display(), s.reason);
    }
    Ok(())
}

fn cmd_train(ctx: &Context, args: &TrainArgs) -> anyhow::Result<()> {
    let mut settings = ctx.settings.clone();
    if let Some(e) = args.epochs {
        settings.training.epochs = e;
        settings.validate()?;
    }
    let root = ctx.data_root(&args.data);
    let weights = args
        .weights
        .clone()
        .unwrap_or_else(|| settings.model.weights.clone());
    if settings.model.torchscript.is_some() || settings.model.onnx.is_some() {
        bail!("model.torchscript or model.onnx is set: `train` trains the native CNN only");
    }
    tch::manual_seed(settings.training.seed as i64);
    let (tr, _) = load_labelled(ctx, &root.join(&settings.data.train_dir), "training")?;
    let (va, _) = load_labelled(ctx, &root.join(&settings.data.validation_dir), "validation")?;
    println!(
        "training on {} images, validating on {} ({:?})",
        tr.len(),
        va.len(),
        ctx.classes
    );
    let mut cnn = NativeCnn::new(&settings.layers(), ctx.input_spec(), ctx.device)?;
    let pb = progress(0, "training");
    let outcome = train::train(&mut cnn, &tr, &va, &settings.training, &pb)?;
    pb.finish_and_clear();
    cnn.save(&weights)?;
    let test_dir = root.join(&settings.data.test_dir);
    let test = if test_dir.is_dir() {
        let (te, _) = load_labelled(ctx, &test_dir, "test")?;
        let model = Model::Native(cnn);
        let (probs, labels) = predict_labelled(&model, &te)?;
        Some(evaluate::evaluate(&labels, &probs, &ctx.classes))
    } else {
        None
    };
    let split_hash = std::fs::read_to_string(root.join("split.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("split_hash").cloned());
    let card = serde_json::json!({
        "model": "tumor-audit native CNN",
        "weights": weights.file_name().map(|n| n.to_string_lossy().to_string()),
        "weights_sha256": model::file_sha256(&weights)?,
        "classes": ctx.classes,
        "input": ctx.input_spec(),
        "layers": settings.layers(),
        "config": settings,
        "data_root": root,
        "split_hash": split_hash,
        "training": outcome,
        "test": test,
        // The program's name rather than its path: the card is shared, machine paths are not.
        "command": std::iter::once("tumor-audit".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" "),
        "tool_version": env!("CARGO_PKG_VERSION"),
    });
    let card_path = train::write_model_card(&weights, &card)?;
    println!(
        "best epoch {} of {}: validation loss {:.4}, accuracy {:.2}%; {:.0} s",
        outcome.best_epoch,
        outcome.epochs_run,
        outcome.best_val_loss,
        100.0 * outcome.best_val_accuracy,
        outcome.seconds
    );
    if let Some(t) = &test {
        print!("{}", t.table("test split"));
    }
    println!(
        "weights: {}\nmodel card: {}",
        weights.display(),
        card_path.display()
    );
    Ok(())
}

/// Softmax probabilities for a labelled set, in batches.
pub fn predict_labelled(
    model: &Model,
    data: &LabelledTensors,
) -> anyhow::Result<(Vec<Vec<f32>>, Vec<usize>)> {
    let probs = predict_probs(model, &data.x)?;
    let labels = Vec::<i64>::try_from(&data.y)?
        .into_iter()
        .map(|l| l as usize)
        .collect();
    Ok((probs, labels))
}

pub fn predict_probs(model: &Model, x: &Tensor) -> anyhow::Result<Vec<Vec<f32>>> {
    let _guard = tch::no_grad_guard();
    let n = x.size()[0];
    let mut out = Vec::with_capacity(n as usize);
    let dev = model.device();
    for start in (0..n).step_by(128) {
        let len = 128.min(n - start);
        let p = model
            .forward(&x.narrow(0, start, len).to_device(dev))
            .softmax(-1, Kind::Float)
            .to_device(Device::Cpu);
        let k = p.size()[1] as usize;
        let flat = Vec::<f32>::try_from(p.flatten(0, -1))?;
        out.extend(flat.chunks(k).map(|c| c.to_vec()));
    }
    Ok(out)
}

fn cmd_evaluate(ctx: &Context, args: &EvaluateArgs) -> anyhow::Result<()> {
    let data = &ctx.settings.data;
    let dir = match &args.folder {
        Some(f) => f.clone(),
        None => {
            let sub = match args.split.as_str() {
                "test" => &data.test_dir,
                "validation" => &data.validation_dir,
                "train" => &data.train_dir,
                other => bail!("--split `{other}` is unknown: allowed test, validation, train"),
            };
            ctx.data_root(&args.data).join(sub)
        }
    };
    let model = ctx.load_model()?;
    let t0 = Instant::now();
    let (set, _) = load_labelled(ctx, &dir, "loading")?;
    let (probs, labels) = predict_labelled(&model, &set)?;
    let ev = evaluate::evaluate(&labels, &probs, &ctx.classes);
    print!(
        "{}",
        ev.table(&format!("{} ({})", dir.display(), model.describe()))
    );
    let out = ctx
        .settings
        .output
        .dir
        .join("evaluation")
        .join(dir.file_name().unwrap_or_default());
    ev.write(&out)?;
    println!(
        "written to {} in {:.1} s",
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Which class an image's explanation targets.
fn explain_target(
    target: &str,
    predicted: usize,
    label: Option<usize>,
    classes: &[String],
    path: &Path,
) -> anyhow::Result<usize> {
    Ok(match target {
        "predicted" => predicted,
        "label" => label.with_context(|| {
            format!(
                "{}: target `label` needs the image in a folder named after its class {classes:?}",
                path.display()
            )
        })?,
        name => classes
            .iter()
            .position(|c| c == name)
            .with_context(|| format!("target class `{name}` is not one of {classes:?}"))?,
    })
}

/// The explain config with `--methods` applied.
fn methods_override(ctx: &Context, methods: &[String]) -> anyhow::Result<ExplainConfig> {
    let mut cfg: ExplainConfig = ctx.settings.explain.clone();
    if !methods.is_empty() {
        cfg.methods = methods
            .iter()
            .map(|m| Method::parse(m))
            .collect::<Result<_, _>>()?;
    }
    Ok(cfg)
}

fn cmd_audit(ctx: &Context, args: &AuditArgs) -> anyhow::Result<u8> {
    use crate::pipeline;
    use crate::store::{RunRecord, Store, Writer};
    let mut cfg = methods_override(ctx, &args.methods)?;
    if args.faithfulness {
        cfg.faithfulness.enabled = true;
    }
    let dir = args
        .data
        .clone()
        .unwrap_or_else(|| ctx.settings.data.root.join(&ctx.settings.data.test_dir));
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
    // Everything that can be wrong with the inputs fails here, before any work.
    let model = ctx.load_model()?;
    let (samples, _) = pipeline::test_samples(&dir, &ctx.classes, args.limit)?;
    if samples.is_empty() {
        bail!("{}: no image files in the class folders", dir.display());
    }
    // A shard keeps its images by content hash; the others are read and hashed, never decoded.
    let samples = match shard {
        Some(s) => {
            let (own, all) = crate::shard::select(samples, s);
            println!("{s}: {} of {all} images (by content hash)", own.len());
            own
        }
        None => samples,
    };
    let model_path = ctx.settings.model.file().to_path_buf();
    let mut snapshot = ctx.settings.clone();
    snapshot.explain = cfg.clone();
    let channels = ctx.settings.donnees.image.channels() as usize;
    let store = Store::open(&db)?;
    let resuming = store.begin_shard_run(
        &RunRecord {
            run_id: run_id.clone(),
            config_yaml: snapshot.to_yaml(),
            model_path: model_path.to_string_lossy().to_string(),
            model_sha256: model::file_sha256(&model_path)?,
            data_root: dir.to_string_lossy().to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            device: format!("{:?}", ctx.device),
            seed: cfg.seed as i64,
            profile: cfg.profile.clone(),
            methods: cfg.methods.iter().map(|m| m.name().to_string()).collect(),
            baseline_value: cfg.integrated_gradients.baseline_value as f64,
            reference_value: cfg.reference(channels) as f64,
            images_total: samples.len() as i64,
        },
        shard,
    )?;
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
    let job = pipeline::AuditJob {
        run_id: run_id.clone(),
        classes: &ctx.classes,
        image_cfg: &ctx.settings.donnees.image,
        explain: &cfg,
        limits: ctx.limits(),
        done,
    };
    let pb = progress(samples.len() as u64, "auditing");
    let result = pipeline::run(&model, &job, samples, &writer.sender(), &pb);
    pb.finish_and_clear();
    let written = writer.finish();
    let stats = match (result, written) {
        (Ok(stats), Ok(_)) => stats,
        (r, w) => {
            let _ = store.finish_run(&run_id, "failed");
            r?;
            w?;
            unreachable!("one of the two is an error")
        }
    };
    store.finish_run(&run_id, "finished")?;
    if !args.no_leakage_check {
        leakage_check(ctx, args, &store, &run_id)?;
    }
    let flagged: i64 = store
        .conn()
        .query_row(
            "SELECT COUNT(DISTINCT image_id) FROM v_suspicious WHERE run_id = ?1",
            [&run_id],
            |r| r.get(0),
        )
        .unwrap_or(0);
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "run {run_id}: {} images audited, {} resumed as done, {} failed; {:.0} s ({:.3} images/s, {} decode threads, peak memory {})",
        stats.images,
        stats.skipped_done,
        stats.failed,
        secs,
        stats.images as f64 / secs.max(1e-9),
        rayon::current_num_threads(),
        peak_memory().map(|kb| format!("{:.0} MiB", kb as f64 / 1024.0)).unwrap_or_else(|| "unknown".into())
    );
    if stats.labelled > 0 {
        println!(
            "accuracy {:.2}% ({} / {})",
            100.0 * stats.correct as f64 / stats.labelled as f64,
            stats.correct,
            stats.labelled
        );
    }
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
    if cfg.faithfulness.enabled {
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
            cfg.faithfulness.forward_passes(cfg.methods.len()),
            cfg.faithfulness.steps,
            cfg.methods.len()
        );
        let rows = crate::store::trust::faithfulness_summary(store.conn(), Some(&run_id))
            .context("reading v_faithfulness_summary")?;
        print_faithfulness(&rows, cfg.faithfulness.score.name());
    }
    println!(
        "{flagged} image(s) flagged as suspicious (view v_suspicious); results in {}",
        db.display()
    );
    if stats.failed > 0 {
        println!(
            "{} image(s) failed: see the errors table (exit code 2)",
            stats.failed
        );
        return Ok(2);
    }
    Ok(0)
}

/// The near-duplicate check of the run's images against the training folder (see [`crate::leakage`]);
/// near-duplicate = within the split's Hamming distance (split.json), 2 by default.
fn leakage_check(
    ctx: &Context,
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

/// `tumor-audit sanity`: the cascading model-randomisation check of a run's methods.
fn cmd_sanity(cli: &Cli, args: &SanityArgs) -> anyhow::Result<()> {
    use crate::store::trust::{
        OtherClassRecord, SanityCheckRecord, SanityImage, SanityStageRecord,
    };
    use crate::store::{RunRecord, Store};
    use crate::trust::sanity;
    use rusqlite::OptionalExtension;
    if args.images == 0 {
        bail!("--images must be at least 1");
    }
    if !(args.threshold.is_finite() && (0.0..=1.0).contains(&args.threshold)) {
        bail!("--threshold must be in [0, 1], found {}", args.threshold);
    }
    let current = Context::new(cli)?;
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| current.settings.output.dir.join("audit.sqlite"));
    let t0 = Instant::now();
    let store = Store::open(&db)?;
    let stored: Option<(String, String, String, String)> = store
        .conn()
        .query_row(
            "SELECT config_yaml, model_path, model_sha256, data_root FROM runs WHERE run_id = ?1",
            [&args.run],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .with_context(|| format!("database {}", db.display()))?;
    // The run's own config, model and test set when it exists; the current ones for a new run.
    let (ctx, dir) = match &stored {
        Some((yaml, model_path, sha, data_root)) => {
            let settings = Settings::from_yaml(yaml, &[])
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
            let classes = resolve_classes(&settings)?;
            let ctx = Context {
                settings,
                device: current.device,
                classes,
            };
            let dir = args
                .data
                .clone()
                .unwrap_or_else(|| PathBuf::from(data_root));
            (ctx, dir)
        }
        None => {
            let dir = args.data.clone().unwrap_or_else(|| {
                current
                    .settings
                    .data
                    .root
                    .join(&current.settings.data.test_dir)
            });
            (current, dir)
        }
    };
    if let Some(ts) = &ctx.settings.model.torchscript {
        bail!(
            "the model-randomisation check re-initialises the layers of the native CNN; {} is a TorchScript              module, whose layers' order along the forward pass and initialisers are unknown: not supported",
            ts.display()
        );
    }
    let mut cfg = ctx.settings.explain.clone();
    let methods: Vec<Method> = if args.methods.is_empty() {
        let mut m = cfg.methods.clone();
        if !m.contains(&Method::Gradient) {
            m.push(Method::Gradient);
        }
        m
    } else {
        args.methods
            .iter()
            .map(|m| Method::parse(m))
            .collect::<Result<_, _>>()?
    };
    cfg.methods = methods.clone();
    let model = ctx.load_model()?;
    // The sample: the first N images of the test set by image id.
    let (samples, _) = crate::pipeline::test_samples(&dir, &ctx.classes, None)?;
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
    for (id, s) in ids {
        if picked.len() == args.images {
            break;
        }
        match dataset::read_image(&s.path, ctx.limits()) {
            Ok(d) => picked.push((
                id,
                s,
                preprocess::prepare(&d.image, &ctx.settings.donnees.image),
            )),
            Err(reason) => eprintln!("skipped {}: {reason}", s.path.display()),
        }
    }
    if picked.is_empty() {
        bail!("{}: no usable test image", dir.display());
    }
    let xs: Vec<Tensor> = picked
        .iter()
        .map(|(_, _, p)| stack_inputs(&[p]).to_device(model.device()))
        .collect();
    let mut targets = Vec::new();
    for ((_, s, _), x) in picked.iter().zip(&xs) {
        let probs = predict_probs(&model, x)?.remove(0);
        let t = explain_target(
            &cfg.target,
            evaluate::argmax(&probs),
            s.label,
            &ctx.classes,
            &s.path,
        )?;
        targets.push(t as i64);
    }
    let inputs: Vec<ImageInput> = picked
        .iter()
        .zip(&xs)
        .zip(&targets)
        .map(|(((id, _, p), x), &target)| ImageInput {
            id,
            x,
            grey: &p.grey,
            target,
            segmentation: Default::default(),
        })
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
    let pb = progress((layers.len() + 1) as u64, "stages");
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
    if stored.is_none() {
        let channels = ctx.settings.donnees.image.channels() as usize;
        let mut snapshot = ctx.settings.clone();
        snapshot.explain = cfg.clone();
        let model_path = ctx.settings.model.file().to_path_buf();
        store.begin_run(&RunRecord {
            run_id: args.run.clone(),
            config_yaml: snapshot.to_yaml(),
            model_path: model_path.to_string_lossy().to_string(),
            model_sha256: model::file_sha256(&model_path)?,
            data_root: dir.to_string_lossy().to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            device: format!("{:?}", ctx.device),
            seed: cfg.seed as i64,
            profile: cfg.profile.clone(),
            methods: methods.iter().map(|m| m.name().to_string()).collect(),
            baseline_value: cfg.integrated_gradients.baseline_value as f64,
            reference_value: cfg.reference(channels) as f64,
            images_total: 0,
        })?;
        store.finish_run(&args.run, "finished")?;
    }
    let images: Vec<SanityImage> = picked
        .iter()
        .map(|(id, s, _)| SanityImage {
            image_id: id.clone(),
            path: s.path.to_string_lossy().to_string(),
            label: s.label.map(|l| ctx.classes[l].clone()),
        })
        .collect();
    let stages: Vec<SanityStageRecord> = result
        .stages
        .iter()
        .map(|r| SanityStageRecord {
            image_id: picked[r.image].0.clone(),
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
            image_id: picked[r.image].0.clone(),
            method: r.method.name().to_string(),
            target: ctx.classes[targets[r.image] as usize].clone(),
            other: ctx.classes[r.other as usize].clone(),
            spearman_abs: r.similarity.spearman_abs,
            spearman_signed: r.similarity.spearman_signed,
            empty: r.empty,
        })
        .collect();
    let seconds = t0.elapsed().as_secs_f64();
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
    print_sanity(store.conn(), &args.run)?;
    println!(
        "{seconds:.0} s; results in {} (sanity_stages, v_sanity_curve, v_sanity_verdict)",
        db.display()
    );
    Ok(())
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
    let (shard, source) = arg.resolve(env)?;
    tracing::info!("{shard}, from {source}");
    Ok(Some(shard))
}

/// `merge`: shard databases into one run; exit 3 when shards are missing or unfinished (unless
/// --allow-missing), 2 when images failed, else 0.
fn cmd_merge(args: &MergeArgs) -> anyhow::Result<u8> {
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
        eprintln!("the merged run is incomplete (status 'interrupted'): exit code 3 (--allow-missing to accept)");
        return Ok(3);
    }
    Ok(if report.images_failed > 0 { 2 } else { 0 })
}

/// The stored sanity check of a run as tables (the `query trust` ones): per method the verdict and the
/// randomisation curve, then the other-class check.
pub fn print_sanity(conn: &rusqlite::Connection, run_id: &str) -> anyhow::Result<()> {
    use rusqlite::OptionalExtension as _;
    use std::io::Write as _;

    use crate::query::{trust, Format};
    let threshold: Option<f64> = conn
        .query_row(
            "SELECT threshold FROM sanity_checks WHERE run_id = ?1",
            [run_id],
            |r| r.get(0),
        )
        .optional()?;
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

fn cmd_bench(ctx: &Context, args: &BenchArgs) -> anyhow::Result<()> {
    let cfg = methods_override(ctx, &args.methods)?;
    let model = ctx.load_model()?;
    let samples: Vec<dataset::Sample> = if args.inputs.is_empty() {
        let ds = Dataset::scan(
            &ctx.settings.data.root.join(&ctx.settings.data.test_dir),
            &ctx.classes,
        )?;
        // Round robin over classes so that both classes are timed.
        let mut by_class: Vec<Vec<dataset::Sample>> = vec![Vec::new(); ctx.classes.len()];
        ds.samples
            .into_iter()
            .for_each(|s| by_class[s.label.unwrap_or(0)].push(s));
        (0..args.images)
            .filter_map(|i| {
                by_class[i % by_class.len()]
                    .get(i / by_class.len())
                    .cloned()
            })
            .collect()
    } else {
        Dataset::from_paths(&args.inputs)?.samples
    };
    let (ok, _) = prepare_samples(
        &samples,
        &ctx.settings.donnees.image,
        ctx.limits(),
        "decoding",
    );
    if ok.is_empty() {
        bail!("no usable image to benchmark");
    }
    let e = &cfg;
    println!(
        "profile {}: IG {} steps, SmoothGrad {} samples, LIME {} samples, Kernel SHAP {} samples, batch {}; {} image(s) x {} repeat(s); {} libtorch threads; {}",
        e.profile,
        e.integrated_gradients.steps.unwrap_or(0),
        e.smoothgrad.samples.unwrap_or(0),
        e.lime.samples.unwrap_or(0),
        e.kernel_shap.samples.unwrap_or(0),
        e.batch_size,
        ok.len(),
        args.repeats,
        tch::get_num_threads(),
        model.describe()
    );
    let run_one = |method: Method, i: usize| -> anyhow::Result<f64> {
        let (_, id, prep) = &ok[i];
        let x = stack_inputs(&[prep]).to_device(model.device());
        let probs = predict_probs(&model, &x)?.remove(0);
        let input = ImageInput {
            id,
            x: &x,
            grey: &prep.grey,
            target: evaluate::argmax(&probs) as i64,
            segmentation: Default::default(),
        };
        let t0 = Instant::now();
        attribution::explain(&model, &cfg, method, &input)?;
        Ok(t0.elapsed().as_secs_f64())
    };
    // Warm-up: one image through every method (allocator, oneDNN kernel selection).
    for &m in &cfg.methods {
        run_one(m, 0)?;
    }
    let peak = crate::bench::measure_peak(&model, cfg.batch_size as i64);
    let fwd = model.native().map(crate::bench::forward_flops);
    println!(
        "measured here: matmul 2048^3 {:.1} GFLOP/s (bf16: {}); the model's forward alone at batch {} {:.1} GFLOP/s; one forward {}",
        peak.matmul_gflops,
        if peak.matmul_bf16_gflops.is_nan() {
            "not measured, no hardware bfloat16 on this CPU".to_string()
        } else {
            format!("{:.1}", peak.matmul_bf16_gflops)
        },
        cfg.batch_size,
        peak.model_forward_gflops,
        fwd.map_or("n/a (TorchScript)".into(), |f| format!("{:.3} GFLOP", f / 1e9))
    );
    println!(
        "{:<22} {:>9} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8}",
        "method",
        "median s",
        "min s",
        "max s",
        "images/s",
        "GFLOP/img",
        "GFLOP/s",
        "%matmul",
        "%model"
    );
    let mut total_median = 0.0;
    let mut total_flops = 0.0;
    for &m in &cfg.methods {
        let mut t = Vec::new();
        for i in 0..ok.len() {
            for _ in 0..args.repeats {
                t.push(run_one(m, i)?);
            }
        }
        let med = median(&t).unwrap_or(0.0);
        total_median += med;
        let (lo, hi) = t
            .iter()
            .fold((f64::INFINITY, 0f64), |(a, b), &v| (a.min(v), b.max(v)));
        let flops = fwd.map(|f| crate::bench::method_flops(&cfg, m, f));
        total_flops += flops.unwrap_or(f64::NAN);
        println!(
            "{}",
            bench_row(m.title(), med, Some((lo, hi)), flops, &peak)
        );
    }
    println!(
        "{}",
        bench_row(
            "all methods",
            total_median,
            None,
            fwd.map(|_| total_flops),
            &peak
        )
    );
    if args.equivalence {
        bench_equivalence(&model, &cfg, &ok)?;
    }
    if let (true, Some(m)) = (args.layers, model.native()) {
        let b = cfg.perturbation_batch_size as i64;
        println!("forward time per layer, batch {b} (ms): f32 as loaded, f32 channels-last, bf16 channels-last");
        for (name, t) in crate::bench::layer_profile(m, b, 5)? {
            println!(
                "{name:<22} {:>9.2} {:>9.2} {:>9.2}",
                1e3 * t[0],
                1e3 * t[1],
                1e3 * t[2]
            );
        }
    }
    if args.audit {
        bench_audit(
            ctx,
            &cfg,
            &samples,
            args.repeats,
            &peak,
            fwd.map(|_| total_flops),
        )?;
    }
    Ok(())
}

fn bench_row(
    name: &str,
    secs: f64,
    spread: Option<(f64, f64)>,
    flops: Option<f64>,
    peak: &crate::bench::Peak,
) -> String {
    let (lo, hi) = spread.map_or((String::new(), String::new()), |(a, b)| {
        (format!("{a:.3}"), format!("{b:.3}"))
    });
    let per_s = flops.map(|f| f / secs.max(1e-12) / 1e9);
    let fmt = |v: Option<f64>, prec: usize| v.map_or("-".into(), |v| format!("{v:.prec$}"));
    format!(
        "{:<22} {:>9.3} {:>8} {:>8} {:>9.3} {:>9} {:>8} {:>8} {:>8}",
        name,
        secs,
        lo,
        hi,
        1.0 / secs.max(1e-12),
        fmt(flops.map(|f| f / 1e9), 1),
        fmt(per_s, 1),
        fmt(per_s.map(|g| 100.0 * g / peak.matmul_gflops), 0),
        fmt(per_s.map(|g| 100.0 * g / peak.model_forward_gflops), 0),
    )
}

/// The stochastic methods with their configured levers (bf16 forwards, batch size) against the plain
/// f32 path: Spearman correlation of the optimised map with the reference map of the same seed, next to
/// that of two reference maps of different seeds (how much the reference itself varies).
fn bench_equivalence(
    model: &Model,
    cfg: &ExplainConfig,
    images: &[(dataset::Sample, String, Prepared)],
) -> anyhow::Result<()> {
    let mut reference = cfg.clone();
    reference.perturbation_precision = "f32".into();
    reference.perturbation_batch_size = 64;
    let mut other_seed = reference.clone();
    other_seed.seed = cfg.seed.wrapping_add(1);
    let methods: Vec<Method> = cfg
        .methods
        .iter()
        .copied()
        .filter(|m| m.is_stochastic())
        .collect();
    println!(
        "equivalence on {} image(s): Spearman(optimised, reference, same seed) vs Spearman(reference, reference with another seed); optimised = {} forwards, batch {}",
        images.len(),
        if cfg.bf16_forwards(model) { "bf16" } else { "f32" },
        cfg.perturbation_batch_size
    );
    println!(
        "{:<22} {:>30} {:>30}",
        "method", "opt vs ref: min / median / max", "ref vs ref': min / median / max"
    );
    for m in methods {
        let (mut opt, mut refs) = (Vec::new(), Vec::new());
        for (_, id, prep) in images {
            let x = stack_inputs(&[prep]).to_device(model.device());
            let probs = predict_probs(model, &x)?.remove(0);
            let input = ImageInput {
                id,
                x: &x,
                grey: &prep.grey,
                target: evaluate::argmax(&probs) as i64,
                segmentation: Default::default(),
            };
            let a = attribution::explain(model, &reference, m, &input)?.map;
            let b = attribution::explain(model, &other_seed, m, &input)?.map;
            let o = attribution::explain(model, cfg, m, &input)?.map;
            opt.push(crate::metrics::spearman(&a, &o) as f64);
            refs.push(crate::metrics::spearman(&a, &b) as f64);
        }
        let q = |v: &[f64]| {
            format!(
                "{:.3} / {:.3} / {:.3}",
                v.iter().cloned().fold(f64::INFINITY, f64::min),
                median(v).unwrap_or(f64::NAN),
                v.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            )
        };
        println!("{:<22} {:>30} {:>30}", m.title(), q(&opt), q(&refs));
    }
    Ok(())
}

/// End to end: the whole audit (decode, brain mask, every method, metrics, SQLite writes) on the
/// benchmark images into a throw-away database, `repeats` times; median seconds per image.
fn bench_audit(
    ctx: &Context,
    cfg: &ExplainConfig,
    samples: &[dataset::Sample],
    repeats: usize,
    peak: &crate::bench::Peak,
    flops: Option<f64>,
) -> anyhow::Result<()> {
    use crate::pipeline;
    use crate::store::{RunRecord, Store, Writer};
    let model = ctx.load_model()?;
    let dir = std::env::temp_dir().join(format!("tumor-audit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut per_image = Vec::new();
    for r in 0..repeats.max(1) {
        let db = dir.join(format!("bench-{r}.sqlite"));
        let _ = std::fs::remove_file(&db);
        let store = Store::open(&db)?;
        let run_id = format!("bench-{r}");
        store.begin_run(&RunRecord {
            run_id: run_id.clone(),
            config_yaml: ctx.settings.to_yaml(),
            model_path: String::new(),
            model_sha256: String::new(),
            data_root: String::new(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            device: format!("{:?}", ctx.device),
            seed: cfg.seed as i64,
            profile: cfg.profile.clone(),
            methods: cfg.methods.iter().map(|m| m.name().to_string()).collect(),
            baseline_value: cfg.integrated_gradients.baseline_value as f64,
            reference_value: cfg.reference(ctx.settings.donnees.image.channels() as usize) as f64,
            images_total: samples.len() as i64,
        })?;
        let t0 = Instant::now();
        let writer = Writer::spawn(&db, 16, 64)?;
        let job = pipeline::AuditJob {
            run_id: run_id.clone(),
            classes: &ctx.classes,
            image_cfg: &ctx.settings.donnees.image,
            explain: cfg,
            limits: ctx.limits(),
            done: Default::default(),
        };
        let stats = pipeline::run(
            &model,
            &job,
            samples.to_vec(),
            &writer.sender(),
            &indicatif::ProgressBar::hidden(),
        )?;
        writer.finish()?;
        store.finish_run(&run_id, "finished")?;
        let secs = t0.elapsed().as_secs_f64();
        per_image.push(secs / stats.images.max(1) as f64);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let med = median(&per_image).unwrap_or(0.0);
    let (lo, hi) = per_image
        .iter()
        .fold((f64::INFINITY, 0f64), |(a, b), &v| (a.min(v), b.max(v)));
    println!(
        "{}",
        bench_row("full audit (end to end)", med, Some((lo, hi)), flops, peak)
    );
    Ok(())
}

fn cmd_explain(ctx: &Context, args: &ExplainArgs) -> anyhow::Result<()> {
    let mut cfg = methods_override(ctx, &args.methods)?;
    if let Some(t) = &args.target {
        cfg.target = t.clone();
    }
    let model = ctx.load_model()?;
    let ds = Dataset::from_paths(&args.inputs)?;
    let (ok, skipped) = prepare_samples(
        &ds.samples,
        &ctx.settings.donnees.image,
        ctx.limits(),
        "decoding",
    );
    for s in &skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    if ok.is_empty() {
        bail!("no usable image among the inputs");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| ctx.settings.output.dir.join("explain"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let size = ctx.settings.donnees.image.size;
    let params = display::DisplayParams::default();
    let mut rows: Vec<Vec<image::RgbImage>> = vec![Vec::new(); cfg.methods.len() + 1];
    let mut col_labels = Vec::new();
    let mut montage_no = 0;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cfg.methods.len()];
    let pb = progress((ok.len() * cfg.methods.len()) as u64, "explaining");
    for (i, (sample, id, prep)) in ok.iter().enumerate() {
        let label = sample.label.or_else(|| {
            let parent = sample.path.parent()?.file_name()?.to_str()?;
            ctx.classes.iter().position(|c| c == parent)
        });
        let x = stack_inputs(&[prep]).to_device(model.device());
        let probs = predict_probs(&model, &x)?.remove(0);
        let predicted = evaluate::argmax(&probs);
        let target = explain_target(&cfg.target, predicted, label, &ctx.classes, &sample.path)?;
        let stem = format!(
            "{}-{}",
            sample
                .path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy(),
            &id[..8]
        );
        let upscale = (256 / size).max(1);
        rows[0].push(display::upscale(
            &display::grey_to_rgb(&prep.grey, size, size, 1),
            upscale,
        ));
        // The true class when the folder names one of the model's classes, else the folder name.
        let folder = sample
            .path
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().to_string());
        col_labels.push(format!(
            "{} p:{} {:.2}",
            label
                .map(|l| ctx.classes[l].clone())
                .or(folder)
                .unwrap_or_else(|| "?".into()),
            ctx.classes[predicted],
            probs[predicted]
        ));
        // The brain mask the audit measures against, as a debug picture.
        let (mask, _) = crate::brain_mask::brain_mask(&prep.grey, prep.size, prep.size);
        let mask_png = out.join(format!("{stem}__brain_mask.png"));
        mask.to_debug_image(&prep.grey)
            .save(&mask_png)
            .with_context(|| format!("cannot write {}", mask_png.display()))?;
        let input = ImageInput {
            id,
            x: &x,
            grey: &prep.grey,
            target: target as i64,
            segmentation: Default::default(),
        };
        for (m, &method) in cfg.methods.iter().enumerate() {
            match attribution::explain(&model, &cfg, method, &input) {
                Ok(a) => {
                    times[m].push(a.seconds);
                    let png = display::overlay(&prep.grey, 1, &a.map, size, size, &params);
                    let file = out.join(format!("{stem}__{}.png", method.name()));
                    png.save(&file)
                        .with_context(|| format!("cannot write {}", file.display()))?;
                    Tensor::from_slice(&a.map)
                        .view([size as i64, size as i64])
                        .write_npy(out.join(format!("{stem}__{}.npy", method.name())))?;
                    rows[m + 1].push(display::upscale(&png, upscale));
                    if let Some(e) = a.completeness_error {
                        tracing::debug!(
                            "{}: IG completeness error {:.4}%",
                            sample.path.display(),
                            100.0 * e
                        );
                    }
                }
                Err(e) => {
                    pb.println(format!(
                        "{}: {}: {e}",
                        sample.path.display(),
                        method.title()
                    ));
                    rows[m + 1].push(image::RgbImage::from_pixel(
                        size * upscale,
                        size * upscale,
                        image::Rgb([255, 255, 255]),
                    ));
                }
            }
            pb.inc(1);
        }
        if rows[0].len() == args.per_montage.max(1) || i + 1 == ok.len() {
            let mut labels = vec!["original".to_string()];
            labels.extend(cfg.methods.iter().map(|m| m.title().to_string()));
            let img = display::montage(&rows, &labels, &col_labels);
            let name = if montage_no == 0 {
                "montage.png".to_string()
            } else {
                format!("montage-{montage_no}.png")
            };
            img.save(out.join(&name))
                .with_context(|| format!("cannot write {name}"))?;
            montage_no += 1;
            rows.iter_mut().for_each(|r| r.clear());
            col_labels.clear();
        }
    }
    pb.finish_and_clear();
    println!("{} image(s) explained into {}", ok.len(), out.display());
    println!("{:<22} {:>12}", "method", "s/image");
    for (m, method) in cfg.methods.iter().enumerate() {
        if let Some(med) = median(&times[m]) {
            println!("{:<22} {:>12.3}", method.title(), med);
        }
    }
    Ok(())
}

/// Peak resident memory of this process in KiB (Linux `VmHWM`), if the system reports it.
pub fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}
