//! Gradient family: plain gradient, Guided Backprop, Integrated Gradients, SmoothGrad. Each one is
//! d logit_target / d input, taken at different points or through a different backward rule.
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use tch::{Kind, Tensor};

use super::channel_mean_maps;
use super::reproducibility::Halves;
use crate::error::Result;
use crate::model::Classifier;

/// A differentiable forward giving logits: the model's own (float32), or the mixed-precision one of
/// [`Classifier::logits_mixed`] (bfloat16 convolutions, see `explain.gradient_precision`).
pub type Forward<'a> = &'a dyn Fn(&Tensor) -> Result<Tensor>;

/// Gradients of the target logits w.r.t. a batch of inputs, plus the logits. Samples are independent
/// in eval mode, so the gradient of the summed target logits is each sample's own gradient.
pub fn input_gradients(
    model: &dyn Classifier,
    x: &Tensor,
    targets: &Tensor,
) -> Result<(Tensor, Tensor)> {
    input_gradients_with(&|x| model.logits(x), x, targets)
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

/// One target class per image of a batch of `n` (a single target is repeated).
pub(crate) fn target_tensor(targets: &[i64], n: i64, device: tch::Device) -> Tensor {
    let t = if targets.len() == 1 {
        vec![targets[0]; n as usize]
    } else {
        targets.to_vec()
    };
    Tensor::from_slice(&t).to_device(device)
}

/// Plain gradient, channel mean: one map per image of the batch.
pub fn gradient(model: &dyn Classifier, x: &Tensor, targets: &[i64]) -> Result<Vec<Vec<f32>>> {
    let t = target_tensor(targets, x.size()[0], x.device());
    let (g, _) = input_gradients(model, x, &t)?;
    channel_mean_maps(&g)
}

/// Guided Backprop: the gradient through the guided rule at every ReLU (see
/// [`Classifier::guided_input_gradient`]), channel mean: one map per image of the batch.
pub fn guided_backprop(
    model: &dyn Classifier,
    x: &Tensor,
    targets: &[i64],
) -> Result<Vec<Vec<f32>>> {
    let t = target_tensor(targets, x.size()[0], x.device());
    channel_mean_maps(&model.guided_input_gradient(x, &t)?)
}

pub struct IgResult {
    pub map: Vec<f32>,
    /// |sum(IG) - (f(x) - f(b))| / |f(x) - f(b)|, the sum over all channels and pixels.
    pub completeness_error: f64,
    pub f_x: f64,
    pub f_baseline: f64,
}

/// One image explained through input gradients: a differentiable forward (the model's own, or the
/// mixed-precision one, see `explain.gradient_precision`), the image (1 x C x S x S) and its explained
/// class, and how many path points or noisy copies go through the model at once.
pub struct GradientRun<'a> {
    pub forward: Forward<'a>,
    pub x: &'a Tensor,
    pub target: i64,
    pub batch: usize,
}

impl GradientRun<'_> {
    /// Integrated Gradients with a constant baseline: path points `b + a (x - b)` for `a = linspace(0, 1,
    /// steps)` (both ends included), gradients averaged with the trapezoidal rule, times `(x - b)`. The
    /// path ends' logits come from the same forward, so the completeness error measures the map against
    /// the function it integrated.
    pub fn integrated_gradients(
        &self,
        baseline_value: impl Into<super::Reference>,
        steps: usize,
    ) -> Result<IgResult> {
        let GradientRun {
            forward,
            x,
            target,
            batch,
        } = *self;
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
        super::work::plan(steps as u64);
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
            super::work::done(len as u64);
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
}

impl GradientRun<'_> {
    /// SmoothGrad: mean gradient at `x + N(0, noise^2)`, `noise` absolute in model-input space. The noise
    /// comes from `rng` (seeded from image id, method and run seed) in a fixed order, so the map does not
    /// depend on the batch size or thread count. Also the maps of the first and the second half of its
    /// noise samples (the split-half reproducibility of [`super::reproducibility`]; no extra model
    /// call); `None` with fewer than 2 samples.
    pub fn smoothgrad(
        &self,
        samples: usize,
        noise: f32,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, Option<Halves>)> {
        let GradientRun {
            forward,
            x,
            target,
            batch,
        } = *self;
        let half = samples / 2;
        let mut first_sum: Option<Tensor> = None;
        let dev = x.device();
        let shape = x.size();
        let per = (shape[1] * shape[2] * shape[3]) as usize;
        let mut grad_sum = x.zeros_like();
        let mut start = 0;
        let mut buf = Vec::with_capacity(batch.min(samples) * per);
        super::work::plan(samples as u64);
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
            super::work::done(len as u64);
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
}
