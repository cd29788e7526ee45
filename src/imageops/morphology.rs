//! Binary morphology with square windows clipped to the image (dilation, erosion, closing),
//! counted with a summed-area table so the cost does not grow with the radius.

/// Count of `true` in a `(2r+1)`-square window clipped to the image, via a summed-area table;
/// returns (count, window area) per pixel.
fn window_counts(m: &[bool], w: usize, h: usize, r: usize) -> Vec<(u32, u32)> {
    let mut sat = vec![0u32; (w + 1) * (h + 1)];
    for y in 0..h {
        let mut row = 0u32;
        for x in 0..w {
            row += m[y * w + x] as u32;
            sat[(y + 1) * (w + 1) + x + 1] = sat[y * (w + 1) + x + 1] + row;
        }
    }
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let (y0, y1) = (y.saturating_sub(r), (y + r + 1).min(h));
        for x in 0..w {
            let (x0, x1) = (x.saturating_sub(r), (x + r + 1).min(w));
            let c = sat[y1 * (w + 1) + x1] + sat[y0 * (w + 1) + x0]
                - sat[y0 * (w + 1) + x1]
                - sat[y1 * (w + 1) + x0];
            out.push((c, ((y1 - y0) * (x1 - x0)) as u32));
        }
    }
    out
}

/// Dilation by a `(2r+1)`-square: a pixel is set when any pixel of its window is.
pub fn dilate(m: &[bool], w: usize, h: usize, r: usize) -> Vec<bool> {
    window_counts(m, w, h, r)
        .into_iter()
        .map(|(c, _)| c > 0)
        .collect()
}

/// Erosion by a `(2r+1)`-square with the window clipped to the image (pixels outside the
/// image do not count, so a region touching the border is not eaten from that side).
pub fn erode(m: &[bool], w: usize, h: usize, r: usize) -> Vec<bool> {
    window_counts(m, w, h, r)
        .into_iter()
        .map(|(c, a)| c == a)
        .collect()
}

/// Closing (dilation, then erosion): fills gaps and notches narrower than the square. With the
/// clipped windows it never removes a pixel, also at the border.
pub fn close(m: &[bool], w: usize, h: usize, r: usize) -> Vec<bool> {
    erode(&dilate(m, w, h, r), w, h, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> Vec<bool> {
        rows.iter()
            .flat_map(|r| r.bytes().map(|b| b == b'#'))
            .collect()
    }

    // Radius 1 on a 5x5 image: the dot dilates to its 3x3 square, the square erodes back to the
    // dot only where the whole window is set; a one-pixel gap in a bar is closed, and the closing
    // keeps every pixel it was given, also along the border.
    #[test]
    fn square_windows_clipped_to_the_image() {
        let dot = mask(&[".....", ".....", "..#..", ".....", "....."]);
        let square = mask(&[".....", ".###.", ".###.", ".###.", "....."]);
        assert_eq!(dilate(&dot, 5, 5, 1), square);
        assert_eq!(erode(&square, 5, 5, 1), dot);
        // Clipped windows: a full image erodes to itself.
        assert!(erode(&[true; 20], 5, 4, 2).iter().all(|&b| b));
        let gap = mask(&["##.##", ".....", ".....", "....."]);
        assert_eq!(
            close(&gap, 5, 4, 1),
            mask(&["#####", ".....", ".....", "....."])
        );
        // Counts and window areas at a corner, an edge and the middle of a 3x3 image, radius 1.
        let counts = window_counts(&[true; 9], 3, 3, 1);
        assert_eq!((counts[0], counts[1], counts[4]), ((4, 4), (6, 6), (9, 9)));
    }
}
