//! SLIC superpixels: k-means in (intensity or CIELAB colour, x, y) space from a seed grid, then
//! a connectivity clean-up so every segment is one 4-connected piece.

use super::disjoint::{DisjointSets, Edge};
use super::{feature_dist2, pixels, Segmentation};
use crate::imageops::{flood_regions, gaussian_blur, Connectivity};

/// sRGB in [0,1] to CIELAB (D65). scikit-image clusters colour images in Lab, and its default
/// compactness of 10 only makes sense on Lab's 0..100 lightness range.
fn srgb_to_lab(rgb: &[f32]) -> [f32; 3] {
    let lin = |v: f32| {
        let v = v.clamp(0.0, 1.0);
        if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    let (r, g, b) = (lin(rgb[0]), lin(rgb[1]), lin(rgb[2]));
    let x = (0.412_453 * r + 0.357_580 * g + 0.180_423 * b) / 0.950_456;
    let y = 0.212_671 * r + 0.715_160 * g + 0.072_169 * b;
    let z = (0.019_334 * r + 0.119_193 * g + 0.950_227 * b) / 1.088_754;
    let f = |t: f32| {
        if t > 0.008_856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// SLIC superpixels (k-means in (intensity/colour, x, y) space), approximately `n_segments` regions, with `compactness` (scikit-image default 10 for RGB; for single-channel images in [0,1] a value around 0.1 is sensible) and optional Gaussian pre-smoothing `sigma`. Every returned segment must be spatially connected (enforce connectivity: merge small disconnected pieces into a neighbour).
///
/// Three-channel input is treated as sRGB and clustered in CIELAB, like scikit-image; other
/// channel counts are clustered on their raw values. Panics if the buffer size is inconsistent.
pub fn slic(
    img: &[f32],
    width: usize,
    height: usize,
    channels: usize,
    n_segments: usize,
    compactness: f32,
    sigma: f32,
) -> Segmentation {
    let Some(n) = pixels(img, width, height, channels) else {
        return Segmentation::empty(width, height);
    };
    let sm = gaussian_blur(img, width, height, channels, sigma);
    let (feat, c) = if channels == 3 {
        (
            sm.chunks_exact(3)
                .flat_map(srgb_to_lab)
                .collect::<Vec<f32>>(),
            3,
        )
    } else {
        (sm, channels)
    };

    // Seed grid with the image's aspect ratio so cells are roughly square.
    let k = n_segments.clamp(1, n);
    let nx = ((k as f64 * width as f64 / height as f64).sqrt().round() as usize).clamp(1, width);
    let ny = ((k as f64 / nx as f64).round() as usize).clamp(1, height);
    let step_x = width as f32 / nx as f32;
    let step_y = height as f32 / ny as f32;
    let step = step_x.max(step_y);
    // Spatial distance is measured in units of the seed spacing, so `compactness` means the same
    // thing at any resolution and segment count.
    let spatial_w = if compactness.is_finite() && compactness > 0.0 {
        (compactness / step).powi(2)
    } else {
        0.0
    };
    let radius = step.ceil() as isize;

    let k = nx * ny;
    let mut cy = vec![0f32; k];
    let mut cx = vec![0f32; k];
    let mut cf = vec![0f32; k * c];
    for j in 0..ny {
        for i in 0..nx {
            let s = j * nx + i;
            cx[s] = (i as f32 + 0.5) * step_x - 0.5;
            cy[s] = (j as f32 + 0.5) * step_y - 0.5;
            let p = (cy[s].round() as usize).min(height - 1) * width
                + (cx[s].round() as usize).min(width - 1);
            cf[s * c..(s + 1) * c].copy_from_slice(&feat[p * c..(p + 1) * c]);
        }
    }

    // Start from the seed grid itself so a pixel that no centre's window reaches later still
    // has a sensible owner.
    let mut labels: Vec<u32> = (0..n)
        .map(|p| {
            let (x, y) = (p % width, p / width);
            let i = ((x as f32 / step_x) as usize).min(nx - 1);
            let j = ((y as f32 / step_y) as usize).min(ny - 1);
            (j * nx + i) as u32
        })
        .collect();
    let mut dist = vec![f32::INFINITY; n];
    let mut sum = vec![0f64; k * (c + 2)];
    let mut count = vec![0usize; k];
    let mut live = vec![true; k];

    const MAX_ITER: usize = 10; // scikit-image's default
    for _ in 0..MAX_ITER {
        dist.fill(f32::INFINITY);
        let mut changed = false;
        for s in 0..k {
            if !live[s] {
                continue;
            }
            let (sx, sy) = (cx[s].round() as isize, cy[s].round() as isize);
            let x0 = (sx - radius).max(0) as usize;
            let x1 = ((sx + radius).min(width as isize - 1)).max(0) as usize;
            let y0 = (sy - radius).max(0) as usize;
            let y1 = ((sy + radius).min(height as isize - 1)).max(0) as usize;
            let centre = &cf[s * c..(s + 1) * c];
            for y in y0..=y1 {
                let dy = y as f32 - cy[s];
                for x in x0..=x1 {
                    let dx = x as f32 - cx[s];
                    let p = y * width + x;
                    let d = feature_dist2(&feat[p * c..(p + 1) * c], centre)
                        + spatial_w * (dx * dx + dy * dy);
                    if d < dist[p] {
                        dist[p] = d;
                        if labels[p] != s as u32 {
                            labels[p] = s as u32;
                            changed = true;
                        }
                    }
                }
            }
        }

        sum.fill(0.0);
        count.fill(0);
        for (p, &l) in labels.iter().enumerate() {
            let l = l as usize;
            let base = l * (c + 2);
            sum[base] += (p % width) as f64;
            sum[base + 1] += (p / width) as f64;
            for ch in 0..c {
                sum[base + 2 + ch] += feat[p * c + ch] as f64;
            }
            count[l] += 1;
        }
        for s in 0..k {
            // A centre that lost every pixel has stale features and cannot meaningfully win
            // pixels back, so it is retired and simply disappears from the result.
            if count[s] == 0 {
                live[s] = false;
                continue;
            }
            let inv = 1.0 / count[s] as f64;
            let base = s * (c + 2);
            cx[s] = (sum[base] * inv) as f32;
            cy[s] = (sum[base + 1] * inv) as f32;
            for ch in 0..c {
                cf[s * c + ch] = (sum[base + 2 + ch] * inv) as f32;
            }
        }
        if !changed {
            break;
        }
    }

    // Like scikit-image (min_size_factor = 0.5), fragments under half the nominal superpixel
    // area are absorbed, so stray k-means islands do not become segments of their own.
    let min_size = ((0.5 * n as f64 / k as f64) as usize).max(1);
    enforce_connectivity(&labels, &feat, c, width, height, min_size)
}

/// Splits every label into 4-connected pieces, then merges pieces smaller than `min_size` into
/// the adjacent piece with the most similar mean feature. Merging only ever joins adjacent
/// connected sets, so every resulting segment is connected.
fn enforce_connectivity(
    labels: &[u32],
    feat: &[f32],
    c: usize,
    width: usize,
    height: usize,
    min_size: usize,
) -> Segmentation {
    // Mean feature of every 4-connected piece, summed in the fill's fixed pixel order.
    let mut sizes: Vec<u32> = Vec::new();
    let mut sums: Vec<f64> = Vec::new();
    let (mut comp, _) = flood_regions(
        width,
        height,
        Connectivity::Four,
        |_| true,
        |p, q| labels[p] == labels[q],
        |id, p| {
            if id as usize == sizes.len() {
                sizes.push(0);
                sums.extend(std::iter::repeat_n(0f64, c));
            }
            sizes[id as usize] += 1;
            for ch in 0..c {
                sums[id as usize * c + ch] += feat[p * c + ch] as f64;
            }
        },
    );
    let means: Vec<f32> = sums
        .iter()
        .enumerate()
        .map(|(i, v)| (*v / sizes[i / c] as f64) as f32)
        .collect();

    let m = sizes.len();
    if m > 1 && sizes.iter().any(|&s| (s as usize) < min_size) {
        // Distinct adjacent piece pairs (4-neighbourhood), weighted by mean-feature distance.
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for y in 0..height {
            for x in 0..width {
                let p = y * width + x;
                let a = comp[p];
                if x + 1 < width && comp[p + 1] != a {
                    let b = comp[p + 1];
                    pairs.push((a.min(b), a.max(b)));
                }
                if y + 1 < height && comp[p + width] != a {
                    let b = comp[p + width];
                    pairs.push((a.min(b), a.max(b)));
                }
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        let mut edges: Vec<Edge> = pairs
            .into_iter()
            .map(|(a, b)| {
                let w = feature_dist2(
                    &means[a as usize * c..(a as usize + 1) * c],
                    &means[b as usize * c..(b as usize + 1) * c],
                );
                Edge { w, a, b }
            })
            .collect();
        edges.sort_by(|e, f| e.w.total_cmp(&f.w));
        let mut ds = DisjointSets::with_sizes(&sizes);
        ds.absorb_small(&edges, min_size);
        for v in comp.iter_mut() {
            *v = ds.find(*v);
        }
    }
    Segmentation::from_raw_labels(width, height, &comp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::segment::test_images::{
        all_connected, assert_consecutive, assert_quadrants, noisy, phantom, quadrants,
    };

    // With four seeds on a 2x2 grid each starts at a quadrant centre; with tiny compactness
    // the intensity term dominates, so k-means settles on the quadrants.
    #[test]
    fn slic_recovers_quadrants() {
        let img = quadrants(64, 64);
        assert_quadrants(&slic(&img, 64, 64, 1, 4, 0.01, 0.0));
        assert_quadrants(&slic(&img, 64, 64, 1, 4, 0.1, 0.0));
        // With smoothing the one-pixel-wide blurred seams are genuinely ambiguous, so only
        // the count and connectivity are fixed.
        let s = slic(&img, 64, 64, 1, 4, 0.1, 1.0);
        assert!(s.n_segments == 4 && all_connected(&s), "{}", s.n_segments);
        // RGB goes through Lab; quadrants differ strongly there too.
        let rgb: Vec<f32> = img.iter().flat_map(|&v| [v, 1.0 - v, 0.5]).collect();
        assert_quadrants(&slic(&rgb, 64, 64, 3, 4, 10.0, 0.0));
    }

    // SLIC seeds a 10x10 grid for 100 segments; connectivity enforcement may split or merge
    // a few, but the count must stay near the request and every segment must be one piece.
    #[test]
    fn slic_noisy_count_and_connectivity() {
        let img = noisy(128, 128, 4);
        for (compactness, sigma) in [(0.1, 0.0), (0.1, 1.0), (0.01, 0.0), (1.0, 0.5)] {
            let s = slic(&img, 128, 128, 1, 100, compactness, sigma);
            assert!(
                (50..=150).contains(&s.n_segments),
                "m={compactness} s={sigma}: {}",
                s.n_segments
            );
            assert!(all_connected(&s), "m={compactness} s={sigma}");
            assert_consecutive(&s);
        }
        let s = slic(&phantom(128), 128, 128, 1, 150, 0.1, 1.0);
        assert!(
            (75..=225).contains(&s.n_segments) && all_connected(&s),
            "{}",
            s.n_segments
        );
    }

    // Degenerate SLIC requests (more segments than pixels, zero segments, thin images).
    #[test]
    fn slic_degenerate_sizes() {
        let s = slic(&noisy(5, 3, 1), 5, 3, 1, 1000, 0.1, 0.0);
        assert!(s.n_segments >= 1 && all_connected(&s));
        assert_eq!(slic(&noisy(5, 3, 1), 5, 3, 1, 0, 0.1, 0.0).n_segments, 1);
        assert!(all_connected(&slic(
            &noisy(200, 2, 1),
            200,
            2,
            1,
            10,
            0.1,
            0.0
        )));
        assert_eq!(slic(&[], 0, 0, 1, 10, 0.1, 0.0).n_segments, 0);
    }
}
