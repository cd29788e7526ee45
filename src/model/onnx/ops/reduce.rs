//! Reductions over axes: ReduceMean, ReduceMax, ReduceSum (axes from the attribute before opset 18
//! for ReduceMean / ReduceMax and 13 for ReduceSum, from input 1 after; both are read).
use tch::Tensor;

use super::{axes_of, axis, Call, OrMsg, R};

pub(super) fn reduce(c: &Call) -> R<Tensor> {
    let (x, n) = (c.x()?, c.node);
    let rank = x.dim() as i64;
    let keep = n.int("keepdims", 1) != 0;
    let axes = match axes_of(c, 1)? {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|&a| axis(a, rank).map(|a| a as i64))
            .collect::<R<Vec<_>>>()?,
        _ if n.int("noop_with_empty_axes", 0) != 0 => return Ok(x.shallow_clone()),
        _ => (0..rank).collect(),
    };
    match n.op.as_str() {
        "ReduceMean" => x.f_mean_dim(axes.as_slice(), keep, x.kind()).m(),
        "ReduceSum" => x.f_sum_dim_intlist(axes.as_slice(), keep, x.kind()).m(),
        _ => x.f_amax(axes.as_slice(), keep).m(),
    }
}
