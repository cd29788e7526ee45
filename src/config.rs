//! `config.yml` (the notebook's `données:` keys plus English sections) and `--set` overrides, validated
//! once into a [`Settings`] value the rest of the code trusts.
//!
//! Unknown keys, wrong types and impossible values are errors naming the key, the value and what is
//! allowed.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

use crate::error::{Error, Result};
pub use crate::model::train::{AugmentConfig, TrainingConfig};
use crate::model::{Architecture, LayerSpec};
pub use crate::preprocess::ImageConfig;
use crate::trust::FaithfulnessConfig;

/// The notebook's `données:` block, kept with its French key.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Donnees {
    pub image: ImageConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Dataset root holding `Training/`, `Validation/`, `Testing/` (one folder per class in each).
    pub root: PathBuf,
    pub train_dir: String,
    pub validation_dir: String,
    pub test_dir: String,
    /// Class names in model output order; empty = the sorted folder names of the training set.
    pub classes: Vec<String>,
    /// Decompression-bomb limits: files bigger than this many bytes or images with more pixels are skipped.
    pub max_file_bytes: u64,
    pub max_image_pixels: u64,
    /// Ground-truth tumour outlines (`layout: tree` or `suffix`): the localisation figures.
    /// Written into the run's snapshot only when set, so older snapshots stay as they were.
    #[serde(skip_serializing_if = "crate::outline::MaskConfig::is_default")]
    pub masks: crate::outline::MaskConfig,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            root: PathBuf::from("data/br35h"),
            train_dir: "Training".into(),
            validation_dir: "Validation".into(),
            test_dir: "Testing".into(),
            classes: Vec::new(),
            max_file_bytes: 64 * 1024 * 1024,
            max_image_pixels: 64 * 1024 * 1024,
            masks: Default::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `cnn128` (the notebook's pattern scaled for CPU), `cnn256` (the notebook's size, for GPUs) or
    /// `custom` (the `layers` list below).
    pub architecture: Architecture,
    pub layers: Vec<LayerSpec>,
    /// Safetensors weights of the native CNN (PyTorch `state_dict` names).
    pub weights: PathBuf,
    /// A TorchScript module (`.pt`) to audit instead of the native CNN.
    pub torchscript: Option<PathBuf>,
    /// An ONNX model (`.onnx`, e.g. Keras through tf2onnx or PyTorch through torch.onnx.export) to
    /// audit instead of the native CNN; every method and the sanity check run on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onnx: Option<PathBuf>,
    /// Axis order of the ONNX model's image input: `auto` (from its declared shape), `nchw`, `nhwc`.
    #[serde(skip_serializing_if = "is_auto")]
    pub onnx_layout: String,
}

fn is_auto(s: &str) -> bool {
    s == "auto"
}

impl ModelConfig {
    /// The file holding the model under audit: the ONNX or TorchScript file, else the weights.
    pub fn file(&self) -> &Path {
        self.onnx
            .as_deref()
            .or(self.torchscript.as_deref())
            .unwrap_or(&self.weights)
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            architecture: Architecture::Cnn128,
            layers: Vec::new(),
            weights: PathBuf::from("models/cnn128-br35h.safetensors"),
            torchscript: None,
            onnx: None,
            onnx_layout: "auto".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    pub dir: PathBuf,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: PathBuf::from("out"),
        }
    }
}

/// The whole file. `explain` is optional: missing means the CPU-friendly default profile.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(rename = "données")]
    pub donnees: Donnees,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub training: TrainingConfig,
    #[serde(default)]
    pub output: OutputConfig,
    #[serde(default)]
    pub explain: crate::attribution::ExplainConfig,
    /// How maps are drawn (`explain` pictures, the report): the notebook's |map|, 0.5 / 99.5
    /// percentile clip and 40% opacity by default; `absolute_value: false` shows signed maps.
    /// Written into the run's snapshot only when changed, so older snapshots stay as they were.
    #[serde(
        default,
        skip_serializing_if = "crate::display::DisplayParams::is_default"
    )]
    pub display: crate::display::DisplayParams,
    /// `explain.faithfulness`: read and written with the `explain:` block (see [`Settings::from_yaml`]),
    /// kept beside it because the trust checks own it, not the attribution methods.
    #[serde(skip)]
    pub faithfulness: FaithfulnessConfig,
}

impl Settings {
    /// Reads `path`, applies `overrides` (`dotted.key=yaml-value`), then validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Settings> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("cannot read config {}", path.display()), e))?;
        Settings::from_yaml(&text, overrides).map_err(|e| match e {
            Error::Config { message, .. } => Error::Config {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    pub fn from_yaml(text: &str, overrides: &[String]) -> Result<Settings> {
        let cfg_err = |message: String| Error::Config {
            path: PathBuf::from("<text>"),
            message,
        };
        let mut value: Value = serde_yaml_ng::from_str(text).map_err(|e| cfg_err(e.to_string()))?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        if let Some(image) = value
            .get_mut("données")
            .and_then(|d| d.get_mut("image"))
            .and_then(Value::as_mapping_mut)
        {
            crate::preprocess::expand_preset(image).map_err(|(key, m)| Error::key(key, m))?;
        }
        let faithfulness = value
            .get_mut("explain")
            .and_then(Value::as_mapping_mut)
            .and_then(|m| m.remove("faithfulness"));
        let key_err = |prefix: &str, e: serde_path_to_error::Error<serde_yaml_ng::Error>| {
            let key = format!("{prefix}{}", e.path());
            cfg_err(format!(
                "key `{key}`: {}",
                e.inner().to_string().replace('\n', " ")
            ))
        };
        let mut settings: Settings =
            serde_path_to_error::deserialize(value).map_err(|e| key_err("", e))?;
        if let Some(f) = faithfulness {
            settings.faithfulness = serde_path_to_error::deserialize(f)
                .map_err(|e| key_err("explain.faithfulness.", e))?;
        }
        settings.explain.apply_profile();
        settings.validate()?;
        settings.explain.black = settings.donnees.image.black_input();
        Ok(settings)
    }

    /// Values serde cannot check: ranges and combinations.
    pub fn validate(&self) -> Result<()> {
        // YAML has `.nan` and `.inf`: no setting means anything with them, so none may hold one.
        let whole = serde_yaml_ng::to_value(self).unwrap_or(Value::Null);
        reject_non_finite(&whole, "")?;
        let faith = serde_yaml_ng::to_value(&self.faithfulness).unwrap_or(Value::Null);
        reject_non_finite(&faith, "explain.faithfulness")?;
        let img = &self.donnees.image;
        if !(8..=2048).contains(&img.size) {
            return Err(Error::key(
                "données.image.size",
                format!("{} is out of range: allowed 8..=2048 pixels", img.size),
            ));
        }
        img.check_channel_scaling()
            .map_err(|(key, m)| Error::key(key, m))?;
        self.training.validate()?;
        if self.data.max_file_bytes == 0 || self.data.max_image_pixels == 0 {
            return Err(Error::key(
                "data.max_file_bytes / data.max_image_pixels",
                "must be > 0",
            ));
        }
        match (self.model.architecture, self.model.layers.is_empty()) {
            (Architecture::Custom, true) => {
                return Err(Error::key(
                    "model.layers",
                    "architecture `custom` needs a non-empty layer list",
                ))
            }
            (Architecture::Cnn128 | Architecture::Cnn256, false) => {
                return Err(Error::key(
                    "model.layers",
                    "a layer list is only used with `architecture: custom`",
                ))
            }
            _ => {}
        }
        for (i, l) in self.model.layers.iter().enumerate() {
            l.validate()
                .map_err(|m| Error::key(format!("model.layers[{i}]"), m))?;
        }
        if self.model.onnx.is_some() && self.model.torchscript.is_some() {
            return Err(Error::key(
                "model.onnx",
                "model.onnx and model.torchscript are both set: choose one model",
            ));
        }
        if !["auto", "nchw", "nhwc"].contains(&self.model.onnx_layout.as_str()) {
            return Err(Error::key(
                "model.onnx_layout",
                format!(
                    "`{}` is unknown: allowed auto, nchw, nhwc",
                    self.model.onnx_layout
                ),
            ));
        }
        self.explain.validate()?;
        self.explain
            .check_baseline()
            .map_err(|(key, m)| Error::key(key, m))?;
        self.faithfulness.validate()?;
        self.display
            .check()
            .map_err(|(key, m)| Error::key(key, m))?;
        Ok(())
    }

    /// The layer list the native model is built from.
    pub fn layers(&self) -> Vec<LayerSpec> {
        match self.model.architecture {
            Architecture::Cnn256 => crate::model::preset_layers([32, 64, 128, 128], 128, 2),
            Architecture::Custom => self.model.layers.clone(),
            Architecture::Cnn128 => crate::model::preset_layers([16, 32, 64, 64], 64, 2),
        }
    }

    /// The whole configuration as YAML (the run's snapshot). `explain.faithfulness` is written only
    /// when it differs from its default, so that snapshots of runs without it stay as they were.
    pub fn to_yaml(&self) -> String {
        let mut value = serde_yaml_ng::to_value(self).unwrap_or(Value::Null);
        if !self.faithfulness.is_default() {
            if let (Some(explain), Ok(f)) = (
                value.get_mut("explain").and_then(Value::as_mapping_mut),
                serde_yaml_ng::to_value(&self.faithfulness),
            ) {
                explain.insert(Value::String("faithfulness".into()), f);
            }
        }
        serde_yaml_ng::to_string(&value).unwrap_or_default()
    }
}

/// The first number under `value` that is NaN or infinite, as a config-key error.
fn reject_non_finite(value: &Value, key: &str) -> Result<()> {
    let child = |k: &str| {
        if key.is_empty() {
            k.to_string()
        } else {
            format!("{key}.{k}")
        }
    };
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(x) if !x.is_finite() => Err(Error::key(
                key,
                format!("{x} is not allowed: every number in the config must be finite"),
            )),
            _ => Ok(()),
        },
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| reject_non_finite(v, &format!("{key}[{i}]"))),
        Value::Mapping(m) => m.iter().try_for_each(|(k, v)| {
            let name = k
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{k:?}"));
            reject_non_finite(v, &child(&name))
        }),
        Value::Tagged(t) => reject_non_finite(&t.value, key),
        _ => Ok(()),
    }
}

/// `--set a.b.c=value`: value parsed as YAML (so `true`, `64`, `[a, b]` keep their types).
pub fn apply_override(root: &mut Value, assignment: &str) -> Result<()> {
    let (key, raw) = assignment.split_once('=').ok_or_else(|| {
        Error::key(
            assignment,
            "an override must look like key.path=value, e.g. données.image.size=64",
        )
    })?;
    let new: Value = serde_yaml_ng::from_str(raw)
        .map_err(|e| Error::key(key, format!("value `{raw}` is not valid YAML: {e}")))?;
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !node.is_mapping() {
            return Err(Error::key(
                key,
                format!("`{}` is not a section", parts[..i].join(".")),
            ));
        }
        let map = node.as_mapping_mut().expect("checked mapping");
        let k = Value::String((*part).to_string());
        if i + 1 == parts.len() {
            map.insert(k, new);
            return Ok(());
        }
        node = map
            .entry(k)
            .or_insert_with(|| Value::Mapping(Default::default()));
    }
    Ok(())
}
