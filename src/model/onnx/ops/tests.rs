//! Unit tests of the operator registry and of the operators' refusals: shapes from data beyond the
//! element bound, and malformed attributes or inputs, are one-line errors rather than panics.
use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use super::*;
use crate::model::onnx::node::Attr;

fn node(op: &str, attrs: Vec<(&str, Attr)>) -> Node {
    Node {
        name: "n".into(),
        op: op.into(),
        inputs: vec![],
        outputs: vec!["y".into()],
        attrs: attrs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<HashMap<_, _>>(),
    }
}

fn run1(op: &str, attrs: Vec<(&str, Attr)>, inputs: Vec<Option<Tensor>>) -> R<Tensor> {
    run(&node(op, attrs), &inputs, 13).map(|mut v| v.remove(0))
}

fn ints(v: &[i64]) -> Option<Tensor> {
    Some(Tensor::from_slice(v))
}

fn zeros(shape: &[i64]) -> Option<Tensor> {
    Some(Tensor::zeros(shape, (Kind::Float, Device::Cpu)))
}

#[test]
fn the_registry_is_sorted_without_duplicates_and_finds_every_operator() {
    for w in OPS.windows(2) {
        assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
    }
    for o in OPS {
        assert!(supports(o.name), "{}", o.name);
    }
    assert!(!supports("Einsum") && !supports("conv"));
    assert_eq!(supported().count(), OPS.len());
}

#[test]
fn the_element_bound_refuses_big_negative_and_overflowing_shapes() {
    assert!(check_alloc("t", &[1 << 16, 1 << 15]).is_ok());
    let e = check_alloc("t", &[1 << 16, 1 << 15, 2]).unwrap_err();
    assert!(e.contains("[65536, 32768, 2]") && e.contains("2^31"), "{e}");
    assert!(check_alloc("t", &[2, -1]).unwrap_err().contains("negative"));
    let e = check_alloc("t", &[i64::MAX, i64::MAX, i64::MAX]).unwrap_err();
    assert!(e.contains("2^128"), "{e}");
    // An empty tensor is fine, whatever the other dimensions.
    assert!(check_alloc("t", &[0, i64::MAX]).is_ok());
}

#[test]
fn shapes_from_data_beyond_the_bound_are_refused_before_allocating() {
    let huge = [100_000, 100_000, 10];
    let e = run1("ConstantOfShape", vec![], vec![ints(&huge)]).unwrap_err();
    assert!(
        e.contains("[100000, 100000, 10]") && e.contains("2^31"),
        "{e}"
    );
    let value = Attr::Tensor(Tensor::from_slice(&[1.5f32]));
    let e = run1("ConstantOfShape", vec![("value", value)], vec![ints(&huge)]).unwrap_err();
    assert!(e.contains("[100000, 100000, 10]"), "{e}");
    let e = run1("ConstantOfShape", vec![], vec![ints(&[3, -2])]).unwrap_err();
    assert!(e.contains("negative"), "{e}");
    let e = run1("Expand", vec![], vec![zeros(&[1, 1]), ints(&huge)]).unwrap_err();
    assert!(e.contains("[100000, 100000, 10]"), "{e}");
    // Broadcasting two modest operands to a huge result, and their matrix product.
    for op in ["Add", "MatMul"] {
        let operands = vec![zeros(&[1 << 16, 1]), zeros(&[1, 1 << 16])];
        let e = run1(op, vec![], operands).unwrap_err();
        assert!(e.contains("[65536, 65536]"), "{op}: {e}");
    }
    let e = run1(
        "Pad",
        vec![],
        vec![
            zeros(&[1, 1, 2, 2]),
            ints(&[0, 0, 1 << 20, 1 << 20, 0, 0, 0, 0]),
        ],
    )
    .unwrap_err();
    assert!(e.contains("2^31"), "{e}");
    let linear = || vec![("mode", Attr::Str("linear".into()))];
    let e = run1(
        "Resize",
        linear(),
        vec![
            zeros(&[1, 1, 2, 2]),
            None,
            None,
            ints(&[1, 1, 1 << 20, 1 << 20]),
        ],
    )
    .unwrap_err();
    assert!(e.contains("[1, 1, 1048576, 1048576]"), "{e}");
    let scales = Some(Tensor::from_slice(&[1f32, 1.0, 1e9, 1e9]));
    let e = run1("Resize", linear(), vec![zeros(&[1, 1, 2, 2]), None, scales]).unwrap_err();
    assert!(e.contains("2^31"), "{e}");
    // Padding or strides that make a convolution's output huge.
    let convs = [
        ("Conv", ("pads", Attr::Ints(vec![1 << 20; 4]))),
        ("ConvTranspose", ("strides", Attr::Ints(vec![1 << 20; 2]))),
    ];
    for (op, attr) in convs {
        let operands = vec![zeros(&[1, 1, 2, 2]), zeros(&[1, 1, 1, 1])];
        let e = run1(op, vec![attr], operands).unwrap_err();
        assert!(e.contains("2^31"), "{op}: {e}");
    }
    let e = run1(
        "Gather",
        vec![],
        vec![zeros(&[2, 1 << 16]), ints(&vec![0; 1 << 16])],
    )
    .unwrap_err();
    assert!(e.contains("[65536, 65536]"), "{e}");
    // Within the bound the same operators run.
    let t = run1("ConstantOfShape", vec![], vec![ints(&[2, 3])]).unwrap();
    assert_eq!(t.size(), [2, 3]);
    let t = run1("Expand", vec![], vec![zeros(&[3, 1]), ints(&[2, 1, 4])]).unwrap();
    assert_eq!(t.size(), [2, 3, 4]);
}

#[test]
fn malformed_attributes_and_inputs_are_errors_not_panics() {
    let x = || zeros(&[1, 2, 3, 4]);
    // (operator, attributes, inputs, what the error names)
    type Case<'a> = (&'a str, Vec<(&'a str, Attr)>, Vec<Option<Tensor>>, &'a str);
    let cases: Vec<Case> = vec![
        ("Flatten", vec![("axis", Attr::Int(7))], vec![x()], "axis 7"),
        (
            "Softmax",
            vec![("axis", Attr::Int(-9))],
            vec![x()],
            "axis -9",
        ),
        (
            "Gather",
            vec![("axis", Attr::Int(4))],
            vec![x(), ints(&[0])],
            "axis 4",
        ),
        ("Gather", vec![], vec![x(), ints(&[5])], "index 5"),
        (
            "Concat",
            vec![("axis", Attr::Int(5))],
            vec![x(), x()],
            "axis 5",
        ),
        ("Squeeze", vec![], vec![x(), ints(&[6])], "axis 6"),
        ("Unsqueeze", vec![], vec![x(), ints(&[9])], "axis 9"),
        (
            "Transpose",
            vec![("perm", Attr::Ints(vec![0, 1]))],
            vec![x()],
            "",
        ),
        (
            "Slice",
            vec![],
            vec![x(), ints(&[0, 0]), ints(&[1])],
            "ends",
        ),
        (
            "Slice",
            vec![],
            vec![x(), ints(&[0]), ints(&[1]), ints(&[8])],
            "axis 8",
        ),
        (
            "Slice",
            vec![],
            vec![x(), ints(&[0]), ints(&[1]), ints(&[0]), ints(&[])],
            "steps",
        ),
        ("Conv", vec![], vec![x(), zeros(&[3])], "weight"),
        (
            "Clip",
            vec![],
            vec![x(), Some(Tensor::from_slice::<f32>(&[]))],
            "empty",
        ),
        (
            "ConstantOfShape",
            vec![("value", Attr::Tensor(Tensor::from_slice::<f32>(&[])))],
            vec![ints(&[2])],
            "empty",
        ),
        (
            "Relu",
            vec![],
            vec![Some(Tensor::from_slice(&[true, false]))],
            "",
        ),
        ("Reshape", vec![], vec![x(), ints(&[5, 5])], ""),
        ("Add", vec![], vec![x(), zeros(&[3])], "broadcast"),
        ("Add", vec![], vec![x()], "input 1"),
    ];
    for (op, attrs, inputs, says) in cases {
        let e = run1(op, attrs, inputs).expect_err(op);
        assert!(e.contains(says) && !e.contains('\n'), "{op}: {e}");
    }
}
