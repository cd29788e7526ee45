//! The command layer: one file per subcommand, each wiring the library's steps together for one job
//! and printing its results. Nothing in the library imports from here.
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use tch::Device;

use crate::attribution::{ExplainConfig, Method, TargetRule};
use crate::cli::{Cli, Command, RunOutput};
use crate::config::Settings;
use crate::dataset::{self, Limits, Skipped};
use crate::model::{self, InputSpec, Model, NativeCnn};
use crate::query::{Format, Table};
use crate::store::{RunRecord, Store};

mod audit;
mod bench;
mod diff;
mod evaluate;
mod explain;
mod export;
mod merge;
mod query;
mod report;
mod sanity;
mod split;
mod train;

/// Runs a subcommand; the value is the process exit code (0, or 2 when an audit finished but some
/// images failed).
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    if let Some(n) = cli.threads {
        if n < 1 {
            bail!("--threads must be at least 1, found {n}");
        }
        tch::set_num_threads(n);
    }
    let settings = || Settings::load(&cli.config, &cli.overrides);
    match &cli.command {
        Command::Split(args) => split::run(args),
        Command::Train(args) => train::run(&Context::new(&cli)?, args),
        Command::Evaluate(args) => evaluate::run(&Context::new(&cli)?, args),
        Command::Explain(args) => explain::run(&Context::new(&cli)?, args),
        Command::Bench(args) => bench::run(&Context::new(&cli)?, args),
        Command::Audit(args) => return audit::run(&Context::new(&cli)?, args),
        Command::Query(args) => query::run(&settings()?, args),
        Command::Export(args) => export::run(&settings()?, args),
        Command::Diff(args) => return diff::run(&settings()?, args),
        Command::Merge(args) => return merge::run(args),
        Command::Sanity(args) => sanity::run(&cli, args),
        Command::Report(args) => report::run(&settings()?, args),
    }?;
    Ok(0)
}

/// What every model command starts from: validated settings, the device, the class list and the
/// explained-class rule (a target class that does not exist fails here, before any work).
pub struct Context {
    pub settings: Settings,
    pub device: Device,
    pub classes: Vec<String>,
    pub target: TargetRule,
}

impl Context {
    pub fn new(cli: &Cli) -> anyhow::Result<Context> {
        let settings = Settings::load(&cli.config, &cli.overrides)?;
        Context::from_settings(settings, model::choose_device(cli.device)?)
    }

    pub fn from_settings(settings: Settings, device: Device) -> anyhow::Result<Context> {
        let classes = resolve_classes(&settings)?;
        let target = settings.explain.target.resolve(&classes)?;
        Ok(Context {
            settings,
            device,
            classes,
            target,
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

    /// The test folder of the configured data root.
    pub fn test_dir(&self) -> PathBuf {
        self.settings.data.root.join(&self.settings.data.test_dir)
    }

    /// The model file under audit: the TorchScript module when set, else the native weights.
    pub fn model_path(&self) -> PathBuf {
        self.settings
            .model
            .torchscript
            .clone()
            .unwrap_or_else(|| self.settings.model.weights.clone())
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

    /// The explain config with `--methods` applied (and checked again: no duplicates).
    pub fn explain_config(&self, methods: &[Method]) -> anyhow::Result<ExplainConfig> {
        let mut cfg = self.settings.explain.clone();
        if !methods.is_empty() {
            cfg.methods = methods.to_vec();
            cfg.validate()?;
        }
        Ok(cfg)
    }

    /// The run record of a run of `cfg` over `images_total` images of `data_root` (the model file
    /// is hashed; `model_path` None = a throw-away run that names no model).
    pub fn run_record(
        &self,
        run_id: &str,
        cfg: &ExplainConfig,
        faithfulness: &crate::trust::FaithfulnessConfig,
        model_path: Option<&std::path::Path>,
        data_root: &std::path::Path,
        images_total: usize,
    ) -> anyhow::Result<RunRecord> {
        let mut snapshot = self.settings.clone();
        snapshot.explain = cfg.clone();
        snapshot.faithfulness = faithfulness.clone();
        let channels = self.settings.donnees.image.channels() as usize;
        let (path, sha) = match model_path {
            Some(p) => (p.to_string_lossy().to_string(), model::file_sha256(p)?),
            None => (String::new(), String::new()),
        };
        Ok(RunRecord {
            run_id: run_id.to_string(),
            config_yaml: snapshot.to_yaml(),
            model_path: path,
            model_sha256: sha,
            data_root: data_root.to_string_lossy().to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            device: crate::bench::device_label(self.device),
            seed: cfg.seed as i64,
            profile: cfg.profile.name().to_string(),
            methods: cfg.methods.iter().map(|m| m.name().to_string()).collect(),
            baseline_value: cfg.integrated_gradients.baseline_value as f64,
            reference_value: cfg.reference(channels) as f64,
            images_total: images_total as i64,
        })
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

/// A progress bar on stderr (hidden when stderr is not a terminal).
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

/// Decodes and prepares samples in parallel behind a progress bar.
pub fn prepare_samples(
    samples: &[dataset::Sample],
    cfg: &crate::preprocess::ImageConfig,
    limits: Limits,
    what: &str,
) -> (
    Vec<(dataset::Sample, String, crate::preprocess::Prepared)>,
    Vec<Skipped>,
) {
    let pb = progress(samples.len() as u64, what);
    let out = crate::preprocess::prepare_samples(samples, cfg, limits, &|| pb.inc(1));
    pb.finish_and_clear();
    out
}

/// A labelled class-folder set as tensors behind a progress bar, with the skipped files logged.
fn load_labelled(
    ctx: &Context,
    dir: &std::path::Path,
    what: &str,
) -> anyhow::Result<crate::preprocess::LabelledTensors> {
    let pb = progress(0, what);
    let set = crate::preprocess::labelled_set(
        dir,
        &ctx.classes,
        &ctx.settings.donnees.image,
        ctx.limits(),
        &|| pb.inc(1),
    );
    pb.finish_and_clear();
    let set = set?;
    report_skipped(&set.skipped, &set.not_images);
    Ok(set.tensors)
}

fn report_skipped(skipped: &[Skipped], not_images: &[Skipped]) {
    for s in skipped {
        tracing::warn!("skipped {}: {}", s.path.display(), s.reason);
    }
    for s in not_images {
        tracing::debug!("ignored {}: {}", s.path.display(), s.reason);
    }
}

/// The read-side commands' database, opened read-only; a missing file says how to make one.
pub(crate) fn open_db(settings: &Settings, db: &Option<PathBuf>) -> anyhow::Result<Store> {
    let path = db
        .clone()
        .unwrap_or_else(|| settings.output.dir.join("audit.sqlite"));
    Store::open_read_only(&path).map_err(|e| match e {
        crate::store::StoreError::NotFound { .. } => anyhow::anyhow!(
            "database {} does not exist: run `tumor-audit audit` first, or pass --db",
            path.display()
        ),
        other => other.into(),
    })
}

/// A table to stdout in the chosen format.
fn print_table(table: &Table, format: Format) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    table.write(format, &mut out)?;
    out.flush()?;
    Ok(())
}

/// The store, the resolved run and the output folder of `export` / `report`.
fn run_output(settings: &Settings, target: &RunOutput) -> anyhow::Result<(Store, String, PathBuf)> {
    let store = open_db(settings, &target.db)?;
    let run = crate::query::resolve_run(store.conn(), target.run.as_deref())?;
    let dir = target.out.clone().unwrap_or_else(|| {
        settings
            .output
            .dir
            .join(crate::query::bias::file_safe(&run))
    });
    Ok((store, run, dir))
}
