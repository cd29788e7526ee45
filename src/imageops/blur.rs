//! Separable Gaussian blur with scipy's `reflect` borders and 4-sigma taps, the smoothing
//! scikit-image applies before segmenting; the brain mask uses the same blur on one channel.

/// scipy's `reflect` boundary mode (d c b a | a b c d | d c b a): the edge pixel is repeated,
/// which is what scikit-image uses by default, so smoothing near borders matches the reference.
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let period = 2 * n;
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - 1 - m }) as usize
}

/// Normalised 1-D Gaussian taps for offsets -r..=r, truncated at 4 sigma like scipy's default.
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let radius = (4.0 * sigma + 0.5) as usize;
    let s2 = 2.0 * sigma * sigma;
    let mut k: Vec<f32> = (0..=2 * radius)
        .map(|i| {
            let x = i as f32 - radius as f32;
            (-x * x / s2).exp()
        })
        .collect();
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    k
}

/// Separable Gaussian blur of every channel of a channel-last image; a copy when sigma <= 0.
pub fn gaussian_blur(
    img: &[f32],
    width: usize,
    height: usize,
    channels: usize,
    sigma: f32,
) -> Vec<f32> {
    if sigma <= 0.0 || !sigma.is_finite() || img.is_empty() {
        return img.to_vec();
    }
    let k = gaussian_kernel(sigma);
    let taps = k.len();
    let r = (taps / 2) as isize;
    // Reflected source index of every (position, tap) pair, computed once per axis so the inner
    // loops are plain multiply-adds instead of boundary arithmetic.
    let table = |len: usize| -> Vec<usize> {
        (0..len)
            .flat_map(|i| (0..taps).map(move |t| reflect(i as isize + t as isize - r, len)))
            .collect()
    };
    let (xs, ys) = (table(width), table(height));
    let c = channels;
    let mut tmp = vec![0f32; img.len()];
    for y in 0..height {
        let row = y * width;
        for x in 0..width {
            let src = &xs[x * taps..(x + 1) * taps];
            for ch in 0..c {
                let acc: f32 = k
                    .iter()
                    .zip(src)
                    .map(|(&kv, &xx)| kv * img[(row + xx) * c + ch])
                    .sum();
                tmp[(row + x) * c + ch] = acc;
            }
        }
    }
    let mut out = vec![0f32; img.len()];
    for y in 0..height {
        let src = &ys[y * taps..(y + 1) * taps];
        for x in 0..width {
            for ch in 0..c {
                let acc: f32 = k
                    .iter()
                    .zip(src)
                    .map(|(&kv, &yy)| kv * tmp[(yy * width + x) * c + ch])
                    .sum();
                out[(y * width + x) * c + ch] = acc;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // A Gaussian with normalised taps and reflect borders maps a constant image to itself.
    #[test]
    fn gaussian_keeps_constants() {
        let img = vec![0.4f32; 10 * 6 * 3];
        let out = gaussian_blur(&img, 10, 6, 3, 2.5);
        assert!(out.iter().all(|v| (v - 0.4).abs() < 1e-5));
        // Radius larger than the image exercises the periodic reflection.
        let out = gaussian_blur(&img, 10, 6, 3, 9.0);
        assert!(out.iter().all(|v| (v - 0.4).abs() < 1e-5));
    }

    // reflect mode repeats the edge pixel: for n = 3 the index line ... -2 -1 | 0 1 2 | 3 4 ...
    // reads 1 0 | 0 1 2 | 2 1, and the pattern has period 2n = 6.
    #[test]
    fn reflect_repeats_the_edge_pixel() {
        let got: Vec<usize> = (-4..8).map(|i| reflect(i, 3)).collect();
        assert_eq!(got, vec![2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1]);
    }

    // sigma = 1: radius trunc(4 + 0.5) = 4, so 9 taps, symmetric, summing to 1, with the centre
    // tap 1 / sum_{x=-4..4} exp(-x^2 / 2) = 1 / 2.50663 (the sum is sqrt(2 pi) to 5 digits).
    #[test]
    fn kernel_taps_are_normalised_gaussian() {
        let k = gaussian_kernel(1.0);
        assert_eq!(k.len(), 9);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(k.iter().zip(k.iter().rev()).all(|(a, b)| a == b));
        assert!((k[4] - 1.0 / 2.506_628).abs() < 1e-5, "{}", k[4]);
        // A single bright pixel spreads into the kernel itself (outer product of the taps).
        let mut img = vec![0f32; 11 * 11];
        img[5 * 11 + 5] = 1.0;
        let out = gaussian_blur(&img, 11, 11, 1, 1.0);
        assert!((out[5 * 11 + 5] - k[4] * k[4]).abs() < 1e-6);
        assert!((out[5 * 11 + 7] - k[4] * k[6]).abs() < 1e-6);
        // sigma <= 0 is a copy.
        assert_eq!(gaussian_blur(&img, 11, 11, 1, 0.0), img);
    }
}
