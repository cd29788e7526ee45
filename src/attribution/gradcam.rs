//! Grad-CAM: activations A_k of a conv layer, weights w_k = spatial mean of d logit / d A_k,
//! map = ReLU(sum_k w_k A_k), upsampled bicubically to the input size. No normalisation: an all-zero
//! map is a legitimate result.
use tch::{Kind, Tensor};

use super::channel_mean_maps;
use super::gradient::target_tensor;
use crate::error::Result;
use crate::model::{CamLayer, Classifier};

/// Grad-CAM maps, one per image, at `layer` (see [`CamLayer`]; the default = the last conv layer,
/// post-ReLU). A model that runs one image at a time ([`Classifier::max_batch`]) is cut image by
/// image.
pub fn gradcam(
    model: &dyn Classifier,
    x: &Tensor,
    targets: &[i64],
    layer: CamLayer,
) -> Result<Vec<Vec<f32>>> {
    let n = x.size()[0];
    let t = target_tensor(targets, n, x.device());
    let step = model.max_batch().unwrap_or(n).max(1);
    let mut maps = Vec::with_capacity(n as usize);
    for start in (0..n).step_by(step as usize) {
        let len = step.min(n - start);
        let xs = x.narrow(0, start, len);
        // The image does not require grad: the graph starts at the leaf of the cut.
        let (acts, logits) = model.cam_cut(&xs, layer)?;
        let score = logits
            .gather(1, &t.narrow(0, start, len).view([-1, 1]), false)
            .sum(Kind::Float);
        let grads = Tensor::f_run_backward(&[&score], &[&acts], false, false)?.remove(0);
        maps.extend(cam_maps(&acts, &grads, x.size()[2], x.size()[3])?);
    }
    Ok(maps)
}

/// The maps from the activations and their gradients: channel weights = spatial mean of the
/// gradients, ReLU of the weighted sum, bicubic upsampling to h x w.
pub(crate) fn cam_maps(acts: &Tensor, grads: &Tensor, h: i64, w: i64) -> Result<Vec<Vec<f32>>> {
    let weights = grads.mean_dim([2i64, 3].as_slice(), true, Kind::Float);
    let cam = (weights * acts.detach())
        .sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
        .relu();
    let up = cam.upsample_bicubic2d([h, w], false, None, None);
    channel_mean_maps(&up)
}
