//! Training of the native CNN: Adam, seeded augmentation (flips, small rotations, intensity), early
//! stopping on validation loss, best weights kept; writes weights plus a model card.
use std::path::Path;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::OptimizerConfig, Kind, Tensor};

use super::NativeCnn;
use crate::error::{Error, Result};
pub use crate::preprocess::LabelledTensors;

/// `training:` in config.yml.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    pub seed: u64,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Early stopping: stop after this many epochs without a better validation loss.
    pub patience: usize,
    pub augment: AugmentConfig,
}

impl TrainingConfig {
    /// Values serde cannot check: ranges.
    pub fn validate(&self) -> Result<()> {
        let t = self;
        if t.epochs == 0 {
            return Err(Error::key(
                "training.epochs",
                "0 is not allowed: at least 1",
            ));
        }
        if t.batch_size == 0 {
            return Err(Error::key(
                "training.batch_size",
                "0 is not allowed: at least 1",
            ));
        }
        if !(t.learning_rate > 0.0 && t.learning_rate < 10.0) {
            return Err(Error::key(
                "training.learning_rate",
                format!("{} is not allowed: must be in (0, 10)", t.learning_rate),
            ));
        }
        if !(0.0..=180.0).contains(&t.augment.rotate_degrees) {
            return Err(Error::key(
                "training.augment.rotate_degrees",
                format!("{} is not allowed: 0..=180", t.augment.rotate_degrees),
            ));
        }
        if !(0.0..1.0).contains(&t.augment.intensity) {
            return Err(Error::key(
                "training.augment.intensity",
                format!("{} is not allowed: 0 <= intensity < 1", t.augment.intensity),
            ));
        }
        Ok(())
    }
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            seed: 42,
            epochs: 30,
            batch_size: 32,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            patience: 6,
            augment: AugmentConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    pub horizontal_flip: bool,
    /// Maximum rotation, degrees (uniform in [-r, r]).
    pub rotate_degrees: f32,
    /// Maximum relative brightness/contrast change (uniform in [1-i, 1+i]).
    pub intensity: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            horizontal_flip: true,
            rotate_degrees: 10.0,
            intensity: 0.1,
        }
    }
}

#[derive(Debug, Serialize, Clone)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub seconds: f64,
}

#[derive(Debug, Serialize, Clone)]
pub struct TrainOutcome {
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub best_val_accuracy: f64,
    pub log: Vec<EpochLog>,
    pub seconds: f64,
}

/// Random flips, rotations and intensity changes for a batch, drawn from `rng`.
pub fn augment(x: &Tensor, cfg: &AugmentConfig, rng: &mut ChaCha8Rng) -> Tensor {
    let n = x.size()[0];
    let dev = x.device();
    let mut out = x.shallow_clone();
    if cfg.horizontal_flip {
        let flips: Vec<f32> = (0..n)
            .map(|_| if rng.gen_bool(0.5) { 1.0 } else { 0.0 })
            .collect();
        let m = Tensor::from_slice(&flips).to_device(dev).view([n, 1, 1, 1]);
        out = &out * (1.0 - &m) + out.flip([3]) * &m;
    }
    if cfg.rotate_degrees > 0.0 {
        let r = cfg.rotate_degrees as f64;
        let theta: Vec<f32> = (0..n)
            .flat_map(|_| {
                let a = rng.gen_range(-r..=r).to_radians();
                let (s, c) = (a.sin() as f32, a.cos() as f32);
                [c, -s, 0.0, s, c, 0.0]
            })
            .collect();
        let theta = Tensor::from_slice(&theta).to_device(dev).view([n, 2, 3]);
        let grid = Tensor::affine_grid_generator(&theta, out.size(), false);
        // bilinear, zero padding (the black MRI background)
        out = out.grid_sampler(&grid, 0, 0, false);
    }
    if cfg.intensity > 0.0 {
        let i = cfg.intensity as f64;
        let gains: Vec<f32> = (0..n)
            .map(|_| rng.gen_range(1.0 - i..=1.0 + i) as f32)
            .collect();
        out *= Tensor::from_slice(&gains).to_device(dev).view([n, 1, 1, 1]);
    }
    out
}

/// Mean cross-entropy and accuracy over a set, eval mode, in batches.
pub fn evaluate_loss(model: &NativeCnn, data: &LabelledTensors, batch: usize) -> (f64, f64) {
    let _guard = tch::no_grad_guard();
    let n = data.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let (mut loss, mut correct) = (0.0, 0.0);
    let dev = model.vs.device();
    for start in (0..n).step_by(batch) {
        let len = batch.min(n - start) as i64;
        let x = data.x.narrow(0, start as i64, len).to_device(dev);
        let y = data.y.narrow(0, start as i64, len).to_device(dev);
        let logits = model.forward_t(&x, false);
        loss += logits.cross_entropy_for_logits(&y).double_value(&[]) * len as f64;
        correct += logits
            .argmax(-1, false)
            .eq_tensor(&y)
            .to_kind(Kind::Float)
            .sum(Kind::Float)
            .double_value(&[]);
    }
    (loss / n as f64, correct / n as f64)
}

type Best = (f64, usize, f64, Vec<(String, Tensor)>);

/// Trains `model` in place; on return it holds the weights of the best validation epoch.
pub fn train(
    model: &mut NativeCnn,
    train: &LabelledTensors,
    val: &LabelledTensors,
    cfg: &TrainingConfig,
    progress: &indicatif::ProgressBar,
) -> Result<TrainOutcome> {
    if train.is_empty() || val.is_empty() {
        return Err(Error::Other(format!(
            "training needs images in both the training ({}) and validation ({}) sets",
            train.len(),
            val.len()
        )));
    }
    let t0 = Instant::now();
    let dev = model.vs.device();
    let mut opt = nn::Adam {
        wd: cfg.weight_decay,
        ..Default::default()
    }
    .build(&model.vs, cfg.learning_rate)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let n = train.len();
    // (validation loss, epoch, validation accuracy, weights) of the best epoch so far
    let mut best: Option<Best> = None;
    let mut log = Vec::new();
    let mut since_best = 0;
    progress.set_length((cfg.epochs * n.div_ceil(cfg.batch_size)) as u64);
    for epoch in 1..=cfg.epochs {
        let te = Instant::now();
        let mut order: Vec<i64> = (0..n as i64).collect();
        // Fisher-Yates with the seeded generator: the same seed gives the same batches.
        for i in (1..order.len()).rev() {
            order.swap(i, rng.gen_range(0..=i));
        }
        let mut sum_loss = 0.0;
        for chunk in order.chunks(cfg.batch_size) {
            let idx = Tensor::from_slice(chunk);
            let x = augment(&train.x.index_select(0, &idx), &cfg.augment, &mut rng).to_device(dev);
            let y = train.y.index_select(0, &idx).to_device(dev);
            let loss = model.forward_t(&x, true).cross_entropy_for_logits(&y);
            opt.backward_step(&loss);
            sum_loss += loss.double_value(&[]) * chunk.len() as f64;
            progress.inc(1);
        }
        let (val_loss, val_acc) = evaluate_loss(model, val, 128);
        let entry = EpochLog {
            epoch,
            train_loss: sum_loss / n as f64,
            val_loss,
            val_accuracy: val_acc,
            seconds: te.elapsed().as_secs_f64(),
        };
        say(
            progress,
            format!(
                "epoch {epoch:>3}: train loss {:.4}, val loss {:.4}, val accuracy {:.2}% ({:.0} s)",
                entry.train_loss,
                val_loss,
                100.0 * val_acc,
                entry.seconds
            ),
        );
        log.push(entry);
        if best.as_ref().is_none_or(|b| val_loss < b.0) {
            let snapshot = model
                .vs
                .variables()
                .into_iter()
                .map(|(k, v)| (k, v.detach().copy()))
                .collect();
            best = Some((val_loss, epoch, val_acc, snapshot));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= cfg.patience {
                say(
                    progress,
                    format!(
                        "early stop: no better validation loss for {} epochs",
                        cfg.patience
                    ),
                );
                break;
            }
        }
    }
    let (best_val_loss, best_epoch, best_val_accuracy, snapshot) =
        best.expect("at least one epoch");
    let mut vars = model.vs.variables();
    tch::no_grad(|| {
        for (k, v) in &snapshot {
            if let Some(dst) = vars.get_mut(k) {
                dst.copy_(v);
            }
        }
    });
    Ok(TrainOutcome {
        epochs_run: log.len(),
        best_epoch,
        best_val_loss,
        best_val_accuracy,
        log,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// A line above the progress bar, or on stderr when there is no terminal (CI logs, pipes).
fn say(pb: &indicatif::ProgressBar, line: String) {
    if pb.is_hidden() {
        eprintln!("{line}");
    } else {
        pb.println(line);
    }
}

/// Writes `<weights>.card.json` beside the weights.
pub fn write_model_card(weights: &Path, card: &serde_json::Value) -> Result<std::path::PathBuf> {
    let path = weights.with_extension("card.json");
    let text = serde_json::to_string_pretty(card).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(&path, text)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    Ok(path)
}
