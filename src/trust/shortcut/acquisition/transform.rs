//! The acquisition counterfactuals: transformations of an image toward another acquisition (added or
//! removed noise, histogram matching, blur or unsharp masking, down- and up-sampling, JPEG
//! re-compression, a stretched aspect ratio, padding or cropping, a left-right flip). The ones on the
//! source file run at its own size before the model's resize; the others run on the pixels at the
//! model's side, as 8-bit values, as a scanner's output would be.
use image::{DynamicImage, GenericImageView, ImageBuffer, Luma, Rgb};
use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::measure::{noise_sigma, Grey};
use crate::preprocess::{resize_for_model, ImageConfig};

/// One transformation with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Transform {
    /// Gaussian noise of this sigma (grey levels), the same on every channel of a pixel.
    AddNoise { sigma: f64 },
    /// An edge-preserving (bilateral) filter, `passes` times; its range is 2.5 x the image's own noise
    /// estimate, so it takes off noise and keeps edges.
    Denoise { passes: usize },
    /// Histogram matching to a class's pooled grey-level distribution (256-bin cumulative shares).
    MatchHistogram { target_cdf: Vec<f64> },
    /// Gaussian blur of this sigma (pixels at the model's side).
    Blur { sigma: f64 },
    /// Unsharp masking: x + amount (x - blur_1px(x)).
    Sharpen { amount: f64 },
    /// Down-sampling of the source by `ratio`, then up-sampling back to its size.
    Resample { ratio: f64 },
    /// Re-compression of the source as a JPEG of this quality.
    Jpeg { quality: u8 },
    /// The source's width multiplied by `factor` (its height kept).
    Stretch { factor: f64 },
    /// The source's sides times `scale`: padded with its own background above 1 (its border's grey and
    /// noise level), cropped to the centre below.
    Frame { scale: f64 },
    /// Mirrored left-right.
    Flip,
}

impl Transform {
    /// In words, for the table ("Gaussian noise, sigma 9.8 grey levels").
    pub fn describe(&self) -> String {
        match self {
            Transform::AddNoise { sigma } => {
                format!("added Gaussian noise, sigma {sigma:.1} grey levels")
            }
            Transform::Denoise { passes } => {
                format!("edge-preserving denoising, {passes} pass(es)")
            }
            Transform::MatchHistogram { .. } => "grey-level histogram matching".into(),
            Transform::Blur { sigma } => format!("Gaussian blur, sigma {sigma:.1} px"),
            Transform::Sharpen { amount } => format!("unsharp mask, amount {amount:.2}"),
            Transform::Resample { ratio } => {
                format!("down-sampled by {ratio:.2} and up-sampled back")
            }
            Transform::Jpeg { quality } => format!("JPEG re-compression at quality {quality}"),
            Transform::Stretch { factor } => format!("width stretched by {factor:.2}"),
            Transform::Frame { scale } if *scale >= 1.0 => {
                format!("padded to {scale:.2} x the side")
            }
            Transform::Frame { scale } => format!("cropped to {scale:.2} x the side"),
            Transform::Flip => "left-right flip".into(),
        }
    }

    /// The stored name of the transformation.
    pub fn name(&self) -> &'static str {
        match self {
            Transform::AddNoise { .. } => "add_noise",
            Transform::Denoise { .. } => "denoise",
            Transform::MatchHistogram { .. } => "match_histogram",
            Transform::Blur { .. } => "blur",
            Transform::Sharpen { .. } => "sharpen",
            Transform::Resample { .. } => "resample",
            Transform::Jpeg { .. } => "jpeg",
            Transform::Stretch { .. } => "stretch",
            Transform::Frame { .. } => "frame",
            Transform::Flip => "flip",
        }
    }

    /// The one number of its strength (NULL for a flip and a histogram).
    pub fn strength(&self) -> Option<f64> {
        match self {
            Transform::AddNoise { sigma } => Some(*sigma),
            Transform::Denoise { passes } => Some(*passes as f64),
            Transform::Blur { sigma } => Some(*sigma),
            Transform::Sharpen { amount } => Some(*amount),
            Transform::Resample { ratio } => Some(*ratio),
            Transform::Jpeg { quality } => Some(*quality as f64),
            Transform::Stretch { factor } => Some(*factor),
            Transform::Frame { scale } => Some(*scale),
            Transform::MatchHistogram { .. } | Transform::Flip => None,
        }
    }

    /// The transformed image at the model's side (8-bit, ready for [`crate::preprocess::prepare`]).
    /// `model_side` = `source` resized to the model's side (what the pixel transformations start
    /// from); `rng` draws the noise.
    pub fn apply(
        &self,
        source: &DynamicImage,
        model_side: &DynamicImage,
        cfg: &ImageConfig,
        rng: &mut impl Rng,
    ) -> DynamicImage {
        match self {
            Transform::Resample { ratio } => {
                let (w, h) = source.dimensions();
                let (dw, dh) = (
                    ((w as f64 / ratio).round() as u32).max(1),
                    ((h as f64 / ratio).round() as u32).max(1),
                );
                let filter = image::imageops::FilterType::Triangle;
                let small = source.resize_exact(dw, dh, filter);
                resize_for_model(&small.resize_exact(w, h, filter), cfg)
            }
            Transform::Jpeg { quality } => resize_for_model(&recompress(source, *quality), cfg),
            Transform::Stretch { factor } => {
                let (w, h) = source.dimensions();
                let nw = ((w as f64 * factor).round() as u32).max(1);
                let s = source.resize_exact(nw, h, image::imageops::FilterType::Triangle);
                resize_for_model(&s, cfg)
            }
            Transform::Frame { scale } => resize_for_model(&frame(source, *scale, rng), cfg),
            Transform::Flip => resize_for_model(&source.fliph(), cfg),
            _ => {
                let mut p = Pixels::of(model_side, cfg.grayscale);
                match self {
                    Transform::AddNoise { sigma } => p.add_noise(*sigma, rng),
                    Transform::Denoise { passes } => {
                        for _ in 0..*passes {
                            p.denoise();
                        }
                    }
                    Transform::MatchHistogram { target_cdf } => p.match_histogram(target_cdf),
                    Transform::Blur { sigma } => p.blur(*sigma),
                    Transform::Sharpen { amount } => p.sharpen(*amount),
                    _ => unreachable!("source transformations are handled above"),
                }
                p.image()
            }
        }
    }
}

/// The source re-encoded as a JPEG of `quality` and decoded again (grey files stay grey).
pub fn recompress(source: &DynamicImage, quality: u8) -> DynamicImage {
    let img = if source.color().channel_count() <= 2 {
        DynamicImage::ImageLuma8(source.to_luma8())
    } else {
        DynamicImage::ImageRgb8(source.to_rgb8())
    };
    let mut bytes = Vec::new();
    let encoded =
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality).encode_image(&img);
    match encoded
        .ok()
        .and_then(|_| image::load_from_memory(&bytes).ok())
    {
        Some(d) => d,
        None => img,
    }
}

/// Padded (scale > 1) with the image's own background: the median of its border's pixels plus noise of
/// its own noise level (a flat fill would take the acquisition's noise off the padding), or
/// centre-cropped (scale < 1).
fn frame(source: &DynamicImage, scale: f64, rng: &mut impl Rng) -> DynamicImage {
    let rgb = source.to_rgb8();
    let (w, h) = rgb.dimensions();
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    );
    let out = if scale >= 1.0 {
        let mut border: Vec<[u8; 3]> = (0..w)
            .flat_map(|x| [(x, 0), (x, h - 1)])
            .chain((0..h).flat_map(|y| [(0, y), (w - 1, y)]))
            .map(|(x, y)| rgb.get_pixel(x, y).0)
            .collect();
        border.sort_by_key(|p| p[0] as u32 + p[1] as u32 + p[2] as u32);
        let fill = border[border.len() / 2];
        let sigma = noise_sigma(&Grey::of(source)) as f32;
        let noise = Normal::new(0.0f32, sigma.max(1e-3)).expect("a positive sigma");
        let mut canvas = ImageBuffer::from_fn(nw, nh, |_, _| {
            let e = if sigma > 0.0 { noise.sample(rng) } else { 0.0 };
            Rgb(fill.map(|v| (v as f32 + e).round().clamp(0.0, 255.0) as u8))
        });
        image::imageops::overlay(
            &mut canvas,
            &rgb,
            ((nw - w) / 2) as i64,
            ((nh - h) / 2) as i64,
        );
        canvas
    } else {
        image::imageops::crop_imm(&rgb, (w - nw) / 2, (h - nh) / 2, nw, nh).to_image()
    };
    if source.color().channel_count() <= 2 {
        DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(out).to_luma8())
    } else {
        DynamicImage::ImageRgb8(out)
    }
}

/// An image at the model's side, channel-last, 0..255 as f32 (one grey or three RGB channels).
#[derive(Clone, Debug)]
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub values: Vec<f32>,
}

impl Pixels {
    pub fn of(img: &DynamicImage, grey: bool) -> Pixels {
        let (width, height) = (img.width() as usize, img.height() as usize);
        let (channels, values) = if grey {
            (1, img.to_luma8().into_raw())
        } else {
            (3, img.to_rgb8().into_raw())
        };
        Pixels {
            width,
            height,
            channels,
            values: values.into_iter().map(f32::from).collect(),
        }
    }

    /// Rounded to 8 bits.
    pub fn image(&self) -> DynamicImage {
        let raw: Vec<u8> = self
            .values
            .iter()
            .map(|v| v.round().clamp(0.0, 255.0) as u8)
            .collect();
        let (w, h) = (self.width as u32, self.height as u32);
        if self.channels == 1 {
            DynamicImage::ImageLuma8(
                ImageBuffer::<Luma<u8>, _>::from_raw(w, h, raw).expect("w x h values"),
            )
        } else {
            DynamicImage::ImageRgb8(
                ImageBuffer::<Rgb<u8>, _>::from_raw(w, h, raw).expect("w x h x 3 values"),
            )
        }
    }

    /// The per-pixel mean of the channels.
    fn grey(&self) -> Grey {
        let c = self.channels;
        Grey {
            width: self.width,
            height: self.height,
            values: self
                .values
                .chunks(c)
                .map(|p| p.iter().sum::<f32>() / c as f32)
                .collect(),
        }
    }

    fn add_noise(&mut self, sigma: f64, rng: &mut impl Rng) {
        let Ok(n) = Normal::new(0.0f32, sigma as f32) else {
            return;
        };
        for px in self.values.chunks_mut(self.channels) {
            let e = n.sample(rng);
            px.iter_mut().for_each(|v| *v = (*v + e).clamp(0.0, 255.0));
        }
    }

    /// One bilateral pass: 5 x 5 window, spatial sigma 1 px, range sigma 2.5 x the image's noise
    /// estimate (at least 1 grey level), weights from the channels' mean.
    fn denoise(&mut self) {
        let g = self.grey();
        let sr = (2.5 * noise_sigma(&g)).max(1.0) as f32;
        let (w, h, c) = (self.width, self.height, self.channels);
        // Range weights per whole grey level of difference, spatial weights per offset.
        let range: Vec<f32> = (0..256)
            .map(|d| (-((d * d) as f32) / (2.0 * sr * sr)).exp())
            .collect();
        let mut out = self.values.clone();
        for y in 0..h {
            for x in 0..w {
                let centre = g.values[y * w + x];
                let mut acc = [0f32; 3];
                let mut wsum = 0f32;
                for dy in -2isize..=2 {
                    for dx in -2isize..=2 {
                        let (xx, yy) = (x as isize + dx, y as isize + dy);
                        if xx < 0 || yy < 0 || xx >= w as isize || yy >= h as isize {
                            continue;
                        }
                        let j = yy as usize * w + xx as usize;
                        let d = (g.values[j] - centre).abs().round().min(255.0) as usize;
                        let wt = SPATIAL[((dy + 2) * 5 + dx + 2) as usize] * range[d];
                        wsum += wt;
                        for (ch, a) in acc.iter_mut().enumerate().take(c) {
                            *a += wt * self.values[j * c + ch];
                        }
                    }
                }
                for (ch, a) in acc.iter().enumerate().take(c) {
                    out[(y * w + x) * c + ch] = a / wsum;
                }
            }
        }
        self.values = out;
    }

    fn match_histogram(&mut self, target_cdf: &[f64]) {
        let g = self.grey();
        let mut hist = [0f64; 256];
        for &v in &g.values {
            hist[v.round().clamp(0.0, 255.0) as usize] += 1.0;
        }
        let n = g.values.len().max(1) as f64;
        let mut below = 0.0;
        let mut lut = [0f32; 256];
        for (v, l) in lut.iter_mut().enumerate() {
            // Mid-rank share of this level, then the target level at that share.
            let p = (below + hist[v] / 2.0) / n;
            below += hist[v];
            *l = target_cdf.iter().position(|&c| c >= p).unwrap_or(255) as f32;
        }
        for v in &mut self.values {
            *v = lut[v.round().clamp(0.0, 255.0) as usize];
        }
    }

    fn blur(&mut self, sigma: f64) {
        self.values = crate::imageops::gaussian_blur(
            &self.values,
            self.width,
            self.height,
            self.channels,
            sigma as f32,
        );
    }

    fn sharpen(&mut self, amount: f64) {
        let b = crate::imageops::gaussian_blur(
            &self.values,
            self.width,
            self.height,
            self.channels,
            1.0,
        );
        let a = amount as f32;
        for (v, bv) in self.values.iter_mut().zip(b) {
            *v = (*v + a * (*v - bv)).clamp(0.0, 255.0);
        }
    }
}

/// exp(-(dx^2 + dy^2) / 2) over the bilateral filter's 5 x 5 window, row-major.
const SPATIAL: [f32; 25] = {
    let e1 = 0.606_530_66; // exp(-1/2)
    let e2 = 0.367_879_44; // exp(-1)
    let e4 = 0.135_335_28; // exp(-2)
    let e5 = 0.082_085; // exp(-5/2)
    let e8 = 0.018_315_639; // exp(-4)
    [
        e8, e5, e4, e5, e8, //
        e5, e2, e1, e2, e5, //
        e4, e1, 1.0, e1, e4, //
        e5, e2, e1, e2, e5, //
        e8, e5, e4, e5, e8,
    ]
};

/// The cumulative shares of a 256-bin histogram.
pub fn cdf(hist: &[f64; 256]) -> Vec<f64> {
    let total: f64 = hist.iter().sum::<f64>().max(1.0);
    let mut acc = 0.0;
    hist.iter()
        .map(|h| {
            acc += h;
            acc / total
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::{prepare, ResizeFilter};
    use image::GrayImage;
    use rand::SeedableRng;

    fn cfg(size: u32) -> ImageConfig {
        ImageConfig {
            size,
            normalize: true,
            standardize: false,
            grayscale: true,
            resize: ResizeFilter::Bilinear,
            preprocess: None,
            channel_order: Default::default(),
            mean: None,
            std: None,
        }
    }

    #[test]
    fn the_model_side_image_is_what_prepare_resizes_to_with_every_resampler() {
        // A counterfactual on the model-side pixels starts from them: the same as `prepare`'s own
        // resize, for the image crate's filters and for PIL's and OpenCV's exact ones, grey and RGB.
        let src = DynamicImage::ImageRgb8(image::RgbImage::from_fn(57, 43, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x * y) % 251) as u8])
        }));
        for resize in [
            ResizeFilter::Bilinear,
            ResizeFilter::PilBicubic,
            ResizeFilter::OpencvLinear,
        ] {
            for grayscale in [true, false] {
                let c = ImageConfig {
                    resize,
                    grayscale,
                    ..cfg(24)
                };
                let side = resize_for_model(&src, &c);
                assert_eq!((side.width(), side.height()), (24, 24));
                let (direct, again) = (prepare(&src, &c), prepare(&side, &c));
                assert_eq!(direct.input, again.input, "{resize:?} grey {grayscale}");
                assert_eq!(direct.grey, again.grey, "{resize:?} grey {grayscale}");
            }
        }
    }

    fn disc(side: u32) -> DynamicImage {
        DynamicImage::ImageLuma8(GrayImage::from_fn(side, side, |x, y| {
            let (dx, dy) = (x as f32 - side as f32 / 2.0, y as f32 - side as f32 / 2.0);
            Luma([if dx * dx + dy * dy < (side as f32 / 3.0).powi(2) {
                180
            } else {
                10
            }])
        }))
    }

    #[test]
    fn noise_then_denoising_moves_the_noise_estimate_both_ways() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let c = cfg(64);
        let src = disc(64);
        let clean = noise_sigma(&Grey::of(&src));
        let noisy = Transform::AddNoise { sigma: 10.0 }.apply(
            &src,
            &resize_for_model(&src, &c),
            &c,
            &mut rng,
        );
        let s = noise_sigma(&Grey::of(&noisy));
        assert!(clean < 1.0 && (s - 10.0).abs() < 2.0, "{clean} -> {s}");
        let back = Transform::Denoise { passes: 2 }.apply(&noisy, &noisy, &c, &mut rng);
        let d = noise_sigma(&Grey::of(&back));
        assert!(d < 0.5 * s, "denoised {d} from {s}");
    }

    #[test]
    fn histogram_matching_takes_the_target_distribution() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let c = cfg(32);
        let src = disc(32);
        // The target: everything 40 grey levels brighter.
        let bright = DynamicImage::ImageLuma8(GrayImage::from_fn(32, 32, |x, y| {
            Luma([src.to_luma8().get_pixel(x, y).0[0] + 40])
        }));
        let mut hist = [0f64; 256];
        for p in bright.to_luma8().pixels() {
            hist[p.0[0] as usize] += 1.0;
        }
        let t = Transform::MatchHistogram {
            target_cdf: cdf(&hist),
        };
        let out = t.apply(&src, &resize_for_model(&src, &c), &c, &mut rng);
        assert_eq!(out.to_luma8(), bright.to_luma8());
    }

    #[test]
    fn source_transformations_keep_the_model_side_and_move_what_they_should() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let c = cfg(32);
        let src = disc(96);
        for t in [
            Transform::Resample { ratio: 3.0 },
            Transform::Jpeg { quality: 30 },
            Transform::Stretch { factor: 1.3 },
            Transform::Frame { scale: 1.4 },
            Transform::Frame { scale: 0.8 },
            Transform::Flip,
            Transform::Blur { sigma: 1.0 },
            Transform::Sharpen { amount: 1.0 },
        ] {
            let out = t.apply(&src, &resize_for_model(&src, &c), &c, &mut rng);
            assert_eq!((out.width(), out.height()), (32, 32), "{t:?}");
        }
        // Padding adds background, cropping takes it off.
        let dark = |img: &DynamicImage| img.to_luma8().pixels().filter(|p| p.0[0] <= 25).count();
        let side = resize_for_model(&src, &c);
        let framed = |scale: f64, rng: &mut rand_chacha::ChaCha8Rng| {
            dark(&Transform::Frame { scale }.apply(&src, &side, &c, rng))
        };
        let base = dark(&side);
        assert!(framed(1.4, &mut rng) > base);
        assert!(framed(0.8, &mut rng) < base);
        // A flip of a left-bright image is right-bright.
        let half = DynamicImage::ImageLuma8(GrayImage::from_fn(32, 32, |x, _| {
            Luma([if x < 16 { 200 } else { 0 }])
        }));
        let f = Transform::Flip.apply(&half, &half, &c, &mut rng).to_luma8();
        assert_eq!((f.get_pixel(0, 0).0[0], f.get_pixel(31, 0).0[0]), (0, 200));
    }
}
