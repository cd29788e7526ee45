//! A user-supplied label image as the segmentation (the same superpixels for every image), and
//! the errors reading it can raise.

use super::Segmentation;
use std::path::{Path, PathBuf};

/// Why a user-supplied label image could not be used; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The file could not be opened or read.
    #[error("cannot read label image {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a decodable image.
    #[error("cannot decode label image {}: {source}", path.display())]
    Decode {
        path: PathBuf,
        source: image::ImageError,
    },
    /// The pixel type cannot carry segment ids (e.g. float or 16-bit colour).
    #[error("label image {} has pixel type {color}; expected grey 8/16-bit (or 8-bit RGB ids)", path.display())]
    UnsupportedPixelType { path: PathBuf, color: String },
    /// The image has no pixels to resize from.
    #[error("label image {} is empty ({w}x{h})", path.display())]
    Empty { path: PathBuf, w: u32, h: u32 },
}

/// A user-supplied label image (grey 8/16-bit PNG whose pixel values are segment ids), resized with nearest neighbour to width x height if its size differs.
///
/// Grey+alpha images use the grey value; 8-bit RGB(A) images use the packed 24-bit colour as the
/// id (label images are often saved as colour maps). Ids are renumbered consecutively.
pub fn from_label_image(
    path: &Path,
    width: usize,
    height: usize,
) -> Result<Segmentation, SegmentError> {
    use image::DynamicImage as D;
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|source| SegmentError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let img = reader.decode().map_err(|source| SegmentError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    let (sw, sh) = (img.width() as usize, img.height() as usize);
    let raw: Vec<u32> = match &img {
        D::ImageLuma8(b) => b.as_raw().iter().map(|&v| v as u32).collect(),
        D::ImageLuma16(b) => b.as_raw().iter().map(|&v| v as u32).collect(),
        D::ImageLumaA8(b) => b.as_raw().chunks_exact(2).map(|v| v[0] as u32).collect(),
        D::ImageLumaA16(b) => b.as_raw().chunks_exact(2).map(|v| v[0] as u32).collect(),
        D::ImageRgb8(b) => b.as_raw().chunks_exact(3).map(pack_rgb).collect(),
        D::ImageRgba8(b) => b.as_raw().chunks_exact(4).map(pack_rgb).collect(),
        other => {
            return Err(SegmentError::UnsupportedPixelType {
                path: path.to_path_buf(),
                color: format!("{:?}", other.color()),
            })
        }
    };
    if width == 0 || height == 0 {
        return Ok(Segmentation::empty(width, height));
    }
    if sw == 0 || sh == 0 {
        return Err(SegmentError::Empty {
            path: path.to_path_buf(),
            w: sw as u32,
            h: sh as u32,
        });
    }
    if (sw, sh) == (width, height) {
        return Ok(Segmentation::from_raw_labels(width, height, &raw));
    }
    // Nearest neighbour by pixel centres: ids must never be interpolated into ids that do not exist.
    let src_x: Vec<usize> = (0..width)
        .map(|x| (((x as f64 + 0.5) * sw as f64 / width as f64) as usize).min(sw - 1))
        .collect();
    let mut resized = Vec::with_capacity(width * height);
    for y in 0..height {
        let sy = (((y as f64 + 0.5) * sh as f64 / height as f64) as usize).min(sh - 1);
        resized.extend(src_x.iter().map(|&sx| raw[sy * sw + sx]));
    }
    Ok(Segmentation::from_raw_labels(width, height, &resized))
}

fn pack_rgb(v: &[u8]) -> u32 {
    ((v[0] as u32) << 16) | ((v[1] as u32) << 8) | v[2] as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("segment-test-{}-{name}", std::process::id()))
    }

    // Writing a known 8-bit label PNG and reading it back at the same size must give the
    // same partition (renumbered); at double size each pixel becomes a 2x2 block.
    #[test]
    fn label_image_round_trip() {
        let path = temp_path("labels8.png");
        let raw: Vec<u8> = (0..16 * 12)
            .map(|p| (((p % 16) / 4 + 4 * ((p / 16) / 6)) * 10) as u8)
            .collect();
        image::GrayImage::from_raw(16, 12, raw.clone())
            .expect("buffer size matches")
            .save(&path)
            .expect("write temp png");
        let s = from_label_image(&path, 16, 12).expect("read back");
        let expect = Segmentation::from_raw_labels(
            16,
            12,
            &raw.iter().map(|&v| v as u32).collect::<Vec<_>>(),
        );
        assert_eq!(s, expect);
        assert_eq!(s.n_segments, 8);

        let up = from_label_image(&path, 32, 24).expect("read resized");
        for y in 0..24 {
            for x in 0..32 {
                assert_eq!(up.labels[y * 32 + x], s.labels[(y / 2) * 16 + x / 2]);
            }
        }
        std::fs::remove_file(&path).ok();
    }

    // 16-bit ids above 255 must survive (they are ids, not intensities), and downsizing with
    // nearest neighbour must not invent ids.
    #[test]
    fn label_image_16bit_and_downsize() {
        let path = temp_path("labels16.png");
        let raw: Vec<u16> = (0..8 * 8)
            .map(|p| if p % 8 < 4 { 1000 } else { 60000 })
            .collect();
        image::ImageBuffer::<image::Luma<u16>, _>::from_raw(8, 8, raw)
            .expect("buffer size matches")
            .save(&path)
            .expect("write temp png");
        let s = from_label_image(&path, 4, 2).expect("read back");
        assert_eq!(s.labels, vec![0, 0, 1, 1, 0, 0, 1, 1]);
        std::fs::remove_file(&path).ok();
    }

    // A missing file must be an error (not a panic) whose message names the path.
    #[test]
    fn label_image_missing_file_names_path() {
        let path = temp_path("does-not-exist.png");
        let err = from_label_image(&path, 8, 8).expect_err("missing file");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        // A file that is not an image is a decode error, also naming the path.
        let bad = temp_path("not-a-png.png");
        std::fs::write(&bad, b"hello").expect("write temp file");
        let msg = from_label_image(&bad, 8, 8)
            .expect_err("garbage")
            .to_string();
        assert!(msg.contains(&bad.display().to_string()), "{msg}");
        std::fs::remove_file(&bad).ok();
    }
}
