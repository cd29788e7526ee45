//! The audit plan, resolved once from the configuration and the command line before any work:
//! settings, device, classes (and where they came from), the explained-class rule, then the model,
//! the explain configuration fitted to its memory, the run record, and the run's closing steps (the
//! shortcut check). Commands build a [`Plan`], call the library with it, and print.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use tch::Device;

use crate::attribution::{ExplainConfig, Method, TargetRule};
use crate::cli::Cli;
use crate::config::Settings;
use crate::dataset::{self, Limits};
use crate::model::{self, Classifier, InputSpec, Model, NativeCnn};
use crate::store::shortcuts::{read_inputs, RunImage, ShortcutCheck};
use crate::store::{RunRecord, Store};
use crate::trust::shortcut::{self, Reference, ShortcutConfig};

/// What every model command starts from, resolved once: validated settings, the device, the class
/// list (and where it came from) and the explained-class rule (a target class that does not exist
/// fails here, before any work). [`Plan::model_plan`] adds the model and its fitted explain config.
pub struct Plan {
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

impl Plan {
    pub fn new(cli: &Cli) -> anyhow::Result<Plan> {
        let settings = Settings::load(&cli.config, &cli.overrides)?;
        Plan::from_settings(settings, model::choose_device(cli.device)?)
    }

    pub fn from_settings(settings: Settings, device: Device) -> anyhow::Result<Plan> {
        let (classes, class_source) = resolve_classes(&settings)?;
        let target = settings.explain.target.resolve(&classes)?;
        Ok(Plan {
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
    /// leaves (see [`Plan::fit_batches`]).
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
            return Ok(Model::new(m));
        }
        let model = if let Some(ts) = &self.settings.model.torchscript {
            let batch = ex.batch_size.max(ex.perturbation_batch_size) as i64;
            Model::load_torchscript_on(ts, spec, self.device, batch)?
        } else {
            let mut cnn = NativeCnn::new(&self.settings.layers(), spec, self.device)?;
            cnn.load(&self.settings.model.weights)?;
            // Inference only: no weight gradients are ever needed, only input gradients.
            cnn.vs.freeze();
            Model::new(cnn)
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

    /// The pipeline's job for run `run_id` under this plan: the classes, preprocessing, target rule
    /// and decoding limits, with `explain`, the faithfulness curves when given, and the images
    /// already `done` (skipped).
    pub fn audit_job<'a>(
        &'a self,
        run_id: &str,
        explain: &'a ExplainConfig,
        faithfulness: Option<&'a crate::trust::FaithfulnessConfig>,
        outlines: &'a crate::outline::Outlines,
        done: std::collections::HashSet<String>,
    ) -> crate::pipeline::AuditJob<'a> {
        crate::pipeline::AuditJob {
            run_id: run_id.to_string(),
            classes: &self.classes,
            image_cfg: &self.settings.donnees.image,
            explain,
            target: self.target,
            faithfulness,
            limits: self.limits(),
            done,
            outlines,
        }
    }
}

/// The model under audit with the explain configuration of a run: the configured one (stored with
/// the run) and the one with its batch sizes fitted to the memory budget (what runs).
pub struct ModelPlan {
    pub model: Model,
    pub configured: ExplainConfig,
    pub explain: ExplainConfig,
}

impl Plan {
    /// Loads and checks the model, applies `methods` (empty = the configured ones) and fits the
    /// batch sizes: everything a model command needs, failing before any work.
    pub fn model_plan(&self, methods: &[Method]) -> anyhow::Result<ModelPlan> {
        let configured = self.explain_config(methods)?;
        let model = self.load_model()?;
        let explain = self.fit_batches(&configured, &model);
        Ok(ModelPlan {
            model,
            configured,
            explain,
        })
    }

    /// Runs and stores the shortcut check of `run_id` (see [`crate::trust::shortcut`]): reads the
    /// run's maps and metrics, decodes the images the causal tests need (a file that moved or changed
    /// since the audit is left out: its id is its content), runs the check on `model` and stores the
    /// verdict. `reference` = an accepted run whose thresholds and mean maps are the baseline.
    pub fn check_shortcuts(
        &self,
        model: &dyn Classifier,
        store: &Store,
        run_id: &str,
        reference: Option<&str>,
        explain: &ExplainConfig,
    ) -> anyhow::Result<ShortcutCheck> {
        let db = store.path().display();
        let inputs = read_inputs(store.conn(), run_id).with_context(|| {
            format!("database {db}: reading run {run_id} for the shortcut check")
        })?;
        let reference_inputs = match reference {
            Some(r) => {
                let exists = crate::query::runs::run_exists(store.conn(), r)
                    .with_context(|| format!("database {db}: looking up reference run {r}"))?;
                if !exists {
                    bail!("--reference {r}: no such run in {db}");
                }
                Some(
                    read_inputs(store.conn(), r)
                        .with_context(|| format!("database {db}: reading reference run {r}"))?,
                )
            }
            None => None,
        };
        let image_cfg = &self.settings.donnees.image;
        let limits = self.limits();
        let decode = |img: &RunImage| {
            let d = crate::dataset::read_image(Path::new(&img.path), limits).ok()?;
            (d.id == img.image_id).then(|| crate::preprocess::prepare(&d.image, image_cfg))
        };
        let mut result = shortcut::check_run(
            model,
            run_id,
            &inputs,
            reference
                .zip(reference_inputs.as_ref())
                .map(|(run_id, inputs)| Reference { run_id, inputs }),
            &self.classes,
            explain,
            &ShortcutConfig::default(),
            &decode,
        )?;
        shortcut::acquisition::run(
            &mut result,
            model,
            store.conn(),
            &inputs,
            reference,
            &self.classes,
            image_cfg,
            limits,
            explain.seed,
        )?;
        store.write_shortcut_check(&result)?;
        Ok(result)
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
