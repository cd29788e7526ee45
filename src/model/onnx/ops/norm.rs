//! Normalisation: BatchNormalization in inference mode (the stored running mean and variance).
use tch::Tensor;

use super::{on, Call, OrMsg, R};

pub(super) fn batch_norm(c: &Call) -> R<Tensor> {
    let x = c.x()?;
    let p = |i: usize| c.input(i).and_then(|t| on(x, t));
    let eps = c.node.float("epsilon", 1e-5) as f64;
    x.f_batch_norm(
        Some(&p(1)?),
        Some(&p(2)?),
        Some(&p(3)?),
        Some(&p(4)?),
        false,
        0.0,
        eps,
        false,
    )
    .m()
}
