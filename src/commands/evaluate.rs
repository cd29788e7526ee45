//! `tumor-audit evaluate`: accuracy, per-class table, confusion matrix and per-image predictions of
//! the model on a split, written under `<output.dir>/evaluation/<data set>-<split>/`.
use std::time::Instant;

use super::Plan;
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
    let set = super::load_labelled(ctx, &dir, "loading")?;
    let probs = model.predict_probs(&set.tensors.x)?;
    let labels = set.tensors.labels()?;
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
        .join(evaluate::folder_name(&dir));
    let rows: Vec<evaluate::ImagePrediction> = set
        .paths
        .iter()
        .zip(&set.ids)
        .zip(labels.iter().zip(&probs))
        .map(
            |((file, image_id), (&label, probs))| evaluate::ImagePrediction {
                file,
                image_id,
                label,
                probs,
            },
        )
        .collect();
    evaluate::write_predictions(&out, &rows, &ctx.classes)?;
    ev.write(&out)?;
    println!(
        "written to {} in {:.1} s",
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
