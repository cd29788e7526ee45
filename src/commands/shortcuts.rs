//! `tumor-audit shortcuts`: the shortcut check of a stored run (see [`crate::plan::Plan::check_shortcuts`])
//! with the config stored with the run and its model file (a run merged from shards gets the verdict
//! its audit would have given), and its verdict printed.
use std::path::Path;

use anyhow::Context as _;

use super::Plan;
use crate::store::Store;

/// `tumor-audit shortcuts`: the check of a stored run, with the config stored with the run and its
/// model file (refused when that file changed since the run).
pub fn run(ctx: &Plan, args: &crate::cli::ShortcutsArgs) -> anyhow::Result<()> {
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
    let ctx = &run_plan(ctx, &store, &args.run)?;
    let crate::plan::ModelPlan { model, explain, .. } = ctx.model_plan(&[])?;
    let result = ctx.check_shortcuts(
        &model,
        &store,
        &args.run,
        args.reference.as_deref(),
        &explain,
    )?;
    super::print_verdict(&result, None);
    super::print_localisation(store.conn(), &args.run)?;
    Ok(())
}

/// The run's own plan: the config stored with it (the audit's, --set included; the current --set is
/// not applied) on the current device, after checking that its model file is unchanged.
fn run_plan(current: &Plan, store: &Store, run_id: &str) -> anyhow::Result<Plan> {
    let db = store.path().display();
    let stored = crate::query::runs::stored_run(store.conn(), run_id)
        .with_context(|| format!("database {db}: reading run {run_id}"))?
        .with_context(|| format!("database {db}: there is no run {run_id}"))?;
    let settings = crate::config::Settings::from_yaml(&stored.config_yaml, &[])
        .with_context(|| format!("run {run_id}: its stored config no longer loads"))?;
    let found = crate::model::file_sha256(Path::new(&stored.model_path))?;
    if found != stored.model_sha256 {
        anyhow::bail!(
            "run {run_id}: the model file {} has changed since the run (sha256 {} recorded, {} now)",
            stored.model_path,
            &stored.model_sha256[..12.min(stored.model_sha256.len())],
            &found[..12.min(found.len())]
        );
    }
    Plan::from_settings(settings, current.device)
}
