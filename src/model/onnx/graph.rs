//! An ONNX file read into plain Rust values: the nodes in execution order with typed attributes, the
//! initialisers as tensors, the single image input and logits output. Everything an operator needs
//! is checked here, so an unsupported operator or attribute fails at load, before any image is read.
use std::collections::{HashMap, HashSet};
use std::path::Path;

use onnx_protobuf::{attribute_proto::AttributeType, tensor_proto::DataType, Message};
use protobuf::Enum;
use tch::{Kind, Tensor};

pub use super::node::{Attr, Node};
use super::ops;
use crate::error::{Error, Result};

/// A declared dimension: a number, or a symbol (`batch`, `N`, ...) / nothing.
pub type Dim = Option<i64>;

/// The parsed file.
pub struct Graph {
    pub nodes: Vec<Node>,
    /// Initialisers (weights and constant tensors), on the CPU, in their stored kind.
    pub initializers: HashMap<String, Tensor>,
    pub input_name: String,
    pub input_dims: Vec<Dim>,
    pub output_name: String,
    /// The default-domain opset the file was exported with.
    pub opset: i64,
    pub producer: String,
    /// `metadata_props` of the model (e.g. class names a converter stored).
    pub metadata: Vec<(String, String)>,
}

fn model_err(path: &Path, message: String) -> Error {
    Error::Model {
        path: path.to_path_buf(),
        message,
    }
}

/// The `metadata_props` of the ONNX file `path` (key, value), without reading its graph's tensors.
pub fn read_metadata(path: &Path) -> Result<Vec<(String, String)>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::io(format!("cannot read ONNX model {}", path.display()), e))?;
    let model = onnx_protobuf::ModelProto::parse_from_bytes(&bytes)
        .map_err(|e| model_err(path, format!("not an ONNX model (protobuf: {e})")))?;
    Ok(model
        .metadata_props
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect())
}

impl Graph {
    /// Reads and checks `path`: one image input, one output, every node's operator supported and
    /// every value defined before it is used.
    pub fn read(path: &Path) -> Result<Graph> {
        let err = |m: String| model_err(path, m);
        let bytes = std::fs::read(path)
            .map_err(|e| Error::io(format!("cannot read ONNX model {}", path.display()), e))?;
        let model = onnx_protobuf::ModelProto::parse_from_bytes(&bytes)
            .map_err(|e| err(format!("not an ONNX model (protobuf: {e})")))?;
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| err("the file has no graph".into()))?;
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .unwrap_or(1);
        let mut initializers = HashMap::new();
        for t in &graph.initializer {
            let tensor =
                tensor_from_proto(t).map_err(|m| err(format!("initialiser `{}`: {m}", t.name)))?;
            initializers.insert(t.name.clone(), tensor);
        }
        if !graph.sparse_initializer.is_empty() {
            return Err(err("sparse initialisers are not supported".into()));
        }
        let real_inputs: Vec<_> = graph
            .input
            .iter()
            .filter(|i| !initializers.contains_key(&i.name))
            .collect();
        let input = only_one(&real_inputs, "one image input").map_err(err)?;
        let outputs: Vec<_> = graph.output.iter().collect();
        let output = only_one(&outputs, "one output (the class scores)").map_err(err)?;
        let input_dims = value_dims(input);
        let mut nodes = Vec::with_capacity(graph.node.len());
        for (i, n) in graph.node.iter().enumerate() {
            let name = if n.name.is_empty() {
                format!("#{i}")
            } else {
                n.name.clone()
            };
            if !(n.domain.is_empty() || n.domain == "ai.onnx") || !ops::supports(&n.op_type) {
                let op = if n.domain.is_empty() {
                    n.op_type.clone()
                } else {
                    format!("{}:{}", n.domain, n.op_type)
                };
                return Err(err(format!(
                    "unsupported ONNX operator `{op}` at node `{name}` (supported: {})",
                    ops::supported().collect::<Vec<_>>().join(", ")
                )));
            }
            let mut attrs = HashMap::new();
            for a in &n.attribute {
                let v = match a.type_.enum_value() {
                    Ok(AttributeType::INT) => Attr::Int(a.i),
                    Ok(AttributeType::INTS) => Attr::Ints(a.ints.clone()),
                    Ok(AttributeType::FLOAT) => Attr::Float(a.f),
                    Ok(AttributeType::FLOATS) => Attr::Floats(a.floats.clone()),
                    Ok(AttributeType::STRING) => {
                        Attr::Str(String::from_utf8_lossy(&a.s).into_owned())
                    }
                    Ok(AttributeType::TENSOR) => {
                        let t = a.t.as_ref().ok_or_else(|| {
                            err(format!(
                                "{} node `{name}`: attribute `{}` has no tensor",
                                n.op_type, a.name
                            ))
                        })?;
                        Attr::Tensor(tensor_from_proto(t).map_err(|m| {
                            err(format!(
                                "{} node `{name}`: attribute `{}`: {m}",
                                n.op_type, a.name
                            ))
                        })?)
                    }
                    _ => {
                        return Err(err(format!(
                        "{} node `{name}`: attribute `{}` has a type the importer does not read",
                        n.op_type, a.name
                    )))
                    }
                };
                attrs.insert(a.name.clone(), v);
            }
            nodes.push(Node {
                name,
                op: n.op_type.clone(),
                inputs: n.input.clone(),
                outputs: n.output.clone(),
                attrs,
            });
        }
        let g = Graph {
            nodes,
            initializers,
            input_name: input.name.clone(),
            input_dims,
            output_name: output.name.clone(),
            opset,
            producer: producer(&model.producer_name, &model.producer_version),
            metadata: model
                .metadata_props
                .iter()
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect(),
        };
        g.check(path)?;
        Ok(g)
    }

    /// Values defined before use (ONNX requires nodes in topological order), the output produced,
    /// and every attribute combination an operator does not run refused now, naming the node.
    fn check(&self, path: &Path) -> Result<()> {
        let err = |m: String| model_err(path, m);
        let mut defined: HashSet<&str> = self.initializers.keys().map(String::as_str).collect();
        defined.insert(&self.input_name);
        let consumers = self.consumers();
        for n in &self.nodes {
            for i in n.inputs.iter().filter(|i| !i.is_empty()) {
                if !defined.contains(i.as_str()) {
                    return Err(err(format!(
                        "{}: input `{i}` is not produced by an earlier node (nodes out of order or a missing initialiser)",
                        n.label()
                    )));
                }
            }
            ops::check_node(n, self.opset).map_err(|m| err(format!("{}: {m}", n.label())))?;
            // Secondary outputs (Dropout's mask, MaxPool's indices, BatchNorm's training stats) are
            // not computed: a graph that reads one is refused.
            for extra in n.outputs.iter().skip(1).filter(|o| !o.is_empty()) {
                if consumers.contains_key(extra.as_str()) || *extra == self.output_name {
                    return Err(err(format!(
                        "{}: its secondary output `{extra}` is used, which the importer does not compute",
                        n.label()
                    )));
                }
            }
            defined.extend(n.outputs.iter().map(String::as_str));
        }
        if !defined.contains(self.output_name.as_str()) {
            return Err(err(format!(
                "the output `{}` is produced by no node",
                self.output_name
            )));
        }
        Ok(())
    }

    /// For each value, the indices of the nodes reading it.
    pub fn consumers(&self) -> HashMap<&str, Vec<usize>> {
        let mut m: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for inp in n.inputs.iter().filter(|s| !s.is_empty()) {
                m.entry(inp.as_str()).or_default().push(i);
            }
        }
        m
    }

    /// The index of the node producing `value`.
    pub fn producer_of(&self, value: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.outputs.first().is_some_and(|o| o == value))
    }
}

/// The one value of `values`; otherwise a message that says what was `expected` and names the
/// values found.
fn only_one<'a>(
    values: &[&'a onnx_protobuf::ValueInfoProto],
    expected: &str,
) -> std::result::Result<&'a onnx_protobuf::ValueInfoProto, String> {
    match values {
        [one] => Ok(*one),
        other => Err(format!(
            "expected {expected}, found {} ({})",
            other.len(),
            other
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn value_dims(v: &onnx_protobuf::ValueInfoProto) -> Vec<Dim> {
    use onnx_protobuf::tensor_shape_proto::dimension::Value as D;
    use onnx_protobuf::type_proto::Value as T;
    let Some(tp) = v.type_.as_ref() else {
        return Vec::new();
    };
    match &tp.value {
        Some(T::TensorType(t)) => t
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(D::DimValue(n)) if n > 0 => Some(n),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A tensor's `raw_data` (`size` bytes a value, little-endian), which must hold `needs` bytes when
/// given.
struct Values<'a> {
    raw: &'a [u8],
    needs: usize,
    size: usize,
    dims: &'a [i64],
}

impl Values<'_> {
    /// The values read from the raw bytes by `read`, or from the typed field by `typed` when there
    /// are none.
    fn read<T>(
        &self,
        read: impl Fn(&[u8]) -> T,
        typed: impl FnOnce() -> Vec<T>,
    ) -> std::result::Result<Vec<T>, String> {
        if self.raw.is_empty() {
            return Ok(typed());
        }
        if self.raw.len() != self.needs {
            return Err(format!(
                "raw data has {} bytes, shape {:?} needs {}",
                self.raw.len(),
                self.dims,
                self.needs
            ));
        }
        Ok(self.raw.chunks_exact(self.size).map(read).collect())
    }
}

/// An ONNX tensor as a CPU tch tensor. Floating point data becomes float32 (the importer computes in
/// float32 like the native CNN), integers int64, booleans bool.
pub fn tensor_from_proto(t: &onnx_protobuf::TensorProto) -> std::result::Result<Tensor, String> {
    if t.data_location.enum_value() == Ok(onnx_protobuf::tensor_proto::DataLocation::EXTERNAL)
        || !t.external_data.is_empty()
    {
        return Err("stored as external data (a separate file), which is not supported: save the model as one file".into());
    }
    let dims: Vec<i64> = t.dims.clone();
    ops::check_alloc("the tensor", &dims)?;
    let n: i64 = dims.iter().product();
    let raw = &t.raw_data;
    let dt = DataType::from_i32(t.data_type)
        .ok_or_else(|| format!("unknown data type {}", t.data_type))?;
    // The values from `raw_data` when it is given (`size` bytes each, `read` one), else from the
    // typed field.
    let values = |size: usize| Values {
        raw,
        needs: n as usize * size,
        size,
        dims: &dims,
    };
    let le = |c: &[u8]| -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        b
    };
    let tensor = match dt {
        DataType::FLOAT => {
            let v = values(4).read(
                |c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                || t.float_data.clone(),
            )?;
            Tensor::from_slice(&v)
        }
        DataType::DOUBLE => {
            let v = values(8).read(|c| f64::from_le_bytes(le(c)), || t.double_data.clone())?;
            Tensor::from_slice(&v).to_kind(Kind::Float)
        }
        DataType::FLOAT16 | DataType::BFLOAT16 => {
            let bits = values(2).read(
                |c| i16::from_le_bytes([c[0], c[1]]),
                || t.int32_data.iter().map(|&v| v as u16 as i16).collect(),
            )?;
            let kind = if dt == DataType::FLOAT16 {
                Kind::Half
            } else {
                Kind::BFloat16
            };
            Tensor::from_slice(&bits)
                .view_dtype(kind)
                .to_kind(Kind::Float)
        }
        DataType::INT64 => {
            let v = values(8).read(|c| i64::from_le_bytes(le(c)), || t.int64_data.clone())?;
            Tensor::from_slice(&v)
        }
        DataType::INT32
        | DataType::INT16
        | DataType::INT8
        | DataType::UINT8
        | DataType::UINT16
        | DataType::BOOL => {
            let size = match dt {
                DataType::INT32 => 4,
                DataType::INT16 | DataType::UINT16 => 2,
                _ => 1,
            };
            let v = values(size).read(
                |c| match dt {
                    DataType::INT32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
                    DataType::INT16 => i16::from_le_bytes([c[0], c[1]]) as i64,
                    DataType::UINT16 => u16::from_le_bytes([c[0], c[1]]) as i64,
                    DataType::INT8 => c[0] as i8 as i64,
                    _ => c[0] as i64,
                },
                || t.int32_data.iter().map(|&v| v as i64).collect(),
            )?;
            let t = Tensor::from_slice(&v);
            if dt == DataType::BOOL {
                t.to_kind(Kind::Bool)
            } else {
                t
            }
        }
        other => return Err(format!("data type {other:?} is not supported")),
    };
    if tensor.numel() as i64 != n {
        return Err(format!("{} values for shape {dims:?}", tensor.numel()));
    }
    tensor.f_view(dims.as_slice()).map_err(|e| {
        format!(
            "shape {dims:?}: {}",
            e.to_string().lines().next().unwrap_or("")
        )
    })
}

/// The producer as one line, "name version": words that say nothing are dropped (tf2onnx writes its
/// git revision after the version, Python's `None` when it has none: "1.17.0 None").
fn producer(name: &str, version: &str) -> String {
    (name.split_whitespace().chain(version.split_whitespace()))
        .filter(|w| !matches!(*w, "None" | "none" | "null" | "unknown"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use onnx_protobuf::{tensor_proto::DataType, TensorProto};

    use super::tensor_from_proto;

    fn floats(dims: &[i64], v: &[f32]) -> TensorProto {
        TensorProto {
            name: "t".into(),
            dims: dims.to_vec(),
            data_type: DataType::FLOAT as i32,
            float_data: v.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn stored_tensors_with_bad_dimensions_are_errors_not_panics() {
        assert_eq!(
            tensor_from_proto(&floats(&[2, 1], &[1.0, 2.0]))
                .unwrap()
                .size(),
            [2, 1]
        );
        // Negative dimensions whose product matches the values.
        let e = tensor_from_proto(&floats(&[-1, -2], &[1.0, 2.0])).unwrap_err();
        assert!(e.contains("negative"), "{e}");
        // A shape far beyond its data, and beyond any product that fits in 64 bits.
        let e = tensor_from_proto(&floats(&[1 << 40], &[])).unwrap_err();
        assert!(e.contains("2^31"), "{e}");
        let e = tensor_from_proto(&floats(&[i64::MAX, i64::MAX, 4], &[])).unwrap_err();
        assert!(e.contains("2^31"), "{e}");
        let e = tensor_from_proto(&floats(&[3], &[1.0])).unwrap_err();
        assert!(e.contains("1 values for shape [3]"), "{e}");
    }
}
