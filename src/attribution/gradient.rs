//! Gradient family: plain gradient, Guided Backprop, Integrated Gradients, SmoothGrad. Each one is
//! d logit_target / d input, taken at different points or through a different backward rule.
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use tch::{Kind, Tensor};

use super::channel_mean_maps;
use crate::error::Result;
use crate::model::{Layer, Model, NativeCnn};
use crate::trust::reproducibility::Halves;

/// A differentiable forward giving logits: the model's own (float32), or the mixed-precision one of
/// [`NativeCnn::forward_mixed`] (bfloat16 convolutions, see `explain.gradient_precision`).
pub type Forward<'a> = &'a dyn Fn(&Tensor) -> Result<Tensor>;

/// Gradients of the target logits w.r.t. a batch of inputs, plus the logits. Samples are independent
/// in eval mode, so the gradient of the summed target logits is each sample's own gradient.
pub fn input_gradients(model: &Model, x: &Tensor, targets: &Tensor) -> Result<(Tensor, Tensor)> {
    input_gradients_with(&|x| Ok(model.forward(x)), x, targets)
}

/// [`input_gradients`] through the given forward.
pub fn input_gradients_with(
    forward: Forward,
    x: &Tensor,
    targets: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let x = x.detach().set_requires_grad(true);
    let logits = forward(&x)?;
    let score = logits
        .gather(1, &targets.view([-1, 1]), false)
        .sum(Kind::Float);
    let mut g = Tensor::f_run_backward(&[&score], &[&x], false, false)?;
    Ok((g.remove(0), logits.detach()))
}

fn target_tensor(targets: &[i64], n: i64, device: tch::Device) -> Tensor {
    let t = if targets.len() == 1 {
        vec![targets[0]; n as usize]
    } else {
        targets.to_vec()
    };
    Tensor::from_slice(&t).to_device(device)
}

/// Plain gradient, channel mean: one map per image of the batch.
pub fn gradient(model: &Model, x: &Tensor, targets: &[i64]) -> Result<Vec<Vec<f32>>> {
    let t = target_tensor(targets, x.size()[0], x.device());
    let (g, _) = input_gradients(model, x, &t)?;
    channel_mean_maps(&g)
}

/// Guided Backprop: the backward pass walks the layers from the logits to the input; at each ReLU the
/// rule is `grad_in = relu(grad_out) * 1[x > 0]` (x = the ReLU's input), every other layer passes its
/// ordinary vector-Jacobian product. tch has no autograd hooks, so each non-ReLU layer is run on a
/// detached input that requires grad, and its VJP taken alone.
pub fn guided_backprop(model: &NativeCnn, x: &Tensor, targets: &[i64]) -> Result<Vec<Vec<f32>>> {
    let n = x.size()[0];
    // inputs[i] = input of layer i (a leaf requiring grad for non-ReLU layers), outputs[i] its output.
    let mut inputs = Vec::with_capacity(model.layers.len());
    let mut outputs = Vec::with_capacity(model.layers.len());
    let mut a = x.detach();
    for layer in &model.layers {
        let inp = match layer {
            Layer::Relu | Layer::Dropout(_) => a.detach(),
            _ => a.detach().set_requires_grad(true),
        };
        let out = layer.forward_t(&inp, false);
        a = out.detach();
        inputs.push(inp);
        outputs.push(out);
    }
    let t = target_tensor(targets, n, x.device());
    let mut g = a.zeros_like().scatter_value(1, &t.view([-1, 1]), 1.0);
    for (i, layer) in model.layers.iter().enumerate().rev() {
        g = match layer {
            Layer::Relu => g.relu() * inputs[i].gt(0.0).to_kind(Kind::Float),
            Layer::Dropout(_) => g,
            _ => {
                let s = (&outputs[i] * &g).sum(Kind::Float);
                Tensor::f_run_backward(&[&s], &[&inputs[i]], false, false)?.remove(0)
            }
        };
    }
    channel_mean_maps(&g)
}

pub struct IgResult {
    pub map: Vec<f32>,
    /// |sum(IG) - (f(x) - f(b))| / |f(x) - f(b)|, the sum over all channels and pixels.
    pub completeness_error: f64,
    pub f_x: f64,
    pub f_baseline: f64,
}

/// Integrated Gradients with a constant baseline: path points `b + a (x - b)` for `a = linspace(0, 1,
/// steps)` (both ends included), gradients averaged with the trapezoidal rule, times `(x - b)`.
pub fn integrated_gradients(
    model: &Model,
    x: &Tensor,
    target: i64,
    baseline_value: impl Into<super::Reference>,
    steps: usize,
    batch: usize,
) -> Result<IgResult> {
    integrated_gradients_with(
        &|x| Ok(model.forward(x)),
        x,
        target,
        baseline_value,
        steps,
        batch,
    )
}

/// [`integrated_gradients`] through the given forward (path ends' logits from that forward too, so
/// the completeness error measures the map against the function it integrated).
pub fn integrated_gradients_with(
    forward: Forward,
    x: &Tensor,
    target: i64,
    baseline_value: impl Into<super::Reference>,
    steps: usize,
    batch: usize,
) -> Result<IgResult> {
    let dev = x.device();
    let baseline_value: super::Reference = baseline_value.into();
    let baseline = (x.zeros_like() + baseline_value.tensor(x))
        .expand_as(x)
        .contiguous();
    let diff = x - &baseline;
    let alphas = Tensor::linspace(0.0, 1.0, steps as i64, (Kind::Float, dev));
    let mut grad_sum = x.zeros_like();
    let mut f_first = 0.0;
    let mut f_last = 0.0;
    let mut start = 0;
    while start < steps {
        let len = batch.min(steps - start) as i64;
        let a = alphas.narrow(0, start as i64, len).view([-1, 1, 1, 1]);
        let points = &baseline + &a * &diff;
        let t = Tensor::full([len], target, (Kind::Int64, dev));
        let (g, logits) = input_gradients_with(forward, &points, &t)?;
        // Trapezoid weights: 1/2 at both path ends, 1 inside; the sum is divided by (steps - 1).
        let mut w = vec![1f32; len as usize];
        if start == 0 {
            w[0] = 0.5;
            f_first = logits.double_value(&[0, target]);
        }
        if start + len as usize == steps {
            w[len as usize - 1] = 0.5;
            f_last = logits.double_value(&[len - 1, target]);
        }
        let w = Tensor::from_slice(&w).to_device(dev).view([-1, 1, 1, 1]);
        grad_sum += (g * w).sum_dim_intlist([0i64].as_slice(), true, Kind::Float);
        start += len as usize;
    }
    let ig = diff * grad_sum / (steps as f64 - 1.0);
    let total = ig.sum(Kind::Double).double_value(&[]);
    let delta = f_last - f_first;
    let completeness_error = if delta.abs() > 1e-12 {
        (total - delta).abs() / delta.abs()
    } else {
        (total - delta).abs()
    };
    let map = channel_mean_maps(&ig)?.remove(0);
    Ok(IgResult {
        map,
        completeness_error,
        f_x: f_last,
        f_baseline: f_first,
    })
}

/// SmoothGrad: mean gradient at `x + N(0, noise^2)`, `noise` absolute in model-input space. The noise
/// comes from `rng` (seeded from image id, method and run seed) in a fixed order, so the map does not
/// depend on the batch size or thread count.
pub fn smoothgrad(
    model: &Model,
    x: &Tensor,
    target: i64,
    samples: usize,
    noise: f32,
    batch: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<f32>> {
    Ok(smoothgrad_halves(model, x, target, samples, noise, batch, rng)?.0)
}

/// [`smoothgrad`], plus the maps of the first and the second half of its noise samples (the
/// split-half reproducibility of [`crate::trust::reproducibility`]; no extra model call). The full map
/// is computed exactly as [`smoothgrad`] computes it; `None` with fewer than 2 samples.
pub fn smoothgrad_halves(
    model: &Model,
    x: &Tensor,
    target: i64,
    samples: usize,
    noise: f32,
    batch: usize,
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<f32>, Option<Halves>)> {
    smoothgrad_halves_with(
        &|x| Ok(model.forward(x)),
        x,
        target,
        samples,
        noise,
        batch,
        rng,
    )
}

/// [`smoothgrad_halves`] through the given forward.
pub fn smoothgrad_halves_with(
    forward: Forward,
    x: &Tensor,
    target: i64,
    samples: usize,
    noise: f32,
    batch: usize,
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<f32>, Option<Halves>)> {
    let half = samples / 2;
    let mut first_sum: Option<Tensor> = None;
    let dev = x.device();
    let shape = x.size();
    let per = (shape[1] * shape[2] * shape[3]) as usize;
    let mut grad_sum = x.zeros_like();
    let mut start = 0;
    let mut buf = Vec::with_capacity(batch.min(samples) * per);
    while start < samples {
        let len = batch.min(samples - start);
        buf.clear();
        buf.extend((0..len * per).map(|_| {
            let z: f32 = StandardNormal.sample(rng);
            z * noise
        }));
        let eps = Tensor::from_slice(&buf)
            .to_device(dev)
            .view([len as i64, shape[1], shape[2], shape[3]]);
        let points = x + eps;
        let t = Tensor::full([len as i64], target, (Kind::Int64, dev));
        let (g, _) = input_gradients_with(forward, &points, &t)?;
        grad_sum += g.sum_dim_intlist([0i64].as_slice(), true, Kind::Float);
        start += len;
        // The first half's sum is taken when the running sum reaches it (inside this batch when the
        // half falls in it), so the full sum above keeps its exact order of additions.
        if first_sum.is_none() && half >= 1 && start >= half {
            let over = (start - half) as i64;
            let part = if over == 0 {
                grad_sum.copy()
            } else {
                &grad_sum
                    - g.narrow(0, len as i64 - over, over).sum_dim_intlist(
                        [0i64].as_slice(),
                        true,
                        Kind::Float,
                    )
            };
            first_sum = Some(part);
        }
    }
    let map = channel_mean_maps(&(&grad_sum / samples as f64))?.remove(0);
    let halves = match first_sum {
        Some(a) if samples >= 2 => {
            let b = &grad_sum - &a;
            Some(Halves {
                first: channel_mean_maps(&(a / half as f64))?.remove(0),
                second: channel_mean_maps(&(b / (samples - half) as f64))?.remove(0),
            })
        }
        _ => None,
    };
    Ok((map, halves))
}
