//! Superpixel segmentations for the perturbation methods (LIME, Kernel SHAP): the label-map type
//! every algorithm returns, one file per algorithm (Felzenszwalb-Huttenlocher, SLIC, a regular
//! grid, a user-supplied label image), and the union-find they share ([`disjoint`]).

use std::collections::HashMap;

mod disjoint;
mod felzenszwalb;
mod grid;
mod label_file;
mod slic;
#[cfg(test)]
mod test_images;

pub use felzenszwalb::felzenszwalb;
pub use grid::grid;
pub use label_file::{from_label_image, SegmentError};
pub use slic::slic;

/// A label map: labels[y * width + x] in 0..n_segments, numbered consecutively in raster order of first appearance.
#[derive(Clone, Debug, PartialEq)]
pub struct Segmentation {
    pub width: usize,
    pub height: usize,
    pub labels: Vec<u32>,
    pub n_segments: usize,
}

impl Segmentation {
    /// Renumber arbitrary labels consecutively (0..n) in raster order of first appearance.
    ///
    /// Panics if `raw.len() != width * height` (a caller bug, not a data problem).
    pub fn from_raw_labels(width: usize, height: usize, raw: &[u32]) -> Segmentation {
        assert_eq!(
            raw.len(),
            width * height,
            "label buffer has {} entries for a {width}x{height} image",
            raw.len()
        );
        let (labels, n_segments) = renumber(raw);
        Segmentation {
            width,
            height,
            labels,
            n_segments,
        }
    }

    /// Pixel count of each segment.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![0usize; self.n_segments];
        for &l in &self.labels {
            // Labels come from the constructors and are always < n_segments; a hand-built
            // struct with a stray label is ignored rather than allowed to panic here.
            if let Some(s) = sizes.get_mut(l as usize) {
                *s += 1;
            }
        }
        sizes
    }

    fn empty(width: usize, height: usize) -> Segmentation {
        Segmentation {
            width,
            height,
            labels: Vec::new(),
            n_segments: 0,
        }
    }
}

/// Consecutive renumbering in raster order of first appearance.
fn renumber(raw: &[u32]) -> (Vec<u32>, usize) {
    let mut labels = Vec::with_capacity(raw.len());
    let mut next = 0u32;
    let max = raw.iter().copied().max().unwrap_or(0) as usize;
    // Internal callers (union-find roots, grid cells) produce labels below the pixel count,
    // where a flat lookup table is much faster than hashing; arbitrary user ids (e.g. 16-bit
    // label images, packed RGB) fall back to a map so memory stays bounded.
    if max <= raw.len().saturating_mul(4).max(1 << 16) {
        let mut map = vec![u32::MAX; max + 1];
        for &r in raw {
            let slot = &mut map[r as usize];
            if *slot == u32::MAX {
                *slot = next;
                next += 1;
            }
            labels.push(*slot);
        }
    } else {
        let mut map: HashMap<u32, u32> = HashMap::new();
        for &r in raw {
            let id = *map.entry(r).or_insert_with(|| {
                next += 1;
                next - 1
            });
            labels.push(id);
        }
    }
    (labels, next as usize)
}

/// The pixel count of an image to segment, `None` when it has none. Panics on a buffer that does
/// not hold `width * height * channels` values (a caller bug).
fn pixels(img: &[f32], width: usize, height: usize, channels: usize) -> Option<usize> {
    assert!(channels >= 1, "image must have at least one channel");
    assert_eq!(
        img.len(),
        width * height * channels,
        "image buffer has {} values for {width}x{height}x{channels}",
        img.len()
    );
    Some(width * height).filter(|&n| n > 0)
}

/// Squared Euclidean distance between two feature vectors.
fn feature_dist2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_images::{all_connected, phantom};

    // Raw ids 7,7,3 / 9,3,7 first appear in the order 7,3,9, so they become 0,1,2.
    #[test]
    fn from_raw_labels_renumbers_in_raster_order() {
        let s = Segmentation::from_raw_labels(3, 2, &[7, 7, 3, 9, 3, 7]);
        assert_eq!(s.labels, vec![0, 0, 1, 2, 1, 0]);
        assert_eq!(s.n_segments, 3);
        assert_eq!(s.sizes(), vec![3, 2, 1]);
        // Huge ids take the hashing path and must give the same answer.
        let big =
            Segmentation::from_raw_labels(3, 2, &[u32::MAX, u32::MAX, 5, 1 << 30, 5, u32::MAX]);
        assert_eq!(big.labels, s.labels);
    }

    // Reference counts: scikit-image 0.26 `felzenszwalb(phantom, 1, 0.8, 20)` on this exact
    // phantom (dumped as f32 and fed to it) gives 220 segments at 128x128 and 982 at 256x256.
    // A few percent slack absorbs libm differences in sin/exp between platforms, which can flip
    // near-tied edges. Also prints the counts and timings (run with --nocapture).
    #[test]
    fn phantom_segment_counts_match_reference() {
        for (s, reference) in [(128usize, 220usize), (256, 982)] {
            let img = phantom(s);
            let t = std::time::Instant::now();
            let seg = felzenszwalb(&img, s, s, 1, 1.0, 0.8, 20);
            let dt = t.elapsed();
            eprintln!(
                "phantom {s}x{s}: felzenszwalb {} segments in {dt:.2?} (scikit-image: {reference})",
                seg.n_segments
            );
            assert!(
                seg.n_segments.abs_diff(reference) * 100 <= reference * 3,
                "{} vs {reference}",
                seg.n_segments
            );
            assert!(seg.sizes().iter().all(|&n| n >= 20));
            let t = std::time::Instant::now();
            let sl = slic(&img, s, s, 1, 150, 0.1, 0.8);
            eprintln!(
                "phantom {s}x{s}: slic(150) {} segments in {:.2?}",
                sl.n_segments,
                t.elapsed()
            );
            assert!(all_connected(&sl));
        }
    }
}
