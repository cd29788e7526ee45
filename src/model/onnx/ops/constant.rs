//! Constants: Constant (a value from the node's attributes) and ConstantOfShape (a tensor filled with
//! one value, its shape read from the input at run time and bounded before it is allocated).
use tch::{Device, Kind, Tensor};

use super::{check_alloc, ints_of, Call, OrMsg, R};
use crate::model::onnx::node::{Attr, Node};

const VALUE_KEYS: [&str; 5] = [
    "value",
    "value_float",
    "value_floats",
    "value_int",
    "value_ints",
];

pub(super) fn check_constant(n: &Node, _opset: i64) -> R<()> {
    if !VALUE_KEYS.iter().any(|k| n.attrs.contains_key(*k)) {
        return Err("no supported value attribute (value, value_float(s), value_int(s))".into());
    }
    Ok(())
}

pub(super) fn constant(c: &Call) -> R<Tensor> {
    let a = |k: &str| c.node.attrs.get(k);
    Ok(
        match (
            a("value"),
            a("value_float"),
            a("value_floats"),
            a("value_int"),
            a("value_ints"),
        ) {
            (Some(Attr::Tensor(t)), ..) => t.shallow_clone(),
            (_, Some(Attr::Float(f)), ..) => Tensor::from(*f),
            (_, _, Some(Attr::Floats(v)), ..) => Tensor::from_slice(v),
            (_, _, _, Some(Attr::Int(i)), _) => Tensor::from(*i),
            (_, _, _, _, Some(Attr::Ints(v))) => Tensor::from_slice(v),
            _ => return Err("no value".into()),
        },
    )
}

pub(super) fn constant_of_shape(c: &Call) -> R<Tensor> {
    let shape = ints_of(c.x()?)?;
    check_alloc("the requested tensor", &shape)?;
    match c.node.attrs.get("value") {
        Some(Attr::Tensor(v)) => {
            if v.numel() == 0 {
                return Err("the `value` attribute is an empty tensor; expected one value".into());
            }
            v.f_flatten(0, -1)
                .and_then(|v| v.f_select(0, 0))
                .and_then(|v| v.f_expand(shape.as_slice(), false))
                .and_then(|v| v.f_contiguous())
                .m()
        }
        _ => Tensor::f_zeros(shape.as_slice(), (Kind::Float, Device::Cpu)).m(),
    }
}
