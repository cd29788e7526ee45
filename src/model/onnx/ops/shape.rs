//! Shape operators: the views and rearrangements (Identity, Dropout, Reshape, Flatten, Transpose,
//! Squeeze, Unsqueeze), the selections (Slice, Gather), Concat, Shape, and Expand, whose broadcast
//! target comes from data and is bounded before it is materialised.
use tch::{Device, Kind, Tensor};

use super::{axes_of, axis, check_alloc, ints_of, position, Call, OrMsg, R};

/// Identity, and Dropout at inference (its mask output is never computed).
pub(super) fn identity(c: &Call) -> R<Tensor> {
    Ok(c.x()?.shallow_clone())
}

pub(super) fn concat(c: &Call) -> R<Tensor> {
    let ts: Vec<&Tensor> = c.inputs.iter().flatten().collect();
    let rank = ts.first().map(|t| t.dim() as i64).unwrap_or(1);
    let a = axis(c.node.int("axis", 0), rank)? as i64;
    // Shape pieces may mix kinds/devices (a constant and a computed dimension).
    let dev = ts
        .iter()
        .map(|t| t.device())
        .find(|d| *d != Device::Cpu)
        .unwrap_or(Device::Cpu);
    let float = ts.iter().any(|t| t.is_floating_point());
    let ts = ts
        .iter()
        .map(|t| {
            let t = t.f_to_device(dev).m()?;
            if float && !t.is_floating_point() {
                t.f_to_kind(Kind::Float).m()
            } else {
                Ok(t)
            }
        })
        .collect::<R<Vec<Tensor>>>()?;
    Tensor::f_cat(&ts, a).m()
}

pub(super) fn flatten(c: &Call) -> R<Tensor> {
    let x = c.x()?;
    let a = position(c.node.int("axis", 1), x.dim() as i64)?;
    let lead: i64 = x.size()[..a].iter().product();
    x.f_reshape([lead, -1]).m()
}

/// Reshape: a 0 in the shape copies the input's dimension unless `allowzero`. The element count
/// cannot change, so nothing larger than the input is made.
pub(super) fn reshape(c: &Call) -> R<Tensor> {
    let x = c.x()?;
    let mut shape = ints_of(c.input(1)?)?;
    if c.node.int("allowzero", 0) == 0 {
        let s = x.size();
        for (i, d) in shape.iter_mut().enumerate() {
            if *d == 0 {
                *d = *s
                    .get(i)
                    .ok_or("a 0 in the shape has no input dimension to copy")?;
            }
        }
    }
    x.f_reshape(shape.as_slice()).m()
}

pub(super) fn transpose(c: &Call) -> R<Tensor> {
    let x = c.x()?;
    let perm: Vec<i64> = match c.node.ints("perm") {
        Some(p) => p.to_vec(),
        None => (0..x.dim() as i64).rev().collect(),
    };
    x.f_permute(perm.as_slice()).m()
}

pub(super) fn squeeze(c: &Call) -> R<Tensor> {
    let x = c.x()?;
    let rank = x.dim() as i64;
    let Some(axes) = axes_of(c, 1)? else {
        return x.f_squeeze().m();
    };
    let mut axes = axes.iter().map(|&a| axis(a, rank)).collect::<R<Vec<_>>>()?;
    axes.sort_unstable();
    axes.dedup();
    let size = x.size();
    let mut out = x.shallow_clone();
    // From the last axis down, so the earlier ones keep their index.
    for &a in axes.iter().rev() {
        if size[a] != 1 {
            return Err(format!("cannot squeeze axis {a} of shape {size:?}"));
        }
        out = out.f_squeeze_dim(a as i64).m()?;
    }
    Ok(out)
}

pub(super) fn unsqueeze(c: &Call) -> R<Tensor> {
    let x = c.x()?;
    let axes = axes_of(c, 1)?.ok_or("no axes")?;
    let rank = x.dim() as i64 + axes.len() as i64;
    let mut axes = axes.iter().map(|&a| axis(a, rank)).collect::<R<Vec<_>>>()?;
    axes.sort_unstable();
    let mut out = x.shallow_clone();
    for a in axes {
        out = out.f_unsqueeze(a as i64).m()?;
    }
    Ok(out)
}

/// Shape, optionally limited to the axes `start..end` (clamped, negative counting from the end).
pub(super) fn shape(c: &Call) -> R<Tensor> {
    let s = c.x()?.size();
    let rank = s.len() as i64;
    let clampi = |v: i64| {
        let v = if v < 0 { v.saturating_add(rank) } else { v };
        v.clamp(0, rank) as usize
    };
    let start = clampi(c.node.int("start", 0));
    let end = clampi(c.node.int("end", rank));
    Ok(Tensor::from_slice(&s[start..end.max(start)]))
}

pub(super) fn gather(c: &Call) -> R<Tensor> {
    let data = c.x()?;
    let idx = c.input(1)?;
    let a = axis(c.node.int("axis", 0), data.dim() as i64)?;
    let dim = data.size()[a];
    let idx = idx
        .f_to_kind(Kind::Int64)
        .and_then(|i| i.f_to_device(data.device()))
        .m()?;
    if idx.numel() > 0 {
        let lo = idx.f_min().and_then(|t| t.f_int64_value(&[])).m()?;
        let hi = idx.f_max().and_then(|t| t.f_int64_value(&[])).m()?;
        if let Some(bad) = [lo, hi].into_iter().find(|&i| i < -dim || i >= dim) {
            return Err(format!(
                "index {bad} is out of range for axis {a} of size {dim}"
            ));
        }
    }
    let mut shape = data.size();
    shape.splice(a..a + 1, idx.size());
    check_alloc("the gathered tensor", &shape)?;
    // Negative indices count from the end.
    let idx = idx
        .f_ge(0)
        .and_then(|nonneg| idx.f_where_self(&nonneg, &idx.f_add_scalar(dim)?))
        .m()?;
    if idx.dim() == 0 {
        let i = idx.f_int64_value(&[]).m()?;
        data.f_select(a as i64, i).m()
    } else {
        data.f_index_select(a as i64, &idx.f_flatten(0, -1).m()?)
            .and_then(|t| t.f_reshape(shape.as_slice()))
            .m()
    }
}

pub(super) fn slice(c: &Call) -> R<Tensor> {
    let (x, n) = (c.x()?, c.node);
    let rank = x.dim() as i64;
    let (starts, ends, axes, steps) = if c.opset < 10 {
        let s = n.ints("starts").map(|v| v.to_vec()).unwrap_or_default();
        let e = n.ints("ends").map(|v| v.to_vec()).unwrap_or_default();
        let a = n.ints("axes").map(|v| v.to_vec());
        (s, e, a, None)
    } else {
        (
            ints_of(c.input(1)?)?,
            ints_of(c.input(2)?)?,
            c.opt(3).map(ints_of).transpose()?,
            c.opt(4).map(ints_of).transpose()?,
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    for (what, len) in [
        ("ends", ends.len()),
        ("axes", axes.len()),
        ("steps", steps.as_ref().map_or(starts.len(), Vec::len)),
    ] {
        if len != starts.len() {
            return Err(format!(
                "starts has {} entries but {what} has {len}",
                starts.len()
            ));
        }
    }
    let mut out = x.shallow_clone();
    for (j, &a) in axes.iter().enumerate() {
        let a = axis(a, rank)?;
        let step = steps.as_ref().map(|s| s[j]).unwrap_or(1);
        let dim = out.size()[a];
        if dim == 0 {
            // Any slice of an empty axis is empty.
            continue;
        }
        let wrap = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        if step > 0 {
            let (s, e) = (wrap(starts[j]).clamp(0, dim), wrap(ends[j]).clamp(0, dim));
            out = out.f_slice(a as i64, s, e.max(s), step).m()?;
        } else if step < 0 {
            // Backwards (a reversal, as exporters write for reflect padding): start clamped to
            // [0, dim - 1], end to [-1, dim - 1], elements start, start + step, ... > end.
            let s = wrap(starts[j]).clamp(0, dim - 1);
            let e = if ends[j] < -dim {
                -1
            } else {
                wrap(ends[j]).clamp(-1, dim - 1)
            };
            let idx: Vec<i64> = (0..)
                .map_while(|k: i64| k.checked_mul(step).and_then(|d| s.checked_add(d)))
                .take_while(|&i| i > e)
                .collect();
            let idx = Tensor::from_slice(&idx).f_to_device(out.device()).m()?;
            out = out.f_index_select(a as i64, &idx).m()?;
        } else {
            return Err("a Slice step of 0".into());
        }
    }
    Ok(out)
}

/// Expand: the bidirectional broadcast of the input's shape and the given one.
pub(super) fn expand(c: &Call) -> R<Tensor> {
    let x = c.x()?;
    let shape = ints_of(c.input(1)?)?;
    let xs = x.size();
    let rank = xs.len().max(shape.len());
    let dim = |s: &[i64], i: usize| {
        if i + s.len() >= rank {
            s[i + s.len() - rank]
        } else {
            1
        }
    };
    let target: Vec<i64> = (0..rank)
        .map(|i| match dim(&xs, i) {
            1 => dim(&shape, i),
            a => a,
        })
        .collect();
    check_alloc("the expanded tensor", &target)?;
    x.f_expand(target.as_slice(), false).m()
}
