//! The native CNN: built from a layer list (parameter names as a PyTorch `nn.Sequential` state_dict:
//! `0.weight`, `0.bias`, ...; weights in safetensors), its layers exposed for Grad-CAM and Guided
//! Backprop, and its channels-last and bfloat16 twins for the perturbation forwards.
use std::path::Path;

use tch::{nn, Device, Kind, Tensor};

use super::{all_finite, InputSpec, LayerSpec};
use crate::error::{Error, Result};

/// A built layer.
#[derive(Debug)]
pub enum Layer {
    Conv(nn::Conv2D),
    Relu,
    MaxPool(i64),
    Flatten,
    Dense(nn::Linear),
    Dropout(f64),
    BatchNorm(nn::BatchNorm),
    GlobalAvgPool,
}

impl Layer {
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Layer::Conv(c) => x.apply(c),
            Layer::Relu => x.relu(),
            Layer::MaxPool(k) => x.max_pool2d([*k, *k], [*k, *k], [0, 0], [1, 1], false),
            Layer::Flatten => x.flatten(1, -1),
            Layer::Dense(l) => x.apply(l),
            Layer::Dropout(p) => x.dropout(*p, train),
            Layer::BatchNorm(b) => x.apply_t(b, train),
            Layer::GlobalAvgPool => x.mean_dim([2i64, 3].as_slice(), false, Kind::Float),
        }
    }
}

/// The same values laid out channels-last (NHWC strides, NCHW shape): oneDNN's native layout on the
/// CPU, so convolutions skip the reorders they do on NCHW input. Gradients flow through unchanged.
pub fn to_channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

fn twin(
    cell: &std::sync::OnceLock<Box<NativeCnn>>,
    make: impl FnOnce() -> Result<NativeCnn>,
) -> Result<&NativeCnn> {
    if let Some(m) = cell.get() {
        return Ok(m);
    }
    let m = Box::new(make()?);
    Ok(cell.get_or_init(|| m))
}

/// Whether this CPU multiplies bfloat16 in hardware (AMX or AVX-512 BF16), where a bfloat16
/// forward is several times faster than float32; read once from /proc/cpuinfo (false elsewhere).
pub fn cpu_has_fast_bf16() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|s| {
            s.lines().filter(|l| l.starts_with("flags")).any(|l| {
                l.split_whitespace()
                    .any(|f| f == "amx_bf16" || f == "avx512_bf16")
            })
        })
    })
}

/// The native CNN.
pub struct NativeCnn {
    pub vs: nn::VarStore,
    pub specs: Vec<LayerSpec>,
    pub layers: Vec<Layer>,
    pub input: InputSpec,
    /// Channels-last copies for the forward-only perturbation batches (bfloat16 and float32), made
    /// on first use.
    bf16: std::sync::OnceLock<Box<NativeCnn>>,
    cl32: std::sync::OnceLock<Box<NativeCnn>>,
    /// Weights and inputs laid out channels-last (see [`NativeCnn::weights_channels_last`]).
    channels_last: std::sync::atomic::AtomicBool,
    /// The bfloat16 convolutions in oneDNN's blocked layout (see `model::prepacked`), made on first
    /// use, and whether [`NativeCnn::forward_bf16`] uses them (`explain.prepacked_weights`).
    pub(super) packed: std::sync::OnceLock<super::prepacked::Packed>,
    use_packed: std::sync::atomic::AtomicBool,
}

impl NativeCnn {
    /// Builds the layers, checking shapes as it goes: a layer list that cannot take
    /// `channels x size x size` or does not end with `classes` outputs is an error naming the layer.
    pub fn new(specs: &[LayerSpec], input: InputSpec, device: Device) -> Result<NativeCnn> {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let mut layers = Vec::with_capacity(specs.len());
        // Shape of the activation entering each layer: (channels, h, w) or (features) once flat.
        let (mut c, mut h, mut w) = (input.channels, input.size, input.size);
        let mut flat: Option<i64> = None;
        let bad = |i: usize, m: String| Error::key(format!("model.layers[{i}]"), m);
        for (i, spec) in specs.iter().enumerate() {
            let p = &root / i.to_string();
            let layer = match spec {
                LayerSpec::Conv {
                    out,
                    kernel,
                    padding,
                } => {
                    if flat.is_some() {
                        return Err(bad(i, "conv after flatten".into()));
                    }
                    let pad = padding.unwrap_or(kernel / 2);
                    let cfg = nn::ConvConfig {
                        padding: pad,
                        ..Default::default()
                    };
                    let conv = nn::conv2d(&p, c, *out, *kernel, cfg);
                    h = h + 2 * pad - kernel + 1;
                    w = w + 2 * pad - kernel + 1;
                    c = *out;
                    if h < 1 || w < 1 {
                        return Err(bad(
                            i,
                            format!("conv leaves no pixels at input size {}", input.size),
                        ));
                    }
                    Layer::Conv(conv)
                }
                LayerSpec::Relu => Layer::Relu,
                LayerSpec::Maxpool { kernel } => {
                    if flat.is_some() {
                        return Err(bad(i, "maxpool after flatten".into()));
                    }
                    h /= kernel;
                    w /= kernel;
                    if h < 1 || w < 1 {
                        return Err(bad(
                            i,
                            format!("maxpool leaves no pixels at input size {}", input.size),
                        ));
                    }
                    Layer::MaxPool(*kernel)
                }
                LayerSpec::Flatten => {
                    flat = Some(flat.unwrap_or(c * h * w));
                    Layer::Flatten
                }
                LayerSpec::GlobalAvgPool => {
                    flat = Some(c);
                    Layer::GlobalAvgPool
                }
                LayerSpec::Dense { out } => {
                    let inp = flat
                        .ok_or_else(|| bad(i, "dense before flatten / global_avg_pool".into()))?;
                    flat = Some(*out);
                    Layer::Dense(nn::linear(&p, inp, *out, Default::default()))
                }
                LayerSpec::Dropout { p: prob } => Layer::Dropout(*prob),
                LayerSpec::Batchnorm => {
                    if flat.is_some() {
                        return Err(bad(i, "batchnorm (2-D) after flatten".into()));
                    }
                    Layer::BatchNorm(nn::batch_norm2d(&p, c, Default::default()))
                }
            };
            layers.push(layer);
        }
        match flat {
            Some(n) if n == input.classes => {}
            Some(n) => {
                return Err(Error::ModelMismatch(format!(
                    "the layer list ends with {n} outputs but the data has {} classes",
                    input.classes
                )))
            }
            None => {
                return Err(Error::key(
                    "model.layers",
                    "must end with flatten/global_avg_pool and dense",
                ))
            }
        }
        Ok(NativeCnn {
            vs,
            specs: specs.to_vec(),
            layers,
            input,
            bf16: std::sync::OnceLock::new(),
            cl32: std::sync::OnceLock::new(),
            channels_last: std::sync::atomic::AtomicBool::new(false),
            packed: std::sync::OnceLock::new(),
            use_packed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_range(x, 0, self.layers.len(), train)
    }

    /// A copy of this model with its weights in `kind` (e.g. bfloat16), frozen, channels-last.
    pub fn converted(&self, kind: Kind) -> Result<NativeCnn> {
        let mut m = NativeCnn::new(&self.specs, self.input.clone(), self.vs.device())?;
        m.vs.copy(&self.vs)?;
        m.vs.set_kind(kind);
        m.vs.freeze();
        m.weights_channels_last();
        Ok(m)
    }

    /// The bfloat16 channels-last copy of this model (converted once, on first use). Its weights are
    /// a snapshot: weights changed afterwards are not seen by it.
    pub fn bf16(&self) -> Result<&NativeCnn> {
        twin(&self.bf16, || self.converted(Kind::BFloat16))
    }

    /// The float32 channels-last copy (same values, oneDNN's native layout: faster convolutions,
    /// float sums in another order). Used for forward-only batches; the gradient methods use `self`.
    pub fn channels_last_f32(&self) -> Result<&NativeCnn> {
        twin(&self.cl32, || self.converted(Kind::Float))
    }

    /// Inference-only forward of layers `from..to` (call under `no_grad`): the values of
    /// [`NativeCnn::forward_range`] in eval mode, with two memory-traffic savings. A ReLU followed by
    /// a max pooling runs after it, on a tensor a quarter the size (ReLU is monotone, so
    /// `pool(relu(a)) = relu(pool(a))` exactly), and ReLUs run in place on the layer output they follow.
    pub fn infer_range(&self, x: &Tensor, from: usize, to: usize) -> Tensor {
        let mut a = if from == 0
            && x.dim() == 4
            && self
                .channels_last
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            to_channels_last(x)
        } else {
            x.shallow_clone()
        };
        // The input tensor is the caller's: never modified in place.
        let mut owned = false;
        let mut i = from;
        while i < to {
            match (&self.layers[i], self.layers.get(i + 1)) {
                (Layer::Relu, Some(pool @ Layer::MaxPool(_))) if i + 1 < to => {
                    a = pool.forward_t(&a, false);
                    a = a.relu_();
                    owned = true;
                    i += 2;
                    continue;
                }
                (Layer::Relu, _) if owned => a = a.relu_(),
                (Layer::Dropout(_), _) => {}
                (layer, _) => {
                    a = layer.forward_t(&a, false);
                    owned = true;
                }
            }
            i += 1;
        }
        a
    }

    /// Logits with the convolution part in bfloat16 (the [`NativeCnn::bf16`] copy) and the layers
    /// from the first flatten / global pooling on in float32: they are < 2% of the work, and the
    /// bf16 matrix-unit (AMX) matmul of oneDNN 3.12 in libtorch 2.13 crashes (SIGFPE in its blocking
    /// heuristic) for some small batch sizes, which the float32 path does not.
    pub fn forward_bf16_convs(&self, x: &Tensor) -> Result<Tensor> {
        let low = self.bf16()?;
        let split = self.float_head_start();
        let a = low.infer_range(&x.to_kind(Kind::BFloat16), 0, split);
        Ok(self.infer_range(&a.to_kind(Kind::Float), split, self.layers.len()))
    }

    /// The bfloat16 forward of the perturbation batches: [`NativeCnn::forward_bf16_prepacked`] when
    /// switched on by [`NativeCnn::use_prepacked`], on the CPU, and the layers allow it, else
    /// [`NativeCnn::forward_bf16_convs`].
    pub fn forward_bf16(&self, x: &Tensor) -> Result<Tensor> {
        // oneDNN's blocked layout is a CPU layout: on a GPU the channels-last path runs.
        if self.use_packed.load(std::sync::atomic::Ordering::Relaxed)
            && self.vs.device() == Device::Cpu
            && self.can_prepack()
        {
            self.forward_bf16_prepacked(x)
        } else {
            self.forward_bf16_convs(x)
        }
    }

    /// Chooses the path of [`NativeCnn::forward_bf16`] (`explain.prepacked_weights`).
    pub fn use_prepacked(&self, on: bool) {
        self.use_packed
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Lays every 4-D weight out channels-last (see [`to_channels_last`]), and inputs from now on;
    /// values are unchanged, float sums may differ in the last bits (another summation order).
    pub fn weights_channels_last(&self) {
        self.channels_last
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tch::no_grad(|| {
            for (_, mut v) in self.vs.variables() {
                if v.dim() == 4 {
                    let cl = to_channels_last(&v);
                    v.set_data(&cl);
                }
            }
        });
    }

    /// The float32 activations of one image (a forward at batch 1): every layer's output plus the
    /// input (what a backward keeps), and the largest input + output pair (what a forward without
    /// gradients holds at once).
    pub fn activation_memory(&self) -> super::memory::ActivationMemory {
        let _guard = tch::no_grad_guard();
        let bytes = |t: &Tensor| t.numel() as u64 * 4;
        let s = self.input.size;
        let mut a = Tensor::zeros(
            [1, self.input.channels, s, s],
            (Kind::Float, self.vs.device()),
        );
        let (mut kept, mut live) = (bytes(&a), bytes(&a));
        for layer in &self.layers {
            let out = layer.forward_t(&a, false);
            kept += bytes(&out);
            live = live.max(bytes(&a) + bytes(&out));
            a = out;
        }
        super::memory::ActivationMemory { kept, live }
    }

    /// Runs layers `from..to` (eval mode unless `train`).
    pub fn forward_range(&self, x: &Tensor, from: usize, to: usize, train: bool) -> Tensor {
        let cl = self
            .channels_last
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut a = if cl && from == 0 && x.dim() == 4 {
            to_channels_last(x)
        } else {
            x.shallow_clone()
        };
        for layer in &self.layers[from..to] {
            a = layer.forward_t(&a, train);
        }
        a
    }

    /// Index of the last convolution, extended over a ReLU that directly follows it (a Keras
    /// `Conv2D(activation='relu')`, as in the notebook, outputs post-activation values).
    pub fn last_conv_output(&self) -> Option<usize> {
        let i = self
            .specs
            .iter()
            .rposition(|s| matches!(s, LayerSpec::Conv { .. }))?;
        Some(if matches!(self.specs.get(i + 1), Some(LayerSpec::Relu)) {
            i + 1
        } else {
            i
        })
    }

    /// Loads safetensors weights, checking every name and shape first so that a wrong-size model fails
    /// with expected vs found instead of a libtorch message.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let err = |m: String| Error::Model {
            path: path.to_path_buf(),
            message: m,
        };
        if !path.exists() {
            return Err(err(
                "weights file not found (run `make model` or `tumor-audit train`)".into(),
            ));
        }
        let found = Tensor::read_safetensors(path)
            .map_err(|e| err(format!("not a readable safetensors file: {e}")))?;
        let found: std::collections::HashMap<String, Tensor> = found.into_iter().collect();
        let mut vars = self.vs.variables();
        let mut names: Vec<_> = vars.keys().cloned().collect();
        names.sort();
        for name in &names {
            let expected = vars[name].size();
            match found.get(name) {
                None => return Err(err(format!("tensor `{name}` (shape {expected:?}) is missing; the file does not match the configured layer list"))),
                Some(t) if t.size() != expected => {
                    return Err(Error::ModelMismatch(format!(
                        "{}: tensor `{name}` has shape {:?}, the configured model ({} channel(s), {}x{} input, {} classes) expects {expected:?}",
                        path.display(), t.size(), self.input.channels, self.input.size, self.input.size, self.input.classes
                    )))
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = found.keys().find(|k| !vars.contains_key(*k)) {
            return Err(err(format!(
                "unexpected tensor `{extra}`: the file has layers the configured model lacks"
            )));
        }
        // A NaN or infinite weight makes every output NaN: all-empty maps and a meaningless accuracy.
        for name in &names {
            if !all_finite(&found[name]) {
                return Err(err(format!(
                    "tensor `{name}` holds NaN or infinite values: the weights are damaged"
                )));
            }
        }
        tch::no_grad(|| {
            for name in &names {
                let dst = vars.get_mut(name).expect("listed");
                dst.copy_(&found[name].to_kind(dst.kind()).to_device(dst.device()));
            }
        });
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        }
        self.vs.save(path).map_err(|e| Error::Model {
            path: path.to_path_buf(),
            message: format!("cannot save: {e}"),
        })
    }
}
