//! Per-image numbers computed from raw attribution maps: mass inside the brain vs background and border band, concentration, top-k placement, sparsity, agreement between methods; and the small statistics shared across the crate (median, Spearman, |value| shares).
//!
//! The map functions take RAW attribution maps (f32, row-major `width x height`), never
//! display-normalised ones. Mass-based metrics use the absolute value of the map. Non-finite map
//! values (NaN, +-inf) are read as 0 everywhere so that no metric is ever NaN.
//!
//! "Top k%" sets use `k = round(frac * n)` pixels (at least 1 when `n > 0`), ordered by `|value|`
//! descending with ties broken by the lower pixel index first, so results are deterministic.

/// Side of the grid on which maps are compared with each other: the agreement between methods
/// and the split-half reproducibility of a stochastic map.
pub const AGREEMENT_SIZE: usize = 32;

/// Per-map metrics against a head mask and a border band.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapMetrics {
    /// Share of |map| mass inside the mask, in [0, 1]; 0 when the map is empty.
    pub mass_inside: f32,
    /// `1 - mass_inside` (0 when empty).
    pub mass_background: f32,
    /// Share of |map| mass in the border band, in [0, 1].
    pub mass_border: f32,
    /// `mass_inside / area share inside` (1 = no preference); 0 when the area is 0 or map empty.
    pub concentration_inside: f32,
    /// `mass_border / area share of the band`; 0 when the band is empty or map empty.
    pub concentration_border: f32,
    /// Fraction of the top 1% pixels by |map| that fall inside the mask (0 when empty).
    pub top1_inside: f32,
    /// Same for the top 5%.
    pub top5_inside: f32,
    /// Gini coefficient of |map| (0 = uniform, -> 1 = all mass on one pixel).
    pub gini: f32,
    /// The map has no mass (all zero / non-finite, or no pixel); all numbers above are 0.
    pub empty: bool,
}

impl MapMetrics {
    fn empty() -> MapMetrics {
        MapMetrics {
            mass_inside: 0.0,
            mass_background: 0.0,
            mass_border: 0.0,
            concentration_inside: 0.0,
            concentration_border: 0.0,
            top1_inside: 0.0,
            top5_inside: 0.0,
            gini: 0.0,
            empty: true,
        }
    }
}

#[inline]
fn mag(v: f32) -> f32 {
    if v.is_finite() {
        v.abs()
    } else {
        0.0
    }
}

/// Each pixel's share of the map's |value| mass (non-finite values read as 0), summing to 1; `None`
/// when the map has no mass.
pub fn abs_shares(map: &[f32]) -> Option<Vec<f64>> {
    let total: f64 = map.iter().map(|&v| mag(v) as f64).sum();
    (total > 0.0).then(|| map.iter().map(|&v| mag(v) as f64 / total).collect())
}

/// The mean of `values`; `None` when empty.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The median of `values` (the mean of the two middle ones for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// Metrics of one raw attribution map against a head mask `inside` and a border band `border`
/// (all three the same length; panics otherwise).
pub fn map_metrics(map: &[f32], inside: &[bool], border: &[bool]) -> MapMetrics {
    assert_eq!(map.len(), inside.len(), "map and mask lengths differ");
    assert_eq!(
        map.len(),
        border.len(),
        "map and border band lengths differ"
    );
    let n = map.len();
    let abs: Vec<f32> = map.iter().map(|&v| mag(v)).collect();
    let (mut total, mut m_in, mut m_border) = (0.0f64, 0.0f64, 0.0f64);
    let (mut a_in, mut a_border) = (0usize, 0usize);
    for i in 0..n {
        let v = abs[i] as f64;
        total += v;
        if inside[i] {
            m_in += v;
            a_in += 1;
        }
        if border[i] {
            m_border += v;
            a_border += 1;
        }
    }
    if n == 0 || total <= 0.0 || !total.is_finite() {
        return MapMetrics::empty();
    }
    let mass_inside = (m_in / total).clamp(0.0, 1.0);
    let mass_border = (m_border / total).clamp(0.0, 1.0);
    let share_in = a_in as f64 / n as f64;
    let share_border = a_border as f64 / n as f64;
    let conc = |mass: f64, share: f64| if share > 0.0 { mass / share } else { 0.0 };
    let top_inside = |frac: f32| {
        let idx = top_indices(&abs, frac);
        if idx.is_empty() {
            0.0
        } else {
            idx.iter().filter(|&&i| inside[i]).count() as f32 / idx.len() as f32
        }
    };
    MapMetrics {
        mass_inside: mass_inside as f32,
        mass_background: (1.0 - mass_inside) as f32,
        mass_border: mass_border as f32,
        concentration_inside: conc(mass_inside, share_in) as f32,
        concentration_border: conc(mass_border, share_border) as f32,
        top1_inside: top_inside(0.01),
        top5_inside: top_inside(0.05),
        gini: gini(&abs),
        empty: false,
    }
}

/// Number of pixels in a "top `frac`" set of `n` pixels: `round(frac * n)`, clamped to [1, n]
/// (0 when `n == 0`).
fn top_count(n: usize, frac: f32) -> usize {
    if n == 0 {
        return 0;
    }
    let f = if frac.is_finite() {
        frac.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ((f as f64 * n as f64).round() as usize).clamp(1, n)
}

/// Indices of the top `frac` values of `abs` (non-negative, finite), ties by lower index.
fn top_indices(abs: &[f32], frac: f32) -> Vec<usize> {
    top_k(abs, top_count(abs.len(), frac))
}

/// Indices of the `k` largest values of `abs` (non-negative, finite), ties by lower index.
fn top_k(abs: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(abs.len());
    if k == 0 {
        return Vec::new();
    }
    let mut idx: Vec<usize> = (0..abs.len()).collect();
    let cmp = |a: &usize, b: &usize| abs[*b].total_cmp(&abs[*a]).then(a.cmp(b));
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    }
    idx
}

/// Gini coefficient of non-negative values (sorted formula); 0 for an all-zero input.
///
/// With `x` sorted ascending and 1-based ranks `i`:
/// `G = 2 * sum(i * x_i) / (n * sum(x)) - (n + 1) / n`. Negative values are taken by absolute
/// value and non-finite ones read as 0; the result is clamped to [0, 1].
pub fn gini(values: &[f32]) -> f32 {
    let mut x: Vec<f32> = values.iter().map(|&v| mag(v)).collect();
    let n = x.len();
    if n == 0 {
        return 0.0;
    }
    x.sort_unstable_by(|a, b| a.total_cmp(b));
    let (mut sum, mut weighted) = (0.0f64, 0.0f64);
    for (i, &v) in x.iter().enumerate() {
        sum += v as f64;
        weighted += (i + 1) as f64 * v as f64;
    }
    if sum <= 0.0 || !sum.is_finite() {
        return 0.0;
    }
    let nf = n as f64;
    let g = 2.0 * weighted / (nf * sum) - (nf + 1.0) / nf;
    g.clamp(0.0, 1.0) as f32
}

/// Average ranks (1-based) with ties sharing the mean of their positions.
fn average_ranks(v: &[f32]) -> Vec<f64> {
    let clean: Vec<f32> = v
        .iter()
        .map(|&x| if x.is_finite() { x } else { 0.0 })
        .collect();
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_unstable_by(|&a, &b| clean[a].total_cmp(&clean[b]).then(a.cmp(&b)));
    let mut ranks = vec![0.0f64; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i + 1;
        // -0.0 and 0.0 compare different under total_cmp; treat them as a tie.
        while j < idx.len() && clean[idx[j]] == clean[idx[i]] {
            j += 1;
        }
        let r = (i + j + 1) as f64 / 2.0; // mean of 1-based ranks i+1 ..= j
        for &k in &idx[i..j] {
            ranks[k] = r;
        }
        i = j;
    }
    ranks
}

/// Spearman rank correlation with average ranks for ties (Pearson correlation of the ranks);
/// NaN-free: returns 0 when either input is constant or has fewer than 2 values. Non-finite
/// values are read as 0. Panics if the lengths differ.
pub fn spearman(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "spearman inputs differ in length");
    let n = a.len();
    if n < 2 {
        return 0.0;
    }
    let (ra, rb) = (average_ranks(a), average_ranks(b));
    let mean = (n as f64 + 1.0) / 2.0;
    let (mut cov, mut va, mut vb) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..n {
        let (da, db) = (ra[i] - mean, rb[i] - mean);
        cov += da * db;
        va += da * da;
        vb += db * db;
    }
    if va <= 0.0 || vb <= 0.0 {
        return 0.0;
    }
    (cov / (va * vb).sqrt()).clamp(-1.0, 1.0) as f32
}

/// IoU of the top `frac` (e.g. 0.1) pixels by |value| of two maps of equal length (ties broken
/// deterministically by index: lower index first). Each set has `round(frac * n)` pixels, at
/// least 1; returns 0 for empty maps. Panics if the lengths differ.
pub fn top_fraction_iou(a: &[f32], b: &[f32], frac: f32) -> f32 {
    assert_eq!(a.len(), b.len(), "top_fraction_iou inputs differ in length");
    if a.is_empty() {
        return 0.0;
    }
    let aa: Vec<f32> = a.iter().map(|&v| mag(v)).collect();
    let bb: Vec<f32> = b.iter().map(|&v| mag(v)).collect();
    let ta = top_indices(&aa, frac);
    let tb = top_indices(&bb, frac);
    let mut in_a = vec![false; a.len()];
    for &i in &ta {
        in_a[i] = true;
    }
    let inter = tb.iter().filter(|&&i| in_a[i]).count();
    let union = ta.len() + tb.len() - inter;
    if union == 0 {
        0.0
    } else {
        inter as f32 / union as f32
    }
}

/// For each output cell along one axis, the source pixels it overlaps and the weights (overlap
/// length / cell length, summing to 1). Exact integer arithmetic: in units of `1 / (from * to)`
/// source pixel `i` spans `[i * to, (i + 1) * to)` and output cell `o` spans `[o * from, (o + 1) * from)`.
fn axis_weights(from: usize, to: usize) -> Vec<Vec<(usize, f64)>> {
    (0..to)
        .map(|o| {
            let (lo, hi) = (o * from, (o + 1) * from);
            let first = lo / to;
            let last = (hi - 1) / to;
            (first..=last.min(from - 1))
                .filter_map(|i| {
                    let (s0, s1) = (i * to, (i + 1) * to);
                    let overlap = s1.min(hi).saturating_sub(s0.max(lo));
                    (overlap > 0).then(|| (i, overlap as f64 / from as f64))
                })
                .collect()
        })
        .collect()
}

/// Average-pool a map to a common resolution (e.g. 32x32) for agreement between methods of
/// different native resolutions.
///
/// Sizes not divisible by the target are handled by exact area weighting: output cell `(ox, oy)`
/// covers the source rectangle `[ox * W / to_w, (ox + 1) * W / to_w) x [oy * H / to_h, ...)` in
/// continuous pixel coordinates, and its value is the area-weighted mean of the source pixels it
/// overlaps (partial pixels count by their overlapping fraction). A constant map stays constant
/// and the overall mean is preserved. Upsampling (target larger than source) works the same way
/// (each output takes the value of the source pixel(s) under it). Non-finite values are read as 0.
/// Returns an empty vector when the source or target is empty. Panics if
/// `map.len() != width * height`.
pub fn downsample(map: &[f32], width: usize, height: usize, to_w: usize, to_h: usize) -> Vec<f32> {
    assert_eq!(
        map.len(),
        width * height,
        "map size does not match width x height"
    );
    if width == 0 || height == 0 || to_w == 0 || to_h == 0 {
        return Vec::new();
    }
    let wx = axis_weights(width, to_w);
    let wy = axis_weights(height, to_h);
    // Horizontal pass: height x to_w.
    let mut tmp = vec![0.0f64; height * to_w];
    for y in 0..height {
        let row = &map[y * width..(y + 1) * width];
        for (ox, ws) in wx.iter().enumerate() {
            tmp[y * to_w + ox] = ws
                .iter()
                .map(|&(i, w)| {
                    w * if row[i].is_finite() {
                        row[i] as f64
                    } else {
                        0.0
                    }
                })
                .sum();
        }
    }
    let mut out = vec![0.0f32; to_w * to_h];
    for (oy, ws) in wy.iter().enumerate() {
        for ox in 0..to_w {
            let v: f64 = ws.iter().map(|&(j, w)| w * tmp[j * to_w + ox]).sum();
            out[oy * to_w + ox] = v as f32;
        }
    }
    out
}

/// The pointing game's tolerance on a `side x side` grid: 15 pixels at 224, the usual tolerance
/// of the pointing game, scaled to the grid (9 pixels at 128, 2 at 32), at least 1.
pub fn pointing_tolerance(side: usize) -> usize {
    ((side as f64 * 15.0 / 224.0).round() as usize).max(1)
}

/// Where one raw map's evidence lies against a ground-truth outline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Localisation {
    /// Share of |map| inside the outline, in [0, 1]; 0 when the map is empty.
    pub mass_on_tumor: f32,
    /// The pointing game: the map's maximum of |map| lies within `tolerance` pixels of the outline
    /// (when several pixels share the maximum, at least half of them must). An empty map misses.
    pub pointing_hit: bool,
    /// The energy-based pointing game: share of |map| inside the outline's bounding box.
    pub energy_pointing: f32,
    /// IoU of the top-k pixels of |map| with the outline, k = the outline's own pixel count.
    pub iou_top_area: f32,
}

/// The localisation figures of a raw map (row-major `side x side`) against an outline of the same
/// grid, with the pointing game's `tolerance` in pixels. `None` when the outline has no pixel.
/// Panics when the lengths differ from `side * side`.
pub fn localisation(
    map: &[f32],
    outline: &[bool],
    side: usize,
    tolerance: usize,
) -> Option<Localisation> {
    let n = side * side;
    assert_eq!(map.len(), n, "map length is not side x side");
    assert_eq!(outline.len(), n, "outline length is not side x side");
    let area = outline.iter().filter(|&&b| b).count();
    if area == 0 {
        return None;
    }
    let abs: Vec<f32> = map.iter().map(|&v| mag(v)).collect();
    let (mut x0, mut x1, mut y0, mut y1) = (side, 0, side, 0);
    for (i, _) in outline.iter().enumerate().filter(|(_, &b)| b) {
        let (x, y) = (i % side, i / side);
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let (mut total, mut inside, mut in_box) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &v) in abs.iter().enumerate() {
        let v = v as f64;
        total += v;
        if outline[i] {
            inside += v;
        }
        let (x, y) = (i % side, i / side);
        if (x0..=x1).contains(&x) && (y0..=y1).contains(&y) {
            in_box += v;
        }
    }
    if total <= 0.0 || !total.is_finite() {
        return Some(Localisation {
            mass_on_tumor: 0.0,
            pointing_hit: false,
            energy_pointing: 0.0,
            iou_top_area: 0.0,
        });
    }
    // The pointing game: the pixels at the maximum, each within `tolerance` of an outline pixel.
    let max = abs.iter().copied().fold(0.0f32, f32::max);
    let near = dilate(outline, side, tolerance);
    let at_max: Vec<usize> = (0..n).filter(|&i| abs[i] == max).collect();
    let hits = at_max.iter().filter(|&&i| near[i]).count();
    let top = top_k(&abs, area);
    let inter = top.iter().filter(|&&i| outline[i]).count();
    Some(Localisation {
        mass_on_tumor: (inside / total).clamp(0.0, 1.0) as f32,
        pointing_hit: 2 * hits >= at_max.len(),
        energy_pointing: (in_box / total).clamp(0.0, 1.0) as f32,
        iou_top_area: inter as f32 / (2 * area - inter) as f32,
    })
}

/// The pixels within Euclidean distance `r` of a true pixel of `mask` (`side x side`).
fn dilate(mask: &[bool], side: usize, r: usize) -> Vec<bool> {
    let mut out = mask.to_vec();
    let r2 = (r * r) as i64;
    let ri = r as i64;
    let offsets: Vec<(i64, i64)> = (-ri..=ri)
        .flat_map(|dy| (-ri..=ri).map(move |dx| (dx, dy)))
        .filter(|(dx, dy)| dx * dx + dy * dy <= r2)
        .collect();
    let s = side as i64;
    for (i, _) in mask.iter().enumerate().filter(|(_, &b)| b) {
        let (x, y) = ((i % side) as i64, (i / side) as i64);
        for &(dx, dy) in &offsets {
            let (nx, ny) = (x + dx, y + dy);
            if (0..s).contains(&nx) && (0..s).contains(&ny) {
                out[(ny * s + nx) as usize] = true;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    fn all_finite(m: &MapMetrics) -> bool {
        [
            m.mass_inside,
            m.mass_background,
            m.mass_border,
            m.concentration_inside,
            m.concentration_border,
            m.top1_inside,
            m.top5_inside,
            m.gini,
        ]
        .iter()
        .all(|v| v.is_finite())
    }

    /// 20 x 10 image, mask = left half (x < 10), border band = outer ring of 1 pixel.
    fn setup() -> (usize, usize, Vec<bool>, Vec<bool>) {
        let (w, h) = (20, 10);
        let inside = (0..w * h).map(|i| i % w < 10).collect();
        let border = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                x == 0 || y == 0 || x == w - 1 || y == h - 1
            })
            .collect();
        (w, h, inside, border)
    }

    #[test]
    fn map_all_inside_mask() {
        // All mass on mask pixels -> mass_inside = 1, background 0, top sets all inside.
        let (w, h, inside, border) = setup();
        let map: Vec<f32> = (0..w * h)
            .map(|i| if inside[i] { 1.0 + (i % 7) as f32 } else { 0.0 })
            .collect();
        let m = map_metrics(&map, &inside, &border);
        assert!(!m.empty);
        assert_eq!(m.mass_inside, 1.0);
        assert_eq!(m.mass_background, 0.0);
        assert_eq!(m.top1_inside, 1.0);
        assert_eq!(m.top5_inside, 1.0);
        // area share inside = 0.5 -> concentration 2.
        assert!((m.concentration_inside - 2.0).abs() < 1e-6);
    }

    #[test]
    fn uniform_map_mass_equals_area_share() {
        // Uniform map -> mass_inside = area share (0.5), concentration 1; border ring has
        // 2*20 + 2*8 = 56 of 200 pixels -> mass_border 0.28, concentration 1; gini 0.
        let (w, h, inside, border) = setup();
        let map = vec![0.3f32; w * h];
        let m = map_metrics(&map, &inside, &border);
        assert!((m.mass_inside - 0.5).abs() < 1e-6);
        assert!((m.mass_background - 0.5).abs() < 1e-6);
        assert!((m.concentration_inside - 1.0).abs() < 1e-6);
        assert!((m.mass_border - 0.28).abs() < 1e-6);
        assert!((m.concentration_border - 1.0).abs() < 1e-5);
        assert!(m.gini.abs() < 1e-6);
        // Ties broken by index: top 1% = 2 pixels = indices 0, 1 (inside);
        // top 5% = 10 pixels = indices 0..10 (all inside since x < 10).
        assert_eq!(m.top1_inside, 1.0);
        assert_eq!(m.top5_inside, 1.0);
    }

    #[test]
    fn negative_values_count_by_absolute_value() {
        // Inside -3, outside +1: |mass| inside = 3*100 / (3*100 + 1*100) = 0.75.
        let (w, h, inside, border) = setup();
        let map: Vec<f32> = (0..w * h)
            .map(|i| if inside[i] { -3.0 } else { 1.0 })
            .collect();
        let m = map_metrics(&map, &inside, &border);
        assert!((m.mass_inside - 0.75).abs() < 1e-6);
        assert!((m.mass_background - 0.25).abs() < 1e-6);
        assert_eq!(m.top5_inside, 1.0);
        // Flipping the sign changes nothing.
        let neg: Vec<f32> = map.iter().map(|v| -v).collect();
        assert_eq!(map_metrics(&neg, &inside, &border), m);
    }

    #[test]
    fn top_fraction_placement() {
        // Top 5% of 200 = 10 pixels: 4 inside, 6 outside -> 0.4; top 1% = 2 pixels (the two
        // largest, one inside one outside) -> 0.5.
        let (w, h, inside, border) = setup();
        let mut map = vec![0.01f32; w * h];
        let ins = [21usize, 22, 23, 24];
        let outs = [35usize, 36, 37, 38, 39, 55];
        for (k, &i) in ins.iter().enumerate() {
            map[i] = 10.0 - k as f32; // 10, 9, 8, 7
        }
        for (k, &i) in outs.iter().enumerate() {
            map[i] = -(10.5 - 2.0 * k as f32); // |.| = 10.5, 8.5, 6.5, 4.5, 2.5, 0.5
        }
        let m = map_metrics(&map, &inside, &border);
        assert_eq!(m.top1_inside, 0.5);
        assert_eq!(m.top5_inside, 0.4);
    }

    #[test]
    fn zero_map_is_empty_and_nan_free() {
        let (w, h, inside, border) = setup();
        let m = map_metrics(&vec![0.0; w * h], &inside, &border);
        assert!(m.empty);
        assert!(all_finite(&m));
        assert_eq!(m.mass_inside, 0.0);
        assert_eq!(m.mass_background, 0.0);
        // NaN/inf values are read as zero.
        let mut bad = vec![0.0f32; w * h];
        bad[3] = f32::NAN;
        bad[4] = f32::INFINITY;
        let m = map_metrics(&bad, &inside, &border);
        assert!(m.empty && all_finite(&m));
        bad[50] = 2.0;
        let m = map_metrics(&bad, &inside, &border);
        assert!(!m.empty && all_finite(&m));
        // No pixel at all.
        let m = map_metrics(&[], &[], &[]);
        assert!(m.empty && all_finite(&m));
        // An empty mask gives concentration 0, not NaN.
        let m = map_metrics(&[1.0, 2.0], &[false, false], &[false, false]);
        assert!(all_finite(&m));
        assert_eq!(m.concentration_inside, 0.0);
        assert_eq!(m.concentration_border, 0.0);
        assert_eq!(gini(&[0.0; 8]), 0.0);
        assert_eq!(spearman(&[0.0; 4], &[0.0; 4]), 0.0);
        assert_eq!(top_fraction_iou(&[], &[], 0.1), 0.0);
        assert!(downsample(&[0.0; 16], 4, 4, 2, 2).iter().all(|v| *v == 0.0));
    }

    #[test]
    fn gini_known_values() {
        // Uniform -> 0.
        assert!(gini(&[2.0; 10]).abs() < 1e-6);
        // One-hot over n -> (n - 1) / n.
        for n in [1usize, 2, 5, 100] {
            let mut v = vec![0.0f32; n];
            v[n / 2] = 3.0;
            let want = (n as f32 - 1.0) / n as f32;
            assert!((gini(&v) - want).abs() < 1e-6, "n = {n}");
        }
        // [1, 2, 3, 4]: 2 * (1 + 4 + 9 + 16) / (4 * 10) - 5/4 = 1.5 - 1.25 = 0.25.
        assert!((gini(&[4.0, 1.0, 3.0, 2.0]) - 0.25).abs() < 1e-6);
        // Negative values by absolute value.
        assert!((gini(&[-4.0, 1.0, -3.0, 2.0]) - 0.25).abs() < 1e-6);
    }

    #[test]
    fn spearman_known_values() {
        let a: Vec<f32> = (0..50).map(|i| i as f32 * 0.37 - 3.0).collect();
        // Monotone increasing transform -> 1.
        let b: Vec<f32> = a.iter().map(|x| x.exp()).collect();
        assert!((spearman(&a, &b) - 1.0).abs() < 1e-6);
        // Reversed -> -1.
        let c: Vec<f32> = a.iter().map(|x| -x * x * x).collect();
        assert!((spearman(&a, &c) + 1.0).abs() < 1e-6);
        // Ties by hand: a = [1, 2, 2, 3] has ranks [1, 2.5, 2.5, 4], b = [1, 2, 3, 4] ranks
        // [1, 2, 3, 4]; deviations from 2.5: [-1.5, 0, 0, 1.5] and [-1.5, -0.5, 0.5, 1.5];
        // cov = 4.5, var_a = 4.5, var_b = 5 -> rho = 4.5 / sqrt(22.5) = 0.9486833.
        let r = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]);
        assert!((r - 0.948_683_3).abs() < 1e-6, "{r}");
        // Constant input -> 0, not NaN.
        assert_eq!(spearman(&[5.0; 6], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), 0.0);
        assert_eq!(spearman(&[1.0], &[2.0]), 0.0);
    }

    #[test]
    fn top_iou_known_values() {
        let a: Vec<f32> = (0..100).map(|i| ((i * 37) % 100) as f32).collect();
        assert_eq!(top_fraction_iou(&a, &a, 0.1), 1.0);
        // Absolute value: negating one map does not change the top set.
        let neg: Vec<f32> = a.iter().map(|v| -v).collect();
        assert_eq!(top_fraction_iou(&a, &neg, 0.1), 1.0);
        // Disjoint tops: a peaks at the first 10 indices, b at the last 10.
        let a: Vec<f32> = (0..100).map(|i| if i < 10 { 5.0 } else { 1.0 }).collect();
        let b: Vec<f32> = (0..100).map(|i| if i >= 90 { 5.0 } else { 1.0 }).collect();
        assert_eq!(top_fraction_iou(&a, &b, 0.1), 0.0);
        // Half overlap: tops {0..10} and {5..15} -> 5 / 15.
        let c: Vec<f32> = (0..100)
            .map(|i| if (5..15).contains(&i) { 5.0 } else { 1.0 })
            .collect();
        assert!((top_fraction_iou(&a, &c, 0.1) - 1.0 / 3.0).abs() < 1e-6);
        // Ties broken by index: two constant maps have the same top set.
        assert_eq!(top_fraction_iou(&[1.0; 50], &[2.0; 50], 0.2), 1.0);
    }

    #[test]
    fn downsample_constant_and_mean() {
        // Constant stays constant, also for sizes not divisible by the target.
        for &(w, h, tw, th) in &[
            (224, 224, 32, 32),
            (7, 7, 32, 32),
            (100, 37, 32, 32),
            (13, 9, 4, 3),
        ] {
            let out = downsample(&vec![0.75; w * h], w, h, tw, th);
            assert_eq!(out.len(), tw * th);
            assert!(
                out.iter().all(|v| (v - 0.75).abs() < 1e-6),
                "{w}x{h} -> {tw}x{th}"
            );
        }
        // Mean preserved for a non-constant map with a non-divisible size.
        let (w, h) = (50, 37);
        let map: Vec<f32> = (0..w * h)
            .map(|i| ((i * 7919) % 113) as f32 - 40.0)
            .collect();
        let mean_in: f64 = map.iter().map(|&v| v as f64).sum::<f64>() / (w * h) as f64;
        let out = downsample(&map, w, h, 32, 32);
        let mean_out: f64 = out.iter().map(|&v| v as f64).sum::<f64>() / 1024.0;
        assert!((mean_in - mean_out).abs() < 1e-4, "{mean_in} vs {mean_out}");
        // Divisible case is a plain block average: 4x2 -> 2x1.
        let out = downsample(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], 4, 2, 2, 1);
        assert_eq!(out, vec![3.5, 5.5]);
        // 3 -> 2 on one axis: cells cover [0, 1.5) and [1.5, 3):
        // (1 * 1 + 2 * 0.5) / 1.5 = 4/3 and (2 * 0.5 + 3 * 1) / 1.5 = 8/3.
        let out = downsample(&[1.0, 2.0, 3.0], 3, 1, 2, 1);
        assert!((out[0] - 4.0 / 3.0).abs() < 1e-6 && (out[1] - 8.0 / 3.0).abs() < 1e-6);
    }
    #[test]
    fn localisation_known_answers() {
        // 8x8 grid, outline = the 2x2 square at (2..4, 2..4).
        let side = 8;
        let outline: Vec<bool> = (0..64)
            .map(|i| (2..4).contains(&(i % 8)) && (2..4).contains(&(i / 8)))
            .collect();
        // All mass on the outline: mass 1, hit, energy 1, IoU 1.
        let on: Vec<f32> = outline
            .iter()
            .map(|&b| if b { -3.0 } else { 0.0 })
            .collect();
        let l = localisation(&on, &outline, side, 1).unwrap();
        assert_eq!(
            (
                l.mass_on_tumor,
                l.pointing_hit,
                l.energy_pointing,
                l.iou_top_area
            ),
            (1.0, true, 1.0, 1.0)
        );
        // One bright pixel far away (7, 7) plus a little on the outline: miss, mass 4 / 104.
        let mut off = on.iter().map(|v| v.abs() / 3.0).collect::<Vec<f32>>();
        off[63] = 100.0;
        let l = localisation(&off, &outline, side, 1).unwrap();
        assert!(!l.pointing_hit);
        assert!((l.mass_on_tumor - 4.0 / 104.0).abs() < 1e-6);
        // Top-4 = the far pixel + 3 outline pixels (ties by lower index): IoU 3 / 5.
        assert!((l.iou_top_area - 0.6).abs() < 1e-6);
        // The maximum one pixel beside the outline is a hit with tolerance 1, a miss with 0.
        let mut beside = vec![0.0f32; 64];
        beside[3 * 8 + 4] = 1.0;
        assert!(
            localisation(&beside, &outline, side, 1)
                .unwrap()
                .pointing_hit
        );
        assert!(
            !localisation(&beside, &outline, side, 0)
                .unwrap()
                .pointing_hit
        );
        // An empty map misses everything; an empty outline has no figures.
        let l = localisation(&[f32::NAN; 64], &outline, side, 1).unwrap();
        assert_eq!((l.mass_on_tumor, l.pointing_hit), (0.0, false));
        assert!(localisation(&on, &[false; 64], side, 1).is_none());
        assert_eq!(pointing_tolerance(224), 15);
        assert_eq!(pointing_tolerance(128), 9);
    }
}
