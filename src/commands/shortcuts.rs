//! `tumor-audit shortcuts`: the shortcut check of a stored run (see [`crate::plan::Plan::check_shortcuts`])
//! with the current config and model, and its verdict printed.
use super::Plan;
use crate::store::Store;

/// `tumor-audit shortcuts`: the check of a stored run, with the current config and model.
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
    let crate::plan::ModelPlan { model, explain, .. } = ctx.model_plan(&[])?;
    let result = ctx.check_shortcuts(
        &model,
        &store,
        &args.run,
        args.reference.as_deref(),
        &explain,
    )?;
    super::print_verdict(&result, None);
    Ok(())
}
