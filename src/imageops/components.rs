//! Connected regions of a pixel grid: one flood fill ([`flood_regions`]) under the brain mask's
//! component labelling, largest component and hole filling, and SLIC's connectivity clean-up.

/// Which neighbours of a pixel touch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connectivity {
    /// Left, right, up, down.
    Four,
    /// The four plus the diagonals.
    Eight,
}

/// Region id of the pixels that belong to no region.
pub const NO_REGION: u32 = u32::MAX;

/// Bits of [`Components::sides`]: which image borders a component touches.
pub const SIDE_LEFT: u8 = 1;
pub const SIDE_RIGHT: u8 = 2;
pub const SIDE_TOP: u8 = 4;
pub const SIDE_BOTTOM: u8 = 8;

/// Flood-fills the connected regions of a row-major `width x height` grid.
///
/// A pixel `p` is in some region when `member(p)`; two touching members `p`, `q` are in the same
/// region when `joined(p, q)` (e.g. "same label"). Regions are numbered 0.. in raster order of
/// their first pixel, and each is filled depth first from that pixel; `visit(region, p)` is called
/// once per member pixel in that fill order, which is fixed, so per-region sums accumulated there
/// are the same on every run. Four-neighbours are pushed left, right, up, down.
///
/// Returns the region of every pixel ([`NO_REGION`] for non-members) and the region count.
pub fn flood_regions(
    width: usize,
    height: usize,
    connectivity: Connectivity,
    member: impl Fn(usize) -> bool,
    joined: impl Fn(usize, usize) -> bool,
    mut visit: impl FnMut(u32, usize),
) -> (Vec<u32>, usize) {
    let n = width * height;
    let mut region = vec![NO_REGION; n];
    let mut count = 0u32;
    let mut stack: Vec<usize> = Vec::new();
    for start in 0..n {
        if region[start] != NO_REGION || !member(start) {
            continue;
        }
        let id = count;
        count += 1;
        region[start] = id;
        stack.push(start);
        while let Some(p) = stack.pop() {
            visit(id, p);
            let (x, y) = (p % width, p / width);
            let mut reach = |q: usize| {
                if region[q] == NO_REGION && member(q) && joined(p, q) {
                    region[q] = id;
                    stack.push(q);
                }
            };
            match connectivity {
                Connectivity::Four => {
                    if x > 0 {
                        reach(p - 1);
                    }
                    if x + 1 < width {
                        reach(p + 1);
                    }
                    if y > 0 {
                        reach(p - width);
                    }
                    if y + 1 < height {
                        reach(p + width);
                    }
                }
                Connectivity::Eight => {
                    for ny in y.saturating_sub(1)..(y + 2).min(height) {
                        for nx in x.saturating_sub(1)..(x + 2).min(width) {
                            reach(ny * width + nx);
                        }
                    }
                }
            }
        }
    }
    (region, count as usize)
}

/// The connected components of the `true` pixels of a mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Components {
    /// Component of every pixel, numbered 0.. in raster order; [`NO_REGION`] for `false` pixels.
    pub labels: Vec<u32>,
    /// Pixel count of each component.
    pub sizes: Vec<usize>,
    /// Image borders each component touches, a bitmask of the `SIDE_*` constants.
    pub sides: Vec<u8>,
}

/// Labels the connected components of the `true` pixels of a row-major `width x height` mask.
pub fn components(
    mask: &[bool],
    width: usize,
    height: usize,
    connectivity: Connectivity,
) -> Components {
    let (mut sizes, mut sides) = (Vec::new(), Vec::new());
    let (labels, _) = flood_regions(
        width,
        height,
        connectivity,
        |p| mask[p],
        |_, _| true,
        |id, p| {
            let id = id as usize;
            if id == sizes.len() {
                sizes.push(0);
                sides.push(0);
            }
            let (x, y) = (p % width, p / width);
            sizes[id] += 1;
            for (touches, side) in [
                (x == 0, SIDE_LEFT),
                (x + 1 == width, SIDE_RIGHT),
                (y == 0, SIDE_TOP),
                (y + 1 == height, SIDE_BOTTOM),
            ] {
                if touches {
                    sides[id] |= side;
                }
            }
        },
    );
    Components {
        labels,
        sizes,
        sides,
    }
}

/// Keeps only the largest component of the `true` pixels (the first in raster order wins a tie).
pub fn largest_component(
    mask: &[bool],
    width: usize,
    height: usize,
    connectivity: Connectivity,
) -> Vec<bool> {
    let c = components(mask, width, height, connectivity);
    let mut best = NO_REGION;
    let mut best_size = 0usize;
    for (k, &size) in c.sizes.iter().enumerate() {
        if size > best_size {
            best_size = size;
            best = k as u32;
        }
    }
    c.labels
        .iter()
        .map(|&l| l != NO_REGION && l == best)
        .collect()
}

/// Fills holes: `false` pixels not 4-connected to the image border become `true`.
///
/// 4-connectivity for the background is the dual of 8-connectivity for the foreground: a
/// background region that only leaks out through a diagonal gap of an 8-connected ring is a hole.
pub fn fill_holes(mask: &[bool], width: usize, height: usize) -> Vec<bool> {
    let background: Vec<bool> = mask.iter().map(|&m| !m).collect();
    let c = components(&background, width, height, Connectivity::Four);
    c.labels
        .iter()
        .map(|&l| l == NO_REGION || c.sides[l as usize] == 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> (Vec<bool>, usize, usize) {
        let w = rows[0].len();
        let m = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| b == b'#'))
            .collect();
        (m, w, rows.len())
    }

    fn show(m: &[bool], w: usize) -> Vec<String> {
        m.chunks(w)
            .map(|r| r.iter().map(|&b| if b { '#' } else { '.' }).collect())
            .collect()
    }

    // Two diagonal pixels are one component under 8-connectivity and two under 4. The diagonal
    // pair touches the left and top borders through (0,0); the bar at the right touches the
    // top, right and bottom borders.
    #[test]
    fn components_by_connectivity_with_sizes_and_sides() {
        let (m, w, h) = mask(&["#...#", ".#..#", "....#"]);
        let eight = components(&m, w, h, Connectivity::Eight);
        assert_eq!(eight.sizes, vec![2, 3]);
        assert_eq!(
            eight.sides,
            vec![SIDE_LEFT | SIDE_TOP, SIDE_TOP | SIDE_RIGHT | SIDE_BOTTOM]
        );
        assert_eq!(eight.labels[0], 0);
        assert_eq!(eight.labels[w + 1], 0);
        assert_eq!(eight.labels[1], NO_REGION);
        let four = components(&m, w, h, Connectivity::Four);
        assert_eq!(four.sizes, vec![1, 3, 1]);
        // Raster order of first pixel: (0,0), (4,0), then (1,1).
        assert_eq!(four.labels[w + 1], 2);
    }

    // The ring's inside is a hole and is filled; the notch at the bottom-right opens the second
    // ring's inside to the border, so it stays background. Largest keeps the 14-pixel ring.
    #[test]
    fn holes_fill_and_largest_component() {
        let (m, w, h) = mask(&[
            "#####....", //
            "#...#.###", //
            "#...#.#.#", //
            "#####.#..", //
        ]);
        let filled = fill_holes(&m, w, h);
        assert_eq!(
            show(&filled, w),
            vec!["#####....", "#####.###", "#####.#.#", "#####.#.."]
        );
        let big = largest_component(&m, w, h, Connectivity::Eight);
        assert_eq!(
            show(&big, w),
            vec!["#####....", "#...#....", "#...#....", "#####...."]
        );
        assert!(largest_component(&[false; 6], 3, 2, Connectivity::Four)
            .iter()
            .all(|&b| !b));
    }

    // Regions of equal labels, with the visit order of a 4-connected fill: (0,0) pushes its right
    // neighbour 1 then the one below, 3; the last pushed is visited first, 3 pushes 4, then 1.
    #[test]
    fn flood_regions_joins_equal_labels_in_a_fixed_order() {
        let labels = [1, 1, 2, 1, 1, 2];
        let mut order = Vec::new();
        let (region, n) = flood_regions(
            3,
            2,
            Connectivity::Four,
            |_| true,
            |p, q| labels[p] == labels[q],
            |id, p| order.push((id, p)),
        );
        assert_eq!(n, 2);
        assert_eq!(region, vec![0, 0, 1, 0, 0, 1]);
        assert_eq!(order, vec![(0, 0), (0, 3), (0, 4), (0, 1), (1, 2), (1, 5)]);
    }
}
