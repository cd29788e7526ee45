//! The ONNX operators as libtorch calls, one node at a time, so autograd records every step: the
//! attribute checks done at load ([`check_node`]) and the evaluation ([`run`]). Semantics follow the
//! ONNX operator specification for the opset the file declares (axes, pads and clip bounds moved
//! from attributes to inputs over the opsets; both forms are read).
use tch::{Device, Kind, Tensor};

use super::graph::{Attr, Node};

type R<T> = std::result::Result<T, String>;

trait OrMsg<T> {
    fn m(self) -> R<T>;
}
impl<T> OrMsg<T> for std::result::Result<T, tch::TchError> {
    fn m(self) -> R<T> {
        self.map_err(|e| first_line(&e.to_string()))
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}

/// Integer values of a (small, shape-like) tensor.
pub fn ints_of(t: &Tensor) -> R<Vec<i64>> {
    Vec::<i64>::try_from(t.to_kind(Kind::Int64).to_device(Device::Cpu).flatten(0, -1)).m()
}

fn floats_of(t: &Tensor) -> R<Vec<f64>> {
    Vec::<f64>::try_from(
        t.to_kind(Kind::Double)
            .to_device(Device::Cpu)
            .flatten(0, -1),
    )
    .m()
}

/// Attribute combinations the importer does not run, refused at load with the reason.
pub fn check_node(n: &Node, opset: i64) -> R<()> {
    let spatial_2d = |key: &str| -> R<()> {
        match n.ints(key) {
            Some(v) if v.len() != 2 => Err(format!(
                "`{key}` has {} entries: only 2-D (image) operators are supported",
                v.len()
            )),
            _ => Ok(()),
        }
    };
    match n.op.as_str() {
        "Conv" | "ConvTranspose" | "MaxPool" | "AveragePool" => {
            spatial_2d("kernel_shape")?;
            spatial_2d("strides")?;
            spatial_2d("dilations")?;
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
        }
        "Resize" | "Upsample" => {
            resize_mode(n, opset)?;
        }
        "Pad" => {
            let mode = n.string("mode", "constant");
            if !["constant", "reflect", "edge"].contains(&mode.as_str()) {
                return Err(format!(
                    "mode `{mode}` is not supported (constant, reflect, edge)"
                ));
            }
        }
        "Cast" => {
            cast_kind(n.int("to", 1))?;
        }
        "Constant"
            if ![
                "value",
                "value_float",
                "value_floats",
                "value_int",
                "value_ints",
            ]
            .iter()
            .any(|k| n.attrs.contains_key(*k)) =>
        {
            return Err(
                "no supported value attribute (value, value_float(s), value_int(s))".into(),
            );
        }
        _ => {}
    }
    Ok(())
}

/// How a Resize node maps onto libtorch's interpolation: (mode, align_corners, antialias).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Interp {
    /// `src = floor(dst / scale)`: ONNX asymmetric + floor, torch `nearest`.
    Nearest,
    /// `src = floor((dst + 0.5) / scale)`: ONNX half_pixel + round_prefer_ceil, torch `nearest-exact`.
    NearestExact,
    Bilinear {
        align_corners: bool,
        antialias: bool,
    },
    Bicubic {
        align_corners: bool,
        antialias: bool,
    },
}

fn resize_mode(n: &Node, opset: i64) -> R<Interp> {
    let mode = n.string("mode", "nearest");
    // Upsample and Resize-10 use the asymmetric transform (the pre-11 definition).
    let default_ct = if n.op == "Upsample" || opset < 11 {
        "asymmetric"
    } else {
        "half_pixel"
    };
    let ct = n.string("coordinate_transformation_mode", default_ct);
    let antialias = n.int("antialias", 0) != 0;
    if n.int("exclude_outside", 0) != 0 {
        return Err("exclude_outside 1 is not supported".into());
    }
    let half = ct == "half_pixel" || ct == "pytorch_half_pixel";
    let r = match mode.as_str() {
        "nearest" => {
            let nm = n.string(
                "nearest_mode",
                if n.op == "Upsample" || opset < 11 {
                    "floor"
                } else {
                    "round_prefer_floor"
                },
            );
            match (ct.as_str(), nm.as_str()) {
                ("asymmetric", "floor") => Interp::Nearest,
                (_, "round_prefer_ceil") if half => Interp::NearestExact,
                _ => {
                    return Err(format!(
                        "nearest resize with coordinate_transformation_mode `{ct}` and nearest_mode `{nm}` is not supported (asymmetric+floor, half_pixel+round_prefer_ceil)"
                    ))
                }
            }
        }
        "linear" | "bilinear" if half || ct == "align_corners" => Interp::Bilinear {
            align_corners: ct == "align_corners",
            antialias,
        },
        "cubic" | "bicubic" if half || ct == "align_corners" => {
            let a = n.float("cubic_coeff_a", -0.75);
            if (a + 0.75).abs() > 1e-6 {
                return Err(format!(
                    "cubic_coeff_a {a} is not supported (libtorch uses -0.75)"
                ));
            }
            Interp::Bicubic {
                align_corners: ct == "align_corners",
                antialias,
            }
        }
        _ => {
            return Err(format!(
                "mode `{mode}` with coordinate_transformation_mode `{ct}` is not supported"
            ))
        }
    };
    if antialias && !matches!(r, Interp::Bilinear { .. } | Interp::Bicubic { .. }) {
        return Err("antialias is only supported for linear and cubic".into());
    }
    Ok(r)
}

fn cast_kind(to: i64) -> R<Kind> {
    // TensorProto.DataType: 1 float, 10 half, 11 double, 16 bfloat16 -> float32; the integers ->
    // int64; 9 bool.
    Ok(match to {
        1 | 10 | 11 | 16 => Kind::Float,
        2..=7 | 12 | 13 => Kind::Int64,
        9 => Kind::Bool,
        other => return Err(format!("Cast to data type {other} is not supported")),
    })
}

/// Pads for the two spatial axes as (top, left, bottom, right), from `pads` or `auto_pad`.
fn spatial_pads(
    n: &Node,
    input: [i64; 2],
    kernel: [i64; 2],
    stride: [i64; 2],
    dil: [i64; 2],
) -> [i64; 4] {
    match n.string("auto_pad", "NOTSET").as_str() {
        "VALID" => [0; 4],
        auto @ ("SAME_UPPER" | "SAME_LOWER") => {
            let mut p = [0i64; 4];
            for a in 0..2 {
                let out = (input[a] + stride[a] - 1) / stride[a];
                let total =
                    ((out - 1) * stride[a] + (kernel[a] - 1) * dil[a] + 1 - input[a]).max(0);
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
    }
}

fn pair(n: &Node, key: &str, default: i64) -> [i64; 2] {
    match n.ints(key) {
        Some(v) if v.len() == 2 => [v[0], v[1]],
        _ => [default, default],
    }
}

fn need_4d(x: &Tensor, n: &Node) -> R<()> {
    if x.dim() != 4 {
        return Err(format!(
            "input of shape {:?}: only 4-D (N, C, H, W) inputs are supported for {}",
            x.size(),
            n.op
        ));
    }
    Ok(())
}

/// `constant_pad_nd` pads for (top, left, bottom, right) on the last two axes.
fn torch_pads(p: [i64; 4]) -> [i64; 4] {
    [p[1], p[3], p[0], p[2]]
}

fn get<'a>(inputs: &'a [Option<Tensor>], i: usize, n: &Node) -> R<&'a Tensor> {
    inputs
        .get(i)
        .and_then(|t| t.as_ref())
        .ok_or_else(|| format!("input {i} of {} is missing", n.op))
}

fn opt(inputs: &[Option<Tensor>], i: usize) -> Option<&Tensor> {
    inputs.get(i).and_then(|t| t.as_ref())
}

fn axis(a: i64, rank: i64) -> i64 {
    if a < 0 {
        a + rank
    } else {
        a
    }
}

/// Axes from input `i` (newer opsets) or attribute `axes` (older).
fn axes_of(n: &Node, inputs: &[Option<Tensor>], i: usize) -> R<Option<Vec<i64>>> {
    if let Some(t) = opt(inputs, i) {
        return Ok(Some(ints_of(t)?));
    }
    Ok(n.ints("axes").map(|v| v.to_vec()))
}

/// Brings `b` onto `a`'s device (shape values live on the CPU, activations on the model's device).
fn on(a: &Tensor, b: &Tensor) -> Tensor {
    if a.device() == b.device() {
        b.shallow_clone()
    } else {
        b.to_device(a.device())
    }
}

fn binary(n: &Node, a: &Tensor, b: &Tensor) -> R<Tensor> {
    // Float and integer operands (a shape value times a float scale) compute in float.
    let (a, b) = match (a.is_floating_point(), b.is_floating_point()) {
        (true, false) => (a.shallow_clone(), b.to_kind(a.kind())),
        (false, true) => (a.to_kind(b.kind()), b.shallow_clone()),
        _ => (a.shallow_clone(), b.shallow_clone()),
    };
    let dev = if a.device() != Device::Cpu {
        a.device()
    } else {
        b.device()
    };
    let (a, b) = (a.to_device(dev), b.to_device(dev));
    match n.op.as_str() {
        "Add" => a.f_add(&b).m(),
        "Sub" => a.f_sub(&b).m(),
        "Mul" => a.f_mul(&b).m(),
        "Div" if !a.is_floating_point() => a.f_div_tensor_mode(&b, "trunc").m(),
        "Div" => a.f_div(&b).m(),
        "Pow" => a.f_pow(&b).m(),
        "Max" => a.f_maximum(&b).m(),
        "Min" => a.f_minimum(&b).m(),
        other => Err(format!("{other} is not a binary operator")),
    }
}

/// Runs one node. `inputs[i]` is `None` for an omitted optional input.
pub fn run(n: &Node, inputs: &[Option<Tensor>], opset: i64) -> R<Vec<Tensor>> {
    let x = || get(inputs, 0, n);
    let one = |t: Tensor| Ok(vec![t]);
    match n.op.as_str() {
        "Identity" | "Dropout" => one(x()?.shallow_clone()),
        "Relu" => one(x()?.relu()),
        "LeakyRelu" => {
            let x = x()?;
            let alpha = n.float("alpha", 0.01) as f64;
            one(x.where_self(&x.gt(0.0), &(x * alpha)))
        }
        "Elu" | "Selu" => {
            let x = x()?;
            let (alpha, gamma) = if n.op == "Elu" {
                (n.float("alpha", 1.0) as f64, 1.0)
            } else {
                (
                    n.float("alpha", 1.673_263_2) as f64,
                    n.float("gamma", 1.050_701) as f64,
                )
            };
            let neg = (x.exp() - 1.0) * alpha;
            one(x.where_self(&x.gt(0.0), &neg) * gamma)
        }
        "Sigmoid" => one(x()?.sigmoid()),
        "Tanh" => one(x()?.tanh()),
        "HardSwish" => one(x()?.hardswish()),
        "HardSigmoid" => {
            let alpha = n.float("alpha", 0.2) as f64;
            let beta = n.float("beta", 0.5) as f64;
            one((x()? * alpha + beta).clamp(0.0, 1.0))
        }
        "Abs" => one(x()?.abs()),
        "Neg" => one(x()?.neg()),
        "Exp" => one(x()?.exp()),
        "Sqrt" => one(x()?.sqrt()),
        "Reciprocal" => one(x()?.reciprocal()),
        "Clip" => {
            let x = x()?;
            let (lo, hi) = if opset < 11 {
                (
                    n.attrs.get("min").map(|_| n.float("min", f32::MIN) as f64),
                    n.attrs.get("max").map(|_| n.float("max", f32::MAX) as f64),
                )
            } else {
                let bound = |i: usize| -> R<Option<f64>> {
                    opt(inputs, i)
                        .map(|t| floats_of(t).map(|v| v[0]))
                        .transpose()
                };
                (bound(1)?, bound(2)?)
            };
            one(match (lo, hi) {
                (Some(l), Some(h)) => x.clamp(l, h),
                (Some(l), None) => x.clamp_min(l),
                (None, Some(h)) => x.clamp_max(h),
                (None, None) => x.shallow_clone(),
            })
        }
        "Softmax" | "LogSoftmax" => {
            let x = x()?;
            let rank = x.dim() as i64;
            let log = n.op == "LogSoftmax";
            let f = |t: &Tensor, d: i64| {
                if log {
                    t.log_softmax(d, t.kind())
                } else {
                    t.softmax(d, t.kind())
                }
            };
            if opset < 13 {
                // Before opset 13 the input is coerced to 2-D at `axis` (default 1) and normalised
                // over the flattened trailing dimensions.
                let a = axis(n.int("axis", 1), rank);
                let shape = x.size();
                let lead: i64 = shape[..a as usize].iter().product();
                one(f(&x.reshape([lead, -1]), 1).reshape(shape.as_slice()))
            } else {
                one(f(x, axis(n.int("axis", -1), rank)))
            }
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" => one(binary(n, x()?, get(inputs, 1, n)?)?),
        "Max" | "Min" | "Sum" | "Mean" => {
            let mut acc = x()?.shallow_clone();
            let op = match n.op.as_str() {
                "Sum" | "Mean" => "Add",
                o => o,
            };
            let node = Node {
                name: n.name.clone(),
                op: op.into(),
                inputs: vec![],
                outputs: vec![],
                attrs: Default::default(),
            };
            for i in 1..inputs.len() {
                acc = binary(&node, &acc, get(inputs, i, n)?)?;
            }
            if n.op == "Mean" {
                acc /= inputs.len() as f64;
            }
            one(acc)
        }
        "Conv" => {
            let x = x()?;
            need_4d(x, n)?;
            let w = on(x, get(inputs, 1, n)?);
            let b = opt(inputs, 2).map(|b| on(x, b));
            let ws = w.size();
            let kernel = [ws[2], ws[3]];
            let stride = pair(n, "strides", 1);
            let dil = pair(n, "dilations", 1);
            let s = x.size();
            let p = spatial_pads(n, [s[2], s[3]], kernel, stride, dil);
            let (x, pad) = if p[0] == p[2] && p[1] == p[3] {
                (x.shallow_clone(), [p[0], p[1]])
            } else {
                // Asymmetric padding (SAME with an even total from Keras/TF): pad explicitly.
                (x.constant_pad_nd(torch_pads(p)), [0, 0])
            };
            one(x
                .f_conv2d(&w, b.as_ref(), stride, pad, dil, n.int("group", 1))
                .m()?)
        }
        "ConvTranspose" => {
            let x = x()?;
            need_4d(x, n)?;
            let w = on(x, get(inputs, 1, n)?);
            let b = opt(inputs, 2).map(|b| on(x, b));
            let stride = pair(n, "strides", 1);
            let dil = pair(n, "dilations", 1);
            let out_pad = pair(n, "output_padding", 0);
            let group = n.int("group", 1);
            // Full output without padding, then cropped by the pads (which may be asymmetric).
            let full = x
                .f_conv_transpose2d(&w, b.as_ref(), stride, [0, 0], out_pad, group, dil)
                .m()?;
            let s = x.size();
            let fs = full.size();
            let auto = n.string("auto_pad", "NOTSET");
            let mut crop = [0i64; 4];
            let target = n.ints("output_shape").map(|v| v.to_vec());
            if target.is_some() || auto.starts_with("SAME") {
                for a in 0..2 {
                    let want = match &target {
                        Some(t) => t[t.len() - 2 + a],
                        None => s[2 + a] * stride[a],
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
            one(full.narrow(2, crop[0], fs[2] - crop[0] - crop[2]).narrow(
                3,
                crop[1],
                fs[3] - crop[1] - crop[3],
            ))
        }
        "BatchNormalization" => {
            let x = x()?;
            let p = |i: usize| get(inputs, i, n).map(|t| on(x, t));
            let eps = n.float("epsilon", 1e-5) as f64;
            one(x
                .f_batch_norm(
                    Some(&p(1)?),
                    Some(&p(2)?),
                    Some(&p(3)?),
                    Some(&p(4)?),
                    false,
                    0.0,
                    eps,
                    false,
                )
                .m()?)
        }
        "MaxPool" | "AveragePool" => {
            let x = x()?;
            need_4d(x, n)?;
            let kernel = pair(n, "kernel_shape", 1);
            let stride = pair(n, "strides", 1);
            let dil = pair(n, "dilations", 1);
            let ceil = n.int("ceil_mode", 0) != 0;
            let s = x.size();
            let p = spatial_pads(n, [s[2], s[3]], kernel, stride, dil);
            let symmetric =
                p[0] == p[2] && p[1] == p[3] && p[0] * 2 <= kernel[0] && p[1] * 2 <= kernel[1];
            if n.op == "MaxPool" {
                let (x, pad) = if symmetric {
                    (x.shallow_clone(), [p[0], p[1]])
                } else {
                    (x.pad(torch_pads(p), "constant", f64::NEG_INFINITY), [0, 0])
                };
                return one(x.f_max_pool2d(kernel, stride, pad, dil, ceil).m()?);
            }
            if dil != [1, 1] {
                return Err("AveragePool with dilations is not supported".into());
            }
            let include = n.int("count_include_pad", 0) != 0;
            if symmetric {
                return one(x
                    .f_avg_pool2d(kernel, stride, [p[0], p[1]], ceil, include, None)
                    .m()?);
            }
            // Asymmetric pads: the sum over the zero-padded input divided by the number of real
            // pixels in each window (or the full window with count_include_pad).
            let padded = x.constant_pad_nd(torch_pads(p));
            let sum = padded
                .f_avg_pool2d(kernel, stride, [0, 0], ceil, true, 1)
                .m()?;
            let count = if include {
                (kernel[0] * kernel[1]) as f64
            } else {
                let ones = Tensor::ones([1, 1, s[2], s[3]], (x.kind(), x.device()))
                    .constant_pad_nd(torch_pads(p));
                let c = ones.avg_pool2d(kernel, stride, [0, 0], ceil, true, 1);
                return one(sum / c);
            };
            one(sum / count)
        }
        "GlobalAveragePool" | "GlobalMaxPool" => {
            let x = x()?;
            let dims: Vec<i64> = (2..x.dim() as i64).collect();
            one(if n.op == "GlobalAveragePool" {
                x.mean_dim(dims.as_slice(), true, x.kind())
            } else {
                x.amax(dims.as_slice(), true)
            })
        }
        "ReduceMean" | "ReduceMax" | "ReduceSum" => {
            let x = x()?;
            let rank = x.dim() as i64;
            let keep = n.int("keepdims", 1) != 0;
            let axes = match axes_of(n, inputs, 1)? {
                Some(a) if !a.is_empty() => a.iter().map(|&a| axis(a, rank)).collect(),
                _ if n.int("noop_with_empty_axes", 0) != 0 => return one(x.shallow_clone()),
                _ => (0..rank).collect::<Vec<_>>(),
            };
            one(match n.op.as_str() {
                "ReduceMean" => x.f_mean_dim(axes.as_slice(), keep, x.kind()).m()?,
                "ReduceSum" => x.f_sum_dim_intlist(axes.as_slice(), keep, x.kind()).m()?,
                _ => x.f_amax(axes.as_slice(), keep).m()?,
            })
        }
        "Concat" => {
            let ts: Vec<&Tensor> = inputs.iter().flatten().collect();
            let rank = ts.first().map(|t| t.dim() as i64).unwrap_or(1);
            let a = axis(n.int("axis", 0), rank);
            // Shape pieces may mix kinds/devices (a constant and a computed dimension).
            let dev = ts
                .iter()
                .map(|t| t.device())
                .find(|d| *d != Device::Cpu)
                .unwrap_or(Device::Cpu);
            let float = ts.iter().any(|t| t.is_floating_point());
            let ts: Vec<Tensor> = ts
                .iter()
                .map(|t| {
                    let t = t.to_device(dev);
                    if float && !t.is_floating_point() {
                        t.to_kind(Kind::Float)
                    } else {
                        t
                    }
                })
                .collect();
            one(Tensor::f_cat(&ts, a).m()?)
        }
        "Flatten" => {
            let x = x()?;
            let rank = x.dim() as i64;
            let a = axis(n.int("axis", 1), rank);
            let s = x.size();
            let lead: i64 = s[..a as usize].iter().product();
            one(x.f_reshape([lead, -1]).m()?)
        }
        "Reshape" => {
            let x = x()?;
            let mut shape = ints_of(get(inputs, 1, n)?)?;
            let allow_zero = n.int("allowzero", 0) != 0;
            let s = x.size();
            if !allow_zero {
                for (i, d) in shape.iter_mut().enumerate() {
                    if *d == 0 {
                        *d = *s
                            .get(i)
                            .ok_or("a 0 in the shape has no input dimension to copy")?;
                    }
                }
            }
            one(x.f_reshape(shape.as_slice()).m()?)
        }
        "Transpose" => {
            let x = x()?;
            let perm: Vec<i64> = match n.ints("perm") {
                Some(p) => p.to_vec(),
                None => (0..x.dim() as i64).rev().collect(),
            };
            one(x.f_permute(perm.as_slice()).m()?)
        }
        "Squeeze" => {
            let x = x()?;
            let rank = x.dim() as i64;
            let mut out = x.shallow_clone();
            match axes_of(n, inputs, 1)? {
                Some(mut axes) => {
                    axes.iter_mut().for_each(|a| *a = axis(*a, rank));
                    axes.sort_unstable();
                    for a in axes.iter().rev() {
                        if out.size()[*a as usize] != 1 {
                            return Err(format!("cannot squeeze axis {a} of shape {:?}", x.size()));
                        }
                        out = out.squeeze_dim(*a);
                    }
                }
                None => out = out.squeeze(),
            }
            one(out)
        }
        "Unsqueeze" => {
            let x = x()?;
            let mut axes = axes_of(n, inputs, 1)?.ok_or("no axes")?;
            let rank = x.dim() as i64 + axes.len() as i64;
            axes.iter_mut().for_each(|a| *a = axis(*a, rank));
            axes.sort_unstable();
            let mut out = x.shallow_clone();
            for a in axes {
                out = out.unsqueeze(a);
            }
            one(out)
        }
        "Gemm" => {
            let a = x()?;
            let b = on(a, get(inputs, 1, n)?);
            let a = if n.int("transA", 0) != 0 {
                a.tr()
            } else {
                a.shallow_clone()
            };
            let b = if n.int("transB", 0) != 0 { b.tr() } else { b };
            let mut y = a.f_matmul(&b).m()?;
            let alpha = n.float("alpha", 1.0) as f64;
            if alpha != 1.0 {
                y *= alpha;
            }
            if let Some(c) = opt(inputs, 2) {
                let beta = n.float("beta", 1.0) as f64;
                let c = on(&y, c);
                y = if beta == 1.0 {
                    y.f_add(&c).m()?
                } else {
                    y.f_add(&(c * beta)).m()?
                };
            }
            one(y)
        }
        "MatMul" => {
            let a = x()?;
            one(a.f_matmul(&on(a, get(inputs, 1, n)?)).m()?)
        }
        "Pad" => {
            let x = x()?;
            let rank = x.dim() as i64;
            let (pads, value) = if opset < 11 {
                (
                    n.ints("pads").map(|v| v.to_vec()).unwrap_or_default(),
                    n.float("value", 0.0) as f64,
                )
            } else {
                let v = opt(inputs, 2)
                    .map(|t| floats_of(t).map(|v| v.first().copied().unwrap_or(0.0)))
                    .transpose()?;
                (ints_of(get(inputs, 1, n)?)?, v.unwrap_or(0.0))
            };
            // `pads` = [begin of each axis..., end of each axis...] over `axes` (default all).
            let axes: Vec<i64> = match opt(inputs, 3) {
                Some(t) => ints_of(t)?.iter().map(|&a| axis(a, rank)).collect(),
                None => (0..rank).collect(),
            };
            let k = axes.len();
            if pads.len() != 2 * k {
                return Err(format!("{} pads for {k} axes", pads.len()));
            }
            let mut per_axis = vec![(0i64, 0i64); rank as usize];
            for (j, &a) in axes.iter().enumerate() {
                per_axis[a as usize] = (pads[j], pads[j + k]);
            }
            // libtorch wants (last begin, last end, second-to-last begin, ...), trimmed to the
            // padded trailing axes.
            let first = per_axis
                .iter()
                .position(|p| *p != (0, 0))
                .unwrap_or(rank as usize);
            let mut tp = Vec::new();
            for p in per_axis[first..].iter().rev() {
                tp.push(p.0);
                tp.push(p.1);
            }
            if tp.is_empty() {
                return one(x.shallow_clone());
            }
            let mode = n.string("mode", "constant");
            one(match mode.as_str() {
                "constant" => x.f_pad(tp.as_slice(), "constant", value).m()?,
                "reflect" => x.f_pad(tp.as_slice(), "reflect", None).m()?,
                _ => x.f_pad(tp.as_slice(), "replicate", None).m()?,
            })
        }
        "Resize" | "Upsample" => {
            let x = x()?;
            need_4d(x, n)?;
            let interp = resize_mode(n, opset)?;
            let s = x.size();
            // Resize-11+: (X, roi, scales, sizes); Resize-10 and Upsample-9: (X, scales);
            // Upsample-7: the `scales` attribute.
            let (scales_in, sizes_in) = if n.op == "Resize" && opset >= 11 {
                (opt(inputs, 2), opt(inputs, 3))
            } else {
                (opt(inputs, 1), None)
            };
            let scales: Option<Vec<f64>> = match scales_in {
                Some(t) if t.numel() > 0 => Some(floats_of(t)?),
                _ => match n.attrs.get("scales") {
                    Some(Attr::Floats(v)) => Some(v.iter().map(|&f| f as f64).collect()),
                    _ => None,
                },
            };
            let (out, sh, sw) = match (sizes_in.filter(|t| t.numel() > 0), scales) {
                (Some(sz), _) => {
                    let v = ints_of(sz)?;
                    if v.len() != 4 || v[0] != s[0] || v[1] != s[1] {
                        return Err(format!("sizes {v:?} must keep N and C of {s:?}"));
                    }
                    ([v[2], v[3]], None, None)
                }
                (None, Some(sc)) => {
                    if sc.len() != 4 || sc[0] != 1.0 || sc[1] != 1.0 {
                        return Err(format!("scales {sc:?} must be 1 on N and C"));
                    }
                    (
                        [
                            (s[2] as f64 * sc[2]).floor() as i64,
                            (s[3] as f64 * sc[3]).floor() as i64,
                        ],
                        Some(sc[2]),
                        Some(sc[3]),
                    )
                }
                (None, None) => return Err("neither scales nor sizes given".into()),
            };
            one(match interp {
                Interp::Nearest => x.f_upsample_nearest2d(out, sh, sw).m()?,
                Interp::NearestExact => x.f_internal_upsample_nearest_exact2d(out, sh, sw).m()?,
                Interp::Bilinear {
                    align_corners,
                    antialias: false,
                } => x.f_upsample_bilinear2d(out, align_corners, sh, sw).m()?,
                Interp::Bilinear {
                    align_corners,
                    antialias: true,
                } => x
                    .f_internal_upsample_bilinear2d_aa(out, align_corners, sh, sw)
                    .m()?,
                Interp::Bicubic {
                    align_corners,
                    antialias: false,
                } => x.f_upsample_bicubic2d(out, align_corners, sh, sw).m()?,
                Interp::Bicubic {
                    align_corners,
                    antialias: true,
                } => x
                    .f_internal_upsample_bicubic2d_aa(out, align_corners, sh, sw)
                    .m()?,
            })
        }
        "Constant" => {
            let t = match (
                n.attrs.get("value"),
                n.attrs.get("value_float"),
                n.attrs.get("value_floats"),
                n.attrs.get("value_int"),
                n.attrs.get("value_ints"),
            ) {
                (Some(Attr::Tensor(t)), ..) => t.shallow_clone(),
                (_, Some(Attr::Float(f)), ..) => Tensor::from(*f),
                (_, _, Some(Attr::Floats(v)), ..) => Tensor::from_slice(v),
                (_, _, _, Some(Attr::Int(i)), _) => Tensor::from(*i),
                (_, _, _, _, Some(Attr::Ints(v))) => Tensor::from_slice(v),
                _ => return Err("no value".into()),
            };
            one(t)
        }
        "ConstantOfShape" => {
            let shape = ints_of(x()?)?;
            let t = match n.attrs.get("value") {
                Some(Attr::Tensor(v)) => v
                    .flatten(0, -1)
                    .get(0)
                    .expand(shape.as_slice(), false)
                    .contiguous(),
                _ => Tensor::zeros(shape.as_slice(), (Kind::Float, Device::Cpu)),
            };
            one(t)
        }
        "Shape" => {
            let s = x()?.size();
            let rank = s.len() as i64;
            let clampi = |v: i64| axis(v, rank).clamp(0, rank) as usize;
            let start = clampi(n.int("start", 0));
            let end = clampi(n.int("end", rank));
            one(Tensor::from_slice(&s[start..end.max(start)]))
        }
        "Gather" => {
            let data = x()?;
            let idx = get(inputs, 1, n)?;
            let rank = data.dim() as i64;
            let a = axis(n.int("axis", 0), rank);
            let dim = data.size()[a as usize];
            let idx = idx.to_kind(Kind::Int64).to_device(data.device());
            // Negative indices count from the end.
            let idx = idx.where_self(&idx.ge(0), &(&idx + dim));
            if idx.dim() == 0 {
                one(data.select(a, idx.int64_value(&[])))
            } else {
                let flat = data.index_select(a, &idx.flatten(0, -1));
                let mut shape = data.size();
                shape.splice(a as usize..a as usize + 1, idx.size());
                one(flat.reshape(shape.as_slice()))
            }
        }
        "Slice" => {
            let x = x()?;
            let rank = x.dim() as i64;
            let (starts, ends, axes, steps) = if opset < 10 {
                let s = n.ints("starts").map(|v| v.to_vec()).unwrap_or_default();
                let e = n.ints("ends").map(|v| v.to_vec()).unwrap_or_default();
                let a = n.ints("axes").map(|v| v.to_vec());
                (s, e, a, None)
            } else {
                (
                    ints_of(get(inputs, 1, n)?)?,
                    ints_of(get(inputs, 2, n)?)?,
                    opt(inputs, 3).map(ints_of).transpose()?,
                    opt(inputs, 4).map(ints_of).transpose()?,
                )
            };
            let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
            let mut out = x.shallow_clone();
            for (j, &a) in axes.iter().enumerate() {
                let a = axis(a, rank);
                let step = steps.as_ref().map(|s| s[j]).unwrap_or(1);
                let dim = out.size()[a as usize];
                let wrap = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
                if step > 0 {
                    let (s, e) = (wrap(starts[j]).clamp(0, dim), wrap(ends[j]).clamp(0, dim));
                    out = out.f_slice(a, s, e.max(s), step).m()?;
                } else if step < 0 {
                    // Backwards (a reversal, as exporters write for reflect padding): start clamped
                    // to [0, dim - 1], end to [-1, dim - 1], elements start, start + step, ... > end.
                    let s = wrap(starts[j]).clamp(0, dim - 1);
                    let e = if ends[j] < -dim {
                        -1
                    } else {
                        wrap(ends[j]).clamp(-1, dim - 1)
                    };
                    let idx: Vec<i64> =
                        (0..).map(|k| s + k * step).take_while(|&i| i > e).collect();
                    let idx = Tensor::from_slice(&idx).to_device(out.device());
                    out = out.f_index_select(a, &idx).m()?;
                } else {
                    return Err("a Slice step of 0".into());
                }
            }
            one(out)
        }
        "Cast" => one(x()?.to_kind(cast_kind(n.int("to", 1))?)),
        "Expand" => {
            let x = x()?;
            let shape = ints_of(get(inputs, 1, n)?)?;
            // Bidirectional broadcast of the input shape and the given shape.
            let xs = x.size();
            let rank = xs.len().max(shape.len());
            let mut target = vec![1i64; rank];
            for i in 0..rank {
                let a = if i + xs.len() >= rank {
                    xs[i + xs.len() - rank]
                } else {
                    1
                };
                let b = if i + shape.len() >= rank {
                    shape[i + shape.len() - rank]
                } else {
                    1
                };
                target[i] = if a == 1 { b } else { a };
            }
            one(x.f_expand(target.as_slice(), false).m()?)
        }
        other => Err(format!("operator {other} has no implementation")),
    }
}
