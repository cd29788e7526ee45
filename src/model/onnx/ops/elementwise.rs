//! Element-wise arithmetic: the unary functions (Abs, Neg, Exp, Sqrt, Reciprocal), Cast, the
//! broadcasting binary operators (Add, Sub, Mul, Div, Pow) and the variadic ones (Max, Min, Sum,
//! Mean). Every broadcast result is bounded before it is computed.
use tch::{Device, Kind, Tensor};

use super::{broadcast, check_alloc, Call, OrMsg, R};
use crate::model::onnx::node::Node;

unary_ops!(
    abs => f_abs,
    neg => f_neg,
    exp => f_exp,
    sqrt => f_sqrt,
    reciprocal => f_reciprocal,
);

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

pub(super) fn check_cast(n: &Node, _opset: i64) -> R<()> {
    cast_kind(n.int("to", 1)).map(|_| ())
}

pub(super) fn cast(c: &Call) -> R<Tensor> {
    c.x()?.f_to_kind(cast_kind(c.node.int("to", 1))?).m()
}

/// `a op b` with NumPy broadcasting, `op` one of Add, Sub, Mul, Div, Pow, Max, Min. Float and integer
/// operands (a shape value times a float scale) compute in float; operands on different devices
/// (a CPU shape value and an activation) on the activation's.
fn apply(op: &str, a: &Tensor, b: &Tensor) -> R<Tensor> {
    check_alloc("the broadcast result", &broadcast(&a.size(), &b.size())?)?;
    let (a, b) = match (a.is_floating_point(), b.is_floating_point()) {
        (true, false) => (a.shallow_clone(), b.f_to_kind(a.kind()).m()?),
        (false, true) => (a.f_to_kind(b.kind()).m()?, b.shallow_clone()),
        _ => (a.shallow_clone(), b.shallow_clone()),
    };
    let dev = if a.device() != Device::Cpu {
        a.device()
    } else {
        b.device()
    };
    let (a, b) = (a.f_to_device(dev).m()?, b.f_to_device(dev).m()?);
    match op {
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

/// Add, Sub, Mul, Div, Pow.
pub(super) fn binary(c: &Call) -> R<Tensor> {
    apply(&c.node.op, c.x()?, c.input(1)?)
}

/// Max, Min, Sum, Mean over any number of inputs.
pub(super) fn variadic(c: &Call) -> R<Tensor> {
    let op = match c.node.op.as_str() {
        "Sum" | "Mean" => "Add",
        o => o,
    };
    let mut acc = c.x()?.shallow_clone();
    for i in 1..c.inputs.len() {
        acc = apply(op, &acc, c.input(i)?)?;
    }
    if c.node.op == "Mean" {
        acc = acc.f_div_scalar(c.inputs.len() as f64).m()?;
    }
    Ok(acc)
}
