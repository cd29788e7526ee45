//! Command-line interface (clap derive); the doc comments are the `--help` text.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::attribution::{Method, Target};

/// The exit-code table of `--help` (the same as [`crate::exit::Exit::TABLE`]; a test keeps them equal).
pub const EXIT_CODES_HELP: &str = "Exit codes:
  0  done
  1  stopped on an error (database, model, file system, lock)
  2  the command line or the configuration is wrong; nothing was done
  3  finished, but some images failed (see the run's errors table)
  4  diff: a --fail-on rule was crossed
  5  merge: shards missing or unfinished; the merged run is 'interrupted'";

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
#[command(name = "tumor-audit", version, about, long_about, max_term_width = 110, after_long_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Configuration file (the notebook's `données:` keys plus English sections).
    #[arg(long, short = 'c', global = true, default_value = "config.yml")]
    pub config: PathBuf,

    /// Override a config key, e.g. `--set données.image.size=64` or `--set explain.profile=seed`
    /// (repeatable; the value is YAML).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,

    /// Where tensors run: auto (CUDA when present), cpu, cuda.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub device: crate::model::DeviceChoice,

    /// libtorch intra-op threads, 1 to 1024 (default: all cores).
    #[arg(long, global = true, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<i32>,

    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// When stderr is not a terminal (cron, Slurm, Kubernetes, a pipe): seconds between two progress
    /// lines (done / total, rate, time left) in the log.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub log_every: u64,

    /// How long to wait, retrying, for a database locked by another process before giving up.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 60)]
    pub lock_timeout: u64,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the command line. `--set` may be given before and after the subcommand: every
    /// occurrence counts, in command-line order (clap alone keeps only the last level's values).
    pub fn parse_args() -> Cli {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let mut cli = <Cli as Parser>::parse_from(&args);
        cli.overrides = collect_sets(&args);
        cli
    }
}

/// Every `--set VALUE` / `--set=VALUE` before a `--` separator, in order.
pub fn collect_sets(args: &[std::ffi::OsString]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        } else if a == "--set" {
            if let Some(v) = it.next() {
                out.push(v);
            }
        } else if let Some(v) = a.strip_prefix("--set=") {
            out.push(v.to_string());
        }
    }
    out
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
    /// unless --force). Exit code 3 when the run finished but some images failed.
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
    /// The shortcut check of a stored run again (what `audit` runs at its end): regions the class's
    /// mean maps share, their causal test on the model, trust-weighted calibrated flags, the verdict.
    /// For a run merged from shards (the Slurm and Kubernetes merge steps run it), or against a
    /// --reference run chosen later. Uses the config stored with the run (the audit's, --set included)
    /// and its model file, refused when that file changed since the run.
    ///
    /// Example: tumor-audit shortcuts --run nightly-2026-11-25 --reference nightly-2026-11-24
    Shortcuts(ShortcutsArgs),
    /// Benchmark the attribution methods on real test images: seconds per image per method (median
    /// and spread over repeats) and in total. A benchmark, not a test: run it on a quiet machine.
    ///
    /// Example: tumor-audit bench --set explain.profile=seed --images 4 --repeats 3
    Bench(BenchArgs),
    /// Read an audit database: runs, suspicious images, one image, or raw read-only SQL; as an aligned
    /// table, CSV or JSON.
    ///
    /// Example: tumor-audit query suspicious --min-methods 3
    Query(QueryArgs),
    /// Write a run's results as CSV files (per image x method metrics, predictions, agreement pairs,
    /// bias summary, errors, faithfulness AUCs and mean curves, sanity-check curve) and the mean
    /// attribution maps per class x method as PNGs.
    ///
    /// Example: tumor-audit export --run nightly-2026-11-25 --out out/nightly-2026-11-25
    Export(ExportArgs),
    /// Compare two runs (B - A) on the images both audited: accuracy, per-class precision / recall /
    /// F1, and per method background / border mass, share flagged and agreement. Exit code 4 when a
    /// --fail-on rule is crossed.
    ///
    /// Example: tumor-audit diff nightly-2026-11-24 nightly-2026-11-25 --fail-on "accuracy down 1"
    Diff(DiffArgs),
    /// Merge the databases of a sharded audit (`audit --shard K/N`, one file per shard) into one run of
    /// the target database. Shards of different runs, configs, models or tool versions are refused.
    /// Merging again replaces rather than duplicates. Missing or unfinished shards are listed and leave
    /// the merged run 'interrupted'; exit code 5 then (0 with --allow-missing), 3 when images failed.
    ///
    /// Example: tumor-audit merge --into out/audit.sqlite out/audit.shard-*-of-4.sqlite
    Merge(MergeArgs),
    /// Write a run as static HTML pages: run header, evaluation with the confusion matrix, bias
    /// summary, mean maps, mass histograms, method agreement, trust checks (faithfulness curves,
    /// sanity check), leakage, errors and a gallery of correct and incorrect predictions (each image
    /// with every method's overlay, most suspicious first). The output folder gets report.html,
    /// gallery-N.html and report-assets/; it opens from the file system: no network, no scripts.
    ///
    /// Example: tumor-audit report --run nightly-2026-11-25 (then open out/nightly-2026-11-25/report.html)
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// SQLite database (default: <output.dir>/audit.sqlite).
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub format: crate::query::Format,
    #[command(subcommand)]
    pub what: QueryWhat,
}

#[derive(Debug, Subcommand)]
pub enum QueryWhat {
    /// Every run, newest first: status, duration, profile, model, images done / failed, accuracy, the
    /// verdict and its flagged images (the run's one flagged count), the raw per-map rules' count.
    Runs,
    /// The raw per-map rules (not the verdict: `query shortcuts` has the run's flagged images): images
    /// of a run, most suspicious first. An image is suspicious when a method puts its attribution
    /// mostly outside the brain or in the border band, when it is wrong with high confidence, or when
    /// the methods disagree; score = methods misplaced + wrong + disagree.
    Suspicious(SuspiciousArgs),
    /// Everything stored for one image of a run: prediction, leakage check, per-method metrics,
    /// agreement pairs, errors.
    Image {
        /// Image id (or a unique prefix of it), or the end of its path (e.g. a file name).
        image: String,
        /// Run (default: the latest; a unique prefix is enough).
        #[arg(long)]
        run: Option<String>,
    },
    /// Per class x method: background / border mass (mean and median), share flagged and agreement,
    /// correct vs incorrect side by side (--long: one row per class x correctness x method).
    Bias {
        /// Run (default: the latest; a unique prefix is enough).
        #[arg(long)]
        run: Option<String>,
        /// Tidy long format instead of the side-by-side table.
        #[arg(long)]
        long: bool,
        /// Only the localisation figures (images with a ground-truth outline, `data.masks`): share of
        /// the maps' mass on the tumour, pointing game, IoU with the outline. The terminal view shows
        /// them after the bias table whenever the run has them.
        #[arg(long)]
        localisation: bool,
    },
    /// Trust checks of a run: faithfulness per method (deletion / insertion AUC against the random
    /// pixel order, correct vs incorrect, by class) from `audit --faithfulness`, and the
    /// model-randomisation sanity curve with each method's verdict from `tumor-audit sanity`.
    ///
    /// Example: tumor-audit query trust --run nightly-2026-11-25
    Trust {
        /// Run (default: the latest; a unique prefix is enough).
        #[arg(long)]
        run: Option<String>,
    },
    /// The run's verdict (from the shortcut check `audit` runs at its end): shortcut confirmed at a
    /// region for a class, no shortcut and how many images trusted methods flag for review, or
    /// inconclusive (no trusted method, or regions with too few images to decide) and why; the
    /// candidate regions with their occlusion / paste flip rates, each method's trust and calibrated
    /// thresholds, the flagged images, the stochastic maps' reproducibility.
    ///
    /// Example: tumor-audit query shortcuts --run nightly-2026-11-25
    Shortcuts {
        /// Run (default: the latest; a unique prefix is enough).
        #[arg(long)]
        run: Option<String>,
    },
    /// One SQL statement on a read-only connection; statements that would write are refused.
    /// Views: v_image_method, v_suspicious, v_suspicious_images, v_bias_summary, v_run_summary,
    /// v_method_agreement, v_image_agreement, v_faithfulness_image, v_faithfulness_summary,
    /// v_faithfulness_by_class, v_sanity_curve, v_sanity_verdict, v_sanity_other_class.
    Sql {
        /// The statement, e.g. "SELECT method, avg(mass_background) FROM v_image_method GROUP BY method".
        statement: String,
    },
}

#[derive(Debug, Args)]
pub struct SuspiciousArgs {
    /// Run (default: the latest; a unique prefix is enough).
    #[arg(long)]
    pub run: Option<String>,
    /// A method's map is misplaced when its background mass (share of |map| outside the brain) is
    /// above this.
    #[arg(long, default_value_t = 0.5)]
    pub background: f64,
    /// ...or when its border-band mass is above this (the band, 10% of each side, is 36% of the
    /// image: an evenly spread map has 0.36 there).
    #[arg(long, default_value_t = 0.5)]
    pub border: f64,
    /// A wrong prediction with a confidence above this is suspicious.
    #[arg(long, default_value_t = 0.9)]
    pub confidence: f64,
    /// The methods disagree when the mean Spearman correlation between their maps is below this.
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    pub agreement: f64,
    /// The location rule needs at least this many misplaced methods on the image.
    #[arg(long, default_value_t = 1)]
    pub min_methods: i64,
    /// Only this method's maps count for the location rule.
    #[arg(long)]
    pub method: Option<String>,
    /// At most this many images (0 = all).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

/// The database, the run and the output folder of `export` and `report`.
#[derive(Debug, Args)]
pub struct RunOutput {
    /// SQLite database (default: <output.dir>/audit.sqlite).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Run (default: the latest; a unique prefix is enough).
    #[arg(long)]
    pub run: Option<String>,
    /// Output folder (default: <output.dir>/<run>).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub target: RunOutput,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub target: RunOutput,
    /// Gallery images per column (correct / incorrect) and page; report.html shows the first page.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub per_page: u64,
    /// Size of one gallery thumbnail (input or overlay), in pixels.
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u32).range(32..=512))]
    pub thumb: u32,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The reference run (e.g. last night's).
    pub run_a: String,
    /// The run compared with it (e.g. tonight's).
    pub run_b: String,
    /// Database of run A (default: <output.dir>/audit.sqlite).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Database of run B (default: the same as --db).
    #[arg(long)]
    pub db_b: Option<PathBuf>,
    /// Exit with code 4 when B - A crosses this rule: `METRIC[@SCOPE] up|down THRESHOLD` with METRIC
    /// one of accuracy, precision, recall, f1 (percentage points; SCOPE a class) or mass_background,
    /// mass_border, share_flagged, agreement (SCOPE a method); SCOPE `any` or left out = any.
    /// Repeatable. E.g. "accuracy down 1", "mass_background@any up 0.05".
    #[arg(long = "fail-on", value_name = "RULE")]
    pub fail_on: Vec<crate::query::diff::Rule>,
    /// Output format of the comparison table.
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::query::Format,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The database to merge into (created if missing; may hold other runs).
    #[arg(long, value_name = "DB")]
    pub into: PathBuf,
    /// The shard databases (any order; a shard merged earlier need not be given again).
    #[arg(required = true, value_name = "SHARD_DB")]
    pub shards: Vec<PathBuf>,
    /// The run to merge (default: the one sharded run in the shard files).
    #[arg(long)]
    pub run: Option<String>,
    /// Exit 0 even when shards are missing or unfinished (the merged run stays 'interrupted').
    #[arg(long)]
    pub allow_missing: bool,
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
    /// Only the first N images (classes taken in turn), for a quick look; N is at least 1 (leave the
    /// option out for every image).
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub limit: Option<usize>,
    /// Recompute images a previous attempt of this run already finished (their rows are replaced).
    #[arg(long)]
    pub force: bool,
    /// Methods, comma separated (default: explain.methods).
    #[arg(long, value_delimiter = ',', value_parser = parse_method)]
    pub methods: Vec<Method>,
    /// Training folder for the near-duplicate leakage check (default: data.root/data.train_dir;
    /// skipped with a note when it does not exist).
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Skip the near-duplicate leakage check.
    #[arg(long)]
    pub no_leakage_check: bool,
    /// Audit only shard K of N (numbered from 0): the images whose content id (sha256 of the file),
    /// first 64 bits, is K modulo N; N processes with K = 0..N cover the set once. `auto`: K and N from
    /// a Slurm job array (SLURM_ARRAY_TASK_ID, _MIN, _STEP, _COUNT; any start index); `auto/N`: K from
    /// a Kubernetes Indexed Job (JOB_COMPLETION_INDEX). The default database becomes
    /// <output.dir>/audit.shard-K-of-N.sqlite; combine the shards with `merge`. --limit applies first.
    #[arg(long, value_name = "K/N|auto|auto/N")]
    pub shard: Option<crate::shard::ShardArg>,
    /// Also compute deletion/insertion curves per image x method and for a random pixel order
    /// (sets explain.faithfulness.enabled; (K + 1) x 2 x (methods + 1) extra forward passes per image,
    /// K = explain.faithfulness.steps).
    #[arg(long)]
    pub faithfulness: bool,
    /// Skip the shortcut check at the end (discovery of regions the class's maps share, their causal
    /// test on the model, trust-weighted calibrated flags and the run's verdict; `query shortcuts`).
    #[arg(long)]
    pub no_shortcuts: bool,
    /// An accepted earlier run in the same database (e.g. last night's): its distributions calibrate
    /// the flag thresholds and its mean maps join the shortcut baseline (default: the run's own).
    #[arg(long, value_name = "RUN")]
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShortcutsArgs {
    /// The run to check.
    #[arg(long)]
    pub run: String,
    /// SQLite database (default: <output.dir>/audit.sqlite).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// An accepted earlier run in the same database: its distributions calibrate the flag thresholds
    /// and its mean maps join the shortcut baseline.
    #[arg(long, value_name = "RUN")]
    pub reference: Option<String>,
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
    #[arg(long, value_delimiter = ',', value_parser = parse_method)]
    pub methods: Vec<Method>,
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
    /// Also time the whole audit end to end (decode, mask, methods, metrics, SQLite writes) on the
    /// same images, `--repeats` times, into a throw-away database.
    #[arg(long)]
    pub audit: bool,
    /// Compare the stochastic methods' optimised maps (bf16 forwards, large batches) with the plain
    /// f32 path on the same seed, next to two plain runs with different seeds.
    #[arg(long)]
    pub equivalence: bool,
    /// Also print the forward time of each layer (f32, f32 channels-last, bf16 channels-last) at the
    /// perturbation batch size: the profile behind the performance choices.
    #[arg(long)]
    pub layers: bool,
    /// Methods, comma separated (default: explain.methods).
    #[arg(long, value_delimiter = ',', value_parser = parse_method)]
    pub methods: Vec<Method>,
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
    #[arg(long, value_enum, default_value = "test")]
    pub split: Split,
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
    #[arg(long, value_delimiter = ',', value_parser = parse_method)]
    pub methods: Vec<Method>,
    /// Output folder (default: <output.dir>/explain).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Explained class: predicted, label, or a class name (default: explain.target).
    #[arg(long)]
    pub target: Option<Target>,
    /// Images per montage.
    #[arg(long, default_value_t = 8)]
    pub per_montage: usize,
}

/// `evaluate --split`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Split {
    Test,
    Validation,
    Train,
}

/// The most `--threads` accepted: libtorch starts one thread, with its own stack, per intra-op thread
/// (100000 exhausted the memory and aborted the process), and threads beyond the cores only slow it.
pub const MAX_THREADS: i32 = 1024;

/// `--threads`: a whole number from 1 to [`MAX_THREADS`].
fn parse_threads(s: &str) -> Result<i32, String> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_THREADS as i64).contains(&n) => Ok(n as i32),
        _ => Err(format!(
            "expected a whole number of threads from 1 to {MAX_THREADS} (this machine has {cpus} logical \
             CPUs; more threads than CPUs only slow libtorch down)"
        )),
    }
}

/// `audit --limit`: a whole number of images, at least 1.
fn parse_limit(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("expected at least 1 image; leave --limit out to audit every image".into()),
        Err(_) => Err("expected a whole number of images, at least 1".into()),
    }
}

/// A method name as the config spells it (`guided_backprop`, `kernel_shap`, ...).
fn parse_method(s: &str) -> Result<Method, String> {
    Method::parse(s).map_err(|e| e.to_string())
}
