//! What an image's acquisition looks like, measured per image: its source file (size, aspect, grey or
//! RGB, JPEG and the quality its quantisation table implies) and its pixels as the model sees them
//! (noise, mean intensity, contrast, sharpness, background share), and how a property's values
//! differ between two classes (medians, quartiles, and the rank separation).
use image::DynamicImage;

/// A grey image, row-major, values 0..255 (as f32).
#[derive(Clone, Debug, PartialEq)]
pub struct Grey {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

impl Grey {
    pub fn of(img: &DynamicImage) -> Grey {
        let l = img.to_luma8();
        Grey {
            width: l.width() as usize,
            height: l.height() as usize,
            values: l.as_raw().iter().map(|&v| v as f32).collect(),
        }
    }

    fn at(&self, x: usize, y: usize) -> f32 {
        self.values[y * self.width + x]
    }
}

/// One image's measured acquisition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageAcquisition {
    pub source_width: f64,
    pub source_height: f64,
    /// Width over height of the source.
    pub aspect: f64,
    /// 1 when the file decodes to one grey channel.
    pub grey_file: f64,
    /// 1 when the pixels have colour (RGB channels that differ by more than 2 grey levels on average).
    pub colour: f64,
    /// 1 for a JPEG file (by content).
    pub jpeg: f64,
    /// The IJG quality (1..100) the file's luminance quantisation table is closest to; JPEG only.
    pub jpeg_quality: Option<f64>,
    /// Noise standard deviation, grey levels (the model's side).
    pub noise: f64,
    /// Mean grey level (the model's side).
    pub intensity: f64,
    /// Standard deviation of the grey levels (the model's side).
    pub contrast: f64,
    /// Edge steepness, % of the grey range per pixel (the model's side).
    pub sharpness: f64,
    /// Share of background pixels (the model's side): at most 15% of the grey range above the darkest
    /// level of the 3 x 3 median-filtered image.
    pub background: f64,
}

/// The properties of the class-difference table: (name, unit, what it is). Every one has a value
/// per image ([`ImageAcquisition::value`]), `jpeg_quality` only for JPEG files.
pub const PROPERTIES: [(&str, &str, &str); 12] = [
    ("source_width", "px", "width of the source file"),
    ("source_height", "px", "height of the source file"),
    ("aspect", "w/h", "aspect ratio of the source file"),
    (
        "grey_file",
        "share",
        "share of files decoded as one grey channel",
    ),
    ("colour", "share", "share of images with colour content"),
    ("jpeg", "share", "share of JPEG files (by content)"),
    (
        "jpeg_quality",
        "IJG quality",
        "JPEG quality implied by the luminance quantisation table",
    ),
    (
        "noise",
        "grey levels",
        "noise standard deviation at the model's side (Immerkaer's estimator off edges)",
    ),
    (
        "intensity",
        "grey level",
        "mean grey level at the model's side",
    ),
    (
        "contrast",
        "grey levels",
        "standard deviation of the grey levels at the model's side",
    ),
    (
        "sharpness",
        "% of range / px",
        "steepest tenth of the edges of the median-filtered image, over its grey range",
    ),
    (
        "background",
        "share",
        "share of background pixels at the model's side (within 15% of the grey range above the darkest level, median-filtered)",
    ),
];

impl ImageAcquisition {
    /// The value of property `name` (see [`PROPERTIES`]).
    pub fn value(&self, name: &str) -> Option<f64> {
        Some(match name {
            "source_width" => self.source_width,
            "source_height" => self.source_height,
            "aspect" => self.aspect,
            "grey_file" => self.grey_file,
            "colour" => self.colour,
            "jpeg" => self.jpeg,
            "jpeg_quality" => return self.jpeg_quality,
            "noise" => self.noise,
            "intensity" => self.intensity,
            "contrast" => self.contrast,
            "sharpness" => self.sharpness,
            "background" => self.background,
            _ => return None,
        })
    }
}

/// Measures one image: `bytes` its file, `source` the decoded file, `model_side` the image resized to
/// the model's side.
pub fn measure(bytes: &[u8], source: &DynamicImage, model_side: &DynamicImage) -> ImageAcquisition {
    let (w, h) = (source.width() as f64, source.height() as f64);
    let is_jpeg = bytes.starts_with(&[0xFF, 0xD8]);
    let g = Grey::of(model_side);
    let (intensity, contrast) = mean_std(&g.values);
    ImageAcquisition {
        source_width: w,
        source_height: h,
        aspect: w / h.max(1.0),
        grey_file: (source.color().channel_count() <= 2) as u8 as f64,
        colour: has_colour(source) as u8 as f64,
        jpeg: is_jpeg as u8 as f64,
        jpeg_quality: if is_jpeg {
            jpeg_quality(bytes).map(f64::from)
        } else {
            None
        },
        noise: noise_sigma(&g),
        intensity,
        contrast,
        sharpness: sharpness(&g),
        background: background_share(&g),
    }
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// RGB pixels whose channels differ by more than 2 grey levels on average (a grey scan stored as RGB
/// has none).
fn has_colour(img: &DynamicImage) -> bool {
    if img.color().channel_count() <= 2 {
        return false;
    }
    let rgb = img.to_rgb8();
    let n = (rgb.width() * rgb.height()).max(1) as f64;
    let spread: f64 = rgb
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(i32::from);
            ((r - g).abs().max((g - b).abs()).max((r - b).abs())) as f64
        })
        .sum();
    spread / n > 2.0
}

/// The JPEG standard's luminance quantisation table (Annex K.1), row-major.
const STD_LUMINANCE: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/// Row-major index of the k-th coefficient in zig-zag order (the order of a DQT segment).
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// The IJG (libjpeg) luminance table of quality `q`, in zig-zag order.
fn ijg_table(q: u32) -> [u32; 64] {
    let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
    let mut t = [0u32; 64];
    for (k, v) in t.iter_mut().enumerate() {
        *v = ((STD_LUMINANCE[ZIGZAG[k]] as u32 * scale + 50) / 100).clamp(1, 255);
    }
    t
}

/// The first quantisation table (id 0, luminance) of a JPEG file's DQT segments, zig-zag order.
fn luminance_table(bytes: &[u8]) -> Option<[u32; 64]> {
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        // Start of scan or end of image: no table before the image data.
        if marker == 0xDA || marker == 0xD9 {
            return None;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        let end = (i + 2 + len).min(bytes.len());
        if marker == 0xDB {
            let mut j = i + 4;
            while j < end {
                let (precision, id) = (bytes[j] >> 4, bytes[j] & 0x0F);
                let width = if precision == 0 { 1 } else { 2 };
                if j + 1 + 64 * width > end {
                    return None;
                }
                if id == 0 {
                    let mut t = [0u32; 64];
                    for (k, v) in t.iter_mut().enumerate() {
                        let at = j + 1 + k * width;
                        *v = if width == 1 {
                            bytes[at] as u32
                        } else {
                            u16::from_be_bytes([bytes[at], bytes[at + 1]]) as u32
                        };
                    }
                    return Some(t);
                }
                j += 1 + 64 * width;
            }
        }
        i += 2 + len;
    }
    None
}

/// The IJG quality 1..100 whose luminance table is closest (least absolute difference) to the file's;
/// exact for files written by libjpeg-style encoders, the nearest equivalent for others.
pub fn jpeg_quality(bytes: &[u8]) -> Option<u32> {
    let t = luminance_table(bytes)?;
    (1..=100u32).min_by_key(|&q| {
        let r = ijg_table(q);
        // Ties go to the higher quality.
        let d: u32 = t.iter().zip(&r).map(|(a, b)| a.abs_diff(*b)).sum();
        (d, 100 - q)
    })
}

/// Immerkaer's fast noise estimate (sigma = sqrt(pi/2) / 6 x mean |I * L|, L the difference of two
/// Laplacians), over the interior pixels whose gradient is not in the steepest tenth (edges would be
/// counted as noise). 0 for images under 3 x 3.
pub fn noise_sigma(g: &Grey) -> f64 {
    let (w, h) = (g.width, g.height);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let mut resp = Vec::with_capacity((w - 2) * (h - 2));
    let mut grad = Vec::with_capacity((w - 2) * (h - 2));
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let p =
                |dx: isize, dy: isize| g.at((x as isize + dx) as usize, (y as isize + dy) as usize);
            let l = p(-1, -1) - 2.0 * p(0, -1) + p(1, -1) - 2.0 * p(-1, 0) + 4.0 * p(0, 0)
                - 2.0 * p(1, 0)
                + p(-1, 1)
                - 2.0 * p(0, 1)
                + p(1, 1);
            let gx = (p(1, -1) + 2.0 * p(1, 0) + p(1, 1)) - (p(-1, -1) + 2.0 * p(-1, 0) + p(-1, 1));
            let gy = (p(-1, 1) + 2.0 * p(0, 1) + p(1, 1)) - (p(-1, -1) + 2.0 * p(0, -1) + p(1, -1));
            resp.push(l.abs() as f64);
            grad.push(gx.abs() + gy.abs());
        }
    }
    let mut sorted = grad.clone();
    sorted.sort_by(f32::total_cmp);
    let cut = sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)];
    let kept: Vec<f64> = resp
        .iter()
        .zip(&grad)
        .filter(|(_, &gr)| gr < cut || gr == 0.0)
        .map(|(&r, _)| r)
        .collect();
    if kept.is_empty() {
        return 0.0;
    }
    (std::f64::consts::PI / 2.0).sqrt() / 6.0 * kept.iter().sum::<f64>() / kept.len() as f64
}

/// 3 x 3 median (edges replicated).
pub fn median3(g: &Grey) -> Grey {
    let (w, h) = (g.width, g.height);
    let mut out = g.clone();
    let mut win = [0f32; 9];
    for y in 0..h {
        for x in 0..w {
            let mut k = 0;
            for dy in -1isize..=1 {
                for dx in -1isize..=1 {
                    let (xx, yy) = (
                        (x as isize + dx).clamp(0, w as isize - 1) as usize,
                        (y as isize + dy).clamp(0, h as isize - 1) as usize,
                    );
                    win[k] = g.at(xx, yy);
                    k += 1;
                }
            }
            win.sort_by(f32::total_cmp);
            out.values[y * w + x] = win[4];
        }
    }
    out
}

/// Edge steepness: the mean of the steepest tenth of the central-difference gradient magnitudes of the
/// 3 x 3 median-filtered image (the median takes noise off, keeps edges), as % of the image's grey
/// range (1st to 99th percentile) per pixel. Blur and down-sampling lower it; noise hardly moves it.
pub fn sharpness(g: &Grey) -> f64 {
    let (w, h) = (g.width, g.height);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let m = median3(g);
    let mut mags: Vec<f64> = Vec::with_capacity((w - 2) * (h - 2));
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let gx = (m.at(x + 1, y) - m.at(x - 1, y)) as f64 / 2.0;
            let gy = (m.at(x, y + 1) - m.at(x, y - 1)) as f64 / 2.0;
            mags.push((gx * gx + gy * gy).sqrt());
        }
    }
    mags.sort_by(f64::total_cmp);
    let top = &mags[mags.len() * 9 / 10..];
    let mean_top = top.iter().sum::<f64>() / top.len().max(1) as f64;
    let mut v = g.values.clone();
    v.sort_by(f32::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64;
    let range = (q(0.99) - q(0.01)).max(1.0);
    100.0 * mean_top / range
}

/// The share of background: pixels of the 3 x 3 median-filtered image at most 15% of its grey range
/// (1st to 99th percentile, at least 10 levels) above its 1st percentile. Relative to the image's own
/// dark level and range, and after the median, so that another scanner's noise or grey levels do not
/// read as another framing.
pub fn background_share(g: &Grey) -> f64 {
    if g.values.is_empty() {
        return 0.0;
    }
    let m = median3(g);
    let mut v = m.values.clone();
    v.sort_by(f32::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let (lo, hi) = (q(0.01), q(0.99));
    let cut = lo + 0.15 * (hi - lo).max(10.0);
    m.values.iter().filter(|&&x| x <= cut).count() as f64 / m.values.len() as f64
}

/// The rank separation of two samples: P(a > b) + P(a = b) / 2 over all pairs (the AUC of the
/// property as a classifier of the two classes): 0.5 = no difference, 0 or 1 = the property alone
/// tells the classes apart. None when a sample is empty.
pub fn separation(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut s = 0.0;
    for &x in a {
        for &y in b {
            s += if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(s / (a.len() * b.len()) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma};
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    fn jpeg_bytes(img: &DynamicImage, q: u8) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, q)
            .encode_image(img)
            .unwrap();
        out
    }

    #[test]
    fn the_jpeg_quality_is_read_back_from_the_quantisation_table() {
        let img = DynamicImage::ImageLuma8(GrayImage::from_fn(32, 24, |x, y| {
            Luma([((x * 7 + y * 3) % 256) as u8])
        }));
        for q in [20u8, 50, 75, 90, 95] {
            assert_eq!(jpeg_quality(&jpeg_bytes(&img, q)), Some(q as u32), "q {q}");
        }
        let rgb = DynamicImage::ImageRgb8(img.to_rgb8());
        assert_eq!(jpeg_quality(&jpeg_bytes(&rgb, 60)), Some(60));
        // A PNG has no table.
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(jpeg_quality(&png), None);
    }

    #[test]
    fn the_noise_estimate_recovers_added_gaussian_noise() {
        // A smooth ramp with a step edge, plus N(0, 8): the estimate is 8 within 15%; without the noise
        // it is near 0.
        let (w, h) = (96, 96);
        let clean: Vec<f32> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                60.0 + x as f32 * 0.5 + if y > 48 { 80.0 } else { 0.0 }
            })
            .collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let n = Normal::new(0.0f32, 8.0).unwrap();
        let noisy: Vec<f32> = clean.iter().map(|v| v + n.sample(&mut rng)).collect();
        let s = noise_sigma(&Grey {
            width: w,
            height: h,
            values: noisy,
        });
        assert!((s - 8.0).abs() < 1.2, "{s}");
        let s0 = noise_sigma(&Grey {
            width: w,
            height: h,
            values: clean,
        });
        assert!(s0 < 0.5, "{s0}");
    }

    #[test]
    fn blur_lowers_the_sharpness_and_noise_hardly_moves_it() {
        // A bright disc on black: a step edge all round.
        let (w, h) = (64usize, 64usize);
        let disc: Vec<f32> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 - 32.0, (i / w) as f32 - 32.0);
                if x * x + y * y < 400.0 {
                    200.0
                } else {
                    0.0
                }
            })
            .collect();
        let g = |values: Vec<f32>| Grey {
            width: w,
            height: h,
            values,
        };
        let sharp = sharpness(&g(disc.clone()));
        let blurred = sharpness(&g(crate::imageops::gaussian_blur(&disc, w, h, 1, 1.5)));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let n = Normal::new(0.0f32, 6.0).unwrap();
        let noisy = sharpness(&g(disc
            .iter()
            .map(|v| (v + n.sample(&mut rng)).clamp(0.0, 255.0))
            .collect()));
        assert!(blurred < 0.75 * sharp, "{sharp} -> blurred {blurred}");
        assert!(
            (noisy - sharp).abs() < 0.15 * sharp,
            "{sharp} -> noisy {noisy}"
        );
    }

    #[test]
    fn separation_is_the_rank_auc() {
        assert_eq!(separation(&[3.0, 4.0], &[1.0, 2.0]), Some(1.0));
        assert_eq!(separation(&[1.0, 2.0], &[3.0, 4.0]), Some(0.0));
        assert_eq!(separation(&[1.0, 3.0], &[2.0, 2.0]), Some(0.5));
        assert_eq!(separation(&[1.0], &[1.0]), Some(0.5));
        assert_eq!(separation(&[], &[1.0]), None);
    }
}
