//! A user's TorchScript module as a [`Classifier`]: loaded and checked before any work, run through
//! its top-level `forward` only. tch (libtorch's C API) reaches no submodule, intermediate value or
//! hook of a loaded module, so the abilities that need the inside of the network (Guided Backprop's
//! ReLU rule, Grad-CAM's layer, the sanity check's layer order) are refused with that reason.
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use super::classifier::{CamLayer, Classifier, Model, ParamUnit};
use super::{first_line, looks_like_probabilities, InputSpec};
use crate::error::{Error, Result};

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
     see docs/own-model.md) and set model.onnx: every method and the \
     sanity check run on an ONNX graph";

/// A loaded, checked TorchScript module.
pub struct TorchScriptModel {
    module: tch::CModule,
    path: PathBuf,
    input: InputSpec,
    device: Device,
    /// Traced at batch 1 (it fails on a batch): batches run one image at a time.
    single_image: bool,
}

impl TorchScriptModel {
    /// Loads a TorchScript module onto `device` and checks it before any work: a zero input of the
    /// configured shape (wrong input channels/size or class count fail with expected vs found), then a
    /// batch of `batch` images (a module traced at batch 1 runs one image at a time, with a warning),
    /// whose outputs must not look like probabilities (a module's final softmax cannot be taken off,
    /// and probabilities explained as logits would be wrong).
    pub fn load(
        path: &Path,
        input: InputSpec,
        device: Device,
        batch: i64,
    ) -> Result<TorchScriptModel> {
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
        let single_image = match tch::no_grad(|| module.forward_ts(&[&many])) {
            Ok(o) if o.size() == [n, out.size()[1]] => false,
            _ => {
                tracing::warn!(
                    "{}: the module does not run a batch of {n} (traced at batch 1?): images run one at a time",
                    path.display()
                );
                true
            }
        };
        let model = TorchScriptModel {
            module,
            path: path.to_path_buf(),
            input,
            device,
            single_image,
        };
        let p = tch::no_grad(|| model.logits(&many))?;
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

    fn refusal(&self, method: &str, needs: &str) -> Error {
        Error::Unsupported {
            method: method.into(),
            reason: format!("{needs}, and {TORCHSCRIPT_OPAQUE}; {TORCHSCRIPT_TO_ONNX}"),
        }
    }

    fn run(&self, x: &Tensor) -> Result<Tensor> {
        self.module.forward_ts(&[x]).map_err(|e| Error::Model {
            path: self.path.clone(),
            message: format!("forward failed: {}", first_line(&e.to_string())),
        })
    }
}

impl Model {
    /// Loads a TorchScript module on the CPU and checks it (see [`TorchScriptModel::load`]) with a
    /// batch of 2.
    pub fn load_torchscript(path: &Path, input: InputSpec) -> Result<Model> {
        Model::load_torchscript_on(path, input, Device::Cpu, 2)
    }

    /// [`TorchScriptModel::load`] as a [`Model`].
    pub fn load_torchscript_on(
        path: &Path,
        input: InputSpec,
        device: Device,
        batch: i64,
    ) -> Result<Model> {
        Ok(Model::new(TorchScriptModel::load(
            path, input, device, batch,
        )?))
    }
}

impl Classifier for TorchScriptModel {
    fn input(&self) -> &InputSpec {
        &self.input
    }

    fn device(&self) -> Device {
        self.device
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.size()[0];
        if self.single_image && n > 1 {
            let parts = (0..n)
                .map(|i| self.run(&x.narrow(0, i, 1)))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Tensor::cat(&parts, 0));
        }
        self.run(x)
    }

    fn guided_input_gradient(&self, _x: &Tensor, _targets: &Tensor) -> Result<Tensor> {
        Err(self.refusal("Guided Backprop", "its ReLUs need the guided backward rule"))
    }

    fn cam_cut(&self, _x: &Tensor, _layer: CamLayer) -> Result<(Tensor, Tensor)> {
        Err(self.refusal(
            "Grad-CAM",
            "it needs a convolutional layer's activations and their gradient",
        ))
    }

    fn param_units(&self) -> Result<Vec<ParamUnit>> {
        Err(Error::Unsupported {
            method: "the model-randomisation check".into(),
            reason: format!(
                "{} is a TorchScript module, whose layers' order along the forward pass and initialisers are unknown ({}); {}",
                self.path.display(),
                TORCHSCRIPT_OPAQUE,
                TORCHSCRIPT_TO_ONNX
            ),
        })
    }

    fn param(&self, _name: &str) -> Option<Tensor> {
        None
    }

    fn duplicate(&self) -> Result<Model> {
        Err(self
            .param_units()
            .expect_err("a TorchScript module is refused"))
    }

    fn describe(&self) -> String {
        let i = &self.input;
        format!(
            "TorchScript {} (input nchw {}x{}x{}; {} classes; outputs taken as logits, checked not to be probabilities{})",
            self.path.display(),
            i.channels,
            i.size,
            i.size,
            i.classes,
            if self.single_image { "; fixed batch of 1" } else { "" }
        )
    }

    fn explains(&self) -> String {
        "the module's outputs (taken as logits)".into()
    }

    fn max_batch(&self) -> Option<i64> {
        None
    }
}
