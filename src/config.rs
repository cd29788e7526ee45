//! `config.yml` (the notebook's `données:` keys plus English sections) and `--set` overrides, validated
//! once into a [`Settings`] value the rest of the code trusts.
//!
//! Unknown keys, wrong types and impossible values are errors naming the key, the value and what is
//! allowed.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

use crate::error::{Error, Result};
use crate::model::LayerSpec;

/// The notebook's `données:` block, kept with its French key.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Donnees {
    pub image: ImageConfig,
}

/// `données.image`: how an image becomes a model input.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// Images are resized to size x size.
    pub size: u32,
    /// Divide pixel values by 255.
    pub normalize: bool,
    /// Per-image zero mean, unit standard deviation (after `normalize`).
    pub standardize: bool,
    /// One grey channel instead of three RGB channels.
    pub grayscale: bool,
    /// Resize filter: bilinear (default), bicubic (PIL's default), nearest, lanczos3. Left out of
    /// the run's config snapshot at its default, so earlier runs keep their snapshot.
    #[serde(
        default,
        skip_serializing_if = "crate::preprocess::ResizeFilter::is_default"
    )]
    pub resize: crate::preprocess::ResizeFilter,
}

impl ImageConfig {
    pub fn channels(&self) -> i64 {
        if self.grayscale {
            1
        } else {
            3
        }
    }
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
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `cnn128` (the notebook's pattern scaled for CPU), `cnn256` (the notebook's size, for GPUs) or
    /// `custom` (the `layers` list below).
    pub architecture: String,
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
            architecture: "cnn128".into(),
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
pub struct TrainingConfig {
    pub seed: u64,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Early stopping: stop after this many epochs without a better validation loss.
    pub patience: usize,
    pub augment: AugmentConfig,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            seed: 42,
            epochs: 30,
            batch_size: 32,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            patience: 6,
            augment: AugmentConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    pub horizontal_flip: bool,
    /// Maximum rotation, degrees (uniform in [-r, r]).
    pub rotate_degrees: f32,
    /// Maximum relative brightness/contrast change (uniform in [1-i, 1+i]).
    pub intensity: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            horizontal_flip: true,
            rotate_degrees: 10.0,
            intensity: 0.1,
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
        let mut settings: Settings = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            cfg_err(format!(
                "key `{key}`: {}",
                e.inner().to_string().replace('\n', " ")
            ))
        })?;
        settings.explain.apply_profile();
        settings.validate()?;
        Ok(settings)
    }

    /// Values serde cannot check: ranges and combinations.
    pub fn validate(&self) -> Result<()> {
        let img = &self.donnees.image;
        if !(8..=2048).contains(&img.size) {
            return Err(Error::key(
                "données.image.size",
                format!("{} is out of range: allowed 8..=2048 pixels", img.size),
            ));
        }
        let t = &self.training;
        if t.epochs == 0 {
            return Err(Error::key(
                "training.epochs",
                "0 is not allowed: at least 1",
            ));
        }
        if t.batch_size == 0 {
            return Err(Error::key(
                "training.batch_size",
                "0 is not allowed: at least 1",
            ));
        }
        if !(t.learning_rate > 0.0 && t.learning_rate < 10.0) {
            return Err(Error::key(
                "training.learning_rate",
                format!("{} is not allowed: must be in (0, 10)", t.learning_rate),
            ));
        }
        if !(0.0..=180.0).contains(&t.augment.rotate_degrees) {
            return Err(Error::key(
                "training.augment.rotate_degrees",
                format!("{} is not allowed: 0..=180", t.augment.rotate_degrees),
            ));
        }
        if !(0.0..1.0).contains(&t.augment.intensity) {
            return Err(Error::key(
                "training.augment.intensity",
                format!("{} is not allowed: 0 <= intensity < 1", t.augment.intensity),
            ));
        }
        if self.data.max_file_bytes == 0 || self.data.max_image_pixels == 0 {
            return Err(Error::key(
                "data.max_file_bytes / data.max_image_pixels",
                "must be > 0",
            ));
        }
        match self.model.architecture.as_str() {
            "cnn128" | "cnn256" => {}
            "custom" => {
                if self.model.layers.is_empty() {
                    return Err(Error::key(
                        "model.layers",
                        "architecture `custom` needs a non-empty layer list",
                    ));
                }
            }
            other => {
                return Err(Error::key(
                    "model.architecture",
                    format!("`{other}` is unknown: allowed cnn128, cnn256, custom"),
                ))
            }
        }
        if self.model.architecture != "custom" && !self.model.layers.is_empty() {
            return Err(Error::key(
                "model.layers",
                "a layer list is only used with `architecture: custom`",
            ));
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
        Ok(())
    }

    /// The layer list the native model is built from.
    pub fn layers(&self) -> Vec<LayerSpec> {
        match self.model.architecture.as_str() {
            "cnn256" => crate::model::preset_layers([32, 64, 128, 128], 128, 2),
            "custom" => self.model.layers.clone(),
            _ => crate::model::preset_layers([16, 32, 64, 64], 64, 2),
        }
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).unwrap_or_default()
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
