//! `tumor-audit evaluate`: accuracy, per-class table and confusion matrix of the model on a split.
use std::time::Instant;

use super::{load_labelled, Plan};
use crate::cli::{EvaluateArgs, Split};
use crate::evaluate;
use crate::model::Classifier;

pub fn run(ctx: &Plan, args: &EvaluateArgs) -> anyhow::Result<()> {
    let data = &ctx.settings.data;
    let dir = match &args.folder {
        Some(f) => f.clone(),
        None => {
            let sub = match args.split {
                Split::Test => &data.test_dir,
                Split::Validation => &data.validation_dir,
                Split::Train => &data.train_dir,
            };
            ctx.data_root(&args.data).join(sub)
        }
    };
    let model = ctx.load_model()?;
    let t0 = Instant::now();
    let set = load_labelled(ctx, &dir, "loading")?;
    let probs = model.predict_probs(&set.x)?;
    let ev = evaluate::evaluate(&set.labels()?, &probs, &ctx.classes);
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
