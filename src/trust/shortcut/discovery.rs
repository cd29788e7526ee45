//! Shortcut discovery: class mean maps against their shifted baseline, candidate regions, their
//! geometry and merging across methods (see the parent module for the method).

use super::*;
// Growing and shrinking a mask by `r` pixels (Chebyshev distance, windows clipped to the grid).
pub use crate::imageops::{dilate, erode};

/// The mean of the images' |map| scaled to sum 1 each (maps with no mass are skipped); `None` when
/// no map has mass.
pub fn mean_abs_map(maps: &[&[f32]]) -> Option<Vec<f32>> {
    let n = maps.first()?.len();
    let mut acc = vec![0f64; n];
    let mut used = 0usize;
    for m in maps.iter().filter(|m| m.len() == n) {
        let Some(shares) = crate::metrics::abs_shares(m) else {
            continue;
        };
        used += 1;
        for (a, share) in acc.iter_mut().zip(shares) {
            *a += share;
        }
    }
    (used > 0).then(|| acc.iter().map(|&v| (v / used as f64) as f32).collect())
}

/// The mean of `mean` (grid x grid) under a uniform random circular shift of up to `radius` cells in
/// x and y: a circular box blur of side 2 radius + 1 (separable, exact).
pub fn shift_baseline(mean: &[f32], grid: usize, radius: usize) -> Vec<f32> {
    let r = radius.min(grid.saturating_sub(1) / 2);
    let k = (2 * r + 1) as f64;
    let blur = |src: &[f64], horizontal: bool| -> Vec<f64> {
        let mut out = vec![0f64; grid * grid];
        for a in 0..grid {
            for b in 0..grid {
                let mut s = 0.0;
                for d in 0..=2 * r {
                    let c = (b + grid + d - r) % grid;
                    s += if horizontal {
                        src[a * grid + c]
                    } else {
                        src[c * grid + a]
                    };
                }
                let idx = if horizontal {
                    a * grid + b
                } else {
                    b * grid + a
                };
                out[idx] = s / k;
            }
        }
        out
    };
    let src: Vec<f64> = mean.iter().map(|&v| v as f64).collect();
    blur(&blur(&src, true), false)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// A candidate region of one class x method.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// grid x grid, row-major.
    pub mask: Vec<bool>,
    /// Share of the mean map's mass inside.
    pub mass_share: f64,
    /// Mean map mass over baseline mass inside.
    pub lift: f64,
    /// Mean map mass minus baseline mass inside (the ranking key).
    pub excess: f64,
}

impl Candidate {
    pub fn cells(&self) -> usize {
        self.mask.iter().filter(|&&b| b).count()
    }
}

/// The candidate regions of one mean map against its baseline (see the module documentation), largest
/// excess first, at most `cfg.regions_per_map`.
pub fn find_candidates(
    mean: &[f32],
    baseline: &[f32],
    grid: usize,
    cfg: &ShortcutConfig,
) -> Vec<Candidate> {
    let n = grid * grid;
    if mean.len() != n || baseline.len() != n || n == 0 {
        return Vec::new();
    }
    let total: f64 = mean.iter().map(|&v| v as f64).sum();
    if total <= 0.0 {
        return Vec::new();
    }
    let uniform = total / n as f64;
    let hot: Vec<bool> = (0..n)
        .map(|i| {
            let (m, b) = (mean[i] as f64, baseline[i] as f64);
            m >= cfg.min_density * uniform && m >= cfg.min_lift * b.max(1e-12 * uniform)
        })
        .collect();
    // Hot cells up to GAP cells apart belong to one region: the parts of one marker (the glyphs of a
    // line of text, the dashes of a ruler) lie close together, and a region is tested as a whole.
    const GAP: usize = 2;
    let near = dilate(&hot, grid, grid, GAP);
    let mut seen = vec![false; n];
    let mut out = Vec::new();
    for start in 0..n {
        if !hot[start] || seen[start] {
            continue;
        }
        let mut comp = Vec::new();
        let mut stack = vec![start];
        seen[start] = true;
        while let Some(i) = stack.pop() {
            comp.push(i);
            let (y, x) = ((i / grid) as i64, (i % grid) as i64);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (ny, nx) = (y + dy, x + dx);
                    if ny < 0 || nx < 0 || ny >= grid as i64 || nx >= grid as i64 {
                        continue;
                    }
                    let j = ny as usize * grid + nx as usize;
                    if near[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        // The component is the hot cells grown by GAP; shrunk by GAP - 1 it is their closing (the gaps
        // filled) with a one-cell margin (a region's edge is where the map's evidence fades, not where
        // the object ends).
        let mut mask = vec![false; n];
        comp.iter().for_each(|&i| mask[i] = true);
        let mask = erode(&mask, grid, grid, GAP - 1);
        let cells = mask.iter().filter(|&&b| b).count();
        if cells as f64 > cfg.max_area * n as f64 {
            continue;
        }
        let (m, b): (f64, f64) = (0..n)
            .filter(|&i| mask[i])
            .map(|i| (mean[i] as f64, baseline[i] as f64))
            .fold((0.0, 0.0), |a, v| (a.0 + v.0, a.1 + v.1));
        out.push(Candidate {
            mask,
            mass_share: m / total,
            lift: m / b.max(1e-12),
            excess: (m - b) / total,
        });
    }
    out.sort_by(|a, b| b.excess.total_cmp(&a.excess));
    out.truncate(cfg.regions_per_map);
    out
}

/// Intersection over union of two masks.
pub fn iou(a: &[bool], b: &[bool]) -> f64 {
    let (mut i, mut u) = (0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        i += (x && y) as usize;
        u += (x || y) as usize;
    }
    if u == 0 {
        0.0
    } else {
        i as f64 / u as f64
    }
}

/// The bounding box of a mask, as fractions of the side: (x0, y0, x1, y1), [x0, x1) x [y0, y1).
pub fn bbox(mask: &[bool], grid: usize) -> (f64, f64, f64, f64) {
    let (mut x0, mut y0, mut x1, mut y1) = (grid, grid, 0, 0);
    for (i, _) in mask.iter().enumerate().filter(|(_, &b)| b) {
        let (y, x) = (i / grid, i % grid);
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x + 1);
        y1 = y1.max(y + 1);
    }
    if x1 == 0 {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let g = grid as f64;
    (x0 as f64 / g, y0 as f64 / g, x1 as f64 / g, y1 as f64 / g)
}

/// A region of one class, found by one or more methods.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    pub class: String,
    pub methods: Vec<String>,
    pub candidate: Candidate,
}

/// Merges the candidates of one class found by different methods: regions that overlap by half of the
/// smaller one become their union (the strongest figures kept), unless the union would be larger than
/// `max_cells` (a large region is no place of its own any more: pasting half an image carries anatomy
/// with it); at most `keep`, largest excess first.
pub fn merge_regions(
    class: &str,
    found: Vec<(String, Candidate)>,
    keep: usize,
    max_cells: usize,
) -> Vec<Region> {
    let mut out: Vec<Region> = Vec::new();
    let mut found = found;
    found.sort_by(|a, b| b.1.excess.total_cmp(&a.1.excess));
    for (method, c) in found {
        let hit = out.iter_mut().find(|r| {
            let inter = r
                .candidate
                .mask
                .iter()
                .zip(&c.mask)
                .filter(|(a, b)| **a && **b)
                .count();
            let union = r.candidate.cells() + c.cells() - inter;
            inter * 2 >= r.candidate.cells().min(c.cells()).max(1) && union <= max_cells
        });
        match hit {
            Some(r) => {
                if !r.methods.contains(&method) {
                    r.methods.push(method);
                }
                for (a, b) in r.candidate.mask.iter_mut().zip(&c.mask) {
                    *a |= *b;
                }
                r.candidate.lift = r.candidate.lift.max(c.lift);
                r.candidate.mass_share = r.candidate.mass_share.max(c.mass_share);
                r.candidate.excess = r.candidate.excess.max(c.excess);
            }
            None => out.push(Region {
                class: class.to_string(),
                methods: vec![method],
                candidate: c,
            }),
        }
    }
    out.truncate(keep);
    out
}
