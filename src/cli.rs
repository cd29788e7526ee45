//! Command-line interface (clap derive); the doc comments are the `--help` text.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Audit what a CNN brain-tumor MRI classifier looks at: predictions and six attribution methods
/// (Guided Backprop, Integrated Gradients, SmoothGrad, Grad-CAM, LIME, Kernel SHAP) for whole test sets.
///
/// Examples (the bundled default, after `make audit` has set everything up):
///
/// tumor-audit evaluate
///
/// tumor-audit audit --limit 16
///
/// tumor-audit explain data/kaggle-sample/Testing/glioma/Te-gl_0010.jpg
#[derive(Debug, Parser)]
#[command(name = "tumor-audit", version, about, long_about, max_term_width = 110)]
pub struct Cli {
    /// Configuration file (the notebook's `données:` keys plus English sections).
    #[arg(long, short = 'c', global = true, default_value = "config.yml")]
    pub config: PathBuf,

    /// Override a config key, e.g. `--set données.image.size=64` or `--set explain.profile=seed`
    /// (repeatable; the value is YAML).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,

    /// Where tensors run: auto (CUDA when present), cpu, cuda.
    #[arg(long, global = true, default_value = "auto")]
    pub device: String,

    /// libtorch intra-op threads (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<i32>,

    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Split a class-folder dataset into Training/Validation/Testing, keeping near-duplicate groups
    /// (average hash within a Hamming distance) on one side.
    ///
    /// Example: tumor-audit split --source data/raw/br35h --dest data/br35h
    Split(SplitArgs),
    /// Train the configured CNN on the training split (early stopping on validation), write the
    /// weights and a model card.
    ///
    /// Example: tumor-audit train --weights models/cnn128-br35h.safetensors
    Train(TrainArgs),
    /// Evaluate the model on a split: accuracy, per-class precision/recall/F1, confusion matrix,
    /// ROC AUC (binary); table on the terminal, CSV/JSON under the output folder.
    ///
    /// Example: tumor-audit evaluate --split test
    Evaluate(EvaluateArgs),
    /// Explain image files: per method a PNG overlay (the notebook's display) and the raw map (.npy),
    /// plus one montage (originals, then one row per method).
    ///
    /// Example: tumor-audit explain data/kaggle-sample/Testing --set explain.profile=seed
    Explain(ExplainArgs),
    /// Audit a whole test set: predictions, every configured attribution, per-image metrics (mass
    /// inside the brain / background / border band, agreement between methods, ...) stored in SQLite.
    /// Rerunning with the same --run resumes where a killed run stopped (a finished run is a no-op
    /// unless --force). Exit code 2 when the run finished but some images failed.
    ///
    /// Example: tumor-audit audit --run nightly-2026-11-25 --db out/audit.sqlite
    Audit(AuditArgs),
    /// Model-randomisation sanity check (Adebayo et al. 2018) of a run's methods: re-initialise the
    /// native CNN's layers cascading from the output to the input and, at each stage, compare every
    /// method's maps on a fixed sample (the first --images test images by image id) with the trained
    /// model's maps (Spearman rank correlation of the absolute and of the signed maps). A method whose
    /// maps stay similar once the whole network is random fails. Also compares each map with the map of
    /// the other class(es). Uses the run's stored config and model (`--set` is ignored then), or
    /// the current config for a run that does not exist yet; results go into the run's database
    /// (sanity_* tables, v_sanity_* views), replacing an earlier check of the run.
    ///
    /// Example: tumor-audit sanity --run nightly-2026-11-25 --db out/audit.sqlite --images 8
    Sanity(SanityArgs),
    /// Benchmark the attribution methods on real test images: seconds per image per method (median
    /// and spread over repeats) and in total. A benchmark, not a test: run it on a quiet machine.
    ///
    /// Example: tumor-audit bench --set explain.profile=seed --images 4 --repeats 3
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Test set: <dir>/<class>/<images> (default: data.root/data.test_dir).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run name (default: nightly-<UTC date>). The same name resumes an interrupted run.
    #[arg(long)]
    pub run: Option<String>,
    /// SQLite database (default: <output.dir>/audit.sqlite).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Only the first N images (classes taken in turn), for a quick look.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Recompute images a previous attempt of this run already finished (their rows are replaced).
    #[arg(long)]
    pub force: bool,
    /// Methods, comma separated (default: explain.methods).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Also compute deletion/insertion curves per image x method and for a random pixel order
    /// (sets explain.faithfulness.enabled; (K + 1) x 2 x (methods + 1) extra forward passes per image,
    /// K = explain.faithfulness.steps).
    #[arg(long)]
    pub faithfulness: bool,
}

#[derive(Debug, Args)]
pub struct SanityArgs {
    /// The run to check (its config, model and test set are used when it exists).
    #[arg(long)]
    pub run: String,
    /// SQLite database (default: <output.dir>/audit.sqlite).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Sample size: the first N test images ordered by image id (sha256 of the file).
    #[arg(long, default_value_t = 8)]
    pub images: usize,
    /// Methods, comma separated (default: the run's methods plus `gradient`, the plain-gradient
    /// reference of the published check).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// A method fails when the mean |Spearman of the absolute maps| at the last stage is above this.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// Seed of the re-initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Test set (default: the run's data root; for a new run data.root/data.test_dir).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Images (default: the first of each class of the test split, round robin).
    #[arg(long)]
    pub inputs: Vec<PathBuf>,
    /// How many images from the test split when no inputs are given.
    #[arg(long, default_value_t = 4)]
    pub images: usize,
    /// Timed repeats per image and method (after one warm-up image).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Methods, comma separated (default: explain.methods).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// Source dataset: <source>/<class>/<images>.
    #[arg(long)]
    pub source: PathBuf,
    /// Destination root; gets Training/, Validation/, Testing/ and split.json.
    #[arg(long)]
    pub dest: PathBuf,
    /// Fractions for train, validation, test.
    #[arg(long, value_delimiter = ',', default_values_t = [0.7, 0.15, 0.15])]
    pub fractions: Vec<f64>,
    /// Images whose 256-bit average hashes differ in at most this many bits are near-duplicates.
    #[arg(long, default_value_t = 2)]
    pub max_distance: u32,
    /// Seed of the group order.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Ignore near-duplicate groups (a plain random split that leaks; for comparison only).
    #[arg(long)]
    pub leaky: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset root (default: data.root from the config).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where to write the weights (default: model.weights from the config).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Maximum epochs (default: training.epochs).
    #[arg(long)]
    pub epochs: Option<usize>,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Which split: test, validation or train.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Dataset root (default: data.root from the config).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A folder with <class>/<images> to evaluate instead of a split of data.root.
    #[arg(long)]
    pub folder: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Image files or folders (an image's parent folder named like a class gives its label).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Methods, comma separated (default: explain.methods from the config, the notebook's six).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Output folder (default: <output.dir>/explain).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Explained class: predicted, label, or a class name (default: explain.target).
    #[arg(long)]
    pub target: Option<String>,
    /// Images per montage.
    #[arg(long, default_value_t = 8)]
    pub per_montage: usize,
}
