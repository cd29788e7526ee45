//! `tumor-audit train`: trains the native CNN, writes its weights and model card, and scores it on
//! the test split.
use anyhow::bail;

use super::{load_labelled, progress, Plan};
use crate::cli::TrainArgs;
use crate::evaluate;
use crate::model::train;
use crate::model::Classifier;
use crate::model::{self, Model, NativeCnn};

pub fn run(ctx: &Plan, args: &TrainArgs) -> anyhow::Result<()> {
    let mut settings = ctx.settings.clone();
    if let Some(e) = args.epochs {
        settings.training.epochs = e;
        settings.validate()?;
    }
    let root = ctx.data_root(&args.data);
    let weights = args
        .weights
        .clone()
        .unwrap_or_else(|| settings.model.weights.clone());
    if settings.model.torchscript.is_some() || settings.model.onnx.is_some() {
        bail!("model.torchscript or model.onnx is set: `train` trains the native CNN only");
    }
    tch::manual_seed(settings.training.seed as i64);
    let tr = load_labelled(ctx, &root.join(&settings.data.train_dir), "training")?.tensors;
    let va = load_labelled(ctx, &root.join(&settings.data.validation_dir), "validation")?.tensors;
    println!(
        "training on {} images, validating on {} ({:?})",
        tr.len(),
        va.len(),
        ctx.classes
    );
    let mut cnn = NativeCnn::new(&settings.layers(), ctx.input_spec(), ctx.device)?;
    let pb = progress(0, "training", "epochs");
    let outcome = train::train(&mut cnn, &tr, &va, &settings.training, pb.bar())?;
    pb.finish_and_clear();
    cnn.save(&weights)?;
    let test_dir = root.join(&settings.data.test_dir);
    let test = if test_dir.is_dir() {
        let te = load_labelled(ctx, &test_dir, "test")?.tensors;
        let model = Model::new(cnn);
        let probs = model.predict_probs(&te.x)?;
        Some(evaluate::evaluate(&te.labels()?, &probs, &ctx.classes))
    } else {
        None
    };
    let split_hash = std::fs::read_to_string(root.join("split.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("split_hash").cloned());
    let card = serde_json::json!({
        "model": "tumor-audit native CNN",
        "weights": weights.file_name().map(|n| n.to_string_lossy().to_string()),
        "weights_sha256": model::file_sha256(&weights)?,
        "classes": ctx.classes,
        "input": ctx.input_spec(),
        "layers": settings.layers(),
        "config": settings,
        "data_root": root,
        "split_hash": split_hash,
        "training": outcome,
        "test": test,
        // The program's name rather than its path: the card is shared, machine paths are not.
        "command": std::iter::once("tumor-audit".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" "),
        "tool_version": env!("CARGO_PKG_VERSION"),
    });
    let card_path = train::write_model_card(&weights, &card)?;
    println!(
        "best epoch {} of {}: validation loss {:.4}, accuracy {:.2}%; {:.0} s",
        outcome.best_epoch,
        outcome.epochs_run,
        outcome.best_val_loss,
        100.0 * outcome.best_val_accuracy,
        outcome.seconds
    );
    if let Some(t) = &test {
        print!("{}", t.table("test split"));
    }
    println!(
        "weights: {}\nmodel card: {}",
        weights.display(),
        card_path.display()
    );
    Ok(())
}
