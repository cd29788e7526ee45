//! The classifier under audit: the native CNN (its layer list in layers.rs, the built network in
//! native.rs), a user's TorchScript module or an imported ONNX graph (onnx/); all give logits. Here:
//! the [`Model`] they share, prediction, input geometry and the device choice.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

mod layers;
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
            Model::TorchScript { .. } => Device::Cpu,
            Model::Onnx(m) => m.device(),
        }
    }

    /// Logits, eval mode. Gradients flow if `x` requires them.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Model::Native(m) => m.forward_t(x, false),
            Model::TorchScript { module, .. } => {
                module.forward_ts(&[x]).expect("checked at load time")
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

    pub fn describe(&self) -> String {
        match self {
            Model::Native(m) => {
                let kinds: Vec<&str> = m.specs.iter().map(|s| s.kind_name()).collect();
                format!("native CNN [{}]", kinds.join(", "))
            }
            Model::TorchScript { path, .. } => format!("TorchScript {}", path.display()),
            Model::Onnx(m) => m.describe(),
        }
    }

    /// Loads a TorchScript module and checks it on a zero input of the configured shape: wrong input
    /// channels/size or class count fail here, before any work, with expected vs found.
    pub fn load_torchscript(path: &Path, input: InputSpec) -> Result<Model> {
        let err = |m: String| Error::Model {
            path: path.to_path_buf(),
            message: m,
        };
        if !path.exists() {
            return Err(err("TorchScript file not found".into()));
        }
        // libtorch's message carries a C++ backtrace after its first line: keep the first line.
        let mut module = tch::CModule::load(path).map_err(|e| {
            err(format!(
                "not a loadable TorchScript module: {}",
                first_line(&e.to_string())
            ))
        })?;
        module.set_eval();
        let probe = Tensor::zeros(
            [1, input.channels, input.size, input.size],
            (Kind::Float, Device::Cpu),
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
        Ok(Model::TorchScript {
            module,
            path: path.to_path_buf(),
            input,
        })
    }
}

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
