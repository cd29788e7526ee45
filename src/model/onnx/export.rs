//! The native CNN written as an ONNX file (opset 13, float32, dynamic batch): for users who want the
//! bundled model in another runtime, and for the test that the importer reproduces the native model.
//! Initialisers keep the native parameter names (`0.weight`, ...).
use std::path::Path;

use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use protobuf::{EnumOrUnknown, MessageField};
use tch::{Device, Kind};

use crate::error::{Error, Result};
use crate::model::{Layer, LayerSpec, NativeCnn};

/// An attribute `name` of type `kind`; `value` fills in the field that kind uses.
fn attribute(
    name: &str,
    kind: AttributeType,
    value: impl FnOnce(&mut AttributeProto),
) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.into(),
        type_: EnumOrUnknown::new(kind),
        ..Default::default()
    };
    value(&mut a);
    a
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    attribute(name, AttributeType::INTS, |a| a.ints = v.to_vec())
}

fn int(name: &str, v: i64) -> AttributeProto {
    attribute(name, AttributeType::INT, |a| a.i = v)
}

fn float(name: &str, v: f32) -> AttributeProto {
    attribute(name, AttributeType::FLOAT, |a| a.f = v)
}

fn node(
    name: String,
    op: &str,
    inputs: Vec<String>,
    output: String,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        name,
        op_type: op.into(),
        input: inputs,
        output: vec![output],
        attribute,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Some(n) => tensor_shape_proto::dimension::Value::DimValue(*n),
                None => tensor_shape_proto::dimension::Value::DimParam("batch".into()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: DataType::FLOAT as i32,
        shape: MessageField::some(TensorShapeProto {
            dim,
            ..Default::default()
        }),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        type_: MessageField::some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Writes `model` to `path` as ONNX: input `input` (N x C x S x S), output `logits` (N x classes).
pub fn export_native(model: &NativeCnn, path: &Path) -> Result<()> {
    let vars = model.vs.variables();
    let mut initializer = Vec::new();
    for (name, t) in &vars {
        let t = t.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
        let values = Vec::<f32>::try_from(t.flatten(0, -1))?;
        initializer.push(TensorProto {
            name: name.clone(),
            dims: t.size(),
            data_type: DataType::FLOAT as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
    }
    initializer.sort_by(|a, b| a.name.cmp(&b.name));
    let mut nodes = Vec::new();
    let mut prev = "input".to_string();
    for (i, (spec, layer)) in model.specs.iter().zip(&model.layers).enumerate() {
        let out = format!("{i}.out");
        let name = format!("{i}.{}", spec.kind_name());
        let p = |s: &str| format!("{i}.{s}");
        let n = match (spec, layer) {
            (
                LayerSpec::Conv {
                    kernel, padding, ..
                },
                Layer::Conv(_),
            ) => {
                // The native conv: stride 1, dilation 1, zero padding `kernel / 2` unless given.
                let pad = padding.unwrap_or(kernel / 2);
                let mut inputs = vec![prev.clone(), p("weight")];
                if vars.contains_key(&p("bias")) {
                    inputs.push(p("bias"));
                }
                node(
                    name,
                    "Conv",
                    inputs,
                    out.clone(),
                    vec![
                        ints("kernel_shape", &[*kernel, *kernel]),
                        ints("pads", &[pad, pad, pad, pad]),
                        ints("strides", &[1, 1]),
                        ints("dilations", &[1, 1]),
                        int("group", 1),
                    ],
                )
            }
            (_, Layer::Relu) => node(name, "Relu", vec![prev.clone()], out.clone(), vec![]),
            (_, Layer::MaxPool(k)) => node(
                name,
                "MaxPool",
                vec![prev.clone()],
                out.clone(),
                vec![ints("kernel_shape", &[*k, *k]), ints("strides", &[*k, *k])],
            ),
            (_, Layer::Flatten) => node(
                name,
                "Flatten",
                vec![prev.clone()],
                out.clone(),
                vec![int("axis", 1)],
            ),
            (_, Layer::Dense(_)) => node(
                name,
                "Gemm",
                vec![prev.clone(), p("weight"), p("bias")],
                out.clone(),
                vec![int("transB", 1)],
            ),
            (_, Layer::Dropout(_)) => {
                node(name, "Dropout", vec![prev.clone()], out.clone(), vec![])
            }
            // tch's batch_norm2d default epsilon.
            (_, Layer::BatchNorm(_)) => node(
                name,
                "BatchNormalization",
                vec![
                    prev.clone(),
                    p("weight"),
                    p("bias"),
                    p("running_mean"),
                    p("running_var"),
                ],
                out.clone(),
                vec![float("epsilon", 1e-5)],
            ),
            (_, Layer::GlobalAvgPool) => {
                let pooled = format!("{i}.pooled");
                nodes.push(node(
                    format!("{name}.pool"),
                    "GlobalAveragePool",
                    vec![prev.clone()],
                    pooled.clone(),
                    vec![],
                ));
                node(
                    name,
                    "Flatten",
                    vec![pooled],
                    out.clone(),
                    vec![int("axis", 1)],
                )
            }
            (s, l) => {
                return Err(Error::Other(format!(
                    "layer {i}: spec {} does not match the built layer {l:?}",
                    s.kind_name()
                )))
            }
        };
        nodes.push(n);
        prev = out;
    }
    // The last value is renamed `logits` through an Identity, so the output name is stable.
    nodes.push(node(
        "logits".into(),
        "Identity",
        vec![prev],
        "logits".into(),
        vec![],
    ));
    let inp = &model.input;
    let graph = GraphProto {
        name: "tumor-audit native CNN".into(),
        node: nodes,
        initializer,
        input: vec![value_info(
            "input",
            &[None, Some(inp.channels), Some(inp.size), Some(inp.size)],
        )],
        output: vec![value_info("logits", &[None, Some(inp.classes)])],
        ..Default::default()
    };
    let proto = ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
            ..Default::default()
        }],
        producer_name: "tumor-audit".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: MessageField::some(graph),
        ..Default::default()
    };
    let bytes = proto
        .write_to_bytes()
        .map_err(|e| Error::Other(format!("cannot encode the ONNX model: {e}")))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    std::fs::write(path, bytes)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}
