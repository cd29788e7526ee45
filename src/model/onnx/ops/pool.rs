//! Pooling: MaxPool and AveragePool over 2-D windows (symmetric pads by libtorch, asymmetric ones
//! explicitly), and the global pools over every spatial axis.
use tch::Tensor;

use super::conv::{need_4d, padded, positive, spatial_pads, torch_pads};
use super::{Call, OrMsg, R};

/// MaxPool and AveragePool.
pub(super) fn pool(c: &Call) -> R<Tensor> {
    let (x, n) = (c.x()?, c.node);
    let s = need_4d(x, n)?;
    let kernel = positive(n, "kernel_shape")?;
    let stride = positive(n, "strides")?;
    let dil = positive(n, "dilations")?;
    let ceil = n.int("ceil_mode", 0) != 0;
    let p = spatial_pads(n, [s[2], s[3]], kernel, stride, dil)?;
    let symmetric = p[0] == p[2]
        && p[1] == p[3]
        && p[0].saturating_mul(2) <= kernel[0]
        && p[1].saturating_mul(2) <= kernel[1];
    if n.op == "MaxPool" {
        let (x, pad) = if symmetric {
            (x.shallow_clone(), [p[0], p[1]])
        } else {
            padded(s, p)?;
            (
                x.f_pad(torch_pads(p), "constant", f64::NEG_INFINITY).m()?,
                [0, 0],
            )
        };
        return x.f_max_pool2d(kernel, stride, pad, dil, ceil).m();
    }
    if dil != [1, 1] {
        return Err("AveragePool with dilations is not supported".into());
    }
    let include = n.int("count_include_pad", 0) != 0;
    if symmetric {
        return x
            .f_avg_pool2d(kernel, stride, [p[0], p[1]], ceil, include, None)
            .m();
    }
    // Asymmetric pads: the sum over the zero-padded input divided by the number of real pixels in
    // each window (or the full window with count_include_pad).
    padded(s, p)?;
    let sum = x
        .f_constant_pad_nd(torch_pads(p))
        .and_then(|t| t.f_avg_pool2d(kernel, stride, [0, 0], ceil, true, 1))
        .m()?;
    if include {
        return sum
            .f_div_scalar(kernel[0].saturating_mul(kernel[1]) as f64)
            .m();
    }
    let count = Tensor::f_ones([1, 1, s[2], s[3]], (x.kind(), x.device()))
        .and_then(|t| t.f_constant_pad_nd(torch_pads(p)))
        .and_then(|t| t.f_avg_pool2d(kernel, stride, [0, 0], ceil, true, 1))
        .m()?;
    sum.f_div(&count).m()
}

/// GlobalAveragePool and GlobalMaxPool.
pub(super) fn global_pool(c: &Call) -> R<Tensor> {
    let x = c.x()?;
    let dims: Vec<i64> = (2..x.dim() as i64).collect();
    if c.node.op == "GlobalAveragePool" {
        x.f_mean_dim(dims.as_slice(), true, x.kind()).m()
    } else {
        x.f_amax(dims.as_slice(), true).m()
    }
}
