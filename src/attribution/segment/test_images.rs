//! Test images and checks shared by the segmentation tests: deterministic noise, flat quadrants,
//! a brain-slice phantom, and the label-map invariants every algorithm must keep.

use super::Segmentation;
use crate::imageops::{flood_regions, Connectivity};

/// Small deterministic generator so test images are reproducible without a rand dependency.
pub(super) struct SplitMix(u64);
impl SplitMix {
    pub(super) fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }
}

pub(super) fn quadrants(w: usize, h: usize) -> Vec<f32> {
    let vals = [0.0, 0.3, 0.6, 1.0];
    (0..w * h)
        .map(|p| {
            let (x, y) = (p % w, p / w);
            vals[(y >= h / 2) as usize * 2 + (x >= w / 2) as usize]
        })
        .collect()
}

pub(super) fn noisy(w: usize, h: usize, seed: u64) -> Vec<f32> {
    let mut r = SplitMix(seed);
    (0..w * h).map(|_| r.next_f32()).collect()
}

/// Brain-slice stand-in: dark noisy background, a bright skull ring, a textured noisy
/// ellipse of "tissue" with a dark "ventricle" and a bright "lesion". Geometry is relative
/// to the image size so the same anatomy can be rendered at 128 and 256.
pub(super) fn phantom(s: usize) -> Vec<f32> {
    let mut r = SplitMix(7);
    let f = s as f32;
    (0..s * s)
        .map(|p| {
            let (x, y) = ((p % s) as f32 / f, (p / s) as f32 / f);
            let (ex, ey) = ((x - 0.5) / 0.40, (y - 0.5) / 0.46);
            let e = ex * ex + ey * ey;
            let noise = r.next_f32() - 0.5;
            let v = if e < 0.85 {
                // Gyri-like stripes plus fine noise give the tissue its texture.
                let texture = 0.05 * ((x * 41.0).sin() * (y * 33.0).cos())
                    + 0.03 * ((x + 2.0 * y) * 67.0).sin();
                let (vx, vy) = ((x - 0.47) / 0.06, (y - 0.45) / 0.12);
                let (lx, ly) = ((x - 0.66) / 0.09, (y - 0.62) / 0.08);
                let base = if vx * vx + vy * vy < 1.0 {
                    0.2
                } else if lx * lx + ly * ly < 1.0 {
                    0.85
                } else {
                    0.5 + texture
                };
                base + 0.03 * noise
            } else if e < 1.0 {
                0.8 + 0.1 * noise
            } else {
                0.04 + 0.04 * noise
            };
            v.clamp(0.0, 1.0)
        })
        .collect()
}

/// True when every segment is one 4-connected piece (flood fill count == label count).
pub(super) fn all_connected(s: &Segmentation) -> bool {
    let pieces = Segmentation::from_raw_labels(s.width, s.height, &s.labels);
    let (_, count) = flood_regions(
        s.width,
        s.height,
        Connectivity::Four,
        |_| true,
        |p, q| s.labels[p] == s.labels[q],
        |_, _| {},
    );
    count == pieces.n_segments
}

pub(super) fn assert_consecutive(s: &Segmentation) {
    assert_eq!(s.labels.len(), s.width * s.height);
    let mut next = 0u32;
    for &l in &s.labels {
        assert!(l <= next, "label {l} appears before {next}");
        if l == next {
            next += 1;
        }
    }
    assert_eq!(next as usize, s.n_segments);
}

pub(super) fn assert_quadrants(s: &Segmentation) {
    // Every pixel must carry its quadrant's label, and the four labels must differ.
    let (w, h) = (s.width, s.height);
    let ids = [
        s.labels[0],
        s.labels[w - 1],
        s.labels[(h - 1) * w],
        s.labels[h * w - 1],
    ];
    for p in 0..w * h {
        let (x, y) = (p % w, p / w);
        let q = (y >= h / 2) as usize * 2 + (x >= w / 2) as usize;
        assert_eq!(s.labels[p], ids[q], "pixel ({x},{y})");
    }
    assert_eq!(s.n_segments, 4);
}
