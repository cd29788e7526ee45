//! The command layer: one file per subcommand, each wiring the library's steps together for one job
//! and printing its results. Nothing in the library imports from here.
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};

use crate::cli::{Cli, Command, RunOutput};
use crate::config::Settings;
use crate::dataset::{self, Limits, Skipped};
use crate::exit::{Exit, UsageError};
use crate::query::{Format, Table};
use crate::store::shortcuts::ShortcutCheck;
use crate::store::Store;

pub use crate::plan::{ClassSource, ModelPlan, Plan};

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
        Command::Train(args) => train::run(&Plan::new(&cli)?, args),
        Command::Evaluate(args) => evaluate::run(&Plan::new(&cli)?, args),
        Command::Explain(args) => return explain::run(&Plan::new(&cli)?, args),
        Command::Bench(args) => bench::run(&Plan::new(&cli)?, args),
        Command::Audit(args) => return audit::run(&Plan::new(&cli)?, args),
        Command::Query(args) => query::run(&read_settings(&cli, &args.db)?, args),
        Command::Export(args) => export::run(&read_settings(&cli, &args.target.db)?, args),
        Command::Diff(args) => return diff::run(&read_settings(&cli, &args.db)?, args),
        Command::Merge(args) => return merge::run(args),
        Command::Sanity(args) => sanity::run(&cli, args),
        Command::Shortcuts(args) => shortcuts::run(&Plan::new(&cli)?, args),
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
/// wrong (the configuration, a name such as an unknown `--run`, an option; nothing was done), else
/// [`Exit::Fatal`].
pub fn exit_code(e: &anyhow::Error) -> Exit {
    if e.downcast_ref::<UsageError>().is_some() {
        return Exit::Usage;
    }
    let usage_query = |c: &(dyn std::error::Error + 'static)| {
        c.downcast_ref::<crate::query::QueryError>()
            .is_some_and(|q| q.is_usage())
    };
    if e.chain().any(usage_query) {
        return Exit::Usage;
    }
    match e.downcast_ref::<crate::Error>() {
        Some(crate::Error::Config { .. } | crate::Error::ConfigValue { .. }) => Exit::Usage,
        _ => Exit::Fatal,
    }
}

/// The verdict and what stands behind it, for the terminal.
pub fn print_verdict(result: &ShortcutCheck, audit_seconds: Option<f64>) {
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
            r.occlusion.flips,
            r.occlusion.images,
            r.paste.flips,
            r.paste.images,
            r.verdict.replace('_', " ")
        );
    }
    if let Some(a) = &result.acquisition {
        crate::trust::shortcut::acquisition::lines(a, audit_seconds)
            .iter()
            .for_each(|l| println!("{l}"));
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

/// The run's localisation line (images with a ground-truth outline), when it has any.
pub fn print_localisation(conn: &rusqlite::Connection, run: &str) -> anyhow::Result<()> {
    if let Some(l) = crate::query::localisation::run_line(conn, run)? {
        println!("localisation: {}", l.line());
    }
    Ok(())
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

/// A labelled class-folder set read behind a progress bar, with the skipped files logged.
fn load_labelled(
    ctx: &Plan,
    dir: &std::path::Path,
    what: &str,
) -> anyhow::Result<crate::preprocess::LabelledSet> {
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
    Ok(set)
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
