//! The native CNN's layer list as written in `config.yml` (`- conv: {out: 16}`, `- relu`, ...), its
//! checks, and the preset architectures.
use serde::{Deserialize, Serialize};

/// One layer of the native CNN, as written in `config.yml`: a name for layers without arguments
/// (`- relu`, `- flatten`), a one-key map otherwise (`- conv: {out: 16}`, `- maxpool: {kernel: 2}`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(try_from = "LayerRepr", into = "LayerRepr")]
pub enum LayerSpec {
    /// 2-D convolution, stride 1, zero padding `kernel / 2` ("same") unless `padding` is given.
    Conv {
        out: i64,
        #[serde(default = "default_kernel")]
        kernel: i64,
        #[serde(default)]
        padding: Option<i64>,
    },
    Relu,
    /// Max pooling with stride = kernel.
    Maxpool {
        #[serde(default = "default_pool")]
        kernel: i64,
    },
    Flatten,
    /// Fully connected layer (PyTorch `nn.Linear`).
    Dense {
        out: i64,
    },
    Dropout {
        #[serde(default = "default_dropout")]
        p: f64,
    },
    /// `nn.BatchNorm2d` over the channels of the previous conv.
    Batchnorm,
    /// Global average pooling to C x 1 x 1, then flattened.
    GlobalAvgPool,
}

fn default_kernel() -> i64 {
    3
}
fn default_pool() -> i64 {
    2
}
fn default_dropout() -> f64 {
    0.5
}

/// The YAML shape of a layer (see [`LayerSpec`]).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum LayerRepr {
    Name(String),
    Args(std::collections::BTreeMap<String, LayerArgs>),
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LayerArgs {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub padding: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
}

const LAYER_KINDS: &str =
    "conv, relu, maxpool, flatten, dense, dropout, batchnorm, global_avg_pool";

impl TryFrom<LayerRepr> for LayerSpec {
    type Error = String;
    fn try_from(r: LayerRepr) -> std::result::Result<Self, String> {
        let (name, args) = match r {
            LayerRepr::Name(n) => (n, LayerArgs::default()),
            LayerRepr::Args(m) if m.len() == 1 => m.into_iter().next().expect("one entry"),
            LayerRepr::Args(m) => {
                return Err(format!(
                    "a layer is one name or a one-key map, found keys {:?}",
                    m.keys().collect::<Vec<_>>()
                ))
            }
        };
        let unexpected = |what: &str| Err(format!("layer `{name}` takes no `{what}`"));
        let spec = match name.as_str() {
            "conv" => LayerSpec::Conv {
                out: args.out.ok_or("conv needs `out` (output channels)")?,
                kernel: args.kernel.unwrap_or_else(default_kernel),
                padding: args.padding,
            },
            "dense" => LayerSpec::Dense {
                out: args.out.ok_or("dense needs `out` (output features)")?,
            },
            "maxpool" => LayerSpec::Maxpool {
                kernel: args.kernel.unwrap_or_else(default_pool),
            },
            "dropout" => LayerSpec::Dropout {
                p: args.p.unwrap_or_else(default_dropout),
            },
            "relu" => LayerSpec::Relu,
            "flatten" => LayerSpec::Flatten,
            "batchnorm" => LayerSpec::Batchnorm,
            "global_avg_pool" => LayerSpec::GlobalAvgPool,
            other => return Err(format!("unknown layer `{other}`: allowed {LAYER_KINDS}")),
        };
        // Arguments a layer does not take are errors, not silently ignored.
        match spec {
            LayerSpec::Conv { .. } if args.p.is_some() => return unexpected("p"),
            LayerSpec::Dense { .. }
                if args.kernel.or(args.padding).is_some() || args.p.is_some() =>
            {
                return unexpected("kernel/padding/p")
            }
            LayerSpec::Maxpool { .. }
                if args.out.or(args.padding).is_some() || args.p.is_some() =>
            {
                return unexpected("out/padding/p")
            }
            LayerSpec::Dropout { .. } if args.out.or(args.kernel).or(args.padding).is_some() => {
                return unexpected("out/kernel/padding")
            }
            _ => {}
        }
        Ok(spec)
    }
}

impl From<LayerSpec> for LayerRepr {
    fn from(s: LayerSpec) -> LayerRepr {
        let one = |name: &str, args: LayerArgs| {
            LayerRepr::Args([(name.to_string(), args)].into_iter().collect())
        };
        match s {
            LayerSpec::Conv {
                out,
                kernel,
                padding,
            } => one(
                "conv",
                LayerArgs {
                    out: Some(out),
                    kernel: Some(kernel),
                    padding,
                    p: None,
                },
            ),
            LayerSpec::Dense { out } => one(
                "dense",
                LayerArgs {
                    out: Some(out),
                    ..Default::default()
                },
            ),
            LayerSpec::Maxpool { kernel } => one(
                "maxpool",
                LayerArgs {
                    kernel: Some(kernel),
                    ..Default::default()
                },
            ),
            LayerSpec::Dropout { p } => one(
                "dropout",
                LayerArgs {
                    p: Some(p),
                    ..Default::default()
                },
            ),
            other => LayerRepr::Name(other.kind_name().to_string()),
        }
    }
}

impl LayerSpec {
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self {
            LayerSpec::Conv {
                out,
                kernel,
                padding,
            } if *out < 1 || *kernel < 1 || padding.is_some_and(|p| p < 0) => {
                return Err(format!(
                    "conv needs out >= 1, kernel >= 1, padding >= 0; found out {out}, kernel {kernel}, padding {padding:?}"
                ))
            }
            LayerSpec::Maxpool { kernel } if *kernel < 1 => {
                return Err(format!("maxpool kernel must be >= 1, found {kernel}"))
            }
            LayerSpec::Dense { out } if *out < 1 => {
                return Err(format!("dense out must be >= 1, found {out}"))
            }
            LayerSpec::Dropout { p } if !(0.0..1.0).contains(p) => {
                return Err(format!("dropout p must be in [0, 1), found {p}"))
            }
            _ => {}
        }
        Ok(())
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            LayerSpec::Conv { .. } => "conv",
            LayerSpec::Relu => "relu",
            LayerSpec::Maxpool { .. } => "maxpool",
            LayerSpec::Flatten => "flatten",
            LayerSpec::Dense { .. } => "dense",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::Batchnorm => "batchnorm",
            LayerSpec::GlobalAvgPool => "global_avg_pool",
        }
    }
}

/// The notebook's pattern Conv-Conv-Pool-Conv-Conv-Pool-Flatten-Dense-Dropout-Dense (ReLU after each
/// conv and the hidden dense layer), with the given conv widths.
pub fn preset_layers(widths: [i64; 4], hidden: i64, classes: i64) -> Vec<LayerSpec> {
    let conv = |out| LayerSpec::Conv {
        out,
        kernel: 3,
        padding: None,
    };
    vec![
        conv(widths[0]),
        LayerSpec::Relu,
        conv(widths[1]),
        LayerSpec::Relu,
        LayerSpec::Maxpool { kernel: 2 },
        conv(widths[2]),
        LayerSpec::Relu,
        conv(widths[3]),
        LayerSpec::Relu,
        LayerSpec::Maxpool { kernel: 2 },
        LayerSpec::Flatten,
        LayerSpec::Dense { out: hidden },
        LayerSpec::Relu,
        LayerSpec::Dropout { p: 0.5 },
        LayerSpec::Dense { out: classes },
    ]
}
