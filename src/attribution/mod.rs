//! The attribution engine: the notebook's six methods (Guided Backprop, Integrated Gradients,
//! SmoothGrad, Grad-CAM, LIME, Kernel SHAP) plus the plain gradient, with Xplique's semantics and
//! defaults (see docs/methods.md). Explained score = the target class's logit; maps are H x W (channels
//! reduced by the mean), in model-input resolution, raw (never display-normalised).
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::Tensor;

use crate::error::{Error, Result};
use crate::model::memory::MemoryBudget;
use crate::model::Classifier;

pub mod gradcam;
pub mod gradient;
pub mod perturbation;
pub mod reference;
pub mod reproducibility;
pub mod segment;
pub mod shared;
pub mod subject;
pub mod work;

pub use reference::{BaselineKind, Reference};
pub use subject::{explain_image, Subject, Target, TargetRule};

/// The methods, with the names used in config, the database and file names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    GuidedBackprop,
    IntegratedGradients,
    Smoothgrad,
    Gradcam,
    Lime,
    KernelShap,
    /// The plain gradient (Xplique's Saliency without its abs/max reduction).
    Gradient,
}

impl Method {
    /// The notebook's six, in its figure order.
    pub const SIX: [Method; 6] = [
        Method::GuidedBackprop,
        Method::IntegratedGradients,
        Method::Smoothgrad,
        Method::Gradcam,
        Method::Lime,
        Method::KernelShap,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::GuidedBackprop => "guided_backprop",
            Method::IntegratedGradients => "integrated_gradients",
            Method::Smoothgrad => "smoothgrad",
            Method::Gradcam => "gradcam",
            Method::Lime => "lime",
            Method::KernelShap => "kernel_shap",
            Method::Gradient => "gradient",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Method::GuidedBackprop => "Guided Backprop",
            Method::IntegratedGradients => "Integrated Gradients",
            Method::Smoothgrad => "SmoothGrad",
            Method::Gradcam => "Grad-CAM",
            Method::Lime => "LIME",
            Method::KernelShap => "Kernel SHAP",
            Method::Gradient => "Gradient",
        }
    }

    /// A label short enough for a picture's column header.
    pub fn short(self) -> &'static str {
        match self {
            Method::GuidedBackprop => "Guided BP",
            Method::IntegratedGradients => "IG",
            Method::KernelShap => "SHAP",
            other => other.title(),
        }
    }

    pub fn parse(s: &str) -> Result<Method> {
        let all = [Method::SIX.as_slice(), &[Method::Gradient]].concat();
        all.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            Error::key(
                "explain.methods",
                format!("`{s}` is unknown: allowed {}", all_names().join(", ")),
            )
        })
    }

    pub fn is_stochastic(self) -> bool {
        matches!(self, Method::Smoothgrad | Method::Lime | Method::KernelShap)
    }
}

fn all_names() -> Vec<&'static str> {
    let mut v: Vec<_> = Method::SIX.iter().map(|m| m.name()).collect();
    v.push(Method::Gradient.name());
    v
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IgConfig {
    /// Path points including both ends; `None` = from the profile.
    pub steps: Option<usize>,
    /// Constant baseline image, in model-input space (after preprocessing); 0 by default.
    pub baseline_value: f32,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SmoothGradConfig {
    pub samples: Option<usize>,
    /// Absolute noise standard deviation in model-input space.
    pub noise: f32,
}
impl Default for SmoothGradConfig {
    fn default() -> Self {
        SmoothGradConfig {
            samples: None,
            noise: 0.2,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GradCamConfig {
    /// Layer index in the layer list whose output is explained; `None` = the last conv layer (its
    /// ReLU output when a ReLU follows, as Keras' Conv2D(activation='relu')).
    pub layer: Option<usize>,
    /// ONNX models: the node (or value) name whose output is explained; `None` = the last
    /// convolution's output, through the activation / batch-norm / residual-add nodes that follow it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimeConfig {
    pub samples: Option<usize>,
    pub kernel_width: f32,
    /// Ridge penalty (the intercept is not penalised).
    pub alpha: f64,
}
impl Default for LimeConfig {
    fn default() -> Self {
        LimeConfig {
            samples: None,
            kernel_width: 45.0,
            alpha: 2.0,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct KernelShapConfig {
    pub samples: Option<usize>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentationConfig {
    pub method: SegmentationMethod,
    pub scale: f32,
    pub sigma: f32,
    pub min_size: usize,
    /// grid: cells per side.
    pub grid_cells: usize,
    /// slic: approximate number of segments and compactness.
    pub slic_segments: usize,
    pub slic_compactness: f32,
    /// file: label image (same segmentation for every image).
    pub path: Option<std::path::PathBuf>,
}
impl Default for SegmentationConfig {
    fn default() -> Self {
        SegmentationConfig {
            method: SegmentationMethod::Felzenszwalb,
            scale: 1.0,
            sigma: 0.8,
            min_size: 20,
            grid_cells: 8,
            slic_segments: 150,
            slic_compactness: 0.1,
            path: None,
        }
    }
}

/// `explain.segmentation.method`: how LIME and Kernel SHAP cut an image into superpixels.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SegmentationMethod {
    /// Felzenszwalb's graph segmentation (the reference for grey input).
    Felzenszwalb,
    Slic,
    /// A regular grid of `grid_cells` x `grid_cells`.
    Grid,
    /// A label PNG (`path`), the same segmentation for every image.
    File,
}

/// `explain.profile`: the sample budget of the sampled methods.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// The CPU budget (see [`Profile::budget`]).
    Default,
    /// The notebook's parameters.
    Seed,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Seed => "seed",
        }
    }

    /// Sample counts: (IG steps, SmoothGrad samples, LIME samples, Kernel SHAP samples). `seed` = the
    /// notebook. `default` = what a nightly audit can trust: IG keeps its completeness error small
    /// (64 trapezoid steps), and each stochastic method gets the samples that make its typical map
    /// reproducible (split-half figure, see `attribution::reproducibility`, at least its 0.5 level): on 32
    /// Br35H test images SmoothGrad's median is 0.94 at 32 samples, LIME's 0.82 at 1000 (0.51 at 300),
    /// Kernel SHAP's 0.66 at 2000 (0.50 at 1000, 0.14 at 300).
    pub fn budget(self) -> (usize, usize, usize, usize) {
        match self {
            Profile::Seed => (80, 80, 1000, 1000),
            Profile::Default => (64, 32, 1000, 2000),
        }
    }
}

/// `explain.perturbation_precision`: the number format of the LIME / Kernel SHAP forward batches.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// bf16 on a CPU that multiplies bf16 in hardware (AMX or AVX-512 BF16), for the kinds that have a
    /// bf16 path (the native CNN, ONNX graphs; gradients: see `ExplainConfig::bf16_gradients`).
    Auto,
    F32,
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// `explain:` in config.yml.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExplainConfig {
    /// Fills the sample counts not set.
    pub profile: Profile,
    pub methods: Vec<Method>,
    /// `predicted`, `label`, or a class name (checked against the model's classes before any work).
    pub target: Target,
    /// Run seed; each random draw is seeded from (image id, method, seed).
    pub seed: u64,
    /// Batch size for the gradient methods' samples (IG steps, SmoothGrad noise).
    pub batch_size: usize,
    /// Batch size for the LIME / Kernel SHAP forward passes (forward only, so larger batches fit;
    /// bf16 matrix units need them to run at speed).
    pub perturbation_batch_size: usize,
    /// Reference value for switched-off superpixels with `baseline: constant`; `None` = 0 for one
    /// channel, 0.5 for three.
    pub reference_value: Option<f32>,
    /// What "no signal" is (see [`BaselineKind`]): a black image through the preprocessing by default.
    #[serde(skip_serializing_if = "BaselineKind::is_default")]
    pub baseline: BaselineKind,
    /// The black image's model input per channel, from `données.image` (set by the config loader;
    /// `None`: the constants are used).
    #[serde(skip)]
    pub black: Option<Vec<f32>>,
    pub integrated_gradients: IgConfig,
    pub smoothgrad: SmoothGradConfig,
    pub gradcam: GradCamConfig,
    pub lime: LimeConfig,
    pub kernel_shap: KernelShapConfig,
    pub segmentation: SegmentationConfig,
    /// Guided Backprop, Grad-CAM and the plain gradient always run in f32.
    pub perturbation_precision: Precision,
    /// The number format of Integrated Gradients' and SmoothGrad's forward and backward passes: `bf16`
    /// = convolutions in bfloat16 with float32 accumulation, dense layers, input gradients and maps in
    /// float32 (see `model::mixed`); `auto` = that where the CPU multiplies bf16 in hardware.
    pub gradient_precision: Precision,
    /// LIME and Kernel SHAP on one shared set of model evaluations, each importance-weighted (see
    /// `attribution::shared`): half the perturbation forwards, about half each method's effective
    /// samples. Off by default; applies where both methods run on the same image (`explain_image`).
    pub shared_evaluations: bool,
    /// bf16 perturbation forwards in oneDNN's blocked layout with the convolution weights packed once
    /// (see `model::prepacked`); `false` = the channels-last path.
    pub prepacked_weights: bool,
    /// The memory one batch's activations may take: `batch_size` and `perturbation_batch_size` are
    /// lowered to fit (see [`crate::model::memory`]). Left out of the run's config snapshot at its
    /// default, so earlier runs keep their snapshot.
    #[serde(skip_serializing_if = "MemoryBudget::is_auto")]
    pub memory_budget: MemoryBudget,
}

impl Default for ExplainConfig {
    fn default() -> Self {
        ExplainConfig {
            profile: Profile::Default,
            methods: Method::SIX.to_vec(),
            target: Target::Predicted,
            seed: 0,
            batch_size: 64,
            perturbation_batch_size: 64,
            reference_value: None,
            baseline: BaselineKind::Black,
            black: None,
            integrated_gradients: IgConfig::default(),
            smoothgrad: SmoothGradConfig::default(),
            gradcam: GradCamConfig::default(),
            lime: LimeConfig::default(),
            kernel_shap: KernelShapConfig::default(),
            segmentation: SegmentationConfig::default(),
            perturbation_precision: Precision::Auto,
            gradient_precision: Precision::Auto,
            shared_evaluations: false,
            prepacked_weights: true,
            memory_budget: MemoryBudget::Auto,
        }
    }
}

impl ExplainConfig {
    /// Fills sample counts left unset from the profile.
    pub fn apply_profile(&mut self) {
        let (ig, sg, lime, shap) = self.profile.budget();
        self.integrated_gradients.steps.get_or_insert(ig);
        self.smoothgrad.samples.get_or_insert(sg);
        self.lime.samples.get_or_insert(lime);
        self.kernel_shap.samples.get_or_insert(shap);
    }

    /// Whether the LIME / Kernel SHAP forwards run in bfloat16 for this model (see
    /// `perturbation_precision`).
    pub fn bf16_forwards(&self, model: &dyn Classifier) -> bool {
        let cpu = model.has_bf16() && model.device() == tch::Device::Cpu;
        match self.perturbation_precision {
            Precision::Bf16 => model.has_bf16(),
            Precision::Auto => cpu && crate::model::cpu_has_fast_bf16(),
            Precision::F32 => false,
        }
    }

    /// Whether Integrated Gradients and SmoothGrad run in mixed precision for this model (see
    /// `gradient_precision`): `bf16` for the native CNN and ONNX graphs (a TorchScript module's
    /// layers are not reachable); `auto` only where the kind's bfloat16 maps match float32's
    /// ([`Classifier::bf16_gradients_by_default`]: the native CNN) and the CPU has hardware bfloat16.
    pub fn bf16_gradients(&self, model: &dyn Classifier) -> bool {
        let cpu = model.has_bf16() && model.device() == tch::Device::Cpu;
        match self.gradient_precision {
            Precision::Bf16 => model.has_bf16(),
            Precision::Auto => {
                cpu && model.bf16_gradients_by_default() && crate::model::cpu_has_fast_bf16()
            }
            Precision::F32 => false,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.methods.is_empty() {
            return Err(Error::key(
                "explain.methods",
                format!("no method given: allowed {}", all_names().join(", ")),
            ));
        }
        for (i, m) in self.methods.iter().enumerate() {
            if self.methods[..i].contains(m) {
                return Err(Error::key(
                    "explain.methods",
                    format!(
                        "`{}` is listed twice: each method runs once per image",
                        m.name()
                    ),
                ));
            }
        }
        for (key, v) in [
            ("explain.batch_size", self.batch_size),
            (
                "explain.perturbation_batch_size",
                self.perturbation_batch_size,
            ),
        ] {
            if v == 0 {
                return Err(Error::key(key, "0 is not allowed: at least 1"));
            }
        }
        if self.integrated_gradients.steps.is_some_and(|s| s < 2) {
            return Err(Error::key(
                "explain.integrated_gradients.steps",
                "at least 2 (both path ends are included)",
            ));
        }
        for (key, v) in [
            ("explain.smoothgrad.samples", self.smoothgrad.samples),
            ("explain.lime.samples", self.lime.samples),
            ("explain.kernel_shap.samples", self.kernel_shap.samples),
        ] {
            if v == Some(0) {
                return Err(Error::key(key, "0 is not allowed: at least 1"));
            }
        }
        if !(self.smoothgrad.noise >= 0.0 && self.smoothgrad.noise.is_finite()) {
            return Err(Error::key(
                "explain.smoothgrad.noise",
                format!("{} is not allowed: >= 0", self.smoothgrad.noise),
            ));
        }
        if self.lime.kernel_width.is_nan() || self.lime.kernel_width <= 0.0 {
            return Err(Error::key(
                "explain.lime.kernel_width",
                format!("{} is not allowed: > 0", self.lime.kernel_width),
            ));
        }
        if self.lime.alpha.is_nan() || self.lime.alpha < 0.0 {
            return Err(Error::key(
                "explain.lime.alpha",
                format!("{} is not allowed: >= 0", self.lime.alpha),
            ));
        }
        let seg = &self.segmentation;
        match seg.method {
            SegmentationMethod::Felzenszwalb | SegmentationMethod::Slic => {}
            SegmentationMethod::Grid if seg.grid_cells >= 1 => {}
            SegmentationMethod::Grid => {
                return Err(Error::key("explain.segmentation.grid_cells", "at least 1"))
            }
            SegmentationMethod::File if seg.path.is_some() => {}
            SegmentationMethod::File => {
                return Err(Error::key(
                    "explain.segmentation.path",
                    "method `file` needs a label image path",
                ))
            }
        }
        Ok(())
    }

    /// The most superpixels the segmentation can give on a `size` x `size` image (the width of the LIME /
    /// Kernel SHAP design matrix).
    pub fn max_segments(&self, size: usize) -> usize {
        let px = size * size;
        let seg = &self.segmentation;
        match seg.method {
            SegmentationMethod::Grid => seg.grid_cells.saturating_mul(seg.grid_cells),
            // SLIC's connectivity step can split a cluster: allow 4 pieces per requested segment.
            SegmentationMethod::Slic => seg.slic_segments.saturating_mul(4),
            SegmentationMethod::Felzenszwalb => px / seg.min_size.max(1),
            SegmentationMethod::File => px,
        }
        .clamp(1, px.max(1))
    }

    /// The per-image buffers that grow with a configured count, for the methods in use: (key, count,
    /// bytes). Integrated Gradients keeps its `steps` path points (4 bytes each); LIME and Kernel SHAP
    /// keep every sample's superpixel mask (a float, a copy for the forwards and a byte key per
    /// superpixel: 17 bytes) and 3 numbers per sample. SmoothGrad and the forward batches are processed
    /// `batch_size` at a time, so their counts cost time, not memory.
    pub fn count_memory(&self, size: usize) -> Vec<(&'static str, usize, u64)> {
        let m = self.max_segments(size) as u64;
        let mut out = Vec::new();
        for method in &self.methods {
            match method {
                Method::IntegratedGradients => {
                    let n = self.integrated_gradients.steps.unwrap_or(0);
                    out.push(("explain.integrated_gradients.steps", n, n as u64 * 4));
                }
                Method::Lime | Method::KernelShap => {
                    let (key, n) = if *method == Method::Lime {
                        ("explain.lime.samples", self.lime.samples.unwrap_or(0))
                    } else {
                        (
                            "explain.kernel_shap.samples",
                            self.kernel_shap.samples.unwrap_or(0),
                        )
                    };
                    out.push((key, n, (n as u64).saturating_mul(m * 17 + 24)));
                }
                _ => {}
            }
        }
        out
    }

    /// Refuses, before any work, a count whose buffers would not fit in `budget` bytes (see
    /// [`ExplainConfig::count_memory`]), naming the key, what it needs and the largest count that fits.
    pub fn check_memory(&self, size: usize, budget: u64) -> Result<()> {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        for (key, n, bytes) in self.count_memory(size) {
            if bytes > budget {
                let per = (bytes / n.max(1) as u64).max(1);
                return Err(Error::key(
                    key,
                    format!(
                        "{n} needs about {:.1} GiB per image at size {size} ({per} bytes each), more than the \
                         {:.1} GiB this machine allows (half its memory): at most {}",
                        gib(bytes),
                        gib(budget),
                        budget / per
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn reference(&self, channels: usize) -> f32 {
        self.reference_value
            .unwrap_or(if channels == 1 { 0.0 } else { 0.5 })
    }

    /// The perturbation run of `input` on `model` with this config's reference value, batch size and
    /// precision.
    pub fn perturbation<'a>(
        &self,
        model: &'a dyn Classifier,
        input: &'a ImageInput,
        seg: &'a segment::Segmentation,
    ) -> perturbation::Perturbation<'a> {
        perturbation::Perturbation {
            model,
            x: input.x,
            target: input.target,
            seg,
            reference: self.reference_values(input.x.size()[1] as usize),
            batch: self.perturbation_batch_size,
            bf16: self.bf16_forwards(model),
        }
    }
}

/// One image to explain: its model input and what the perturbation methods need.
pub struct ImageInput<'a> {
    /// Content id: seeds the random draws.
    pub id: &'a str,
    /// 1 x C x S x S model input.
    pub x: &'a Tensor,
    /// S x S grey image in [0, 1] (segmentation input).
    pub grey: &'a [f32],
    pub target: i64,
    /// The superpixels, computed by the first method that needs them (LIME and Kernel SHAP share them).
    pub segmentation: std::cell::OnceCell<segment::Segmentation>,
}

/// A computed map.
#[derive(Clone, Debug)]
pub struct Attribution {
    pub method: Method,
    /// S x S, row-major, raw values.
    pub map: Vec<f32>,
    pub size: usize,
    /// Integrated Gradients: |sum(IG) - (f(x) - f(b))| / |f(x) - f(b)|.
    pub completeness_error: Option<f64>,
    /// LIME / Kernel SHAP: number of superpixels.
    pub segments: Option<usize>,
    /// SmoothGrad / LIME / Kernel SHAP: the split-half reproducibility of the map (see
    /// [`crate::attribution::reproducibility`]); `None` for the deterministic methods.
    pub reproducibility: Option<f64>,
    pub seconds: f64,
}

/// A seeded generator for (image id, method, run seed): the same triple always gives the same draws,
/// whichever worker or order computes it.
pub fn rng_for(image_id: &str, method: Method, seed: u64) -> ChaCha8Rng {
    rng_for_key(image_id, method.name(), seed)
}

/// The generator behind [`rng_for`], for draws that belong to no method: the random-order baseline of
/// the faithfulness curves (`name` = "random"), the re-initialisation of a layer in the sanity check
/// (`key` = the parameter's name). `rng_for(id, m, s)` is `rng_for_key(id, m.name(), s)`.
pub fn rng_for_key(key: &str, name: &str, seed: u64) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    h.update([0]);
    h.update(seed.to_le_bytes());
    let digest: [u8; 32] = h.finalize().into();
    ChaCha8Rng::from_seed(digest)
}

/// Computes `method` for one image.
pub fn explain(
    model: &dyn Classifier,
    cfg: &ExplainConfig,
    method: Method,
    input: &ImageInput,
) -> Result<Attribution> {
    let t0 = Instant::now();
    let _work = work::begin(method.title());
    let size = input.x.size()[3] as usize;
    let mut completeness_error = None;
    let mut segments = None;
    let mut halves = None;
    model.use_prepacked(cfg.prepacked_weights);
    let mixed = cfg.bf16_gradients(model);
    let forward = |x: &Tensor| {
        if mixed {
            model.logits_mixed(x)
        } else {
            model.logits(x)
        }
    };
    let run = gradient::GradientRun {
        forward: &forward,
        x: input.x,
        target: input.target,
        batch: cfg.batch_size,
    };
    let map = match method {
        Method::Gradient => gradient::gradient(model, input.x, &[input.target])?.remove(0),
        Method::GuidedBackprop => {
            gradient::guided_backprop(model, input.x, &[input.target])?.remove(0)
        }
        Method::IntegratedGradients => {
            let r = run.integrated_gradients(
                cfg.ig_baseline(),
                cfg.integrated_gradients.steps.unwrap_or(80),
            )?;
            completeness_error = Some(r.completeness_error);
            r.map
        }
        Method::Smoothgrad => {
            let mut rng = rng_for(input.id, method, cfg.seed);
            let n = cfg.smoothgrad.samples.unwrap_or(80);
            let (map, h) = run.smoothgrad(n, cfg.smoothgrad.noise, &mut rng)?;
            halves = h;
            map
        }
        Method::Gradcam => {
            let layer = crate::model::CamLayer {
                index: cfg.gradcam.layer,
                node: cfg.gradcam.node.as_deref(),
            };
            gradcam::gradcam(model, input.x, &[input.target], layer)?.remove(0)
        }
        Method::Lime | Method::KernelShap => {
            let seg = segmentation_of(cfg, input)?;
            segments = Some(seg.n_segments);
            let mut rng = rng_for(input.id, method, cfg.seed);
            let run = cfg.perturbation(model, input, seg);
            let (map, h) = if method == Method::Lime {
                run.lime(cfg.lime.samples.unwrap_or(1000), &cfg.lime, &mut rng)?
            } else {
                run.kernel_shap(cfg.kernel_shap.samples.unwrap_or(1000), &mut rng)?
            };
            halves = h;
            map
        }
    };
    Ok(Attribution {
        method,
        map,
        size,
        completeness_error,
        segments,
        reproducibility: halves
            .as_ref()
            .map(|h| crate::attribution::reproducibility::reproducibility(h, size)),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The image's superpixels, computed once for LIME and Kernel SHAP.
fn segmentation_of<'a>(
    cfg: &ExplainConfig,
    input: &'a ImageInput,
) -> Result<&'a segment::Segmentation> {
    if let Some(seg) = input.segmentation.get() {
        return Ok(seg);
    }
    let size = input.x.size()[3] as usize;
    let seg = perturbation::segment_for(&cfg.segmentation, input.grey, size, input.x)?;
    Ok(input.segmentation.get_or_init(|| seg))
}

/// Mean over channels of a [B, C, H, W] tensor -> one Vec per image (H*W).
pub(crate) fn channel_mean_maps(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    let m = t
        .mean_dim([1i64].as_slice(), false, tch::Kind::Float)
        .to_device(tch::Device::Cpu)
        .contiguous();
    let b = m.size()[0];
    (0..b)
        .map(|i| Ok(Vec::<f32>::try_from(m.get(i).flatten(0, -1))?))
        .collect()
}
