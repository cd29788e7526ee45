//! The subcommands: each wires the library's steps together for one job.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::attribution::{self, ExplainConfig, ImageInput, Method};
use crate::cli::{
    AuditArgs, BenchArgs, Cli, Command, EvaluateArgs, ExplainArgs, SplitArgs, TrainArgs,
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

    /// The model under audit: TorchScript when `model.torchscript` is set, else the native CNN with
    /// its weights. Shape mismatches fail here, before any work.
    pub fn load_model(&self) -> anyhow::Result<Model> {
        let spec = self.input_spec();
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
    if settings.model.torchscript.is_some() {
        bail!("model.torchscript is set: `train` trains the native CNN only");
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
    let cfg = methods_override(ctx, &args.methods)?;
    let dir = args
        .data
        .clone()
        .unwrap_or_else(|| ctx.settings.data.root.join(&ctx.settings.data.test_dir));
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| ctx.settings.output.dir.join("audit.sqlite"));
    let run_id = args.run.clone().unwrap_or_else(pipeline::default_run_name);
    let t0 = Instant::now();
    // Everything that can be wrong with the inputs fails here, before any work.
    let model = ctx.load_model()?;
    let (samples, _) = pipeline::test_samples(&dir, &ctx.classes, args.limit)?;
    if samples.is_empty() {
        bail!("{}: no image files in the class folders", dir.display());
    }
    let model_path = ctx
        .settings
        .model
        .torchscript
        .clone()
        .unwrap_or_else(|| ctx.settings.model.weights.clone());
    let mut snapshot = ctx.settings.clone();
    snapshot.explain = cfg.clone();
    let channels = ctx.settings.donnees.image.channels() as usize;
    let store = Store::open(&db)?;
    let resuming = store.begin_run(&RunRecord {
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
    })?;
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
        };
        let t0 = Instant::now();
        attribution::explain(&model, &cfg, method, &input)?;
        Ok(t0.elapsed().as_secs_f64())
    };
    // Warm-up: one image through every method (allocator, oneDNN kernel selection).
    for &m in &cfg.methods {
        run_one(m, 0)?;
    }
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>10}",
        "method", "median s", "min s", "max s", "images/s"
    );
    let mut total_median = 0.0;
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
        println!(
            "{:<22} {:>10.3} {:>10.3} {:>10.3} {:>10.2}",
            m.title(),
            med,
            lo,
            hi,
            1.0 / med.max(1e-12)
        );
    }
    println!(
        "{:<22} {:>10.3} {:>10} {:>10} {:>10.3}",
        "all methods",
        total_median,
        "",
        "",
        1.0 / total_median.max(1e-12)
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
