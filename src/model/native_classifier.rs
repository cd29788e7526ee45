//! The native CNN as a [`Classifier`]: Guided Backprop's backward walk over the layer list, Grad-CAM's
//! cut at a conv-stage layer, the sanity check's parameter units (named as the state_dict), and the
//! benchmark's FLOP count and per-layer timings.
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use super::classifier::{CamLayer, Classifier, Model, ParamRole, ParamUnit};
use super::memory::ActivationMemory;
use super::{InputSpec, Layer, LayerSpec, NativeCnn};
use crate::error::{Error, Result};

impl NativeCnn {
    /// The indices (into the layer list, = the state_dict prefix) of the layers with parameters,
    /// input first.
    pub fn parametrised_layers(&self) -> Vec<usize> {
        self.specs
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                matches!(
                    s,
                    LayerSpec::Conv { .. } | LayerSpec::Dense { .. } | LayerSpec::Batchnorm
                )
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// How a layer is named in the stored results: `index:kind`, e.g. `14:dense`.
    pub fn layer_label(&self, index: usize) -> String {
        format!("{index}:{}", self.specs[index].kind_name())
    }

    /// The parameters of layer `index` with their re-initialisation roles (conv and dense: weight
    /// and bias with fan_in = input size of one output unit; batch norm: scale, shift, running mean
    /// and variance); an error for a layer without parameters.
    pub fn param_unit(&self, index: usize) -> Result<ParamUnit> {
        let spec = self.specs.get(index).ok_or_else(|| {
            Error::Other(format!(
                "layer {index} does not exist (the model has {})",
                self.specs.len()
            ))
        })?;
        let vars = self.vs.variables();
        let name = |param: &str| format!("{index}.{param}");
        let params = match spec {
            LayerSpec::Conv { .. } | LayerSpec::Dense { .. } => {
                let w = vars.get(&name("weight")).ok_or_else(|| {
                    Error::Other(format!("layer {index} has no parameter `weight`"))
                })?;
                let d = w.size();
                let fan_in = d[1] * d.iter().skip(2).product::<i64>();
                let mut p = vec![(name("weight"), ParamRole::Weight { fan_in })];
                if vars.contains_key(&name("bias")) {
                    p.push((name("bias"), ParamRole::Bias { fan_in }));
                }
                p
            }
            LayerSpec::Batchnorm => vec![
                (name("weight"), ParamRole::Scale),
                (name("bias"), ParamRole::Zero),
                (name("running_mean"), ParamRole::Zero),
                (name("running_var"), ParamRole::One),
            ],
            other => {
                return Err(Error::Other(format!(
                    "layer {index} ({}) has no parameters to re-initialise",
                    other.kind_name()
                )))
            }
        };
        Ok(ParamUnit {
            label: self.layer_label(index),
            params,
        })
    }

    /// An independent copy (same layer list, parameters copied, frozen; its converted twins are made
    /// afresh from the copied weights).
    pub fn duplicate(&self) -> Result<NativeCnn> {
        let mut copy = NativeCnn::new(&self.specs, self.input.clone(), self.vs.device())?;
        copy.vs.copy(&self.vs)?;
        copy.vs.freeze();
        Ok(copy)
    }

    /// The layer Grad-CAM explains: `index` when it is a spatial (conv-stage) layer, else the last
    /// convolution's output (post-ReLU when a ReLU follows).
    fn cam_layer(&self, index: Option<usize>) -> Result<usize> {
        match index {
            Some(i) => {
                let spatial = i < self.specs.len()
                    && !self.specs[..=i]
                        .iter()
                        .any(|s| matches!(s, LayerSpec::Flatten | LayerSpec::GlobalAvgPool));
                if !spatial {
                    return Err(Error::key(
                        "explain.gradcam.layer",
                        format!("layer {i} is not a spatial (conv-stage) layer of this model"),
                    ));
                }
                Ok(i)
            }
            None => self.last_conv_output().ok_or_else(|| Error::Unsupported {
                method: "Grad-CAM".into(),
                reason: "the model has no convolutional layer".into(),
            }),
        }
    }
}

/// Multiply-adds count 2 FLOPs; ReLU, pooling and bias adds are not counted (memory-bound, < 1%).
fn forward_flops(m: &NativeCnn) -> f64 {
    let (mut c, mut h, mut w) = (m.input.channels, m.input.size, m.input.size);
    let mut flat: Option<i64> = None;
    let mut flops = 0f64;
    for s in &m.specs {
        match s {
            LayerSpec::Conv {
                out,
                kernel,
                padding,
            } => {
                let pad = padding.unwrap_or(kernel / 2);
                h = h + 2 * pad - kernel + 1;
                w = w + 2 * pad - kernel + 1;
                flops += 2.0 * (c * out * kernel * kernel * h * w) as f64;
                c = *out;
            }
            LayerSpec::Maxpool { kernel } => {
                h /= kernel;
                w /= kernel;
            }
            LayerSpec::Flatten => flat = Some(flat.unwrap_or(c * h * w)),
            LayerSpec::GlobalAvgPool => flat = Some(c),
            LayerSpec::Dense { out } => {
                let inp = flat.unwrap_or(c * h * w);
                flops += 2.0 * (inp * out) as f64;
                flat = Some(*out);
            }
            LayerSpec::Relu | LayerSpec::Dropout { .. } | LayerSpec::Batchnorm => {}
        }
    }
    flops
}

/// Seconds per layer for one forward batch of `batch` random inputs, in three set-ups: float32 as
/// loaded (NCHW), float32 channels-last, bfloat16 channels-last (dense layers in float32, as the
/// perturbation path runs them). Median of `reps` runs each; a profile, so that levers are chosen by
/// measurement.
#[allow(clippy::needless_range_loop)]
fn layer_profile(m: &NativeCnn, batch: i64, reps: usize) -> Result<Vec<(String, [f64; 3])>> {
    let _guard = tch::no_grad_guard();
    let dev = m.vs.device();
    let x = Tensor::rand(
        [batch, m.input.channels, m.input.size, m.input.size],
        (Kind::Float, dev),
    );
    let cl = m.channels_last_f32()?;
    let bf = m.bf16()?;
    let split = m.float_head_start();
    let mut rows: Vec<(String, [f64; 3])> = m
        .specs
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{i} {}", s.kind_name()), [0.0; 3]))
        .collect();
    rows.push(("input conversion".into(), [0.0; 3]));
    for (k, (model, kind)) in [(m, Kind::Float), (cl, Kind::Float), (bf, Kind::BFloat16)]
        .into_iter()
        .enumerate()
    {
        let time = |f: &dyn Fn() -> Tensor| -> f64 {
            let _ = f();
            let mut t: Vec<f64> = (0..reps)
                .map(|_| {
                    let t0 = Instant::now();
                    let _ = f();
                    t0.elapsed().as_secs_f64()
                })
                .collect();
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        };
        let conv_in = || {
            let a = if k > 0 {
                crate::model::to_channels_last(&x)
            } else {
                x.shallow_clone()
            };
            a.to_kind(kind)
        };
        rows[m.specs.len()].1[k] = time(&conv_in);
        let mut a = conv_in();
        for i in 0..m.layers.len() {
            let (layer_model, input) = if k == 2 && i >= split {
                (
                    m,
                    if i == split {
                        a.to_kind(Kind::Float)
                    } else {
                        a.shallow_clone()
                    },
                )
            } else {
                (model, a.shallow_clone())
            };
            rows[i].1[k] = time(&|| layer_model.forward_range(&input, i, i + 1, false));
            a = layer_model.forward_range(&input, i, i + 1, false);
        }
    }
    Ok(rows)
}

impl Classifier for NativeCnn {
    fn input(&self) -> &InputSpec {
        &self.input
    }

    fn device(&self) -> Device {
        self.vs.device()
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_t(x, false))
    }

    fn has_bf16(&self) -> bool {
        true
    }

    fn logits_mixed(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_mixed(x)
    }

    fn logits_inference(&self, x: &Tensor, bf16: bool) -> Result<Tensor> {
        // Forward-only batches run channels-last (oneDNN's native layout), in bf16 when asked.
        if bf16 {
            return self.forward_bf16(x);
        }
        let cl = self.channels_last_f32()?;
        Ok(cl.infer_range(x, 0, cl.layers.len()))
    }

    fn use_prepacked(&self, on: bool) {
        NativeCnn::use_prepacked(self, on)
    }

    /// The backward pass walks the layers from the logits to the input; at each ReLU the rule is
    /// `grad_in = relu(grad_out) * 1[x > 0]` (x = the ReLU's input), every other layer passes its
    /// ordinary vector-Jacobian product. tch has no autograd hooks, so each non-ReLU layer is run on
    /// a detached input that requires grad, and its VJP taken alone.
    fn guided_input_gradient(&self, x: &Tensor, targets: &Tensor) -> Result<Tensor> {
        // inputs[i] = input of layer i (a leaf requiring grad for non-ReLU layers), outputs[i] its output.
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut outputs = Vec::with_capacity(self.layers.len());
        let mut a = x.detach();
        for layer in &self.layers {
            let inp = match layer {
                Layer::Relu | Layer::Dropout(_) => a.detach(),
                _ => a.detach().set_requires_grad(true),
            };
            let out = layer.forward_t(&inp, false);
            a = out.detach();
            inputs.push(inp);
            outputs.push(out);
        }
        let mut g = a.zeros_like().scatter_value(1, &targets.view([-1, 1]), 1.0);
        for (i, layer) in self.layers.iter().enumerate().rev() {
            g = match layer {
                Layer::Relu => g.relu() * inputs[i].gt(0.0).to_kind(Kind::Float),
                Layer::Dropout(_) => g,
                _ => {
                    let s = (&outputs[i] * &g).sum(Kind::Float);
                    Tensor::f_run_backward(&[&s], &[&inputs[i]], false, false)?.remove(0)
                }
            };
        }
        Ok(g)
    }

    fn cam_cut(&self, x: &Tensor, layer: CamLayer) -> Result<(Tensor, Tensor)> {
        let cut = self.cam_layer(layer.index)?;
        let acts = tch::no_grad(|| self.forward_range(x, 0, cut + 1, false))
            .detach()
            .set_requires_grad(true);
        let logits = self.forward_range(&acts, cut + 1, self.layers.len(), false);
        Ok((acts, logits))
    }

    fn param_units(&self) -> Result<Vec<ParamUnit>> {
        self.parametrised_layers()
            .into_iter()
            .map(|i| self.param_unit(i))
            .collect()
    }

    fn param(&self, name: &str) -> Option<Tensor> {
        self.vs.variables().get(name).map(Tensor::shallow_clone)
    }

    fn duplicate(&self) -> Result<Model> {
        Ok(Model::new(NativeCnn::duplicate(self)?))
    }

    fn activation_memory(&self) -> Option<ActivationMemory> {
        Some(NativeCnn::activation_memory(self))
    }

    fn describe(&self) -> String {
        let i = &self.input;
        let kinds: Vec<&str> = self.specs.iter().map(|s| s.kind_name()).collect();
        format!(
            "native CNN [{}] (input nchw {}x{}x{}; {} classes; no final softmax: outputs are logits)",
            kinds.join(", "),
            i.channels,
            i.size,
            i.size,
            i.classes
        )
    }

    fn explains(&self) -> String {
        "logits".into()
    }

    fn forward_flops(&self) -> Option<f64> {
        Some(forward_flops(self))
    }

    fn layer_profile(&self, batch: i64, reps: usize) -> Result<Vec<(String, [f64; 3])>> {
        layer_profile(self, batch, reps)
    }
}
