//! The backward walk over an imported graph: tch has no autograd hooks, so Guided Backprop walks the
//! recorded graph backwards node by node (each node's vector-Jacobian product taken alone, gradients
//! summed where a value feeds several nodes, as at a residual add), giving ReLU nodes (and a Clip
//! with lower bound 0, ReLU6) the guided rule.
use std::collections::HashMap;

use tch::{Kind, Tensor};

use super::OnnxModel;
use crate::error::{Error, Result};

/// Whether a node gets the guided rule: ReLU, and a Clip whose lower bound is 0 (ReLU6).
fn is_guided(model: &OnnxModel, i: usize, inputs: &[Option<Tensor>]) -> bool {
    let n = &model.nodes[i];
    match n.op.as_str() {
        "Relu" => true,
        "Clip" => {
            let lo = if model.opset < 11 {
                n.attrs.get("min").map(|_| n.float("min", f32::MIN) as f64)
            } else {
                inputs
                    .get(1)
                    .and_then(|t| t.as_ref())
                    .map(|t| t.to_kind(Kind::Double).flatten(0, -1).double_value(&[0]))
            };
            lo == Some(0.0)
        }
        _ => false,
    }
}

impl OnnxModel {
    /// d(target logit) / d(input) by a backward walk over the graph, with the guided rule at ReLU
    /// nodes when `guided` (`grad_in = relu(grad_out) * 1[x > 0]`, i.e. the node's own VJP applied to
    /// the rectified incoming gradient). Without the rule the walk is the ordinary gradient.
    /// `targets`: one class index per image (an int64 tensor on the model's device).
    pub fn backward_walk(&self, x: &Tensor, targets: &Tensor, guided: bool) -> Result<Tensor> {
        let model = self;
        let n = x.size()[0];
        if model.single_image && n > 1 {
            let parts = (0..n)
                .map(|i| model.backward_walk(&x.narrow(0, i, 1), &targets.narrow(0, i, 1), guided))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Tensor::cat(&parts, 0));
        }
        let tape = model.forward_recorded(x)?;
        let t = targets;
        let mut grads: HashMap<&str, Tensor> = HashMap::new();
        grads.insert(
            model.output.as_str(),
            tape.logits
                .zeros_like()
                .scatter_value(1, &t.view([-1, 1]), 1.0),
        );
        for (i, node) in model.nodes.iter().enumerate().rev() {
            let Some(g) = grads.remove(node.outputs[0].as_str()) else {
                continue;
            };
            let out = &tape.outputs[i][0];
            if !out.requires_grad() {
                continue;
            }
            let leaves: Vec<(usize, &Tensor)> = tape.inputs[i]
                .iter()
                .enumerate()
                .filter_map(|(k, t)| t.as_ref().filter(|t| t.requires_grad()).map(|t| (k, t)))
                .collect();
            let g = if guided && is_guided(model, i, &tape.inputs[i]) {
                g.relu()
            } else {
                g
            };
            let s = (out * &g).sum(Kind::Float);
            let tensors: Vec<&Tensor> = leaves.iter().map(|(_, t)| *t).collect();
            let gs = Tensor::f_run_backward(&[&s], &tensors, false, false)?;
            for ((k, _), gk) in leaves.iter().zip(gs) {
                let name = node.inputs[*k].as_str();
                match grads.get_mut(name) {
                    Some(acc) => *acc += gk,
                    None => {
                        grads.insert(name, gk);
                    }
                }
            }
        }
        let g_input = grads.remove(model.input_name()).ok_or_else(|| {
            Error::Other("the explained score does not depend on the input image".into())
        })?;
        // Back through the input adaptation (channels repeated / axes reordered) to the data tensor.
        let s = (&tape.graph_input * &g_input).sum(Kind::Float);
        Ok(Tensor::f_run_backward(&[&s], &[&tape.x], false, false)?.remove(0))
    }
}
