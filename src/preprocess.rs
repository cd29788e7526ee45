//! Decoded image -> model input, exactly as the notebook's `données.image` keys mean:
//! resize to size x size, `normalize` = /255, `standardize` = per-image zero mean and unit std,
//! `grayscale` = one channel. Pure functions; the tensor is built by the caller.
use image::imageops::FilterType;
use image::DynamicImage;
use serde::{Deserialize, Serialize};

use crate::config::ImageConfig;

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
    let resized = img.resize_exact(size, size, cfg.resize.filter());
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

/// `normalize` then `standardize`, in place, on raw 0..255 values.
pub fn scale_values(values: &mut [f32], cfg: &ImageConfig) {
    if cfg.normalize {
        values.iter_mut().for_each(|v| *v /= 255.0);
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
