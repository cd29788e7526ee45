//! Decoded image -> model input, exactly as the notebook's `données.image` keys mean:
//! resize to size x size, `normalize` = /255, `standardize` = per-image zero mean and unit std,
//! `grayscale` = one channel; `mean` / `std` = per-channel scaling after `normalize` (torchvision's
//! `Normalize`, for models trained with ImageNet statistics); then images stacked into model-input
//! tensors.
use image::imageops::FilterType;
use image::DynamicImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::dataset::{self, Dataset, Limits, Sample, Skipped};
use crate::error::{Error, Result};

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
    #[serde(default, skip_serializing_if = "ResizeFilter::is_default")]
    pub resize: ResizeFilter,
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
/// pipeline decides: maps move measurably with the filter alone. Shrinking widens the filter to the
/// scale (antialiased, as PIL does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    /// Bilinear (TensorFlow's default resize method, which the notebook used).
    #[default]
    Bilinear,
    /// Bicubic (Catmull-Rom, a = -0.5): PIL's default for `Image.resize`.
    Bicubic,
    Nearest,
    Lanczos3,
}

impl ResizeFilter {
    pub fn is_default(&self) -> bool {
        *self == ResizeFilter::default()
    }

    fn filter(self) -> FilterType {
        match self {
            ResizeFilter::Bilinear => FilterType::Triangle,
            ResizeFilter::Bicubic => FilterType::CatmullRom,
            ResizeFilter::Nearest => FilterType::Nearest,
            ResizeFilter::Lanczos3 => FilterType::Lanczos3,
        }
    }
}

/// Mode conversion (L, RGB, RGBA, P all end up as 8-bit grey or RGB; alpha is dropped) and the
/// resize of `données.image.resize` (bilinear by default).
pub fn prepare(img: &DynamicImage, cfg: &ImageConfig) -> Prepared {
    let size = cfg.size;
    let resized = resize_for_model(img, cfg);
    let grey_u8 = resized.to_luma8();
    let grey: Vec<f32> = grey_u8.as_raw().iter().map(|&v| v as f32 / 255.0).collect();
    let n = (size * size) as usize;
    let mut input: Vec<f32> = if cfg.grayscale {
        grey_u8.as_raw().iter().map(|&v| v as f32).collect()
    } else {
        let rgb = resized.to_rgb8();
        let raw = rgb.as_raw();
        let mut chw = vec![0f32; 3 * n];
        for i in 0..n {
            for c in 0..3 {
                chw[c * n + i] = raw[i * 3 + c] as f32;
            }
        }
        chw
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

/// The image at the model's side, with `données.image.resize`'s filter: the pixels [`prepare`] scales
/// (an image already at that side is copied as it is).
pub fn resize_for_model(img: &DynamicImage, cfg: &ImageConfig) -> DynamicImage {
    img.resize_exact(cfg.size, cfg.size, cfg.resize.filter())
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
        skipped,
        not_images: ds.skipped,
    })
}
