//! Grad-CAM: activations A_k of a conv layer, weights w_k = spatial mean of d logit / d A_k,
//! map = ReLU(sum_k w_k A_k), upsampled bicubically to the input size. No normalisation: an all-zero
//! map is a legitimate result.
use tch::{Kind, Tensor};

use super::channel_mean_maps;
use crate::error::{Error, Result};
use crate::model::{LayerSpec, NativeCnn};

/// `layer`: index in the layer list whose output is explained (`None` = last conv, post-ReLU).
pub fn gradcam(
    model: &NativeCnn,
    x: &Tensor,
    targets: &[i64],
    layer: Option<usize>,
) -> Result<Vec<Vec<f32>>> {
    let cut = match layer {
        Some(i) => {
            let spatial = i < model.specs.len()
                && !model.specs[..=i]
                    .iter()
                    .any(|s| matches!(s, LayerSpec::Flatten | LayerSpec::GlobalAvgPool));
            if !spatial {
                return Err(Error::key(
                    "explain.gradcam.layer",
                    format!("layer {i} is not a spatial (conv-stage) layer of this model"),
                ));
            }
            i
        }
        None => model.last_conv_output().ok_or_else(|| Error::Unsupported {
            method: "Grad-CAM".into(),
            reason: "the model has no convolutional layer".into(),
        })?,
    };
    let (h, w) = (x.size()[2], x.size()[3]);
    let acts = tch::no_grad(|| model.forward_range(x, 0, cut + 1, false))
        .detach()
        .set_requires_grad(true);
    let logits = model.forward_range(&acts, cut + 1, model.layers.len(), false);
    let n = x.size()[0];
    let t = if targets.len() == 1 {
        vec![targets[0]; n as usize]
    } else {
        targets.to_vec()
    };
    let t = Tensor::from_slice(&t).to_device(x.device());
    let score = logits.gather(1, &t.view([-1, 1]), false).sum(Kind::Float);
    let grads = Tensor::f_run_backward(&[&score], &[&acts], false, false)?.remove(0);
    cam_maps(&acts, &grads, h, w)
}

/// The maps from the activations and their gradients: channel weights = spatial mean of the
/// gradients, ReLU of the weighted sum, bicubic upsampling to h x w. Shared with the ONNX graph.
pub(crate) fn cam_maps(acts: &Tensor, grads: &Tensor, h: i64, w: i64) -> Result<Vec<Vec<f32>>> {
    let weights = grads.mean_dim([2i64, 3].as_slice(), true, Kind::Float);
    let cam = (weights * acts.detach())
        .sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
        .relu();
    let up = cam.upsample_bicubic2d([h, w], false, None, None);
    channel_mean_maps(&up)
}
