//! Deletion and insertion curves (faithfulness of a map to the model).
//!
//! Pixels are ordered from most to least important by the map's **signed** value, largest first: the
//! pixels the map calls evidence *for* the explained class go first (the usual reading of a deletion
//! curve, "most relevant first"). Ties (a flat Grad-CAM background, a LIME superpixel, zeros) are
//! broken by the image's random order, never by pixel position, which would favour one corner.
//!
//! With `n` pixels and `K` steps, step `k` (0..=K) acts on the first `c_k = round(k n / K)` pixels of the
//! order (a pixel = every channel at one position):
//! - deletion: those pixels are set to the reference value (the value LIME and Kernel SHAP use for a
//!   switched-off superpixel, `explain.reference_value`), the others keep the image's values;
//! - insertion: the image starts all-reference and those pixels get the image's values back.
//!
//! The score at each step is the softmax probability of the explained class (`score: probability`,
//! default; bounded, so AUCs compare across images) or its logit (`score: logit`). The area under each
//! curve is the trapezoid rule over the fraction `c_k / n` in [0, 1]. A faithful map has a low deletion
//! AUC (the score falls as soon as its top pixels go) and a high insertion AUC. The baseline is the same
//! pair of curves for a random pixel order (seeded from the image id and the run seed, like every other
//! random draw), stored as method `random`.
//!
//! Cost: `(K + 1) x 2` forward passes per map, so `(K + 1) x 2 x (methods + 1)` per image with the
//! random baseline, batched `explain.batch_size` images at a time.
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::attribution::{rng_for_key, ExplainConfig, Method};
use crate::error::{Error, Result};
use crate::model::Classifier;

/// The name the random-order baseline is stored under.
pub const RANDOM: &str = "random";

/// What the curves record at each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// Softmax probability of the explained class.
    Probability,
    /// Logit of the explained class (the score the maps explain).
    Logit,
}

impl Score {
    pub fn name(self) -> &'static str {
        match self {
            Score::Probability => "probability",
            Score::Logit => "logit",
        }
    }
}

/// `explain.faithfulness` in config.yml.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FaithfulnessConfig {
    /// Compute the curves in `audit` (also `audit --faithfulness`).
    pub enabled: bool,
    /// K: the curves have K + 1 points, at fractions 0, 1/K, ..., 1 of the pixels.
    pub steps: usize,
    pub score: Score,
}

impl Default for FaithfulnessConfig {
    fn default() -> Self {
        FaithfulnessConfig {
            enabled: false,
            steps: 16,
            score: Score::Probability,
        }
    }
}

impl FaithfulnessConfig {
    pub fn is_default(&self) -> bool {
        *self == FaithfulnessConfig::default()
    }

    pub fn validate(&self) -> Result<()> {
        if !(1..=1024).contains(&self.steps) {
            return Err(Error::key(
                "explain.faithfulness.steps",
                format!("{} is not allowed: 1..=1024", self.steps),
            ));
        }
        Ok(())
    }

    /// Forward passes per image for `methods` maps plus the random baseline.
    pub fn forward_passes(&self, methods: usize) -> usize {
        (self.steps + 1) * 2 * (methods + 1)
    }
}

/// Pixels acted on after each step: `c_k = round(k n / K)` for k = 0..=K (halves round up).
pub fn step_counts(n: usize, steps: usize) -> Vec<usize> {
    let steps = steps.max(1);
    (0..=steps)
        .map(|k| (2 * k * n + steps) / (2 * steps))
        .collect()
}

/// Area under a curve by the trapezoid rule; `x` increasing.
pub fn trapezoid_auc(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "trapezoid_auc inputs differ in length");
    x.windows(2)
        .zip(y.windows(2))
        .map(|(xs, ys)| (xs[1] - xs[0]) * (ys[0] + ys[1]) / 2.0)
        .sum()
}

/// A uniformly random permutation of `0..n`.
pub fn random_order(n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order
}

/// Pixel indices from most to least important: signed value, largest first (non-finite values read as
/// 0, as in the other metrics); equal values in the order they have in `tie_break` (a permutation of
/// the pixels).
pub fn importance_order(map: &[f32], tie_break: &[usize]) -> Vec<usize> {
    assert_eq!(map.len(), tie_break.len(), "importance_order lengths");
    let mut position = vec![0usize; map.len()];
    for (pos, &p) in tie_break.iter().enumerate() {
        position[p] = pos;
    }
    let value = |i: usize| {
        if map[i].is_finite() {
            map[i]
        } else {
            0.0
        }
    };
    let mut order: Vec<usize> = (0..map.len()).collect();
    order.sort_by(|&a, &b| {
        value(b)
            .total_cmp(&value(a))
            .then(position[a].cmp(&position[b]))
    });
    order
}

/// The two curves of one image for one pixel order.
#[derive(Clone, Debug, PartialEq)]
pub struct Curves {
    /// c_k / n for k = 0..=K.
    pub fractions: Vec<f64>,
    /// Score after deleting the first c_k pixels of the order.
    pub deletion: Vec<f64>,
    /// Score of the reference image with the first c_k pixels put back.
    pub insertion: Vec<f64>,
    pub deletion_auc: f64,
    pub insertion_auc: f64,
}

/// Deletion and insertion curves of a 1 x C x H x W image `x` for the pixel order `order` (indices into
/// H x W, most important first), `steps` = K, with any score function (one value per image of the
/// batch it is given). All 2 (K + 1) perturbed images go through `score` in batches of `batch`.
pub fn curves_with(
    x: &Tensor,
    order: &[usize],
    reference: impl Into<crate::attribution::Reference>,
    steps: usize,
    batch: usize,
    score: &mut dyn FnMut(&Tensor) -> Result<Vec<f64>>,
) -> Result<Curves> {
    let reference: crate::attribution::Reference = reference.into();
    let s = x.size();
    if s.len() != 4 || s[0] != 1 {
        return Err(Error::Other(format!(
            "faithfulness curves take one 1 x C x H x W image, found shape {s:?}"
        )));
    }
    let (h, w) = (s[2], s[3]);
    let n = (h * w) as usize;
    if order.len() != n {
        return Err(Error::Other(format!(
            "pixel order has {} entries for a {h}x{w} image",
            order.len()
        )));
    }
    let steps = steps.max(1);
    let counts = step_counts(n, steps);
    // rank[p] = position of pixel p in the order: pixel p is among the first c pixels iff rank[p] < c.
    // f32 holds every integer up to 2^24, far above the largest image (2048 x 2048).
    let mut rank = vec![0f32; n];
    for (pos, &p) in order.iter().enumerate() {
        rank[p] = pos as f32;
    }
    let dev = x.device();
    let rank = Tensor::from_slice(&rank).to_device(dev).view([1, 1, h, w]);
    let _guard = tch::no_grad_guard();
    // Jobs 0..=K: deletion at step k; K+1..=2K+1: insertion at step k.
    let total = 2 * (steps + 1);
    let mut scores = Vec::with_capacity(total);
    let mut start = 0;
    while start < total {
        let len = batch.max(1).min(total - start);
        let jobs = start..start + len;
        let count: Vec<f32> = jobs
            .clone()
            .map(|j| counts[j % (steps + 1)] as f32)
            .collect();
        let deletion: Vec<f32> = jobs.map(|j| (j <= steps) as u8 as f32).collect();
        let count = Tensor::from_slice(&count)
            .to_device(dev)
            .view([len as i64, 1, 1, 1]);
        let deletion = Tensor::from_slice(&deletion)
            .to_device(dev)
            .view([len as i64, 1, 1, 1]);
        // first = 1 on the first c_k pixels of the order.
        let first = rank.lt_tensor(&count).to_kind(Kind::Float);
        // The image's own values are kept off the first pixels (deletion) or on them (insertion).
        let keep = &deletion * (1.0 - &first) + (1.0 - &deletion) * &first;
        let images = x * &keep + (1.0 - &keep) * reference.tensor(x);
        let got = score(&images)?;
        if got.len() != len {
            return Err(Error::Other(format!(
                "score function returned {} values for {len} images",
                got.len()
            )));
        }
        scores.extend(got);
        start += len;
    }
    let fractions: Vec<f64> = counts.iter().map(|&c| c as f64 / n as f64).collect();
    let insertion = scores.split_off(steps + 1);
    let deletion = scores;
    Ok(Curves {
        deletion_auc: trapezoid_auc(&fractions, &deletion),
        insertion_auc: trapezoid_auc(&fractions, &insertion),
        fractions,
        deletion,
        insertion,
    })
}

/// The model's score of class `target` for a batch: probability or logit.
pub fn model_scores(
    model: &dyn Classifier,
    images: &Tensor,
    target: i64,
    score: Score,
) -> Result<Vec<f64>> {
    let logits = model.logits(images)?;
    let s = match score {
        Score::Probability => logits.softmax(-1, Kind::Float),
        Score::Logit => logits,
    };
    Ok(Vec::<f64>::try_from(
        s.select(1, target)
            .to_kind(Kind::Double)
            .to_device(Device::Cpu),
    )?)
}

/// Curves of one map (or of the random baseline, `method` = [`RANDOM`]).
#[derive(Clone, Debug)]
pub struct MapCurves {
    pub method: String,
    pub curves: Curves,
    pub seconds: f64,
}

/// Curves for every given map of one image, then for the random order: `maps` are H x W (row-major,
/// the model-input resolution); `x` is the 1 x C x H x W model input; `target` the explained class.
pub fn image_curves(
    model: &dyn Classifier,
    cfg: &ExplainConfig,
    f: &FaithfulnessConfig,
    image_id: &str,
    x: &Tensor,
    target: i64,
    maps: &[(Method, &[f32])],
) -> Result<Vec<MapCurves>> {
    let s = x.size();
    let n = (s[2] * s[3]) as usize;
    let reference = cfg.reference_values(s[1] as usize);
    let random = random_order(n, &mut rng_for_key(image_id, RANDOM, cfg.seed));
    let mut score = |b: &Tensor| model_scores(model, b, target, f.score);
    let mut out = Vec::with_capacity(maps.len() + 1);
    let mut run = |name: &str, order: &[usize]| -> Result<()> {
        let t0 = Instant::now();
        let curves = curves_with(
            x,
            order,
            reference.clone(),
            f.steps,
            cfg.batch_size,
            &mut score,
        )?;
        out.push(MapCurves {
            method: name.to_string(),
            curves,
            seconds: t0.elapsed().as_secs_f64(),
        });
        Ok(())
    };
    for (method, map) in maps {
        if map.len() != n {
            return Err(Error::Other(format!(
                "{} map has {} values for {n} pixels",
                method.name(),
                map.len()
            )));
        }
        run(method.name(), &importance_order(map, &random))?;
    }
    run(RANDOM, &random)?;
    Ok(out)
}
