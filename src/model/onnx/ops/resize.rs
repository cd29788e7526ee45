//! Resampling and padding: Resize / Upsample mapped onto libtorch's interpolations, and Pad
//! (constant, reflect, edge). The output size comes from data (sizes, scales, pads) and is bounded
//! before it is allocated.
use tch::Tensor;

use super::conv::need_4d;
use super::{axis, check_alloc, floats_of, ints_of, Call, OrMsg, R};
use crate::model::onnx::node::{Attr, Node};

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

pub(super) fn check_resize(n: &Node, opset: i64) -> R<()> {
    resize_mode(n, opset).map(|_| ())
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

/// Resize and Upsample.
pub(super) fn resize(c: &Call) -> R<Tensor> {
    let (x, n) = (c.x()?, c.node);
    let s = need_4d(x, n)?;
    let interp = resize_mode(n, c.opset)?;
    // Resize-11+: (X, roi, scales, sizes); Resize-10 and Upsample-9: (X, scales); Upsample-7: the
    // `scales` attribute.
    let (scales_in, sizes_in) = if n.op == "Resize" && c.opset >= 11 {
        (c.opt(2), c.opt(3))
    } else {
        (c.opt(1), None)
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
            if !(sc[2] > 0.0 && sc[3] > 0.0 && sc[2].is_finite() && sc[3].is_finite()) {
                return Err(format!("scales {sc:?} must be positive and finite"));
            }
            // `as` saturates: an absurd scale becomes i64::MAX, which the bound refuses.
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
    check_alloc("the resized output", &[s[0], s[1], out[0], out[1]])?;
    match interp {
        Interp::Nearest => x.f_upsample_nearest2d(out, sh, sw).m(),
        Interp::NearestExact => x.f_internal_upsample_nearest_exact2d(out, sh, sw).m(),
        Interp::Bilinear {
            align_corners,
            antialias: false,
        } => x.f_upsample_bilinear2d(out, align_corners, sh, sw).m(),
        Interp::Bilinear {
            align_corners,
            antialias: true,
        } => x
            .f_internal_upsample_bilinear2d_aa(out, align_corners, sh, sw)
            .m(),
        Interp::Bicubic {
            align_corners,
            antialias: false,
        } => x.f_upsample_bicubic2d(out, align_corners, sh, sw).m(),
        Interp::Bicubic {
            align_corners,
            antialias: true,
        } => x
            .f_internal_upsample_bicubic2d_aa(out, align_corners, sh, sw)
            .m(),
    }
}

pub(super) fn check_pad(n: &Node, _opset: i64) -> R<()> {
    let mode = n.string("mode", "constant");
    if !["constant", "reflect", "edge"].contains(&mode.as_str()) {
        return Err(format!(
            "mode `{mode}` is not supported (constant, reflect, edge)"
        ));
    }
    Ok(())
}

/// Pad: `pads` = [begin of each axis..., end of each axis...] over `axes` (default all), from the
/// attributes before opset 11 and the inputs after.
pub(super) fn pad(c: &Call) -> R<Tensor> {
    let (x, n) = (c.x()?, c.node);
    let rank = x.dim() as i64;
    let (pads, value) = if c.opset < 11 {
        (
            n.ints("pads").map(|v| v.to_vec()).unwrap_or_default(),
            n.float("value", 0.0) as f64,
        )
    } else {
        // An empty constant_value is the default 0.
        let v = c
            .opt(2)
            .map(|t| floats_of(t).map(|v| v.first().copied().unwrap_or(0.0)))
            .transpose()?;
        (ints_of(c.input(1)?)?, v.unwrap_or(0.0))
    };
    let axes: Vec<usize> = match c.opt(3) {
        Some(t) => ints_of(t)?
            .iter()
            .map(|&a| axis(a, rank))
            .collect::<R<_>>()?,
        None => (0..rank as usize).collect(),
    };
    let k = axes.len();
    if pads.len() != 2 * k {
        return Err(format!("{} pads for {k} axes", pads.len()));
    }
    let mut per_axis = vec![(0i64, 0i64); rank as usize];
    for (j, &a) in axes.iter().enumerate() {
        per_axis[a] = (pads[j], pads[j + k]);
    }
    let out: Vec<i64> = x
        .size()
        .iter()
        .zip(&per_axis)
        .map(|(d, (b, e))| d.saturating_add(*b).saturating_add(*e))
        .collect();
    check_alloc("the padded output", &out)?;
    // libtorch wants (last begin, last end, second-to-last begin, ...), trimmed to the padded
    // trailing axes.
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
        return Ok(x.shallow_clone());
    }
    match n.string("mode", "constant").as_str() {
        "constant" => x.f_pad(tp.as_slice(), "constant", value).m(),
        "reflect" => x.f_pad(tp.as_slice(), "reflect", None).m(),
        _ => x.f_pad(tp.as_slice(), "replicate", None).m(),
    }
}
