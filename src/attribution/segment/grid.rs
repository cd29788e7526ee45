//! A regular grid of near-equal rectangles as the segmentation (the simplest superpixels).

use super::Segmentation;

/// Regular grid of `cells_x` x `cells_y` rectangles (as equal as possible), covering the image.
///
/// Cell counts are clamped to 1..=width (resp. height) so every cell holds at least one pixel.
pub fn grid(width: usize, height: usize, cells_x: usize, cells_y: usize) -> Segmentation {
    if width == 0 || height == 0 {
        return Segmentation::empty(width, height);
    }
    let cx = cells_x.clamp(1, width);
    let cy = cells_y.clamp(1, height);
    // floor(i * cells / len) gives cell extents of floor(len/cells) or that plus one, spread
    // evenly instead of piling the remainder into the last cell.
    let col: Vec<usize> = (0..width).map(|x| x * cx / width).collect();
    let mut labels = Vec::with_capacity(width * height);
    for y in 0..height {
        let row = y * cy / height;
        labels.extend(col.iter().map(|&c| (row * cx + c) as u32));
    }
    // Cell ids already appear in raster order, but renumbering keeps the invariant obvious.
    Segmentation::from_raw_labels(width, height, &labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::segment::test_images::assert_consecutive;

    // 128/8 = 16 exactly, so every cell is 16x16 = 256 pixels, numbered row-major.
    #[test]
    fn grid_even() {
        let s = grid(128, 128, 8, 8);
        assert_eq!(s.n_segments, 64);
        assert!(s.sizes().iter().all(|&n| n == 256));
        assert_eq!(s.labels[127], 7);
        assert_eq!(s.labels[16 * 128], 8);
        assert_consecutive(&s);
    }

    // 128/10 is not whole: cells are 12 or 13 wide/high, so sizes are products of {12,13} and
    // the whole image is covered; widths and heights each differ by at most one.
    #[test]
    fn grid_uneven() {
        let s = grid(128, 128, 10, 10);
        assert_eq!(s.n_segments, 100);
        let sizes = s.sizes();
        assert_eq!(sizes.iter().sum::<usize>(), 128 * 128);
        assert!(
            sizes.iter().all(|&n| [144, 156, 169].contains(&n)),
            "{sizes:?}"
        );
        // Column widths along the first row.
        let mut widths = vec![0usize; 10];
        for x in 0..128 {
            widths[s.labels[x] as usize] += 1;
        }
        let (lo, hi) = (widths.iter().min().copied(), widths.iter().max().copied());
        assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{widths:?}");
        // Non-square grids and more cells than pixels are clamped, never panicking.
        assert_eq!(grid(30, 20, 3, 2).n_segments, 6);
        assert_eq!(grid(5, 4, 50, 0).n_segments, 5);
        assert_eq!(grid(0, 4, 2, 2).n_segments, 0);
    }
}
