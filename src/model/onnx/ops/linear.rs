//! Matrix products: MatMul (NumPy semantics, batch axes broadcast) and Gemm
//! (`alpha A' B' + beta C`). The product's shape is bounded before it is computed.
use tch::Tensor;

use super::{broadcast, check_alloc, on, Call, OrMsg, R};

/// The shape of `a @ b` (1-D operands promoted and their axis dropped, batch axes broadcast).
fn matmul_shape(a: &[i64], b: &[i64]) -> R<Vec<i64>> {
    if a.is_empty() || b.is_empty() {
        return Err(format!(
            "a matrix product of shapes {a:?} and {b:?}: both operands need at least one axis"
        ));
    }
    let a2 = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2 = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let mut out = broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2]);
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1]);
    }
    Ok(out)
}

fn product(a: &Tensor, b: &Tensor) -> R<Tensor> {
    check_alloc("the product", &matmul_shape(&a.size(), &b.size())?)?;
    a.f_matmul(b).m()
}

pub(super) fn matmul(c: &Call) -> R<Tensor> {
    let a = c.x()?;
    product(a, &on(a, c.input(1)?)?)
}

pub(super) fn gemm(c: &Call) -> R<Tensor> {
    let n = c.node;
    let a = c.x()?;
    let b = on(a, c.input(1)?)?;
    let a = if n.int("transA", 0) != 0 {
        a.f_tr().m()?
    } else {
        a.shallow_clone()
    };
    let b = if n.int("transB", 0) != 0 {
        b.f_tr().m()?
    } else {
        b
    };
    let mut y = product(&a, &b)?;
    let alpha = n.float("alpha", 1.0) as f64;
    if alpha != 1.0 {
        y = y.f_mul_scalar(alpha).m()?;
    }
    if let Some(c) = c.opt(2) {
        let beta = n.float("beta", 1.0) as f64;
        let c = on(&y, c)?;
        check_alloc("the sum with C", &broadcast(&y.size(), &c.size())?)?;
        y = if beta == 1.0 {
            y.f_add(&c).m()?
        } else {
            y.f_add(&c.f_mul_scalar(beta).m()?).m()?
        };
    }
    Ok(y)
}
