//! The classifier under audit: one trait ([`Classifier`], classifier.rs) implemented by the native CNN
//! (its layer list in layers.rs, the built network in native.rs), a user's TorchScript module
//! (torchscript.rs) and an imported ONNX graph (onnx/); all give logits. Here: input geometry, the
//! load-time checks every kind shares and the device choice.
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

mod classifier;
mod layers;
pub mod memory;
mod mixed;
mod native;
mod native_classifier;
pub mod onnx;
mod prepacked;
mod torchscript;
pub mod train;

pub use classifier::{CamLayer, Classifier, Model, ParamRole, ParamUnit};
pub use layers::{preset_layers, LayerArgs, LayerRepr, LayerSpec};
pub use native::{cpu_has_fast_bf16, to_channels_last, Layer, NativeCnn};
pub use torchscript::{TorchScriptModel, TORCHSCRIPT_OPAQUE, TORCHSCRIPT_TO_ONNX};

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

pub(crate) fn first_line(s: &str) -> String {
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
