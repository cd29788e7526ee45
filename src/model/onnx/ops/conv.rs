//! Convolutions (Conv, ConvTranspose) on N x C x H x W tensors, with the spatial attribute reading the
//! pooling operators share: 2-D kernels, strides, dilations, explicit or `auto_pad` pads. The padded
//! input and the output are bounded before libtorch allocates them.
use tch::Tensor;

use super::{check_alloc, on, Call, OrMsg, R};
use crate::model::onnx::node::Node;

/// The load-time check of Conv, ConvTranspose, MaxPool and AveragePool: 2-D spatial attributes,
/// positive strides, dilations and kernel, non-negative pads, a known `auto_pad`.
pub(super) fn check_spatial(n: &Node, _opset: i64) -> R<()> {
    for key in ["kernel_shape", "strides", "dilations"] {
        match n.ints(key) {
            Some(v) if v.len() != 2 => {
                return Err(format!(
                    "`{key}` has {} entries: only 2-D (image) operators are supported",
                    v.len()
                ))
            }
            _ => {}
        }
    }
    positive(n, "strides")?;
    positive(n, "dilations")?;
    positive(n, "kernel_shape")?;
    if let Some(p) = n.ints("pads") {
        if p.iter().any(|v| *v < 0) {
            return Err(format!("`pads` {p:?} has a negative entry"));
        }
    }
    let pad = n.string("auto_pad", "NOTSET");
    if !["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"].contains(&pad.as_str()) {
        return Err(format!("auto_pad `{pad}` is unknown"));
    }
    if n.op.ends_with("Pool") && n.ints("kernel_shape").is_none() {
        return Err("`kernel_shape` is missing".into());
    }
    if n.op == "MaxPool" && n.int("storage_order", 0) != 0 {
        return Err("storage_order 1 is not supported".into());
    }
    Ok(())
}

/// The (height, width) pair of attribute `key`, 1 when absent, refused unless both are positive.
pub(super) fn positive(n: &Node, key: &str) -> R<[i64; 2]> {
    let p = pair(n, key, 1);
    if p.iter().any(|v| *v < 1) {
        return Err(format!("`{key}` {p:?} must be positive"));
    }
    Ok(p)
}

pub(super) fn pair(n: &Node, key: &str, default: i64) -> [i64; 2] {
    match n.ints(key) {
        Some(v) if v.len() == 2 => [v[0], v[1]],
        _ => [default, default],
    }
}

/// Pads for the two spatial axes as (top, left, bottom, right), from `pads` or `auto_pad`.
pub(super) fn spatial_pads(
    n: &Node,
    input: [i64; 2],
    kernel: [i64; 2],
    stride: [i64; 2],
    dil: [i64; 2],
) -> R<[i64; 4]> {
    let p = match n.string("auto_pad", "NOTSET").as_str() {
        "VALID" => [0; 4],
        auto @ ("SAME_UPPER" | "SAME_LOWER") => {
            let mut p = [0i64; 4];
            for a in 0..2 {
                let out = input[a].saturating_add(stride[a] - 1) / stride[a];
                let total = (out - 1)
                    .saturating_mul(stride[a])
                    .saturating_add((kernel[a] - 1).saturating_mul(dil[a]))
                    .saturating_add(1 - input[a])
                    .max(0);
                let small = total / 2;
                let (begin, end) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                p[a] = begin;
                p[a + 2] = end;
            }
            p
        }
        _ => match n.ints("pads") {
            Some(v) if v.len() == 4 => [v[0], v[1], v[2], v[3]],
            _ => [0; 4],
        },
    };
    if p.iter().any(|v| *v < 0) {
        return Err(format!("pads {p:?} have a negative entry"));
    }
    Ok(p)
}

/// The input's shape when it is 4-D (N, C, H, W).
pub(super) fn need_4d(x: &Tensor, n: &Node) -> R<[i64; 4]> {
    match x.size().as_slice() {
        &[a, b, c, d] => Ok([a, b, c, d]),
        other => Err(format!(
            "input of shape {other:?}: only 4-D (N, C, H, W) inputs are supported for {}",
            n.op
        )),
    }
}

/// `constant_pad_nd` pads for (top, left, bottom, right) on the last two axes.
pub(super) fn torch_pads(p: [i64; 4]) -> [i64; 4] {
    [p[1], p[3], p[0], p[2]]
}

/// The shape of `s` (N, C, H, W) padded by `p` (top, left, bottom, right), bounded.
pub(super) fn padded(s: [i64; 4], p: [i64; 4]) -> R<[i64; 4]> {
    let h = s[2].saturating_add(p[0]).saturating_add(p[2]);
    let w = s[3].saturating_add(p[1]).saturating_add(p[3]);
    let shape = [s[0], s[1], h, w];
    check_alloc("the padded input", &shape)?;
    Ok(shape)
}

/// One spatial size of a convolution's or pool's output: `(size - d (k - 1) - 1) / stride + 1`.
fn out_size(size: i64, kernel: i64, stride: i64, dil: i64) -> i64 {
    let span = size
        .saturating_sub((kernel - 1).saturating_mul(dil))
        .saturating_sub(1);
    if span < 0 {
        0
    } else {
        span / stride + 1
    }
}

/// The 4-D weight of a convolution.
fn weight(x: &Tensor, c: &Call) -> R<(Tensor, [i64; 4])> {
    let w = on(x, c.input(1)?)?;
    let s = match w.size().as_slice() {
        &[a, b, h, k] => [a, b, h, k],
        other => {
            return Err(format!(
                "weight of shape {other:?}: expected 4-D (output channels, input channels, kernel height, kernel width)"
            ))
        }
    };
    Ok((w, s))
}

pub(super) fn conv(c: &Call) -> R<Tensor> {
    let (x, n) = (c.x()?, c.node);
    let s = need_4d(x, n)?;
    let (w, ws) = weight(x, c)?;
    let b = c.opt(2).map(|b| on(x, b)).transpose()?;
    let kernel = [ws[2], ws[3]];
    let stride = positive(n, "strides")?;
    let dil = positive(n, "dilations")?;
    let p = spatial_pads(n, [s[2], s[3]], kernel, stride, dil)?;
    let ps = padded(s, p)?;
    check_alloc(
        "the output",
        &[
            s[0],
            ws[0],
            out_size(ps[2], kernel[0], stride[0], dil[0]),
            out_size(ps[3], kernel[1], stride[1], dil[1]),
        ],
    )?;
    let (x, pad) = if p[0] == p[2] && p[1] == p[3] {
        (x.shallow_clone(), [p[0], p[1]])
    } else {
        // Asymmetric padding (SAME with an even total from Keras/TF): pad explicitly.
        (x.f_constant_pad_nd(torch_pads(p)).m()?, [0, 0])
    };
    x.f_conv2d(&w, b.as_ref(), stride, pad, dil, n.int("group", 1))
        .m()
}

pub(super) fn conv_transpose(c: &Call) -> R<Tensor> {
    let (x, n) = (c.x()?, c.node);
    let s = need_4d(x, n)?;
    let (w, ws) = weight(x, c)?;
    let b = c.opt(2).map(|b| on(x, b)).transpose()?;
    let stride = positive(n, "strides")?;
    let dil = positive(n, "dilations")?;
    let out_pad = pair(n, "output_padding", 0);
    let group = n.int("group", 1);
    // Full output without padding, then cropped by the pads (which may be asymmetric):
    // (size - 1) stride + d (k - 1) + output_padding + 1.
    let full_size = |a: usize| {
        (s[2 + a] - 1)
            .saturating_mul(stride[a])
            .saturating_add((ws[2 + a] - 1).saturating_mul(dil[a]))
            .saturating_add(out_pad[a])
            .saturating_add(1)
    };
    check_alloc(
        "the output",
        &[
            s[0],
            ws[1].saturating_mul(group),
            full_size(0),
            full_size(1),
        ],
    )?;
    let full = x
        .f_conv_transpose2d(&w, b.as_ref(), stride, [0, 0], out_pad, group, dil)
        .m()?;
    let fs = full.size();
    let auto = n.string("auto_pad", "NOTSET");
    let mut crop = [0i64; 4];
    let target = match n.ints("output_shape") {
        Some(t) if t.len() < 2 => {
            return Err(format!(
                "`output_shape` {t:?} has fewer than the 2 spatial sizes"
            ))
        }
        t => t.map(|v| v.to_vec()),
    };
    if target.is_some() || auto.starts_with("SAME") {
        for a in 0..2 {
            let want = match &target {
                Some(t) => t[t.len() - 2 + a],
                None => s[2 + a].saturating_mul(stride[a]),
            };
            let total = (fs[2 + a] - want).max(0);
            let (begin, end) = if auto == "SAME_LOWER" {
                (total - total / 2, total / 2)
            } else {
                (total / 2, total - total / 2)
            };
            crop[a] = begin;
            crop[a + 2] = end;
        }
    } else if auto != "VALID" {
        if let Some(v) = n.ints("pads").filter(|v| v.len() == 4) {
            crop = [v[0], v[1], v[2], v[3]];
        }
    }
    full.f_narrow(2, crop[0], fs[2] - crop[0] - crop[2])
        .and_then(|t| t.f_narrow(3, crop[1], fs[3] - crop[1] - crop[3]))
        .m()
}
