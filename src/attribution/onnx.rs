//! Guided Backprop and Grad-CAM on an imported ONNX graph. tch has no autograd hooks, so Guided
//! Backprop walks the recorded graph backwards node by node (each node's vector-Jacobian product
//! taken alone, gradients summed where a value feeds several nodes, as at a residual add), giving
//! ReLU nodes the guided rule; Grad-CAM cuts the graph at the explained activation.
use std::collections::HashMap;

use tch::{Kind, Tensor};

use super::channel_mean_maps;
use crate::error::{Error, Result};
use crate::model::onnx::OnnxModel;

fn target_tensor(targets: &[i64], n: i64, device: tch::Device) -> Tensor {
    let t = if targets.len() == 1 {
        vec![targets[0]; n as usize]
    } else {
        targets.to_vec()
    };
    Tensor::from_slice(&t).to_device(device)
}

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

/// d(target logit) / d(input) by a backward walk over the graph, with the guided rule at ReLU
/// nodes when `guided` (`grad_in = relu(grad_out) * 1[x > 0]`, i.e. the node's own VJP applied to
/// the rectified incoming gradient). Without the rule the walk is the ordinary gradient.
pub fn backward_walk(
    model: &OnnxModel,
    x: &Tensor,
    targets: &[i64],
    guided: bool,
) -> Result<Tensor> {
    let n = x.size()[0];
    if model.single_image && n > 1 {
        let parts = (0..n)
            .map(|i| {
                let t = if targets.len() == 1 {
                    targets[0]
                } else {
                    targets[i as usize]
                };
                backward_walk(model, &x.narrow(0, i, 1), &[t], guided)
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok(Tensor::cat(&parts, 0));
    }
    let tape = model.forward_recorded(x)?;
    let t = target_tensor(targets, n, x.device());
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

/// Guided Backprop maps (channel mean), one per image.
pub fn guided_backprop(model: &OnnxModel, x: &Tensor, targets: &[i64]) -> Result<Vec<Vec<f32>>> {
    channel_mean_maps(&backward_walk(model, x, targets, true)?)
}

/// Grad-CAM at `node` (a node or value name; `None` = the automatic choice of
/// [`OnnxModel::gradcam_value`]).
pub fn gradcam(
    model: &OnnxModel,
    x: &Tensor,
    targets: &[i64],
    node: Option<&str>,
) -> Result<Vec<Vec<f32>>> {
    let value = model.gradcam_value(node)?;
    let n = x.size()[0];
    if model.single_image && n > 1 {
        let mut maps = Vec::new();
        for i in 0..n {
            let t = if targets.len() == 1 {
                targets[0]
            } else {
                targets[i as usize]
            };
            maps.extend(gradcam(model, &x.narrow(0, i, 1), &[t], Some(&value))?);
        }
        return Ok(maps);
    }
    // The image does not require grad, so nothing is recorded before the cut; the leaf at the cut
    // starts the graph that the score is differentiated through.
    let (acts, logits) = model.forward_cut(x, &value)?;
    let t = target_tensor(targets, n, x.device());
    let score = logits.gather(1, &t.view([-1, 1]), false).sum(Kind::Float);
    let grads = Tensor::f_run_backward(&[&score], &[&acts], false, false)?.remove(0);
    super::gradcam::cam_maps(&acts, &grads, x.size()[2], x.size()[3])
}
