//! The command layer: one file per subcommand, each wiring the library's steps together for one job
//! and printing its results. Nothing in the library imports from here.
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use tch::Device;

use crate::attribution::{ExplainConfig, Method, TargetRule};
use crate::cli::{Cli, Command, RunOutput};
use crate::config::Settings;
use crate::dataset::{self, Limits, Skipped};
use crate::exit::{Exit, UsageError};
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
mod progress;
mod query;
mod report;
mod sanity;
mod shortcuts;
mod split;
mod train;

pub use progress::Progress;

/// Runs a subcommand; the value is how it ended (see [`Exit`]: partial failures, a crossed gate and
/// an incomplete merge each have their own code). An error is mapped to a code by [`exit_code`].
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    if let Some(n) = cli.threads {
        if n < 1 {
            return Err(UsageError(format!("--threads must be at least 1, found {n}")).into());
        }
        tch::set_num_threads(n);
    }
    progress::set_log_every(cli.log_every);
    crate::store::set_lock_timeout(std::time::Duration::from_secs(cli.lock_timeout));
    match &cli.command {
        Command::Split(args) => split::run(args),
        Command::Train(args) => train::run(&Context::new(&cli)?, args),
        Command::Evaluate(args) => evaluate::run(&Context::new(&cli)?, args),
        Command::Explain(args) => return explain::run(&Context::new(&cli)?, args),
        Command::Bench(args) => bench::run(&Context::new(&cli)?, args),
        Command::Audit(args) => return audit::run(&Context::new(&cli)?, args),
        Command::Query(args) => query::run(&read_settings(&cli, &args.db)?, args),
        Command::Export(args) => export::run(&read_settings(&cli, &args.target.db)?, args),
        Command::Diff(args) => return diff::run(&read_settings(&cli, &args.db)?, args),
        Command::Merge(args) => return merge::run(args),
        Command::Sanity(args) => sanity::run(&cli, args),
        Command::Shortcuts(args) => shortcuts::run(&Context::new(&cli)?, args),
        Command::Report(args) => report::run(&read_settings(&cli, &args.target.db)?, args),
    }?;
    Ok(Exit::Ok)
}

/// The settings of the read-only commands (`query`, `export`, `diff`, `report`). They need only the
/// database: without the default `config.yml` (e.g. run from another folder, or on a machine that only
/// received the database) and with `--db`, the config stored with the database's latest run is used,
/// with the output folder beside the database.
fn read_settings(cli: &Cli, db: &Option<PathBuf>) -> anyhow::Result<Settings> {
    let default_config = cli.config.as_os_str() == "config.yml";
    let Some(db) = db
        .as_ref()
        .filter(|_| default_config && !cli.config.exists())
    else {
        return Ok(Settings::load(&cli.config, &cli.overrides)?);
    };
    let store = Store::open_read_only(db)?;
    let conn = store.conn();
    let stored = match crate::query::resolve_run(conn, None) {
        Ok(run) => crate::query::runs::stored_run(conn, &run)
            .with_context(|| format!("reading run {run} of {}", db.display()))?
            .map(|r| (run, r.config_yaml)),
        Err(crate::query::QueryError::NoRuns) => None,
        Err(e) => return Err(e.into()),
    };
    let Some((run, yaml)) = stored else {
        bail!(
            "{} holds no run, and there is no {} to take the settings from",
            db.display(),
            cli.config.display()
        );
    };
    let mut settings = Settings::from_yaml(&yaml, &cli.overrides)
        .with_context(|| format!("the config stored with run {run} in {}", db.display()))?;
    settings.output.dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    tracing::info!(
        "no {} here: using the config stored with run {run} in {}",
        cli.config.display(),
        db.display()
    );
    Ok(settings)
}

/// The exit code of a command that stopped on `e`: [`Exit::Usage`] when what the user asked for is
/// wrong (the configuration, a name, an option; nothing was done), else [`Exit::Fatal`].
pub fn exit_code(e: &anyhow::Error) -> Exit {
    if e.downcast_ref::<UsageError>().is_some() {
        return Exit::Usage;
    }
    match e.downcast_ref::<crate::Error>() {
        Some(crate::Error::Config { .. } | crate::Error::ConfigValue { .. }) => Exit::Usage,
        _ => Exit::Fatal,
    }
}

/// What every model command starts from: validated settings, the device, the class list (and where
/// it came from) and the explained-class rule (a target class that does not exist fails here, before
/// any work).
pub struct Context {
    pub settings: Settings,
    pub device: Device,
    pub classes: Vec<String>,
    pub class_source: ClassSource,
    pub target: TargetRule,
}

/// Where the class names came from (see [`resolve_classes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassSource {
    /// `data.classes`.
    Config,
    /// The ONNX model's `metadata_props`, under this key.
    ModelMetadata(String),
    /// The sorted class folders of the training split.
    TrainingFolders,
}

impl std::fmt::Display for ClassSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClassSource::Config => write!(f, "data.classes"),
            ClassSource::ModelMetadata(key) => write!(f, "the model's metadata `{key}`"),
            ClassSource::TrainingFolders => write!(f, "the training folders"),
        }
    }
}

impl Context {
    pub fn new(cli: &Cli) -> anyhow::Result<Context> {
        let settings = Settings::load(&cli.config, &cli.overrides)?;
        Context::from_settings(settings, model::choose_device(cli.device)?)
    }

    pub fn from_settings(settings: Settings, device: Device) -> anyhow::Result<Context> {
        let (classes, class_source) = resolve_classes(&settings)?;
        let target = settings.explain.target.resolve(&classes)?;
        Ok(Context {
            settings,
            device,
            classes,
            class_source,
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

    /// The model file under audit: the ONNX or TorchScript file when set, else the native weights.
    pub fn model_path(&self) -> PathBuf {
        self.settings.model.file().to_path_buf()
    }

    /// The model under audit: ONNX when `model.onnx` is set, TorchScript when `model.torchscript`
    /// is, else the native CNN with its weights. Shape mismatches fail here, before any work.
    /// The ONNX and TorchScript load checks run a batch of the largest batch size the memory budget
    /// leaves (see [`Context::fit_batches`]).
    pub fn load_model(&self) -> anyhow::Result<Model> {
        let spec = self.input_spec();
        let ex = &self.settings.explain;
        if let Some(path) = &self.settings.model.onnx {
            let mut m = model::onnx::OnnxModel::open(
                path,
                spec,
                &self.settings.model.onnx_layout,
                self.device,
            )?;
            let plan = self.batch_plan(ex, Some(m.activation_memory()));
            m.check_batch(plan.batch_size.max(plan.perturbation_batch_size) as i64)?;
            tracing::info!("{}", m.describe());
            return Ok(Model::Onnx(Box::new(m)));
        }
        let model = if let Some(ts) = &self.settings.model.torchscript {
            let batch = ex.batch_size.max(ex.perturbation_batch_size) as i64;
            Model::load_torchscript_on(ts, spec, self.device, batch)?
        } else {
            let mut cnn = NativeCnn::new(&self.settings.layers(), spec, self.device)?;
            cnn.load(&self.settings.model.weights)?;
            // Inference only: no weight gradients are ever needed, only input gradients.
            cnn.vs.freeze();
            Model::Native(cnn)
        };
        model::check_finite_output(&model, &self.model_path())?;
        Ok(model)
    }

    /// The explain config with `--methods` applied (and checked again: no duplicates), with every
    /// count checked against this machine's memory before any work.
    pub fn explain_config(&self, methods: &[Method]) -> anyhow::Result<ExplainConfig> {
        let mut cfg = self.settings.explain.clone();
        if !methods.is_empty() {
            cfg.methods = methods.to_vec();
            cfg.validate()?;
        }
        cfg.check_memory(self.settings.donnees.image.size as usize, memory_budget())?;
        Ok(cfg)
    }

    /// The batch sizes of `cfg` lowered to what `explain.memory_budget` holds for a model with
    /// these activations (`None`: unknown, the configured sizes).
    fn batch_plan(
        &self,
        cfg: &ExplainConfig,
        memory: Option<model::memory::ActivationMemory>,
    ) -> model::memory::BatchPlan {
        model::memory::plan_batches(
            cfg.batch_size,
            cfg.perturbation_batch_size,
            memory,
            cfg.memory_budget.bytes(self.device),
        )
    }

    /// `cfg` with its batch sizes fitted to the memory budget for `model`, logged. The run record
    /// keeps the configured sizes: batch sizes change the time and memory a run takes, never its maps.
    pub fn fit_batches(&self, cfg: &ExplainConfig, model: &Model) -> ExplainConfig {
        let plan = self.batch_plan(cfg, model.activation_memory());
        tracing::info!("{plan}");
        let mut fitted = cfg.clone();
        fitted.batch_size = plan.batch_size;
        fitted.perturbation_batch_size = plan.perturbation_batch_size;
        fitted
    }

    /// The run record of a run of `cfg` with `model` over `images_total` images of `data_root` (the
    /// model file is hashed; `model_path` None = a throw-away run that names no model).
    #[allow(clippy::too_many_arguments)]
    pub fn run_record(
        &self,
        run_id: &str,
        cfg: &ExplainConfig,
        faithfulness: &crate::trust::FaithfulnessConfig,
        model: &Model,
        model_path: Option<&std::path::Path>,
        data_root: &std::path::Path,
        images_total: usize,
    ) -> anyhow::Result<RunRecord> {
        let mut snapshot = self.settings.clone();
        snapshot.explain = cfg.clone();
        snapshot.faithfulness = faithfulness.clone();
        // Class names read from the model are written into the snapshot, so that the run's
        // readers (query, report, sanity) see them without the model.
        if let ClassSource::ModelMetadata(_) = self.class_source {
            snapshot.data.classes = self.classes.clone();
        }
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
            baseline_value: cfg.ig_baseline().value(0) as f64,
            reference_value: cfg.reference_values(channels).value(0) as f64,
            images_total: images_total as i64,
            model_description: format!(
                "{}; class names from {}: {}",
                model.describe(),
                self.class_source,
                self.classes.join(", ")
            ),
            explains: model.explains(),
        })
    }
}

/// The memory one image's buffers may take: half of the machine's (`MemTotal`), 8 GiB when unknown.
fn memory_budget() -> u64 {
    model::memory::machine_memory().map_or(8 << 30, |m| m / 2)
}

/// The class names in the model's output order and where they came from: `data.classes`, else the
/// class names in an ONNX model's metadata (`class_names` or `classes`), else the sorted class
/// folders of the training split. When both the config and the model name the classes, a different
/// count is an error, the same names in another order too (one of the two lists is wrong, and every
/// label and prediction would be mislabelled); other names are the user's to choose (`data.classes`
/// also names the class folders), with a warning.
pub fn resolve_classes(settings: &Settings) -> anyhow::Result<(Vec<String>, ClassSource)> {
    let from_model = match &settings.model.onnx {
        // A missing file is reported by the model's load, with the other load errors.
        Some(path) if path.is_file() => model::onnx::metadata_classes(path)?,
        _ => None,
    };
    let config = &settings.data.classes;
    match (config.is_empty(), from_model) {
        (false, Some(m)) => {
            let show = |v: &[String]| format!("[{}]", v.join(", "));
            let key = format!("the model's metadata `{}`", m.key);
            if m.names.len() != config.len() {
                return Err(crate::Error::key(
                    "data.classes",
                    format!(
                        "{} names {} classes, {key} names {}: {}; the model has one output per class in its metadata",
                        show(config),
                        config.len(),
                        m.names.len(),
                        show(&m.names)
                    ),
                )
                .into());
            }
            if m.names != *config {
                let mut a = m.names.clone();
                let mut b = config.clone();
                a.sort();
                b.sort();
                if a == b {
                    return Err(crate::Error::key(
                        "data.classes",
                        format!(
                            "{} lists the classes of {key} in another order ({}): data.classes must follow the model's output order, or every prediction is mislabelled",
                            show(config),
                            show(&m.names)
                        ),
                    )
                    .into());
                }
                tracing::warn!(
                    "data.classes {} differs from {key} {}: using data.classes (output i is named data.classes[i])",
                    show(config),
                    show(&m.names)
                );
            }
            return Ok((config.clone(), ClassSource::Config));
        }
        (false, None) => return Ok((config.clone(), ClassSource::Config)),
        (true, Some(m)) => {
            tracing::info!(
                "class names from the model's metadata `{}`: {}",
                m.key,
                m.names.join(", ")
            );
            return Ok((m.names, ClassSource::ModelMetadata(m.key)));
        }
        (true, None) => {}
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
    Ok((found, ClassSource::TrainingFolders))
}

/// A progress bar on stderr, or periodic log lines when stderr is not a terminal (see [`Progress`]).
fn progress(len: u64, what: &str, unit: &str) -> Progress {
    Progress::new(len, what, unit)
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
    let pb = progress(samples.len() as u64, what, "images");
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
    let pb = progress(0, what, "images");
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
        tracing::info!("skipped {}: {}", s.path.display(), s.reason);
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
    let dir = target
        .out
        .clone()
        .unwrap_or_else(|| settings.output.dir.join(run_folder(&run)));
    Ok((store, run, dir))
}

/// The folder of a run's `export` / `report` output: the run name made safe for a file name, with a
/// short hash of the name when that changed it, so that runs `a%b` and `a_b` never share a folder.
pub fn run_folder(run: &str) -> String {
    let safe = crate::query::bias::file_safe(run);
    if safe == run {
        return safe;
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(run.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{safe}-{hash}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_folders_of_names_that_sanitise_alike_differ() {
        assert_eq!(
            super::run_folder("nightly-2026-11-25"),
            "nightly-2026-11-25"
        );
        assert_eq!(super::run_folder("a_b"), "a_b");
        let odd = super::run_folder("a%b");
        assert!(
            odd.starts_with("a_b-") && odd.len() == "a_b-".len() + 8,
            "{odd}"
        );
        assert_ne!(super::run_folder("a%b"), super::run_folder("a&b"));
    }
}
