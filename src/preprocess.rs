//! Decoded image -> model input, exactly as the notebook's `données.image` keys mean:
//! resize to size x size (with the image crate's filters, or PIL's / OpenCV's exactly), `grayscale`
//! = one channel, `channel_order` = RGB or BGR, `normalize` = /255, `mean` / `std` = per-channel
//! scaling after `normalize` (torchvision's `Normalize`, Keras's `preprocess_input`), `standardize`
//! = per-image zero mean and unit std; `preprocess` presets that stand for those keys; then images
//! stacked into model-input tensors.
use image::imageops::FilterType;
use image::DynamicImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::dataset::{self, Dataset, Limits, Sample, Skipped};
use crate::error::{Error, Result};
use crate::imageops::resize::{self, CvFilter, PilFilter, Resampler};

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
    /// Resize filter: the image crate's bilinear (default), bicubic, nearest, lanczos3, or PIL's
    /// (`pil_*`) and OpenCV's (`opencv_*`) exactly. Left out of the run's config snapshot at its
    /// default, so earlier runs keep their snapshot.
    #[serde(default, skip_serializing_if = "ResizeFilter::is_default")]
    pub resize: ResizeFilter,
    /// A named preprocessing (`keras_tf`, `keras_torch`, `keras_caffe`, `torchvision`, `none`) that
    /// stands for `normalize`, `standardize`, `mean`, `std` and `channel_order`: those keys are
    /// filled from it when left out, and must agree with it when given (see [`expand_preset`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<Preset>,
    /// Order of the model input's three channels: `rgb` (default) or `bgr` (Caffe-style models,
    /// OpenCV pipelines). `mean` / `std` are given in the model input's order.
    #[serde(default, skip_serializing_if = "ChannelOrder::is_default")]
    pub channel_order: ChannelOrder,
    /// Per-channel mean subtracted after `normalize`, one value per channel (1 grey, 3 RGB), e.g.
    /// ImageNet's `[0.485, 0.456, 0.406]`; unset = 0. Left out of the run's snapshot when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f32>>,
    /// Per-channel divisor applied after `mean`, one non-zero value per channel, e.g. ImageNet's
    /// `[0.229, 0.224, 0.225]`; unset = 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f32>>,
}

impl ImageConfig {
    pub fn channels(&self) -> i64 {
        if self.grayscale {
            1
        } else {
            3
        }
    }

    /// `mean` and `std` against the channel count: one value per channel, no zero divisor, and not
    /// together with `standardize` (two ways of centring the same input). Returns (key, message).
    pub fn check_channel_scaling(&self) -> std::result::Result<(), (&'static str, String)> {
        let channels = self.channels() as usize;
        for (key, values) in [
            ("données.image.mean", &self.mean),
            ("données.image.std", &self.std),
        ] {
            let Some(v) = values else { continue };
            if v.len() != channels {
                return Err((
                    key,
                    format!(
                        "{} value(s) given; the images have {channels} channel(s) (grayscale: {}): give {channels}{}",
                        v.len(),
                        self.grayscale,
                        if self.grayscale {
                            " (a grey image fed to an RGB model is scaled before its channel is repeated; for per-channel RGB statistics set grayscale: false)"
                        } else {
                            " (R, G, B)"
                        }
                    ),
                ));
            }
        }
        if let Some(std) = &self.std {
            if let Some(i) = std.iter().position(|&s| s == 0.0) {
                return Err((
                    "données.image.std",
                    format!("channel {i} has std 0: every value is divided by it; give a non-zero value"),
                ));
            }
        }
        if self.grayscale && self.channel_order == ChannelOrder::Bgr {
            return Err((
                "données.image.channel_order",
                "bgr reorders three colour channels; grayscale: true has one: use rgb, or grayscale: false".into(),
            ));
        }
        if self.standardize && (self.mean.is_some() || self.std.is_some()) {
            return Err((
                "données.image.standardize",
                "standardize (per image) and mean / std (per channel, fixed) both centre the input: choose one".into(),
            ));
        }
        Ok(())
    }
}

/// A model-ready image plus what display, segmentation and the brain mask need.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Channel-first C x H x W, after normalize / standardize.
    pub input: Vec<f32>,
    /// Grey image in [0, 1] at model size (H x W), whatever the normalisation: for display,
    /// segmentation and the brain mask.
    pub grey: Vec<f32>,
    pub channels: usize,
    pub size: usize,
    pub original_width: u32,
    pub original_height: u32,
}

/// `données.image.resize`: the filter that brings an image to size x size. The model's own training
/// pipeline decides: maps and even classes move with the filter alone. The first four are the image
/// crate's (shrinking widens the filter to the scale, as PIL does, but neither PIL's nor OpenCV's
/// numbers); `pil_*` reproduce Pillow's `Image.resize` exactly (antialiased when shrinking, nearest
/// included), `opencv_*` OpenCV's `cv2.resize` (`INTER_*`, not antialiased except `area`). With a
/// `pil_*` / `opencv_*` filter the grey conversion is that library's too, done before the resize
/// as Keras's `load_img(color_mode="grayscale")` and `cv2.imread(..., IMREAD_GRAYSCALE)` do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    /// Bilinear, the image crate's (antialiased triangle filter).
    #[default]
    Bilinear,
    /// Bicubic (Catmull-Rom, a = -0.5), the image crate's.
    Bicubic,
    /// Nearest, the image crate's: not PIL's (another source pixel at some indices).
    Nearest,
    Lanczos3,
    /// `PIL.Image.NEAREST` (Keras's `load_img` default).
    PilNearest,
    PilBox,
    PilBilinear,
    PilHamming,
    /// `PIL.Image.BICUBIC` (`Image.resize`'s default).
    PilBicubic,
    PilLanczos,
    /// `cv2.INTER_NEAREST` (`floor(x * src / dst)`, no half pixel).
    OpencvNearest,
    OpencvNearestExact,
    /// `cv2.INTER_LINEAR` (`cv2.resize`'s default).
    OpencvLinear,
    OpencvCubic,
    OpencvArea,
    OpencvLanczos4,
}

impl ResizeFilter {
    pub fn is_default(&self) -> bool {
        *self == ResizeFilter::default()
    }

    /// The PIL / OpenCV resampler, `None` for the image crate's filters.
    pub fn resampler(self) -> Option<Resampler> {
        use ResizeFilter as F;
        Some(match self {
            F::Bilinear | F::Bicubic | F::Nearest | F::Lanczos3 => return None,
            F::PilNearest => Resampler::Pil(PilFilter::Nearest),
            F::PilBox => Resampler::Pil(PilFilter::Box),
            F::PilBilinear => Resampler::Pil(PilFilter::Bilinear),
            F::PilHamming => Resampler::Pil(PilFilter::Hamming),
            F::PilBicubic => Resampler::Pil(PilFilter::Bicubic),
            F::PilLanczos => Resampler::Pil(PilFilter::Lanczos),
            F::OpencvNearest => Resampler::OpenCv(CvFilter::Nearest),
            F::OpencvNearestExact => Resampler::OpenCv(CvFilter::NearestExact),
            F::OpencvLinear => Resampler::OpenCv(CvFilter::Linear),
            F::OpencvCubic => Resampler::OpenCv(CvFilter::Cubic),
            F::OpencvArea => Resampler::OpenCv(CvFilter::Area),
            F::OpencvLanczos4 => Resampler::OpenCv(CvFilter::Lanczos4),
        })
    }

    fn filter(self) -> FilterType {
        match self {
            ResizeFilter::Bicubic => FilterType::CatmullRom,
            ResizeFilter::Nearest => FilterType::Nearest,
            ResizeFilter::Lanczos3 => FilterType::Lanczos3,
            _ => FilterType::Triangle,
        }
    }

    /// The snake_case name, as written in the config.
    pub fn name(self) -> String {
        serde_yaml_ng::to_string(&self)
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

/// `données.image.channel_order`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

impl ChannelOrder {
    pub fn is_default(&self) -> bool {
        *self == ChannelOrder::default()
    }
}

/// `données.image.preprocess`: what users know their model by. Each stands for explicit keys (on
/// raw 0..255 pixels x):
/// - `keras_tf` (`keras.applications` Xception, Inception, MobileNet...: x / 127.5 - 1):
///   normalize, mean 0.5, std 0.5 per channel;
/// - `keras_torch` (DenseNet) and `torchvision` (ToTensor + Normalize with ImageNet statistics):
///   normalize, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), RGB;
/// - `keras_caffe` (VGG16/19, ResNet50): BGR, no scaling, mean (103.939, 116.779, 123.68) in BGR
///   order, std 1;
/// - `none`: raw 0..255 values, RGB (Keras's EfficientNet / ConvNeXt, whose scaling is inside the
///   model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    KerasTf,
    KerasTorch,
    KerasCaffe,
    Torchvision,
    None,
}

/// The explicit keys a preset stands for, for `channels` channels: (normalize, mean, std,
/// channel_order); `Err` when the preset needs three channels.
fn preset_keys(
    p: Preset,
    channels: usize,
) -> std::result::Result<(bool, Option<Vec<f32>>, Option<Vec<f32>>, ChannelOrder), String> {
    let rgb_only = |name: &str| {
        if channels == 3 {
            Ok(())
        } else {
            Err(format!(
                "{name} has per-channel RGB statistics; grayscale: true gives one channel: set grayscale: false (allowed with grayscale: keras_tf, none)"
            ))
        }
    };
    Ok(match p {
        Preset::KerasTf => (
            true,
            Some(vec![0.5; channels]),
            Some(vec![0.5; channels]),
            ChannelOrder::Rgb,
        ),
        Preset::KerasTorch | Preset::Torchvision => {
            rgb_only(if p == Preset::KerasTorch {
                "keras_torch"
            } else {
                "torchvision"
            })?;
            (
                true,
                Some(vec![0.485, 0.456, 0.406]),
                Some(vec![0.229, 0.224, 0.225]),
                ChannelOrder::Rgb,
            )
        }
        Preset::KerasCaffe => {
            rgb_only("keras_caffe")?;
            (
                false,
                Some(vec![103.939, 116.779, 123.68]),
                None,
                ChannelOrder::Bgr,
            )
        }
        Preset::None => (false, None, None, ChannelOrder::Rgb),
    })
}

/// Fills `données.image`'s explicit keys from its `preprocess` preset (in the YAML, before it is
/// read): a key left out takes the preset's value, a key given must equal it (`std: [1, 1, 1]`
/// equals an unset std). Returns (key, message) on a contradiction.
pub fn expand_preset(
    image: &mut serde_yaml_ng::Mapping,
) -> std::result::Result<(), (String, String)> {
    use serde_yaml_ng::Value;
    let Some(p) = image.get("preprocess") else {
        return Ok(());
    };
    let preset: Preset = serde_yaml_ng::from_value(p.clone())
        .map_err(|e| ("données.image.preprocess".to_string(), format!("{e}")))?;
    let grayscale = image
        .get("grayscale")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let channels = if grayscale { 1 } else { 3 };
    let (normalize, mean, std, order) =
        preset_keys(preset, channels).map_err(|m| ("données.image.preprocess".to_string(), m))?;
    let name = serde_yaml_ng::to_string(&preset)
        .unwrap_or_default()
        .trim()
        .to_string();
    let floats =
        |v: &Value| -> Option<Vec<f32>> { serde_yaml_ng::from_value::<Vec<f32>>(v.clone()).ok() };
    let same_floats = |given: Option<Vec<f32>>, want: &Option<Vec<f32>>, neutral: f32| {
        let fill = |v: &Option<Vec<f32>>| v.clone().unwrap_or(vec![neutral; channels]);
        match given {
            Some(g) => {
                let w = fill(want);
                g.len() == w.len()
                    && g.iter()
                        .zip(&w)
                        .all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1.0))
            }
            None => false,
        }
    };
    let contradiction = |key: &str, given: &Value, want: String| {
        (
            format!("données.image.{key}"),
            format!(
                "{} contradicts preprocess: {name}, which means {key}: {want}: leave the key out, or drop the preset and give every key",
                serde_yaml_ng::to_string(given).unwrap_or_default().trim()
            ),
        )
    };
    let show = |v: &Option<Vec<f32>>| match v {
        Some(v) => format!("{v:?}"),
        None => "unset".into(),
    };
    let order_name = serde_yaml_ng::to_string(&order)
        .unwrap_or_default()
        .trim()
        .to_string();
    for (key, ok, want) in [
        (
            "normalize",
            image
                .get("normalize")
                .map(|v| v.as_bool() == Some(normalize)),
            normalize.to_string(),
        ),
        (
            "standardize",
            image.get("standardize").map(|v| v.as_bool() == Some(false)),
            "false".to_string(),
        ),
        (
            "mean",
            image
                .get("mean")
                .map(|v| same_floats(floats(v), &mean, 0.0)),
            show(&mean),
        ),
        (
            "std",
            image.get("std").map(|v| same_floats(floats(v), &std, 1.0)),
            show(&std),
        ),
        (
            "channel_order",
            image
                .get("channel_order")
                .map(|v| v.as_str() == Some(order_name.as_str())),
            order_name.clone(),
        ),
    ] {
        if ok == Some(false) {
            return Err(contradiction(key, &image[key], want));
        }
    }
    let set = |image: &mut serde_yaml_ng::Mapping, key: &str, v: Value| {
        image.insert(Value::String(key.into()), v);
    };
    set(image, "normalize", Value::Bool(normalize));
    set(image, "standardize", Value::Bool(false));
    let to_value = |v: &Option<Vec<f32>>| serde_yaml_ng::to_value(v).unwrap_or(Value::Null);
    if mean.is_some() {
        set(image, "mean", to_value(&mean));
    } else {
        image.remove("mean");
    }
    if std.is_some() {
        set(image, "std", to_value(&std));
    } else {
        image.remove("std");
    }
    set(image, "channel_order", Value::String(order_name));
    Ok(())
}

impl ImageConfig {
    /// A black pixel (0 in every channel) as model input, one value per channel; `None` with
    /// `standardize`, whose per-image scaling gives black no fixed value.
    pub fn black_input(&self) -> Option<Vec<f32>> {
        if self.standardize {
            return None;
        }
        let mut v = vec![0f32; self.channels() as usize];
        scale_values(&mut v, self);
        Some(v)
    }

    /// The whole preprocessing in one line, for the run record and the report header, e.g.
    /// "150 x 150 RGB, resize pil_nearest, channel order bgr, x / 255, then (x - [0.485, ...]) /
    /// [0.229, ...] per channel (preset keras_torch)".
    pub fn describe(&self) -> String {
        let mut parts = vec![format!(
            "{0} x {0} {1}",
            self.size,
            if self.grayscale { "grey" } else { "RGB" }
        )];
        parts.push(format!("resize {}", self.resize.name()));
        if !self.grayscale {
            parts.push(format!(
                "channel order {}",
                if self.channel_order == ChannelOrder::Bgr {
                    "bgr"
                } else {
                    "rgb"
                }
            ));
        }
        parts.push(if self.normalize {
            "x / 255".into()
        } else {
            "x in 0..255".into()
        });
        if self.mean.is_some() || self.std.is_some() {
            parts.push(format!(
                "then (x - {}) / {} per channel",
                self.mean.as_ref().map_or("0".into(), |m| format!("{m:?}")),
                self.std.as_ref().map_or("1".into(), |s| format!("{s:?}"))
            ));
        }
        if self.standardize {
            parts.push("then per-image standardisation".into());
        }
        let mut text = parts.join(", ");
        if let Some(p) = self.preprocess {
            text.push_str(&format!(
                " (preset {})",
                serde_yaml_ng::to_string(&p).unwrap_or_default().trim()
            ));
        }
        text
    }
}

/// Mode conversion (L, RGB, RGBA, P all end up as 8-bit grey or RGB; alpha is dropped) and the
/// resize of `données.image.resize` (the image crate's bilinear by default; PIL's and OpenCV's
/// convert to grey first, then resize, as those pipelines do), then `channel_order` and the scaling.
pub fn prepare(img: &DynamicImage, cfg: &ImageConfig) -> Prepared {
    let size = cfg.size;
    let n = (size * size) as usize;
    let (grey_u8, rgb) = resized_planes(img, cfg);
    let grey: Vec<f32> = grey_u8.iter().map(|&v| v as f32 / 255.0).collect();
    let mut input: Vec<f32> = match &rgb {
        None => grey_u8.iter().map(|&v| v as f32).collect(),
        Some(raw) => {
            let order: [usize; 3] = if cfg.channel_order == ChannelOrder::Bgr {
                [2, 1, 0]
            } else {
                [0, 1, 2]
            };
            let mut chw = vec![0f32; 3 * n];
            for i in 0..n {
                for (c, &from) in order.iter().enumerate() {
                    chw[c * n + i] = raw[i * 3 + from] as f32;
                }
            }
            chw
        }
    };
    scale_values(&mut input, cfg);
    Prepared {
        input,
        grey,
        channels: cfg.channels() as usize,
        size: size as usize,
        original_width: img.width(),
        original_height: img.height(),
    }
}

/// The image at the model's side, with `données.image.resize`'s resampler: the pixels [`prepare`]
/// scales (an image already at that side is copied as it is), grey (L) when the model takes grey, else
/// RGB.
pub fn resize_for_model(img: &DynamicImage, cfg: &ImageConfig) -> DynamicImage {
    let side = cfg.size;
    match resized_planes(img, cfg) {
        (_, Some(rgb)) => image::RgbImage::from_raw(side, side, rgb).map(DynamicImage::ImageRgb8),
        (grey, None) => image::GrayImage::from_raw(side, side, grey).map(DynamicImage::ImageLuma8),
    }
    .expect("the resize returns side x side pixels")
}

/// The resize of [`prepare`]: the grey plane at the model's side, and the RGB pixels (interleaved)
/// when the model takes colour.
fn resized_planes(img: &DynamicImage, cfg: &ImageConfig) -> (Vec<u8>, Option<Vec<u8>>) {
    let size = cfg.size;
    match cfg.resize.resampler() {
        None => {
            let resized = img.resize_exact(size, size, cfg.resize.filter());
            let grey = resized.to_luma8().into_raw();
            let rgb = (!cfg.grayscale).then(|| resized.to_rgb8().into_raw());
            (grey, rgb)
        }
        Some(r) => {
            let (w, h) = (img.width() as usize, img.height() as usize);
            let s = size as usize;
            let src = img.to_rgb8().into_raw();
            let luma = match r {
                Resampler::Pil(_) => resize::pil_luma,
                Resampler::OpenCv(_) => resize::opencv_luma,
            };
            if cfg.grayscale {
                // A grey source (L) converts to RGB and back unchanged: R = G = B.
                let grey = match img {
                    DynamicImage::ImageLuma8(g) => g.as_raw().clone(),
                    _ => luma(&src),
                };
                (resize::resize_plane(&grey, w, h, s, s, r), None)
            } else {
                let rgb = resize::resize_channels(&src, w, h, 3, s, s, r);
                (luma(&rgb), Some(rgb))
            }
        }
    }
}

/// `normalize`, then the per-channel `mean` / `std`, then `standardize`, in place, on raw 0..255
/// values laid out channel-first (C x H x W, `cfg.channels()` channels).
pub fn scale_values(values: &mut [f32], cfg: &ImageConfig) {
    if cfg.normalize {
        values.iter_mut().for_each(|v| *v /= 255.0);
    }
    if cfg.mean.is_some() || cfg.std.is_some() {
        let channels = cfg.channels() as usize;
        let plane = values.len() / channels.max(1);
        for (c, chunk) in values.chunks_mut(plane.max(1)).enumerate().take(channels) {
            let m = cfg.mean.as_ref().map_or(0.0, |m| m[c]);
            let s = cfg.std.as_ref().map_or(1.0, |s| s[c]);
            chunk.iter_mut().for_each(|v| *v = (*v - m) / s);
        }
    }
    if cfg.standardize {
        standardize(values);
    }
}

/// Zero mean, unit (population) standard deviation over all pixels and channels. A constant image
/// has std 0: it is only centred, never divided by zero.
pub fn standardize(values: &mut [f32]) {
    if values.is_empty() {
        return;
    }
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let std = var.sqrt();
    let scale = if std > 1e-12 { 1.0 / std } else { 1.0 };
    values
        .iter_mut()
        .for_each(|v| *v = ((*v as f64 - mean) * scale) as f32);
}

/// Stacks prepared images into x [N, C, S, S] (on the CPU).
pub fn stack_inputs(prepared: &[&Prepared]) -> Tensor {
    let Some(first) = prepared.first() else {
        return Tensor::zeros([0], (Kind::Float, Device::Cpu));
    };
    let (c, s) = (first.channels as i64, first.size as i64);
    let flat: Vec<f32> = prepared
        .iter()
        .flat_map(|p| p.input.iter().copied())
        .collect();
    Tensor::from_slice(&flat).view([prepared.len() as i64, c, s, s])
}

/// Decodes and prepares `samples` in parallel (rayon), calling `tick` once per sample; the images
/// that cannot be read come back as skipped records with their reason.
pub fn prepare_samples(
    samples: &[Sample],
    cfg: &ImageConfig,
    limits: Limits,
    tick: &(dyn Fn() + Sync),
) -> (Vec<(Sample, String, Prepared)>, Vec<Skipped>) {
    let results: Vec<_> = samples
        .par_iter()
        .map(|s| {
            let r = dataset::read_image(&s.path, limits)
                .map(|d| (d.id.clone(), prepare(&d.image, cfg)));
            tick();
            (s.clone(), r)
        })
        .collect();
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    for (s, r) in results {
        match r {
            Ok((id, p)) => ok.push((s, id, p)),
            Err(reason) => skipped.push(Skipped {
                path: s.path,
                reason,
            }),
        }
    }
    (ok, skipped)
}

/// A labelled image set as tensors: x [N, C, S, S], y [N] (class indices).
pub struct LabelledTensors {
    pub x: Tensor,
    pub y: Tensor,
}

impl LabelledTensors {
    pub fn len(&self) -> usize {
        self.x.size()[0] as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class indices as a Vec.
    pub fn labels(&self) -> Result<Vec<usize>> {
        Ok(Vec::<i64>::try_from(&self.y)?
            .into_iter()
            .map(|l| l as usize)
            .collect())
    }
}

/// A class-folder image set (`dir/<class>/*`) as tensors, with the image ids in row order, the
/// images that could not be read, and the files that are not images.
pub struct LabelledSet {
    pub tensors: LabelledTensors,
    pub ids: Vec<String>,
    /// The image files, in row order (as found under the folder).
    pub paths: Vec<std::path::PathBuf>,
    pub skipped: Vec<Skipped>,
    pub not_images: Vec<Skipped>,
}

/// Reads a class-folder image set into tensors; an empty result is an error.
pub fn labelled_set(
    dir: &std::path::Path,
    classes: &[String],
    cfg: &ImageConfig,
    limits: Limits,
    tick: &(dyn Fn() + Sync),
) -> Result<LabelledSet> {
    let ds = Dataset::scan(dir, classes)?;
    let (ok, skipped) = prepare_samples(&ds.samples, cfg, limits, tick);
    if ok.is_empty() {
        return Err(Error::Dataset {
            path: dir.to_path_buf(),
            message: "no usable images".into(),
        });
    }
    let refs: Vec<&Prepared> = ok.iter().map(|(_, _, p)| p).collect();
    let x = stack_inputs(&refs);
    let y: Vec<i64> = ok
        .iter()
        .map(|(s, _, _)| s.label.unwrap_or(0) as i64)
        .collect();
    Ok(LabelledSet {
        tensors: LabelledTensors {
            x,
            y: Tensor::from_slice(&y),
        },
        ids: ok.iter().map(|(_, id, _)| id.clone()).collect(),
        paths: ok.iter().map(|(s, _, _)| s.path.clone()).collect(),
        skipped,
        not_images: ds.skipped,
    })
}
