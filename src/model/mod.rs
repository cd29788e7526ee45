//! The classifier under audit: the native CNN (its layer list in layers.rs, the built network in
//! native.rs), a user's TorchScript module or an imported ONNX graph (onnx/); all give logits. Here:
//! the [`Model`] they share, prediction, input geometry and the device choice.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

mod layers;
pub mod memory;
mod mixed;
mod native;
pub mod onnx;
mod prepacked;
pub mod train;

pub use layers::{preset_layers, LayerArgs, LayerRepr, LayerSpec};
pub use native::{cpu_has_fast_bf16, to_channels_last, Layer, NativeCnn};

/// `model.architecture`: a preset layer list, or `custom` (the `model.layers` list).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Conv16-Conv32-Pool-Conv64-Conv64-Pool-Flatten-Dense64-Dropout-Dense: the notebook's pattern
    /// scaled for CPU.
    Cnn128,
    /// The notebook's 32-64-128-128 at 256x256, for GPUs.
    Cnn256,
    Custom,
}

/// Input geometry and classes a model is built for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InputSpec {
    pub channels: i64,
    pub size: i64,
    pub classes: i64,
}

/// The model under audit.
pub enum Model {
    Native(NativeCnn),
    TorchScript {
        module: tch::CModule,
        path: PathBuf,
        input: InputSpec,
        device: Device,
        /// Traced at batch 1 (it fails on a batch): batches run one image at a time.
        single_image: bool,
    },
    /// An ONNX graph run node by node on libtorch (see [`onnx`]).
    Onnx(Box<onnx::OnnxModel>),
}

impl Model {
    pub fn input(&self) -> &InputSpec {
        match self {
            Model::Native(m) => &m.input,
            Model::TorchScript { input, .. } => input,
            Model::Onnx(m) => &m.input,
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Model::Native(m) => m.vs.device(),
            Model::TorchScript { device, .. } => *device,
            Model::Onnx(m) => m.device(),
        }
    }

    /// Logits, eval mode. Gradients flow if `x` requires them.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Model::Native(m) => m.forward_t(x, false),
            Model::TorchScript {
                module,
                single_image,
                ..
            } => {
                let n = x.size()[0];
                if *single_image && n > 1 {
                    let parts: Vec<Tensor> = (0..n)
                        .map(|i| {
                            module
                                .forward_ts(&[x.narrow(0, i, 1)])
                                .expect("checked at load time")
                        })
                        .collect();
                    Tensor::cat(&parts, 0)
                } else {
                    module.forward_ts(&[x]).expect("checked at load time")
                }
            }
            // Every node ran on the load check's probe batches; a failure here is a bug.
            Model::Onnx(m) => m.forward(x).expect("the ONNX graph ran at load time"),
        }
    }

    /// Softmax probabilities of x [N, C, S, S], in batches of 128, one Vec per image.
    pub fn predict_probs(&self, x: &Tensor) -> Result<Vec<Vec<f32>>> {
        let _guard = tch::no_grad_guard();
        let n = x.size()[0];
        let mut out = Vec::with_capacity(n as usize);
        let dev = self.device();
        for start in (0..n).step_by(128) {
            let len = 128.min(n - start);
            let p = self
                .forward(&x.narrow(0, start, len).to_device(dev))
                .softmax(-1, Kind::Float)
                .to_device(Device::Cpu);
            let k = p.size()[1] as usize;
            let flat = Vec::<f32>::try_from(p.flatten(0, -1))?;
            out.extend(flat.chunks(k).map(|c| c.to_vec()));
        }
        Ok(out)
    }

    pub fn native(&self) -> Option<&NativeCnn> {
        match self {
            Model::Native(m) => Some(m),
            Model::TorchScript { .. } | Model::Onnx(_) => None,
        }
    }

    pub fn onnx(&self) -> Option<&onnx::OnnxModel> {
        match self {
            Model::Onnx(m) => Some(m.as_ref()),
            _ => None,
        }
    }

    /// The model in one line, for the log and the run record: kind and file, input, classes and
    /// what the maps explain.
    pub fn describe(&self) -> String {
        let i = self.input();
        let geometry = format!(
            "input nchw {}x{}x{}; {} classes",
            i.channels, i.size, i.size, i.classes
        );
        match self {
            Model::Native(m) => {
                let kinds: Vec<&str> = m.specs.iter().map(|s| s.kind_name()).collect();
                format!(
                    "native CNN [{}] ({geometry}; no final softmax: outputs are logits)",
                    kinds.join(", ")
                )
            }
            Model::TorchScript {
                path, single_image, ..
            } => format!(
                "TorchScript {} ({geometry}; outputs taken as logits, checked not to be probabilities{})",
                path.display(),
                if *single_image { "; fixed batch of 1" } else { "" }
            ),
            Model::Onnx(m) => m.describe(),
        }
    }

    /// The scores the attribution maps explain (stored with the run).
    pub fn explains(&self) -> String {
        match self {
            Model::Native(_) => "logits".into(),
            Model::TorchScript { .. } => "the module's outputs (taken as logits)".into(),
            Model::Onnx(m) => m.explains(),
        }
    }

    /// One image's activations inside the model (see [`memory`]); `None` for a TorchScript module,
    /// whose intermediate values cannot be seen.
    pub fn activation_memory(&self) -> Option<memory::ActivationMemory> {
        match self {
            Model::Native(m) => Some(m.activation_memory()),
            Model::TorchScript { .. } => None,
            Model::Onnx(m) => Some(m.activation_memory()),
        }
    }

    /// Loads a TorchScript module on the CPU and checks it (see [`Model::load_torchscript_on`]) with
    /// a batch of 2.
    pub fn load_torchscript(path: &Path, input: InputSpec) -> Result<Model> {
        Model::load_torchscript_on(path, input, Device::Cpu, 2)
    }

    /// Loads a TorchScript module onto `device` and checks it before any work: a zero input of the
    /// configured shape (wrong input channels/size or class count fail with expected vs found), then a
    /// batch of `batch` images (a module traced at batch 1 runs one image at a time, with a warning),
    /// whose outputs must not look like probabilities (a module's final softmax cannot be taken off,
    /// and probabilities explained as logits would be wrong).
    pub fn load_torchscript_on(
        path: &Path,
        input: InputSpec,
        device: Device,
        batch: i64,
    ) -> Result<Model> {
        let err = |m: String| Error::Model {
            path: path.to_path_buf(),
            message: m,
        };
        if !path.exists() {
            return Err(err("TorchScript file not found".into()));
        }
        // libtorch's message carries a C++ backtrace after its first line: keep the first line.
        let mut module = tch::CModule::load_on_device(path, device).map_err(|e| {
            err(format!(
                "not a loadable TorchScript module: {}",
                first_line(&e.to_string())
            ))
        })?;
        module.set_eval();
        let probe = Tensor::zeros(
            [1, input.channels, input.size, input.size],
            (Kind::Float, device),
        );
        let out = tch::no_grad(|| module.forward_ts(&[&probe])).map_err(|e| {
            Error::ModelMismatch(format!(
                "{} does not accept a 1x{}x{}x{} input (config données.image: {} channel(s), size {}): {}",
                path.display(), input.channels, input.size, input.size, input.channels, input.size,
                first_line(&e.to_string())
            ))
        })?;
        if out.size() != [1, input.classes] {
            return Err(Error::ModelMismatch(format!(
                "{} outputs shape {:?} for one image; expected [1, {}] (one logit per class)",
                path.display(),
                out.size(),
                input.classes
            )));
        }
        let n = batch.max(2);
        let (c, s) = (input.channels, input.size);
        // A fixed, image-like batch (values in [0, 1], different for every image).
        let many = Tensor::arange(n * c * s * s, (Kind::Float, Device::Cpu))
            .remainder(97.0)
            .divide_scalar(96.0)
            .view([n, c, s, s])
            .to_device(device);
        let mut model = Model::TorchScript {
            module,
            path: path.to_path_buf(),
            input,
            device,
            single_image: false,
        };
        let Model::TorchScript {
            module,
            single_image,
            ..
        } = &mut model
        else {
            unreachable!("built above")
        };
        match tch::no_grad(|| module.forward_ts(&[&many])) {
            Ok(o) if o.size() == [n, out.size()[1]] => {}
            _ => {
                tracing::warn!(
                    "{}: the module does not run a batch of {n} (traced at batch 1?): images run one at a time",
                    path.display()
                );
                *single_image = true;
            }
        }
        let p = tch::no_grad(|| model.forward(&many));
        if looks_like_probabilities(&p) {
            return Err(Error::ModelMismatch(format!(
                "{}: the outputs look like probabilities (non-negative, each row sums to 1); a TorchScript \
                 module's final softmax cannot be taken off, and explaining probabilities as logits would \
                 be wrong: save the module without its final softmax, or export it to ONNX (the importer \
                 removes a final softmax)",
                path.display()
            )));
        }
        Ok(model)
    }
}

/// Whether a batch of scores (N x classes, N >= 2, classes >= 2) looks like probabilities: every
/// value non-negative and every row summing to 1.
pub fn looks_like_probabilities(p: &Tensor) -> bool {
    let size = p.size();
    if size.len() != 2 || size[1] < 2 || !all_finite(p) {
        return false;
    }
    let nonneg = p.min().double_value(&[]) >= 0.0;
    let sums = p.sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
    nonneg && (sums - 1.0).abs().max().double_value(&[]) < 1e-4
}

/// Why a TorchScript module gets no Guided Backprop, Grad-CAM or sanity check: tch (libtorch's C API)
/// runs a loaded module only through its top-level methods and lists its parameters; it reaches no
/// submodule, no intermediate value and no hook, so no ReLU's backward can be replaced, no layer's
/// activation cut out, and no layer's place along the forward pass known.
pub const TORCHSCRIPT_OPAQUE: &str = "a TorchScript module is compiled and opaque to tch 0.26, which \
     runs only its top-level methods and lists its parameters: no submodule, intermediate value or hook \
     can be reached";

/// What a TorchScript user can do instead: the same model as ONNX gets every method.
pub const TORCHSCRIPT_TO_ONNX: &str = "export the same PyTorch model to ONNX instead \
     (`torch.onnx.export(model, torch.zeros(1, C, S, S), \"model.onnx\", input_names=[\"input\"], \
     output_names=[\"logits\"], opset_version=17, dynamic_axes={\"input\": {0: \"batch\"}}, dynamo=False)`, \
     see the README's \"Auditing your own model\") and set model.onnx: every method and the sanity \
     check run on an ONNX graph";

/// Whether every value of a floating-point tensor is finite (integer tensors always are).
pub fn all_finite(t: &Tensor) -> bool {
    if !t.is_floating_point() {
        return true;
    }
    tch::no_grad(|| t.isfinite().all().int64_value(&[]) == 1)
}

/// Refuses a model whose output for a blank input (all zeros) is not finite: damaged weights or a
/// module that divides by zero would otherwise give NaN predictions (an arbitrary class) and empty
/// maps for every image.
pub fn check_finite_output(model: &Model, path: &Path) -> Result<()> {
    let spec = model.input();
    let x = Tensor::zeros(
        [1, spec.channels, spec.size, spec.size],
        (Kind::Float, model.device()),
    );
    let out = tch::no_grad(|| model.forward(&x));
    if all_finite(&out) {
        return Ok(());
    }
    Err(Error::Model {
        path: path.to_path_buf(),
        message: "its output for a blank input is NaN or infinite: the weights are damaged or the \
                  model divides by zero"
            .into(),
    })
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}

/// sha256 of a file, for the run record and model card.
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    Ok(crate::dataset::content_id(&bytes))
}

/// Chooses the device: `auto` = CUDA when present, else CPU. The one place that decides.
pub fn choose_device(request: DeviceChoice) -> Result<Device> {
    match request {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => {
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err(Error::key("--device", "cuda requested but no CUDA device is available (is libtorch the CUDA variant?)"))
            }
        }
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
    }
}

/// `--device`: where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The first CUDA device when libtorch sees one, else the CPU.
    Auto,
    Cpu,
    Cuda,
}
