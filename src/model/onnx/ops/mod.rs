//! The ONNX operators the importer runs, behind one registry: each operator type maps to the
//! function that evaluates a node on libtorch (one node at a time, so autograd records every step)
//! and to the check of its attributes done at load. The families live in the submodules; the
//! helpers they share (reading inputs, axes and shape values, and the bound on every tensor a shape
//! taken from the model's data may allocate) are here. Semantics follow the ONNX operator
//! specification for the opset the file declares (axes, pads and clip bounds moved from attributes
//! to inputs over the opsets; both forms are read).
use tch::{Device, Kind, Tensor};

use super::node::Node;

/// Operators that apply one libtorch method to their input: `function => tensor method`, each
/// defined as `fn function(c: &Call) -> R<Tensor>`.
macro_rules! unary_ops {
    ($($name:ident => $method:ident),+ $(,)?) => {
        $(
            pub(super) fn $name(c: &Call) -> R<Tensor> {
                c.x()?.$method().m()
            }
        )+
    };
}

mod activation;
mod constant;
mod conv;
mod elementwise;
mod linear;
mod norm;
mod pool;
mod reduce;
mod resize;
mod shape;

pub use resize::Interp;

/// What an operator returns: a message without the node (the caller names it).
pub(crate) type R<T> = std::result::Result<T, String>;

/// One node's evaluation: the node, its inputs (`None` for an omitted optional input) and the
/// default-domain opset of the file.
pub struct Call<'a> {
    pub node: &'a Node,
    pub inputs: &'a [Option<Tensor>],
    pub opset: i64,
}

impl Call<'_> {
    /// Input `i`, which the operator requires.
    fn input(&self, i: usize) -> R<&Tensor> {
        self.opt(i)
            .ok_or_else(|| format!("input {i} of {} is missing", self.node.op))
    }
    /// Input `i` when given (an optional input may be omitted or absent).
    fn opt(&self, i: usize) -> Option<&Tensor> {
        self.inputs.get(i).and_then(|t| t.as_ref())
    }
    /// The first input, the data of every operator.
    fn x(&self) -> R<&Tensor> {
        self.input(0)
    }
}

/// Evaluates one node to its (first and only computed) output.
type RunFn = fn(&Call) -> R<Tensor>;
/// Refuses, at load, the attribute combinations the operator does not run.
type CheckFn = fn(&Node, i64) -> R<()>;

/// A registry entry.
struct Op {
    name: &'static str,
    run: RunFn,
    check: CheckFn,
}

fn no_check(_: &Node, _: i64) -> R<()> {
    Ok(())
}

const fn op(name: &'static str, run: RunFn) -> Op {
    Op {
        name,
        run,
        check: no_check,
    }
}

const fn checked(name: &'static str, run: RunFn, check: CheckFn) -> Op {
    Op { name, run, check }
}

/// Every operator the importer runs (default ONNX domain), sorted by name (looked up by binary
/// search; a unit test keeps the order). Adding an operator is one line here and its function.
static OPS: &[Op] = &[
    op("Abs", elementwise::abs),
    op("Add", elementwise::binary),
    checked("AveragePool", pool::pool, conv::check_spatial),
    op("BatchNormalization", norm::batch_norm),
    checked("Cast", elementwise::cast, elementwise::check_cast),
    op("Clip", activation::clip),
    op("Concat", shape::concat),
    checked("Constant", constant::constant, constant::check_constant),
    op("ConstantOfShape", constant::constant_of_shape),
    checked("Conv", conv::conv, conv::check_spatial),
    checked("ConvTranspose", conv::conv_transpose, conv::check_spatial),
    op("Div", elementwise::binary),
    op("Dropout", shape::identity),
    op("Elu", activation::elu_selu),
    op("Exp", elementwise::exp),
    op("Expand", shape::expand),
    op("Flatten", shape::flatten),
    op("Gather", shape::gather),
    op("Gemm", linear::gemm),
    op("GlobalAveragePool", pool::global_pool),
    op("GlobalMaxPool", pool::global_pool),
    op("HardSigmoid", activation::hard_sigmoid),
    op("HardSwish", activation::hard_swish),
    op("Identity", shape::identity),
    op("LeakyRelu", activation::leaky_relu),
    op("LogSoftmax", activation::softmax),
    op("MatMul", linear::matmul),
    op("Max", elementwise::variadic),
    checked("MaxPool", pool::pool, conv::check_spatial),
    op("Mean", elementwise::variadic),
    op("Min", elementwise::variadic),
    op("Mul", elementwise::binary),
    op("Neg", elementwise::neg),
    checked("Pad", resize::pad, resize::check_pad),
    op("Pow", elementwise::binary),
    op("Reciprocal", elementwise::reciprocal),
    op("ReduceMax", reduce::reduce),
    op("ReduceMean", reduce::reduce),
    op("ReduceSum", reduce::reduce),
    op("Relu", activation::relu),
    op("Reshape", shape::reshape),
    checked("Resize", resize::resize, resize::check_resize),
    op("Selu", activation::elu_selu),
    op("Shape", shape::shape),
    op("Sigmoid", activation::sigmoid),
    op("Slice", shape::slice),
    op("Softmax", activation::softmax),
    op("Sqrt", elementwise::sqrt),
    op("Squeeze", shape::squeeze),
    op("Sub", elementwise::binary),
    op("Sum", elementwise::variadic),
    op("Tanh", activation::tanh),
    op("Transpose", shape::transpose),
    op("Unsqueeze", shape::unsqueeze),
    checked("Upsample", resize::resize, resize::check_resize),
];

fn lookup(op: &str) -> Option<&'static Op> {
    OPS.binary_search_by(|o| o.name.cmp(op))
        .ok()
        .map(|i| &OPS[i])
}

/// Whether the importer runs the (default-domain) operator `op`.
pub fn supports(op: &str) -> bool {
    lookup(op).is_some()
}

/// The operators the importer runs, in alphabetical order.
pub fn supported() -> impl Iterator<Item = &'static str> {
    OPS.iter().map(|o| o.name)
}

/// Attribute combinations the importer does not run, refused at load with the reason.
pub fn check_node(n: &Node, opset: i64) -> R<()> {
    let op = lookup(&n.op).ok_or_else(|| format!("operator {} is not supported", n.op))?;
    (op.check)(n, opset)
}

/// Runs one node. `inputs[i]` is `None` for an omitted optional input.
pub fn run(n: &Node, inputs: &[Option<Tensor>], opset: i64) -> R<Vec<Tensor>> {
    let op = lookup(&n.op).ok_or_else(|| format!("operator {} has no implementation", n.op))?;
    let call = Call {
        node: n,
        inputs,
        opset,
    };
    Ok(vec![(op.run)(&call)?])
}

/// The most elements one tensor whose shape comes from the model's data (a shape input, sizes,
/// scales, pads, strides, broadcasting) may have: 2^31, 8 GiB of float32. A fixed bound, because an
/// operator sees one node at a time, not the graph's input; it is far above the largest activation
/// of an image classifier at the batch sizes the pipeline runs (VGG16's first block at 224 x 224 for
/// 64 images is 2^27.6), so only a malformed or hostile graph reaches it.
pub const MAX_ELEMENTS: i64 = 1 << 31;

/// Refuses, before anything is allocated, a tensor of `shape` (`what` names it in the message) with a
/// negative dimension or more than [`MAX_ELEMENTS`] elements.
pub(crate) fn check_alloc(what: &str, shape: &[i64]) -> R<()> {
    if let Some(d) = shape.iter().find(|d| **d < 0) {
        return Err(format!(
            "{what} of shape {shape:?} has a negative dimension ({d})"
        ));
    }
    let count = shape
        .iter()
        .try_fold(1u128, |acc, &d| acc.checked_mul(d as u128));
    match count {
        Some(c) if c <= MAX_ELEMENTS as u128 => Ok(()),
        Some(c) => Err(format!(
            "{what} of shape {shape:?} would have {c} elements, more than the {MAX_ELEMENTS} (2^31) the importer allocates for one tensor"
        )),
        None => Err(format!(
            "{what} of shape {shape:?} would have more than 2^128 elements, more than the {MAX_ELEMENTS} (2^31) the importer allocates for one tensor"
        )),
    }
}

trait OrMsg<T> {
    fn m(self) -> R<T>;
}
impl<T> OrMsg<T> for std::result::Result<T, tch::TchError> {
    fn m(self) -> R<T> {
        self.map_err(|e| crate::model::first_line(&e.to_string()))
    }
}

/// Integer values of a (small, shape-like) tensor.
pub fn ints_of(t: &Tensor) -> R<Vec<i64>> {
    let flat = t
        .f_to_kind(Kind::Int64)
        .and_then(|t| t.f_to_device(Device::Cpu))
        .and_then(|t| t.f_flatten(0, -1))
        .m()?;
    Vec::<i64>::try_from(flat).m()
}

fn floats_of(t: &Tensor) -> R<Vec<f64>> {
    let flat = t
        .f_to_kind(Kind::Double)
        .and_then(|t| t.f_to_device(Device::Cpu))
        .and_then(|t| t.f_flatten(0, -1))
        .m()?;
    Vec::<f64>::try_from(flat).m()
}

/// The first value of a scalar-like input (a clip bound, a pad value), refusing an empty one.
fn first_float(t: &Tensor, what: &str) -> R<f64> {
    floats_of(t)?
        .first()
        .copied()
        .ok_or_else(|| format!("{what} is an empty tensor; expected one value"))
}

/// Axis `a` (negative counts from the end) of a tensor of rank `rank`, as an index in `0..rank`.
fn axis(a: i64, rank: i64) -> R<usize> {
    axis_upto(a, rank, rank - 1)
}

/// Axis `a` of rank `rank`, which may also be `rank` itself (Flatten's and Unsqueeze's positions
/// between axes).
fn position(a: i64, rank: i64) -> R<usize> {
    axis_upto(a, rank, rank)
}

fn axis_upto(a: i64, rank: i64, last: i64) -> R<usize> {
    let i = if a < 0 { a.saturating_add(rank) } else { a };
    if !(0..=last).contains(&i) {
        return Err(format!(
            "axis {a} is out of range for a tensor of rank {rank}"
        ));
    }
    Ok(i as usize)
}

/// Axes from input `i` (newer opsets) or attribute `axes` (older).
fn axes_of(c: &Call, i: usize) -> R<Option<Vec<i64>>> {
    if let Some(t) = c.opt(i) {
        return Ok(Some(ints_of(t)?));
    }
    Ok(c.node.ints("axes").map(|v| v.to_vec()))
}

/// Brings `b` onto `a`'s device (shape values live on the CPU, activations on the model's device).
fn on(a: &Tensor, b: &Tensor) -> R<Tensor> {
    if a.device() == b.device() {
        Ok(b.shallow_clone())
    } else {
        b.f_to_device(a.device()).m()
    }
}

/// The shape two operands broadcast to (NumPy rules), refused when they do not.
fn broadcast(a: &[i64], b: &[i64]) -> R<Vec<i64>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[i64], i: usize| {
        if i + s.len() >= rank {
            s[i + s.len() - rank]
        } else {
            1
        }
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

#[cfg(test)]
mod tests;
