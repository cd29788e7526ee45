//! The model-parameter randomisation test (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS
//! 2018), cascading from the output towards the input, and the other-class check.
//!
//! Stage 0 is the trained model. Stage s (1..=L, L = the number of layers with parameters) re-initialises
//! the s parametrised layers closest to the output, so stage 1 destroys the last dense layer and stage L
//! the whole network. At every stage each method explains the same images for the same class (the one
//! the trained model's maps explain), with the same random draws (SmoothGrad noise, LIME/SHAP samples
//! are seeded from the image and method, not the stage), so only the model changes. Each map is compared
//! with its stage-0 map by the Spearman rank correlation of the absolute maps (`spearman_abs`, the
//! published measure) and of the signed maps (`spearman_signed`), on the full-resolution maps.
//!
//! A map that explains the model must change once the model is random. A method whose maps keep a mean
//! |Spearman of the absolute maps| above the threshold (default 0.5) at the last stage fails the check.
//!
//! Re-initialisation draws every parameter tensor afresh from the layer's constructor distribution (tch's,
//! which the native CNN is built with): conv and dense weights Kaiming-uniform with bound
//! `sqrt(6 / fan_in)`, dense bias uniform in `+-1 / sqrt(fan_in)`; batch-norm weight uniform in [0, 1],
//! bias 0, running mean 0, running variance 1. One deliberate deviation: conv biases, which tch's
//! constructor sets to exactly 0, are drawn like the dense biases (uniform in `+-1 / sqrt(fan_in)`, also
//! PyTorch's `Conv2d` default). A bias of exactly 0 is not a randomisation: with the first conv layer
//! random and bias-free, every ReLU of it is off exactly where the 3x3 input patch is black, so every
//! gradient map of the random network gets the image's support and looks "similar" for that reason alone
//! (measured on the default CNN with zero conv biases: the plain gradient's mean Spearman of |map| rose
//! from 0.04 at stage 5 to 0.22 at stage 6, with up to 8286 of 16384 pixels exactly 0). The values come
//! from a generator seeded by the parameter's name and the check's seed, so a stage is reproducible and
//! does not depend on the order layers are visited. The layers keep their shapes and places, so Grad-CAM
//! still finds its last conv layer and Guided Backprop its ReLUs.
//!
//! An imported ONNX graph is randomised the same way over its parametrised nodes in execution order
//! (convolutions, Gemm / MatMul with their bias, batch norms; see `OnnxModel::param_units`), each
//! parameter drawn from the distribution of the native layer of its kind, seeded by its initialiser
//! name. A TorchScript module is opaque (its parameters have names but no known order along the
//! forward pass or known initialisers), and the check refuses it, pointing to its ONNX export.
use rand::distributions::{Distribution, Uniform};
use tch::Tensor;

use crate::attribution::{self, rng_for_key, ExplainConfig, ImageInput, Method};
use crate::error::{Error, Result};
use crate::metrics;
use crate::model::{Classifier, Model, NativeCnn, ParamRole, ParamUnit};

/// Default threshold on the last stage's mean |Spearman| of the absolute maps.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// Indices (into the layer list, = the state_dict prefix) of the layers with parameters, input first.
pub fn parametrised_layers(model: &NativeCnn) -> Vec<usize> {
    model.parametrised_layers()
}

/// The native cascade: entry s-1 is the layer stage s re-initialises (on top of those of the earlier
/// stages): the parametrised layers from the output towards the input.
pub fn cascade(model: &NativeCnn) -> Vec<usize> {
    let mut v = model.parametrised_layers();
    v.reverse();
    v
}

/// An independent copy of a native CNN (same layer list, parameters copied, frozen).
pub fn duplicate(model: &NativeCnn) -> Result<NativeCnn> {
    model.duplicate()
}

/// Re-initialises the parameters (and batch-norm running statistics) of native layer `index` (see
/// [`reinit_unit`]). Other layers are not touched; a layer without parameters is an error.
pub fn reinit_layer(model: &NativeCnn, index: usize, seed: u64) -> Result<()> {
    reinit_unit(model, &model.param_unit(index)?, seed)
}

/// The cascade of any model that can be randomised: its parametrised layers or nodes, output first
/// (a TorchScript module is refused with the reason).
pub fn cascade_units(model: &dyn Classifier) -> Result<Vec<ParamUnit>> {
    let mut v = model.param_units()?;
    v.reverse();
    Ok(v)
}

/// The labels of the cascade's stages (stage 1 first).
pub fn cascade_labels(model: &dyn Classifier) -> Result<Vec<String>> {
    Ok(cascade_units(model)?.into_iter().map(|u| u.label).collect())
}

/// Re-initialises one parametrised layer or node with the native layers' constructor distributions
/// (module notes): weights Kaiming-uniform, biases uniform in `+-1 / sqrt(fan_in)`, batch-norm scale
/// uniform in [0, 1], shift and mean 0, variance 1; seeded by the parameter's name and `seed`.
pub fn reinit_unit(model: &dyn Classifier, unit: &ParamUnit, seed: u64) -> Result<()> {
    for (name, role) in &unit.params {
        let t = model
            .param(name)
            .ok_or_else(|| Error::Other(format!("{}: no parameter `{name}`", unit.label)))?;
        let (lo, hi) = match *role {
            ParamRole::Weight { fan_in } => {
                let b = (6.0 / fan_in as f64).sqrt();
                (-b, b)
            }
            ParamRole::Bias { fan_in } => {
                let b = 1.0 / (fan_in as f64).sqrt();
                (-b, b)
            }
            ParamRole::Scale => (0.0, 1.0),
            ParamRole::Zero => (0.0, 0.0),
            ParamRole::One => (1.0, 1.0),
        };
        fill_uniform(&t, name, lo, hi, seed)?;
    }
    Ok(())
}

/// Overwrites `t` with values uniform in [lo, hi] (all `lo` when equal) from the generator seeded by
/// `key` (the parameter's name) and `seed`.
fn fill_uniform(t: &Tensor, key: &str, lo: f64, hi: f64, seed: u64) -> Result<()> {
    let n = t.numel();
    let values: Vec<f32> = if lo == hi {
        vec![lo as f32; n]
    } else {
        let mut rng = rng_for_key(key, "reinit", seed);
        let dist = Uniform::new(lo as f32, hi as f32);
        (0..n).map(|_| dist.sample(&mut rng)).collect()
    };
    let src = Tensor::from_slice(&values)
        .view(t.size().as_slice())
        .to_kind(t.kind())
        .to_device(t.device());
    let mut dst = t.shallow_clone();
    tch::no_grad(|| dst.copy_(&src));
    Ok(())
}

/// Runs the cascading randomisation on `images` (their `target` = the class the trained model's maps
/// explain) for `methods`, on a copy of `model` (the model itself is not changed). With `classes` > 1,
/// also explains every other class on the trained model. `progress(stage, stages)` is called after each
/// stage. Any model that can be randomised is (a TorchScript module is refused with the reason).
pub fn randomise(
    model: &dyn Classifier,
    cfg: &ExplainConfig,
    methods: &[Method],
    images: &[ImageInput],
    classes: i64,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SanityResult> {
    let order = cascade_units(model)?;
    // The cascade re-initialises `work` in place; each stage explains a fresh copy of it, so the
    // copies a model makes for its forward-only batches (channels-last, bf16) are of this stage.
    let work = model.duplicate()?;
    let labels = order.iter().map(|u| u.label.clone()).collect();
    run_cascade(
        labels,
        &mut |stage| {
            if stage > 0 {
                reinit_unit(&work, &order[stage - 1], seed)?;
            }
            work.duplicate()
        },
        cfg,
        methods,
        images,
        classes,
        progress,
    )
}

/// Spearman correlations of a map with its stage-0 map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    /// Of the absolute maps (the published measure).
    pub spearman_abs: f64,
    /// Of the signed maps.
    pub spearman_signed: f64,
}

/// Compares `map` with `original` (same length). A constant map (e.g. an all-zero Grad-CAM) has no
/// ranks: its correlation is 0 by [`metrics::spearman`]'s convention.
pub fn similarity(original: &[f32], map: &[f32]) -> Similarity {
    let abs = |m: &[f32]| -> Vec<f32> { m.iter().map(|v| v.abs()).collect() };
    Similarity {
        spearman_abs: metrics::spearman(&abs(original), &abs(map)) as f64,
        spearman_signed: metrics::spearman(original, map) as f64,
    }
}

/// True when every value is 0 (or not finite).
pub fn is_empty(map: &[f32]) -> bool {
    map.iter().all(|v| !v.is_finite() || *v == 0.0)
}

/// One image x method x stage.
#[derive(Clone, Debug, PartialEq)]
pub struct StageRow {
    pub image: usize,
    pub method: Method,
    pub stage: usize,
    /// The layer this stage re-initialised (`None` at stage 0).
    pub layer: Option<String>,
    pub similarity: Similarity,
    /// The stage's map is all zero.
    pub empty: bool,
}

/// The map of another class compared with the explained class's map, on the trained model.
#[derive(Clone, Debug, PartialEq)]
pub struct OtherClassRow {
    pub image: usize,
    pub method: Method,
    pub other: i64,
    pub similarity: Similarity,
    pub empty: bool,
}

#[derive(Clone, Debug, Default)]
pub struct SanityResult {
    /// The cascade's layer labels, stage 1 first.
    pub layers: Vec<String>,
    pub stages: Vec<StageRow>,
    pub other_class: Vec<OtherClassRow>,
}

/// The stage loop: `stage_model(s)` applies stage s's
/// re-initialisation (none at 0) and returns the model to explain; `layers` labels stages 1...
fn run_cascade(
    layers: Vec<String>,
    stage_model: &mut dyn FnMut(usize) -> Result<Model>,
    cfg: &ExplainConfig,
    methods: &[Method],
    images: &[ImageInput],
    classes: i64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SanityResult> {
    let stages = layers.len();
    let mut result = SanityResult {
        layers,
        ..Default::default()
    };
    let mut originals: Vec<Vec<Vec<f32>>> = vec![Vec::new(); images.len()];
    for stage in 0..=stages {
        let stage_model = stage_model(stage)?;
        for (i, img) in images.iter().enumerate() {
            for (j, &method) in methods.iter().enumerate() {
                let map = attribution::explain(&stage_model, cfg, method, img)?.map;
                if stage == 0 {
                    for other in (0..classes).filter(|&c| c != img.target) {
                        let input = ImageInput {
                            id: img.id,
                            x: img.x,
                            grey: img.grey,
                            target: other,
                            segmentation: img.segmentation.clone(),
                        };
                        let m = attribution::explain(&stage_model, cfg, method, &input)?.map;
                        result.other_class.push(OtherClassRow {
                            image: i,
                            method,
                            other,
                            similarity: similarity(&map, &m),
                            empty: is_empty(&m),
                        });
                    }
                    originals[i].push(map.clone());
                }
                result.stages.push(StageRow {
                    image: i,
                    method,
                    stage,
                    layer: (stage > 0).then(|| result.layers[stage - 1].clone()),
                    similarity: similarity(&originals[i][j], &map),
                    empty: is_empty(&map),
                });
            }
        }
        progress(stage, stages);
    }
    Ok(result)
}
