//! The one interface every model kind implements ([`Classifier`]: the native CNN, an imported ONNX
//! graph, a TorchScript module) and the [`Model`] handle the rest of the library holds. Callers never
//! ask which kind they have: what a kind cannot do is an `Err` from the trait, with the reason the
//! user sees.
use tch::{Device, Kind, Tensor};

use super::memory::ActivationMemory;
use super::InputSpec;
use crate::error::{Error, Result};

/// Which activation Grad-CAM explains: `explain.gradcam.layer` (an index into a native layer list)
/// or `explain.gradcam.node` (an ONNX node or value name); both `None` = the kind's automatic
/// choice (the last convolution's output, through the activation that follows it).
#[derive(Clone, Copy, Debug, Default)]
pub struct CamLayer<'a> {
    pub index: Option<usize>,
    pub node: Option<&'a str>,
}

/// The parameter tensors of one parametrised layer or node, for the sanity check's
/// re-initialisation (see `trust::sanity`).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamUnit {
    /// How the stored results name it: `index:kind` for a native layer (`14:dense`), `name:op` for
    /// an ONNX node (`conv1:Conv`).
    pub label: String,
    /// (parameter name, role), the name as [`Classifier::param`] knows it.
    pub params: Vec<(String, ParamRole)>,
}

/// How a parameter is re-initialised (see `trust::sanity`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamRole {
    /// Kaiming-uniform, bound `sqrt(6 / fan_in)`.
    Weight { fan_in: i64 },
    /// Uniform in `+-1 / sqrt(fan_in)`.
    Bias { fan_in: i64 },
    /// Batch-norm scale: uniform in [0, 1].
    Scale,
    /// Batch-norm shift and running mean: 0.
    Zero,
    /// Batch-norm running variance: 1.
    One,
}

/// A classifier under audit: logits for an `N x C x S x S` float32 batch, and the abilities the
/// attribution methods, the trust checks and the benchmark need. The defaults are what a kind that
/// cannot see inside itself offers: the plain float32 forward, and refusals with a reason.
pub trait Classifier {
    /// Channels, size and classes of the data fed to it.
    fn input(&self) -> &InputSpec;

    fn device(&self) -> Device;

    /// Logits in float32, eval mode. Gradients flow if `x` requires them.
    fn logits(&self, x: &Tensor) -> Result<Tensor>;

    /// Softmax probabilities of x [N, C, S, S], in batches of 128, one Vec per image.
    fn predict_probs(&self, x: &Tensor) -> Result<Vec<Vec<f32>>> {
        let _guard = tch::no_grad_guard();
        let n = x.size()[0];
        let mut out = Vec::with_capacity(n as usize);
        let dev = self.device();
        for start in (0..n).step_by(128) {
            let len = 128.min(n - start);
            let p = self
                .logits(&x.narrow(0, start, len).to_device(dev))?
                .softmax(-1, Kind::Float)
                .to_device(Device::Cpu);
            let k = p.size()[1] as usize;
            let flat = Vec::<f32>::try_from(p.flatten(0, -1))?;
            out.extend(flat.chunks(k).map(|c| c.to_vec()));
        }
        Ok(out)
    }

    /// Whether [`Classifier::logits_mixed`] and [`Classifier::logits_inference`] have a bfloat16
    /// path (the `auto` precision settings use it where the CPU multiplies bfloat16 in hardware).
    fn has_bf16(&self) -> bool {
        false
    }

    /// Whether `gradient_precision: auto` may take the bfloat16 path for Integrated Gradients and
    /// SmoothGrad: only where their maps were shown to rank pixels as the float32 ones do
    /// (Spearman >= 0.98). `bf16` set explicitly takes the path wherever [`Classifier::has_bf16`].
    fn bf16_gradients_by_default(&self) -> bool {
        self.has_bf16()
    }

    /// Logits with the convolutions and matrix products in bfloat16 (float32 accumulation), the
    /// input gradient in float32: the mixed precision of Integrated Gradients and SmoothGrad. Kinds
    /// without a bfloat16 path give the float32 logits.
    fn logits_mixed(&self, x: &Tensor) -> Result<Tensor> {
        self.logits(x)
    }

    /// Logits of a forward-only batch (call under `no_grad`), in the kind's fastest layout, in
    /// bfloat16 when `bf16`: the perturbation methods' and the probes' forwards.
    fn logits_inference(&self, x: &Tensor, bf16: bool) -> Result<Tensor> {
        let _ = bf16;
        self.logits(x)
    }

    /// Chooses pre-packed bfloat16 weights for [`Classifier::logits_inference`]
    /// (`explain.prepacked_weights`); a no-op where there are none.
    fn use_prepacked(&self, on: bool) {
        let _ = on;
    }

    /// The most images one call takes (`Some(1)` for a graph exported with a fixed batch of 1):
    /// methods that cut the graph split larger batches.
    fn max_batch(&self) -> Option<i64> {
        None
    }

    /// d(target logit) / d(input) for each image, `N x C x S x S`, with the guided rule at every
    /// ReLU (`grad_in = relu(grad_out) * 1[x > 0]`): Guided Backprop's backward pass.
    fn guided_input_gradient(&self, x: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let _ = (x, targets);
        Err(Error::Unsupported {
            method: "Guided Backprop".into(),
            reason: "this model's ReLUs cannot be reached".into(),
        })
    }

    /// Grad-CAM's cut: the activations of the explained layer for `x` (a leaf that requires grad)
    /// and the logits computed from them.
    fn cam_cut(&self, x: &Tensor, layer: CamLayer) -> Result<(Tensor, Tensor)> {
        let _ = (x, layer);
        Err(Error::Unsupported {
            method: "Grad-CAM".into(),
            reason: "this model's layers cannot be reached".into(),
        })
    }

    /// The parametrised layers, input first, for the sanity check's cascade.
    fn param_units(&self) -> Result<Vec<ParamUnit>>;

    /// A parameter tensor by the name [`ParamUnit`] gives (shares storage: writing into it changes
    /// the model).
    fn param(&self, name: &str) -> Option<Tensor>;

    /// An independent copy (parameters copied; caches of converted weights made afresh).
    fn duplicate(&self) -> Result<Model>;

    /// One image's float32 activations (see [`super::memory`]); `None` when they cannot be seen.
    fn activation_memory(&self) -> Option<ActivationMemory> {
        None
    }

    /// The model in one line, for the log and the run record: kind and file, input, classes and
    /// what the maps explain.
    fn describe(&self) -> String;

    /// The scores the attribution maps explain (stored with the run).
    fn explains(&self) -> String;

    /// Floating-point operations of one image's forward (multiply-adds count 2), when known.
    fn forward_flops(&self) -> Option<f64> {
        None
    }

    /// Forward time per layer at `batch` (median of `reps`): f32 as loaded, f32 channels-last, bf16
    /// channels-last, in seconds (`bench --layers`).
    fn layer_profile(&self, batch: i64, reps: usize) -> Result<Vec<(String, [f64; 3])>> {
        let _ = (batch, reps);
        Err(Error::Unsupported {
            method: "bench --layers".into(),
            reason: "per-layer timings are measured on the native CNN's layer list".into(),
        })
    }
}

/// The model under audit: any [`Classifier`], behind one handle.
pub struct Model(Box<dyn Classifier>);

impl Model {
    pub fn new(c: impl Classifier + 'static) -> Model {
        Model(Box::new(c))
    }

    /// Logits, eval mode. Gradients flow if `x` requires them. Every kind ran its forward on
    /// probe batches when it was loaded: a failure here is a bug, not bad input.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.0
            .logits(x)
            .unwrap_or_else(|e| panic!("the model ran at load time but fails now: {e}"))
    }
}

/// A [`Model`] is itself a classifier: `&model` goes wherever a `&dyn Classifier` is taken.
impl Classifier for Model {
    fn input(&self) -> &InputSpec {
        self.0.input()
    }
    fn device(&self) -> Device {
        self.0.device()
    }
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.0.logits(x)
    }
    fn has_bf16(&self) -> bool {
        self.0.has_bf16()
    }
    fn bf16_gradients_by_default(&self) -> bool {
        self.0.bf16_gradients_by_default()
    }
    fn logits_mixed(&self, x: &Tensor) -> Result<Tensor> {
        self.0.logits_mixed(x)
    }
    fn logits_inference(&self, x: &Tensor, bf16: bool) -> Result<Tensor> {
        self.0.logits_inference(x, bf16)
    }
    fn use_prepacked(&self, on: bool) {
        self.0.use_prepacked(on)
    }
    fn max_batch(&self) -> Option<i64> {
        self.0.max_batch()
    }
    fn guided_input_gradient(&self, x: &Tensor, targets: &Tensor) -> Result<Tensor> {
        self.0.guided_input_gradient(x, targets)
    }
    fn cam_cut(&self, x: &Tensor, layer: CamLayer) -> Result<(Tensor, Tensor)> {
        self.0.cam_cut(x, layer)
    }
    fn param_units(&self) -> Result<Vec<ParamUnit>> {
        self.0.param_units()
    }
    fn param(&self, name: &str) -> Option<Tensor> {
        self.0.param(name)
    }
    fn duplicate(&self) -> Result<Model> {
        self.0.duplicate()
    }
    fn activation_memory(&self) -> Option<ActivationMemory> {
        self.0.activation_memory()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn explains(&self) -> String {
        self.0.explains()
    }
    fn forward_flops(&self) -> Option<f64> {
        self.0.forward_flops()
    }
    fn layer_profile(&self, batch: i64, reps: usize) -> Result<Vec<(String, [f64; 3])>> {
        self.0.layer_profile(batch, reps)
    }
}
