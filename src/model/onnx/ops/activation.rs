//! Activation operators: the rectifiers (Relu, LeakyRelu, Elu, Selu, HardSwish, HardSigmoid, Clip),
//! the squashing functions (Sigmoid, Tanh) and the normalised exponentials (Softmax, LogSoftmax).
use tch::Tensor;

use super::{axis, first_float, Call, OrMsg, R};

unary_ops!(
    relu => f_relu,
    sigmoid => f_sigmoid,
    tanh => f_tanh,
    hard_swish => f_hardswish,
);

pub(super) fn leaky_relu(c: &Call) -> R<Tensor> {
    let x = c.x()?;
    let alpha = c.node.float("alpha", 0.01) as f64;
    x.f_where_self(&x.f_gt(0.0).m()?, &x.f_mul_scalar(alpha).m()?)
        .m()
}

/// Elu and Selu: `gamma * (x > 0 ? x : alpha * (exp(x) - 1))`, gamma 1 for Elu.
pub(super) fn elu_selu(c: &Call) -> R<Tensor> {
    let (x, n) = (c.x()?, c.node);
    let (alpha, gamma) = if n.op == "Elu" {
        (n.float("alpha", 1.0) as f64, 1.0)
    } else {
        (
            n.float("alpha", 1.673_263_2) as f64,
            n.float("gamma", 1.050_701) as f64,
        )
    };
    let neg = x
        .f_exp()
        .and_then(|e| e.f_sub_scalar(1.0))
        .and_then(|e| e.f_mul_scalar(alpha))
        .m()?;
    x.f_where_self(&x.f_gt(0.0).m()?, &neg)
        .and_then(|t| t.f_mul_scalar(gamma))
        .m()
}

pub(super) fn hard_sigmoid(c: &Call) -> R<Tensor> {
    let alpha = c.node.float("alpha", 0.2) as f64;
    let beta = c.node.float("beta", 0.5) as f64;
    c.x()?
        .f_mul_scalar(alpha)
        .and_then(|t| t.f_add_scalar(beta))
        .and_then(|t| t.f_clamp(0.0, 1.0))
        .m()
}

/// Clip: bounds from the `min` / `max` attributes before opset 11, from inputs 1 and 2 after.
pub(super) fn clip(c: &Call) -> R<Tensor> {
    let (x, n) = (c.x()?, c.node);
    let (lo, hi) = if c.opset < 11 {
        (
            n.attrs.get("min").map(|_| n.float("min", f32::MIN) as f64),
            n.attrs.get("max").map(|_| n.float("max", f32::MAX) as f64),
        )
    } else {
        let bound = |i: usize, what: &str| c.opt(i).map(|t| first_float(t, what)).transpose();
        (bound(1, "the min input")?, bound(2, "the max input")?)
    };
    match (lo, hi) {
        (Some(l), Some(h)) => x.f_clamp(l, h).m(),
        (Some(l), None) => x.f_clamp_min(l).m(),
        (None, Some(h)) => x.f_clamp_max(h).m(),
        (None, None) => Ok(x.shallow_clone()),
    }
}

/// Softmax and LogSoftmax.
pub(super) fn softmax(c: &Call) -> R<Tensor> {
    let (x, n) = (c.x()?, c.node);
    let rank = x.dim() as i64;
    let log = n.op == "LogSoftmax";
    let f = |t: &Tensor, d: i64| {
        if log {
            t.f_log_softmax(d, t.kind()).m()
        } else {
            t.f_softmax(d, t.kind()).m()
        }
    };
    if c.opset < 13 {
        // Before opset 13 the input is coerced to 2-D at `axis` (default 1) and normalised over the
        // flattened trailing dimensions.
        let a = axis(n.int("axis", 1), rank)?;
        let shape = x.size();
        let lead: i64 = shape[..a].iter().product();
        f(&x.f_reshape([lead, -1]).m()?, 1)?
            .f_reshape(shape.as_slice())
            .m()
    } else {
        f(x, axis(n.int("axis", -1), rank)? as i64)
    }
}
