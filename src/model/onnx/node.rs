//! One ONNX node as the operators read it: its name, operator type, input and output value names and
//! typed attributes, with the accessors that read an attribute or a default. The lowest layer of the
//! importer: the graph reader builds these and the operators consume them.
use std::collections::HashMap;

use tch::Tensor;

/// One attribute value, as the operators read it.
#[derive(Debug)]
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Floats(Vec<f32>),
    Str(String),
    Tensor(Tensor),
}

impl Clone for Attr {
    fn clone(&self) -> Attr {
        match self {
            Attr::Int(v) => Attr::Int(*v),
            Attr::Ints(v) => Attr::Ints(v.clone()),
            Attr::Float(v) => Attr::Float(*v),
            Attr::Floats(v) => Attr::Floats(v.clone()),
            Attr::Str(v) => Attr::Str(v.clone()),
            // Attribute tensors are never modified: copies share them.
            Attr::Tensor(t) => Attr::Tensor(t.shallow_clone()),
        }
    }
}

/// A node of the graph.
#[derive(Clone, Debug)]
pub struct Node {
    /// The node's name, or `#index` when the file leaves it empty.
    pub name: String,
    pub op: String,
    /// Input value names; an empty name is an omitted optional input.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: HashMap<String, Attr>,
}

impl Node {
    pub fn int(&self, key: &str, default: i64) -> i64 {
        match self.attrs.get(key) {
            Some(Attr::Int(v)) => *v,
            _ => default,
        }
    }
    pub fn ints(&self, key: &str) -> Option<&[i64]> {
        match self.attrs.get(key) {
            Some(Attr::Ints(v)) => Some(v),
            _ => None,
        }
    }
    pub fn float(&self, key: &str, default: f32) -> f32 {
        match self.attrs.get(key) {
            Some(Attr::Float(v)) => *v,
            _ => default,
        }
    }
    pub fn string(&self, key: &str, default: &str) -> String {
        match self.attrs.get(key) {
            Some(Attr::Str(v)) => v.clone(),
            _ => default.to_string(),
        }
    }
    /// The `i`-th input's name when present (not omitted).
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
    /// How the node is named in messages: `Conv node `conv1``.
    pub fn label(&self) -> String {
        format!("{} node `{}`", self.op, self.name)
    }
}
