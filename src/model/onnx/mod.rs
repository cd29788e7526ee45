//! A user's ONNX model (from Keras through tf2onnx, from PyTorch through `torch.onnx.export`, or any
//! exporter) run as libtorch operations node by node, so autograd, the Guided Backprop rule at each
//! ReLU, Grad-CAM at any activation and the sanity check's re-initialisation work as on the native CNN.
//!
//! Input conventions: the pipeline hands every model an N x C x S x S float tensor (C = 1 for
//! `grayscale`, 3 otherwise, scaled by `données.image`). The model's declared input decides the rest:
//! channels-last graphs (Keras) get the tensor transposed to N x S x S x C, a 3-channel graph fed grey
//! images gets the grey channel repeated (gradients are summed back onto it), and a declared height
//! and width must equal `données.image.size`. A final Softmax (or LogSoftmax) is removed so that the
//! scores explained are the logits before it; a graph whose outputs still look like probabilities is
//! refused rather than explained as if they were logits.
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use super::InputSpec;
use crate::error::{Error, Result};

mod backward;
mod classifier;
pub mod export;
pub mod graph;
mod mixed;
pub mod node;
pub mod ops;

pub use graph::{Graph, Node};

/// Axis order of the graph's image input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// N x C x H x W (PyTorch).
    Nchw,
    /// N x H x W x C (Keras / TensorFlow).
    Nhwc,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        }
    }
}

pub use super::classifier::{ParamRole, ParamUnit};

/// What one recorded forward keeps for a backward walk: per node, the inputs it was run on (detached
/// leaves requiring grad where the value depends on the image) and the outputs it produced.
pub struct Tape {
    pub inputs: Vec<Vec<Option<Tensor>>>,
    pub outputs: Vec<Vec<Tensor>>,
    /// The model input as given (a leaf requiring grad) and the graph's input made from it.
    pub x: Tensor,
    pub graph_input: Tensor,
    pub logits: Tensor,
}

/// An imported ONNX model.
pub struct OnnxModel {
    pub path: PathBuf,
    /// Nodes in execution order, ending at the logits (a removed final Softmax is not among them).
    pub nodes: Vec<Node>,
    /// Initialisers: floating point ones on the model's device (float32), integer ones on the CPU.
    params: HashMap<String, Tensor>,
    input_name: String,
    /// The value holding the logits.
    pub output: String,
    pub opset: i64,
    pub producer: String,
    pub layout: Layout,
    /// Channels the graph takes (the data may have fewer: grey repeated to RGB).
    pub model_channels: i64,
    /// Channels, size and classes of the data fed to it.
    pub input: InputSpec,
    /// Name of the final Softmax / LogSoftmax node that was removed, if any.
    pub removed_softmax: Option<String>,
    /// The graph only runs one image at a time (exported with a fixed batch of 1): batches are
    /// split into single images.
    pub single_image: bool,
    /// Values that depend on the image (the rest are constants and shapes of constants).
    dynamic: HashSet<String>,
    /// Shape of every value for one image (from the load check), for Grad-CAM's layer choice.
    pub shapes: HashMap<String, Vec<i64>>,
    /// For each node, the values whose last reader it is (freed after it in a plain forward).
    last_use: Vec<Vec<String>>,
    /// The bfloat16 copies of the convolutions' parameters (see `mixed.rs`), made on first use.
    low_params: mixed::LowParams,
    device: Device,
}

fn model_err(path: &Path, message: String) -> Error {
    Error::Model {
        path: path.to_path_buf(),
        message,
    }
}

impl OnnxModel {
    /// Loads `path` for data of shape `input` (channels, size, classes), with the graph's input
    /// layout `layout` (`auto` reads it from the declared input shape). Runs the checks described
    /// in the module notes on a probe batch of 1 and of `batch` images.
    pub fn load(
        path: &Path,
        input: InputSpec,
        layout: &str,
        device: Device,
        batch: i64,
    ) -> Result<OnnxModel> {
        let mut m = OnnxModel::open(path, input, layout, device)?;
        m.check_batch(batch)?;
        Ok(m)
    }

    /// [`OnnxModel::load`] up to the probe of one image (which records every value's shape, see
    /// [`OnnxModel::activation_memory`]); [`OnnxModel::check_batch`] completes the checks.
    pub fn open(path: &Path, input: InputSpec, layout: &str, device: Device) -> Result<OnnxModel> {
        let err = |m: String| model_err(path, m);
        if !path.exists() {
            return Err(err("ONNX file not found".into()));
        }
        let g = graph::Graph::read(path)?;
        let dims = g.input_dims.clone();
        if dims.len() != 4 {
            return Err(err(format!(
                "the input `{}` has {} dimensions; an image model takes 4 (batch, channels and two spatial axes)",
                g.input_name,
                dims.len()
            )));
        }
        let layout = match layout {
            "nchw" => Layout::Nchw,
            "nhwc" => Layout::Nhwc,
            "auto" => detect_layout(&g).ok_or_else(|| {
                err(format!(
                    "cannot tell whether the input `{}` (shape {}) is channels-first or channels-last: set model.onnx_layout to nchw or nhwc",
                    g.input_name,
                    show_dims(&dims)
                ))
            })?,
            other => {
                return Err(Error::key(
                    "model.onnx_layout",
                    format!("`{other}` is unknown: allowed auto, nchw, nhwc"),
                ))
            }
        };
        let (c, h, w) = match layout {
            Layout::Nchw => (dims[1], dims[2], dims[3]),
            Layout::Nhwc => (dims[3], dims[1], dims[2]),
        };
        let model_channels = c.unwrap_or(input.channels);
        if !(model_channels == input.channels || (model_channels == 3 && input.channels == 1)) {
            return Err(Error::ModelMismatch(format!(
                "{} takes {model_channels} channel(s) ({} input {}); the configured images have {} (données.image.grayscale: {})",
                path.display(),
                layout.name(),
                show_dims(&dims),
                input.channels,
                input.channels == 1
            )));
        }
        for (axis, d) in [("height", h), ("width", w)] {
            if let Some(d) = d {
                if d != input.size {
                    return Err(Error::ModelMismatch(format!(
                        "{} takes images of {axis} {d} ({} input {}); données.image.size is {}",
                        path.display(),
                        layout.name(),
                        show_dims(&dims),
                        input.size
                    )));
                }
            }
        }
        let mut params = HashMap::new();
        for (name, t) in &g.initializers {
            let t = if t.is_floating_point() {
                t.to_device(device)
            } else {
                t.shallow_clone()
            };
            params.insert(name.clone(), t);
        }
        let mut nodes = g.nodes.clone();
        let mut output = g.output_name.clone();
        // A final Softmax (possibly behind Identity nodes) is removed: the maps explain its input.
        let mut removed_softmax = None;
        while let Some(i) = nodes
            .iter()
            .rposition(|n| n.outputs.first() == Some(&output))
        {
            let n = &nodes[i];
            let only_reader = !nodes.iter().any(|m| m.inputs.contains(&output));
            if !only_reader {
                break;
            }
            match n.op.as_str() {
                "Identity" => {
                    output = n.inputs[0].clone();
                    nodes.remove(i);
                }
                "Softmax" | "LogSoftmax" => {
                    removed_softmax = Some(n.name.clone());
                    output = n.inputs[0].clone();
                    nodes.remove(i);
                    break;
                }
                _ => break,
            }
        }
        // Nodes not needed for the output (e.g. an unused auxiliary branch) are dropped.
        let mut needed: HashSet<String> = HashSet::from([output.clone()]);
        let mut keep = vec![false; nodes.len()];
        for (i, n) in nodes.iter().enumerate().rev() {
            if n.outputs.iter().any(|o| needed.contains(o)) {
                keep[i] = true;
                needed.extend(n.inputs.iter().filter(|s| !s.is_empty()).cloned());
            }
        }
        let nodes: Vec<Node> = nodes
            .into_iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(n, _)| n)
            .collect();
        let mut dynamic = HashSet::from([g.input_name.clone()]);
        for n in &nodes {
            if n.inputs.iter().any(|i| dynamic.contains(i)) {
                dynamic.extend(n.outputs.iter().cloned());
            }
        }
        let mut last_use: Vec<Vec<String>> = vec![Vec::new(); nodes.len()];
        let mut seen = HashSet::new();
        for (i, n) in nodes.iter().enumerate().rev() {
            for inp in n.inputs.iter().filter(|s| !s.is_empty()) {
                if !params.contains_key(inp) && *inp != output && seen.insert(inp.clone()) {
                    last_use[i].push(inp.clone());
                }
            }
        }
        let mut m = OnnxModel {
            path: path.to_path_buf(),
            nodes,
            params,
            input_name: g.input_name.clone(),
            output,
            opset: g.opset,
            producer: g.producer.clone(),
            layout,
            model_channels,
            input,
            removed_softmax,
            single_image: false,
            dynamic,
            shapes: HashMap::new(),
            last_use,
            low_params: Default::default(),
            device,
        };
        m.probe_one()?;
        Ok(m)
    }

    /// A fixed, image-like probe batch of `n` images (values in [0, 1]; no randomness needed).
    fn probe_input(&self, n: i64) -> Tensor {
        let (c, s) = (self.input.channels, self.input.size);
        Tensor::arange(n * c * s * s, (Kind::Float, Device::Cpu))
            .remainder(97.0)
            .divide_scalar(96.0)
            .view([n, c, s, s])
            .to_device(self.device)
    }

    /// Runs one image: the output shape, and every value's shape for one image.
    fn probe_one(&mut self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let s = self.input.size;
        let one = self.probe_input(1);
        let mut shapes = HashMap::new();
        let out = self
            .run(&one, &mut |name, t| {
                shapes.insert(name.to_string(), t.size());
            })
            .map_err(|e| {
                Error::ModelMismatch(format!(
                    "{} fails on one {}x{}x{} image: {e}",
                    self.path.display(),
                    self.input.channels,
                    s,
                    s
                ))
            })?;
        self.shapes = shapes;
        if out.size() != [1, self.input.classes] {
            return Err(Error::ModelMismatch(format!(
                "{} outputs shape {:?} for one image; expected [1, {}] (one score per class)",
                self.path.display(),
                out.size(),
                self.input.classes
            )));
        }
        Ok(())
    }

    /// Runs a batch of `batch` images (at least 2): a graph that cannot (exported with a fixed batch
    /// of 1) runs one image at a time from now on; outputs that still look like probabilities are
    /// refused.
    pub fn check_batch(&mut self, batch: i64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let n = batch.max(2);
        let many = self.probe_input(n);
        match self.run(&many, &mut |_, _| {}) {
            Ok(o) if o.size() == [n, self.input.classes] => {}
            _ => {
                tracing::warn!(
                    "{}: the graph does not run a batch of {n} (exported with a fixed batch of 1?): images run one at a time",
                    self.path.display()
                );
                self.single_image = true;
            }
        }
        if self.removed_softmax.is_none() {
            let p = self.forward(&many)?;
            if super::looks_like_probabilities(&p) {
                let last = self.nodes.last().map(|n| n.label()).unwrap_or_default();
                return Err(Error::ModelMismatch(format!(
                    "{}: the outputs look like probabilities (non-negative, each row sums to 1) but the graph ends with {last}, not a Softmax the importer can remove; explaining probabilities as logits would be wrong: export the model without its final normalisation",
                    self.path.display()
                )));
            }
        }
        Ok(())
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The graph's image input value.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// The data tensor (N x C x S x S) as the graph's input: channels repeated, axes reordered.
    fn adapt(&self, x: &Tensor) -> Tensor {
        let x = if self.model_channels != x.size()[1] {
            x.expand([-1, self.model_channels, -1, -1], false)
        } else {
            x.shallow_clone()
        };
        match self.layout {
            Layout::Nchw => x,
            Layout::Nhwc => x.permute([0, 2, 3, 1]),
        }
    }

    fn node_inputs(&self, n: &Node, env: &HashMap<String, Tensor>) -> Result<Vec<Option<Tensor>>> {
        n.inputs
            .iter()
            .map(|name| {
                if name.is_empty() {
                    return Ok(None);
                }
                env.get(name)
                    .or_else(|| self.params.get(name))
                    .map(|t| Some(t.shallow_clone()))
                    .ok_or_else(|| {
                        Error::Other(format!("{}: value `{name}` is not available", n.label()))
                    })
            })
            .collect()
    }

    fn run_node(&self, n: &Node, inputs: &[Option<Tensor>]) -> Result<Vec<Tensor>> {
        ops::run(n, inputs, self.opset)
            .map_err(|m| Error::Other(format!("ONNX {} ({}): {m}", n.label(), self.path.display())))
    }

    /// Plain float32 forward, calling `seen(value, tensor)` for each node output. Values are freed
    /// after their last reader.
    fn run(&self, x: &Tensor, seen: &mut dyn FnMut(&str, &Tensor)) -> Result<Tensor> {
        self.run_mode(x, false, seen)
    }

    /// [`OnnxModel::run`], with the convolutions in bfloat16 when `low` (see `mixed.rs`); the
    /// logits are float32 either way.
    fn run_mode(
        &self,
        x: &Tensor,
        low: bool,
        seen: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        let mut env: HashMap<String, Tensor> = HashMap::new();
        env.insert(self.input_name.clone(), self.adapt(x));
        for (i, n) in self.nodes.iter().enumerate() {
            let mut inputs = self.node_inputs(n, &env)?;
            if low {
                inputs = self.low_inputs(&n.op, &n.inputs, inputs);
            }
            let outs = self.run_node(n, &inputs)?;
            if let Some(o) = outs.first() {
                seen(&n.outputs[0], o);
            }
            for (name, t) in n.outputs.iter().zip(outs) {
                env.insert(name.clone(), t);
            }
            for v in &self.last_use[i] {
                env.remove(v);
            }
        }
        let out = env.remove(&self.output).ok_or_else(|| {
            Error::Other(format!("the output `{}` was not computed", self.output))
        })?;
        Ok(if low { mixed::high(&out) } else { out })
    }

    /// Runs `f` on the whole batch, or image by image for a graph with a fixed batch of 1, and
    /// concatenates the results along the batch.
    fn per_batch(
        &self,
        x: &Tensor,
        f: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        if !self.single_image || x.size()[0] == 1 {
            return f(x);
        }
        let parts = (0..x.size()[0])
            .map(|i| f(&x.narrow(0, i, 1)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 0))
    }

    /// Logits for an N x C x S x S batch. Gradients flow if `x` requires them.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.per_batch(x, &mut |x| self.run(x, &mut |_, _| {}))
    }

    /// A forward for a backward walk (see [`Tape`]): `x` must be a single run of the graph (one
    /// image for a fixed-batch graph).
    pub fn forward_recorded(&self, x: &Tensor) -> Result<Tape> {
        let x = x.detach().set_requires_grad(true);
        let graph_input = self.adapt(&x);
        let mut env: HashMap<String, Tensor> = HashMap::new();
        env.insert(self.input_name.clone(), graph_input.detach());
        let mut inputs_all = Vec::with_capacity(self.nodes.len());
        let mut outputs_all = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            let inputs: Vec<Option<Tensor>> = self
                .node_inputs(n, &env)?
                .into_iter()
                .zip(&n.inputs)
                .map(|(t, name)| {
                    t.map(|t| {
                        if self.dynamic.contains(name) && t.is_floating_point() {
                            t.detach().set_requires_grad(true)
                        } else {
                            t
                        }
                    })
                })
                .collect();
            let outs = self.run_node(n, &inputs)?;
            for (name, t) in n.outputs.iter().zip(&outs) {
                env.insert(name.clone(), t.detach());
            }
            inputs_all.push(inputs);
            outputs_all.push(outs);
        }
        let logits = env.remove(&self.output).ok_or_else(|| {
            Error::Other(format!("the output `{}` was not computed", self.output))
        })?;
        Ok(Tape {
            inputs: inputs_all,
            outputs: outputs_all,
            x,
            graph_input,
            logits,
        })
    }

    /// Forward with the value `cut` replaced by a detached leaf requiring grad: returns (that leaf,
    /// the logits). What Grad-CAM differentiates.
    pub fn forward_cut(&self, x: &Tensor, cut: &str) -> Result<(Tensor, Tensor)> {
        let mut env: HashMap<String, Tensor> = HashMap::new();
        env.insert(self.input_name.clone(), self.adapt(&x.detach()));
        let mut leaf = None;
        for n in &self.nodes {
            let inputs = self.node_inputs(n, &env)?;
            let mut outs = self.run_node(n, &inputs)?;
            if n.outputs.first().map(String::as_str) == Some(cut) {
                let l = outs[0].detach().set_requires_grad(true);
                outs[0] = l.shallow_clone();
                leaf = Some(l);
            }
            for (name, t) in n.outputs.iter().zip(outs) {
                env.insert(name.clone(), t);
            }
        }
        let leaf = leaf
            .ok_or_else(|| Error::Other(format!("value `{cut}` is not computed by the graph")))?;
        let logits = env.remove(&self.output).ok_or_else(|| {
            Error::Other(format!("the output `{}` was not computed", self.output))
        })?;
        Ok((leaf, logits))
    }

    /// Whether a value is an N x C x H x W activation (by the operators that made it: convolutions,
    /// pools, batch norm, resizes, and element-wise operators on such values) with H x W > 1.
    fn spatial_values(&self) -> HashSet<String> {
        let mut nchw: HashSet<String> = HashSet::new();
        if self.layout == Layout::Nchw {
            nchw.insert(self.input_name.clone());
        }
        for n in &self.nodes {
            let out = &n.outputs[0];
            let is = match n.op.as_str() {
                "Conv" | "ConvTranspose" | "MaxPool" | "AveragePool" | "BatchNormalization"
                | "Resize" | "Upsample" => true,
                "Relu" | "Clip" | "LeakyRelu" | "Elu" | "Selu" | "Sigmoid" | "Tanh"
                | "HardSwish" | "HardSigmoid" | "Identity" | "Dropout" | "Add" | "Sub" | "Mul"
                | "Div" | "Max" | "Min" | "Sum" | "Mean" | "Concat" | "Pad" => {
                    n.inputs
                        .iter()
                        .filter(|i| {
                            self.dynamic.contains(*i)
                                && self.shapes.get(*i).is_some_and(|s| s.len() == 4)
                        })
                        .all(|i| nchw.contains(i))
                        && n.inputs.iter().any(|i| nchw.contains(i))
                }
                _ => false,
            };
            if is
                && self
                    .shapes
                    .get(out)
                    .is_some_and(|s| s.len() == 4 && s[2] * s[3] > 1)
            {
                nchw.insert(out.clone());
            }
        }
        nchw
    }

    /// The value Grad-CAM explains: `requested` (a value or node name), else the last convolution's
    /// output, followed through the activation / batch-norm / residual-add nodes that read only it
    /// (a Keras `Conv2D(activation='relu')` explains post-activation values, like the native CNN).
    pub fn gradcam_value(&self, requested: Option<&str>) -> Result<String> {
        let spatial = self.spatial_values();
        if let Some(r) = requested {
            let value = self
                .nodes
                .iter()
                .find(|n| n.name == r)
                .map(|n| n.outputs[0].clone())
                .unwrap_or_else(|| r.to_string());
            if !spatial.contains(&value) {
                let mut names: Vec<&str> = self
                    .nodes
                    .iter()
                    .filter(|n| spatial.contains(&n.outputs[0]))
                    .map(|n| n.name.as_str())
                    .collect();
                names.dedup();
                return Err(Error::key(
                    "explain.gradcam.node",
                    format!(
                        "`{r}` is not a spatial (N x C x H x W) activation of {}; candidates: {}",
                        self.path.display(),
                        names.join(", ")
                    ),
                ));
            }
            return Ok(value);
        }
        let i = self
            .nodes
            .iter()
            .rposition(|n| {
                (n.op == "Conv" || n.op == "ConvTranspose") && spatial.contains(&n.outputs[0])
            })
            .ok_or_else(|| Error::Unsupported {
                method: "Grad-CAM".into(),
                reason: format!(
                    "{} has no convolution with a spatial output",
                    self.path.display()
                ),
            })?;
        let mut value = self.nodes[i].outputs[0].clone();
        loop {
            let readers: Vec<&Node> = self
                .nodes
                .iter()
                .filter(|n| n.inputs.contains(&value))
                .collect();
            match readers.as_slice() {
                [n] if matches!(
                    n.op.as_str(),
                    "Relu"
                        | "Clip"
                        | "LeakyRelu"
                        | "Elu"
                        | "Selu"
                        | "Sigmoid"
                        | "Tanh"
                        | "HardSwish"
                        | "BatchNormalization"
                        | "Add"
                        | "Identity"
                        | "Dropout"
                ) && spatial.contains(&n.outputs[0]) =>
                {
                    value = n.outputs[0].clone()
                }
                _ => break,
            }
        }
        Ok(value)
    }

    /// The node label (`name:op`) producing a value.
    pub fn value_label(&self, value: &str) -> String {
        self.nodes
            .iter()
            .find(|n| n.outputs.first().map(String::as_str) == Some(value))
            .map(|n| format!("{}:{}", n.name, n.op))
            .unwrap_or_else(|| value.to_string())
    }

    /// The nodes with trained parameters, input first: convolutions, Gemm / MatMul with a weight
    /// initialiser (with the bias of an Add that directly follows a MatMul, as Keras' Dense exports),
    /// batch norms.
    pub fn param_units(&self) -> Vec<ParamUnit> {
        let p = |i: usize, n: &Node| {
            n.input(i)
                .filter(|s| self.params.contains_key(*s))
                .map(str::to_string)
        };
        let mut units = Vec::new();
        for n in &self.nodes {
            let mut params = Vec::new();
            match n.op.as_str() {
                "Conv" | "ConvTranspose" => {
                    if let Some(w) = p(1, n) {
                        let d = self.params[&w].size();
                        let fan_in = d[1] * d.iter().skip(2).product::<i64>();
                        params.push((w, ParamRole::Weight { fan_in }));
                        if let Some(b) = p(2, n) {
                            params.push((b, ParamRole::Bias { fan_in }));
                        }
                    }
                }
                "Gemm" | "MatMul" => {
                    if let Some(w) = p(1, n) {
                        let d = self.params[&w].size();
                        if d.len() == 2 {
                            let trans = n.op == "Gemm" && n.int("transB", 0) != 0;
                            let fan_in = if trans { d[1] } else { d[0] };
                            params.push((w, ParamRole::Weight { fan_in }));
                            let bias = if n.op == "Gemm" {
                                p(2, n)
                            } else {
                                let readers: Vec<&Node> = self
                                    .nodes
                                    .iter()
                                    .filter(|m| m.inputs.contains(&n.outputs[0]))
                                    .collect();
                                match readers.as_slice() {
                                    [a] if a.op == "Add" => a
                                        .inputs
                                        .iter()
                                        .find(|s| self.params.get(*s).is_some_and(|t| t.dim() == 1))
                                        .cloned(),
                                    _ => None,
                                }
                            };
                            if let Some(b) = bias {
                                params.push((b, ParamRole::Bias { fan_in }));
                            }
                        }
                    }
                }
                "BatchNormalization" => {
                    let roles = [
                        ParamRole::Scale,
                        ParamRole::Zero,
                        ParamRole::Zero,
                        ParamRole::One,
                    ];
                    for (k, role) in roles.into_iter().enumerate() {
                        if let Some(t) = p(k + 1, n) {
                            params.push((t, role));
                        }
                    }
                }
                _ => {}
            }
            if !params.is_empty() {
                units.push(ParamUnit {
                    label: format!("{}:{}", n.name, n.op),
                    params,
                });
            }
        }
        units
    }

    /// A parameter tensor (shares storage: writing into it changes the model).
    pub fn param(&self, name: &str) -> Option<Tensor> {
        self.params.get(name).map(Tensor::shallow_clone)
    }

    /// An independent copy: parameters copied, the bfloat16 copies of `mixed.rs` made afresh from
    /// them (on first use), the rest shared (never modified).
    pub fn duplicate(&self) -> OnnxModel {
        OnnxModel {
            path: self.path.clone(),
            nodes: self.nodes.clone(),
            params: self
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.copy()))
                .collect(),
            input_name: self.input_name.clone(),
            output: self.output.clone(),
            opset: self.opset,
            producer: self.producer.clone(),
            layout: self.layout,
            model_channels: self.model_channels,
            input: self.input.clone(),
            removed_softmax: self.removed_softmax.clone(),
            single_image: self.single_image,
            dynamic: self.dynamic.clone(),
            shapes: self.shapes.clone(),
            last_use: self.last_use.clone(),
            low_params: Default::default(),
            device: self.device,
        }
    }

    /// The float32 values one image makes inside the graph (from the probe's shapes): all of them
    /// (what a backward keeps) and the most alive at once in a plain forward, where each value is
    /// freed after its last reader.
    pub fn activation_memory(&self) -> super::memory::ActivationMemory {
        let bytes = |v: &str| {
            if !self.dynamic.contains(v) {
                return 0;
            }
            self.shapes
                .get(v)
                .map_or(0, |s| s.iter().product::<i64>().max(0) as u64 * 4)
        };
        let input = (self.input.channels * self.input.size * self.input.size) as u64 * 4;
        let (mut kept, mut now, mut live) = (input, input, input);
        for (i, n) in self.nodes.iter().enumerate() {
            let out: u64 = n.outputs.iter().map(|o| bytes(o)).sum();
            kept += out;
            now += out;
            live = live.max(now);
            let freed: u64 = self.last_use[i].iter().map(|v| bytes(v)).sum();
            now = now.saturating_sub(freed);
        }
        super::memory::ActivationMemory { kept, live }
    }

    /// What the maps explain: the logits, before the removed final softmax if there was one.
    pub fn explains(&self) -> String {
        match &self.removed_softmax {
            Some(n) => format!("logits before the removed final softmax `{n}`"),
            None => "logits".into(),
        }
    }

    /// One line for the run record.
    pub fn describe(&self) -> String {
        let convs = self.nodes.iter().filter(|n| n.op == "Conv").count();
        let softmax = match &self.removed_softmax {
            Some(n) => format!("final softmax `{n}` removed: maps explain the logits before it"),
            None => "no final softmax: outputs are logits".to_string(),
        };
        let s = self.input.size;
        let grey = if self.model_channels != self.input.channels {
            ", grey repeated to 3 channels"
        } else {
            ""
        };
        format!(
            "ONNX {} (opset {}, {}; {} nodes, {convs} conv; input {} {}x{s}x{s}{grey}; {} classes; {softmax}{})",
            self.path.display(),
            self.opset,
            if self.producer.is_empty() {
                "unknown producer"
            } else {
                &self.producer
            },
            self.nodes.len(),
            self.layout.name(),
            self.model_channels,
            self.input.classes,
            if self.single_image {
                "; fixed batch of 1"
            } else {
                ""
            }
        )
    }
}

/// The metadata keys that name the model's classes, in the order they are looked for.
pub const CLASS_KEYS: [&str; 2] = ["class_names", "classes"];

/// Class names stored in a model's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataClasses {
    /// The metadata key they were read from.
    pub key: String,
    /// In the model's output order.
    pub names: Vec<String>,
}

/// The class names in the `metadata_props` of the ONNX file `path` (key `class_names`, else
/// `classes`), if it has them: a JSON list (`["glioma", "meningioma"]`), a JSON object from output
/// index to name (`{"0": "glioma", "1": "meningioma"}`) or comma-separated names. A value that is
/// none of these, names fewer than two classes or repeats one is an error naming the key.
pub fn metadata_classes(path: &Path) -> Result<Option<MetadataClasses>> {
    let meta = graph::read_metadata(path)?;
    let Some((key, value)) = CLASS_KEYS
        .iter()
        .find_map(|k| meta.iter().find(|(mk, _)| mk == k))
    else {
        return Ok(None);
    };
    let names = parse_class_names(value)
        .map_err(|m| model_err(path, format!("metadata `{key}` = `{value}`: {m}")))?;
    Ok(Some(MetadataClasses {
        key: key.clone(),
        names,
    }))
}

fn parse_class_names(value: &str) -> std::result::Result<Vec<String>, String> {
    let v = value.trim();
    let names: Vec<String> = if v.starts_with('[') {
        serde_json::from_str::<Vec<String>>(v)
            .map_err(|e| format!("not a JSON list of names ({e})"))?
    } else if v.starts_with('{') {
        let map: HashMap<String, String> =
            serde_json::from_str(v).map_err(|e| format!("not a JSON object of names ({e})"))?;
        let mut names = Vec::with_capacity(map.len());
        for i in 0..map.len() {
            let name = map.get(&i.to_string()).ok_or_else(|| {
                format!(
                    "a JSON object of names needs the keys 0 to {}",
                    map.len() - 1
                )
            })?;
            names.push(name.clone());
        }
        names
    } else {
        v.split(',').map(|s| s.trim().to_string()).collect()
    };
    let names: Vec<String> = names.into_iter().map(|s| s.trim().to_string()).collect();
    if names.len() < 2 {
        return Err(format!(
            "{} class name(s); a classifier has at least 2",
            names.len()
        ));
    }
    if let Some(empty) = names.iter().position(String::is_empty) {
        return Err(format!("class {empty} has an empty name"));
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(format!("`{n}` is named twice"));
        }
    }
    Ok(names)
}

fn show_dims(d: &[graph::Dim]) -> String {
    let v: Vec<String> = d
        .iter()
        .map(|d| d.map(|n| n.to_string()).unwrap_or_else(|| "?".into()))
        .collect();
    format!("[{}]", v.join(", "))
}

/// Channels-first or channels-last from the declared input shape: the channel axis is the one of
/// size 1 or 3 when only one of axes 1 and 3 is; else the pair of equal (square image) axes; else a
/// Transpose to channels-first right after the input (what tf2onnx writes for Keras models) says
/// channels-last and a Conv reading the input says channels-first.
fn detect_layout(g: &Graph) -> Option<Layout> {
    let d = &g.input_dims;
    let chan = |v: Option<i64>| matches!(v, Some(1 | 3));
    match (chan(d[1]), chan(d[3])) {
        (true, false) => return Some(Layout::Nchw),
        (false, true) => return Some(Layout::Nhwc),
        _ => {}
    }
    if d[2].is_some() && d[2] == d[3] && d[1] != d[2] {
        return Some(Layout::Nchw);
    }
    if d[1].is_some() && d[1] == d[2] && d[3] != d[2] {
        return Some(Layout::Nhwc);
    }
    let first = g
        .nodes
        .iter()
        .find(|n| n.inputs.first() == Some(&g.input_name))?;
    match (first.op.as_str(), first.ints("perm")) {
        ("Transpose", Some([0, 3, 1, 2])) => Some(Layout::Nhwc),
        ("Conv", _) => Some(Layout::Nchw),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_class_names;

    #[test]
    fn class_names_read_as_json_lists_objects_or_comma_separated() {
        let want = vec!["glioma".to_string(), "notumor".into()];
        assert_eq!(
            parse_class_names(r#"["glioma", "notumor"]"#),
            Ok(want.clone())
        );
        assert_eq!(
            parse_class_names(r#"{"1": "notumor", "0": "glioma"}"#),
            Ok(want.clone())
        );
        assert_eq!(parse_class_names(" glioma , notumor "), Ok(want));
        assert!(parse_class_names("glioma")
            .unwrap_err()
            .contains("at least 2"));
        assert!(parse_class_names("a, a").unwrap_err().contains("twice"));
        assert!(parse_class_names("a,,b").unwrap_err().contains("empty"));
        assert!(parse_class_names(r#"{"0": "a", "2": "b"}"#)
            .unwrap_err()
            .contains("keys 0 to 1"));
        assert!(parse_class_names("[1, 2]")
            .unwrap_err()
            .contains("JSON list"));
    }
}
