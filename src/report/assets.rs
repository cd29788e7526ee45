//! The report's asset files under `report-assets/`: the gallery strips (JPEG), the mean maps (PNG), the
//! SVG plots, and the byte counts of what was written. The
//! data comes from the section builders; nothing here reads the database.
use std::path::{Path, PathBuf};

use image::RgbImage;
use rayon::prelude::*;

use super::plots::{self, Panel, SeriesLabelPosition};
use super::sections::{FaithfulnessPlot, SanityPlot, Series};
use super::view::GalleryGroup;
use super::{ReportError, ASSETS};
use crate::config::ImageConfig;
use crate::dataset::{self, Limits};
use crate::display::{self, DisplayParams};
use crate::query::bias::{self, MeanMap};
use crate::query::report::{GalleryEntry, StoredMap};
use crate::query::Rules;

/// Gallery strips are JPEG: jet overlays compress badly as PNG (measured on real maps: about 134 KB
/// for a strip of seven 112-pixel tiles, 39 KB as JPEG at this quality). The mean maps and plots stay
/// lossless.
pub const JPEG_QUALITY: u8 = 85;

/// Gap (white pixels) to the right of each tile of a strip.
const STRIP_GAP: u32 = 4;

/// Gallery images whose strips are made at once: their maps are held in memory together.
const STRIP_CHUNK: usize = 64;

/// The asset folder of one report being written, and the files `report.html` shows before any
/// gallery strip (for the size of the first page).
pub struct Assets {
    pub dir: PathBuf,
    strips: PathBuf,
    pub first_page: Vec<PathBuf>,
}

impl Assets {
    /// Creates the asset folders in `report_dir`, a fresh folder (see [`crate::output`]).
    pub fn prepare(report_dir: &Path) -> Result<Assets, ReportError> {
        let dir = report_dir.join(ASSETS);
        let strips = dir.join("strips");
        std::fs::create_dir_all(&strips).map_err(|e| ReportError::io("create", &strips, e))?;
        let mean = dir.join("mean-maps");
        std::fs::create_dir_all(&mean).map_err(|e| ReportError::io("create", &mean, e))?;
        Ok(Assets {
            dir,
            strips,
            first_page: Vec::new(),
        })
    }

    /// `confusion.svg`; returns its path relative to the pages.
    pub fn confusion(
        &mut self,
        classes: &[String],
        confusion: &[Vec<usize>],
    ) -> Result<String, ReportError> {
        let p = self.dir.join("confusion.svg");
        plots::confusion(&p, classes, confusion)?;
        self.first_page.push(p);
        Ok(format!("{ASSETS}/confusion.svg"))
    }

    /// The mean-map tiles: `maps[k]` as `mean-maps/<name>` for each (k, name).
    pub fn mean_maps(
        &mut self,
        maps: &[MeanMap],
        files: &[(usize, String)],
    ) -> Result<(), ReportError> {
        for (k, name) in files {
            let p = self.dir.join("mean-maps").join(name);
            save_png(&bias::render(&maps[*k], 128), &p)?;
            self.first_page.push(p);
        }
        Ok(())
    }

    /// `shortcuts/region-<k>.png` per region: the class's mean map of the region's first method and an
    /// example image of the class (grey, 128 px; black when its file cannot be read), side by side,
    /// the region outlined in white on both. Returns (path relative to the pages, region) per picture.
    pub fn region_pictures(
        &mut self,
        regions: &[crate::query::shortcuts::RegionMask],
        maps: &[MeanMap],
        limits: crate::dataset::Limits,
    ) -> Result<Vec<(String, i64)>, ReportError> {
        const SIDE: u32 = 128;
        let dir = self.dir.join("shortcuts");
        std::fs::create_dir_all(&dir).map_err(|e| ReportError::io("create", &dir, e))?;
        let mut out = Vec::new();
        for r in regions {
            let mean = r
                .methods
                .iter()
                .find_map(|m| maps.iter().find(|x| x.label == r.class && &x.method == m));
            let left = mean.map_or_else(|| RgbImage::new(SIDE, SIDE), |m| bias::render(m, SIDE));
            let right = r
                .example_path
                .as_ref()
                .and_then(|p| crate::dataset::read_image(Path::new(p), limits).ok())
                .map(|d| {
                    image::DynamicImage::ImageLuma8(
                        d.image
                            .resize_exact(SIDE, SIDE, image::imageops::FilterType::Triangle)
                            .to_luma8(),
                    )
                    .to_rgb8()
                })
                .unwrap_or_else(|| RgbImage::new(SIDE, SIDE));
            let mut pic = RgbImage::new(2 * SIDE + 8, SIDE);
            image::imageops::replace(&mut pic, &left, 0, 0);
            image::imageops::replace(&mut pic, &right, (SIDE + 8) as i64, 0);
            for x0 in [0, SIDE + 8] {
                outline(&mut pic, &r.mask, r.grid, x0, SIDE);
            }
            let name = format!("region-{}.png", r.region);
            let p = dir.join(&name);
            save_png(&pic, &p)?;
            self.first_page.push(p);
            out.push((format!("{ASSETS}/shortcuts/{name}"), r.region));
        }
        Ok(out)
    }

    /// One picture per acquisition counterfactual: its example before (left) and after (right) the
    /// transformation, as the model sees it (grey, at least 128 px, nearest-neighbour enlarged).
    pub fn acquisition_pictures(
        &mut self,
        examples: &[crate::store::shortcuts::AcquisitionTestRecord],
    ) -> Result<Vec<String>, ReportError> {
        const SIDE: u32 = 128;
        let dir = self.dir.join("shortcuts");
        std::fs::create_dir_all(&dir).map_err(|e| ReportError::io("create", &dir, e))?;
        let mut out = Vec::new();
        for e in examples {
            let side = |png: &[u8]| {
                image::load_from_memory(png)
                    .map(|img| {
                        let g = img.to_luma8();
                        let s = SIDE.max(g.width());
                        image::DynamicImage::ImageLuma8(image::imageops::resize(
                            &g,
                            s,
                            s,
                            image::imageops::FilterType::Nearest,
                        ))
                        .to_rgb8()
                    })
                    .unwrap_or_else(|_| RgbImage::new(SIDE, SIDE))
            };
            let (before, after) = (
                side(e.example_before.as_deref().unwrap_or_default()),
                side(e.example_after.as_deref().unwrap_or_default()),
            );
            let mut pic = RgbImage::new(before.width() + 8 + after.width(), before.height());
            image::imageops::replace(&mut pic, &before, 0, 0);
            image::imageops::replace(&mut pic, &after, (before.width() + 8) as i64, 0);
            let name = format!("acquisition-{}.png", e.test);
            let p = dir.join(&name);
            save_png(&pic, &p)?;
            self.first_page.push(p);
            out.push(format!("{ASSETS}/shortcuts/{name}"));
        }
        Ok(out)
    }

    /// `hist-background.svg` and `hist-border.svg`, the thresholds of `rules` marked.
    pub fn histograms(
        &mut self,
        background: &Series,
        border: &Series,
        rules: &Rules,
    ) -> Result<(), ReportError> {
        let p = self.dir.join("hist-background.svg");
        plots::mass_histograms(&p, "Background mass", rules.background, background)?;
        self.first_page.push(p);
        let p = self.dir.join("hist-border.svg");
        plots::mass_histograms(&p, "Border-band mass", rules.border, border)?;
        self.first_page.push(p);
        Ok(())
    }

    /// `agreement.svg`: the method-agreement matrix.
    pub fn agreement(
        &mut self,
        titles: &[String],
        matrix: &[Vec<Option<f64>>],
    ) -> Result<(), ReportError> {
        let p = self.dir.join("agreement.svg");
        plots::agreement(&p, titles, matrix)?;
        self.first_page.push(p);
        Ok(())
    }

    /// `faithfulness.svg`: deletion and insertion curves side by side; returns its relative path.
    pub fn faithfulness(&mut self, plot: FaithfulnessPlot) -> Result<String, ReportError> {
        let p = self.dir.join("faithfulness.svg");
        let (lo, hi) = plot.y;
        let panel = |title, lines, legend| Panel {
            title,
            x_desc: "fraction of the pixels, most important first",
            y_desc: "mean score of the explained class",
            x: 0.0..1.0,
            y: lo..hi,
            x_ticks: None,
            threshold: None,
            lines,
            legend,
        };
        plots::line_panels(
            &p,
            &[
                panel(
                    "Deletion (lower = more faithful)",
                    plot.deletion,
                    SeriesLabelPosition::UpperRight,
                ),
                panel(
                    "Insertion (higher = more faithful)",
                    plot.insertion,
                    SeriesLabelPosition::LowerRight,
                ),
            ],
        )?;
        self.first_page.push(p);
        Ok(format!("{ASSETS}/faithfulness.svg"))
    }

    /// `sanity.svg`: similarity to the trained model's maps per stage; returns its relative path.
    pub fn sanity(&mut self, plot: SanityPlot) -> Result<String, ReportError> {
        let p = self.dir.join("sanity.svg");
        plots::line_panels(
            &p,
            &[Panel {
                title: "Similarity to the trained model's maps",
                x_desc: "stage: layer re-initialised (cumulative, from the output)",
                y_desc: "mean |Spearman| of |map|",
                x: -0.1..(plot.stages.len() as f64 - 0.9),
                y: 0.0..1.02,
                x_ticks: Some(&plot.stages),
                threshold: plot.threshold,
                lines: plot.lines,
                legend: SeriesLabelPosition::UpperRight,
            }],
        )?;
        self.first_page.push(p);
        Ok(format!("{ASSETS}/sanity.svg"))
    }

    /// One strip per gallery entry, `strips/<asset name>.jpg`, made in parallel in chunks (so memory
    /// does not grow with the number of images); `maps_of` reads an image's stored maps. Returns per
    /// entry, in order, the strip's file name and the note when the original could not be shown.
    pub fn strips(
        &self,
        entries: &[GalleryEntry],
        cfg: Option<&ImageConfig>,
        thumb: u32,
        params: &DisplayParams,
        maps_of: impl FnMut(&str) -> Result<Vec<Option<StoredMap>>, ReportError>,
    ) -> Result<Vec<(String, String)>, ReportError> {
        in_chunks(entries, STRIP_CHUNK, maps_of, |i, e, maps| {
            let name = format!("{}.jpg", super::view::asset_name(&e.image_id, i));
            let (img, note) = strip(Path::new(&e.path), &e.image_id, cfg, maps, thumb, params);
            save_jpeg(&img, &self.strips.join(&name), JPEG_QUALITY)?;
            Ok((name, note))
        })
    }
}

/// `work` on every entry, with its index and its stored maps, in parallel in chunks of `chunk` entries
/// (so memory does not grow with the number of images; `maps_of` reads the maps of a chunk one entry
/// after the other). The results in entry order.
pub(super) fn in_chunks<T: Send>(
    entries: &[GalleryEntry],
    chunk: usize,
    mut maps_of: impl FnMut(&str) -> Result<Vec<Option<StoredMap>>, ReportError>,
    work: impl Fn(usize, &GalleryEntry, &[Option<StoredMap>]) -> Result<T, ReportError> + Sync + Send,
) -> Result<Vec<T>, ReportError> {
    let mut out = Vec::with_capacity(entries.len());
    for (c, part) in entries.chunks(chunk).enumerate() {
        let jobs = part
            .iter()
            .enumerate()
            .map(|(k, e)| Ok((c * chunk + k, e, maps_of(&e.image_id)?)))
            .collect::<Result<Vec<_>, ReportError>>()?;
        let done = jobs
            .into_par_iter()
            .map(|(i, e, maps)| work(i, e, &maps))
            .collect::<Result<Vec<_>, ReportError>>()?;
        out.extend(done);
    }
    Ok(out)
}

/// Bytes of the strips shown on one page.
pub fn strip_bytes(report_dir: &Path, groups: &[GalleryGroup]) -> u64 {
    groups
        .iter()
        .flat_map(|g| &g.items)
        .map(|it| file_size(&report_dir.join(&it.strip)))
        .sum()
}

/// Bilinear resize of a row-major map (half-pixel centres, edges clamped).
fn resize_map(src: &[f32], w: usize, h: usize, to_w: usize, to_h: usize) -> Vec<f32> {
    if (w, h) == (to_w, to_h) || w == 0 || h == 0 {
        return src.to_vec();
    }
    let at = |x: usize, y: usize| {
        let v = src.get(y * w + x).copied().unwrap_or(0.0);
        if v.is_finite() {
            v
        } else {
            0.0
        }
    };
    let mut out = Vec::with_capacity(to_w * to_h);
    for y in 0..to_h {
        let fy = ((y as f32 + 0.5) * h as f32 / to_h as f32 - 0.5).clamp(0.0, (h - 1) as f32);
        let (y0, ty) = (fy.floor() as usize, fy - fy.floor());
        let y1 = (y0 + 1).min(h - 1);
        for x in 0..to_w {
            let fx = ((x as f32 + 0.5) * w as f32 / to_w as f32 - 0.5).clamp(0.0, (w - 1) as f32);
            let (x0, tx) = (fx.floor() as usize, fx - fx.floor());
            let x1 = (x0 + 1).min(w - 1);
            let top = at(x0, y0) * (1.0 - tx) + at(x1, y0) * tx;
            let bottom = at(x0, y1) * (1.0 - tx) + at(x1, y1) * tx;
            out.push(top * (1.0 - ty) + bottom * ty);
        }
    }
    out
}

/// One image's strip: the preprocessed grey input as the model saw it, then each method's overlay
/// (the notebook's display by default: |map| clipped at the 0.5 / 99.5 percentiles, jet at 40% over
/// the grey image; `params` from the config's `display:`), each `thumb` x `thumb`. The stored 64 x 64 map is resized bilinearly to the model input
/// size first. Returns the strip and a note when the original could not be used.
fn strip(
    path: &Path,
    image_id: &str,
    cfg: Option<&ImageConfig>,
    maps: &[Option<StoredMap>],
    thumb: u32,
    params: &DisplayParams,
) -> (RgbImage, String) {
    let mut note = String::new();
    let grey: Option<(Vec<f32>, usize)> = match cfg {
        None => {
            note = "the run's config has no données.image: maps shown without the scan".into();
            None
        }
        Some(cfg) => match dataset::read_image(path, Limits::default()) {
            Ok(d) if d.id == image_id => {
                let prep = crate::preprocess::prepare(&d.image, cfg);
                Some((prep.grey, prep.size))
            }
            Ok(_) => {
                note = "the file changed since the audit: maps shown without the scan".into();
                None
            }
            Err(e) => {
                note = format!("original not readable ({e}): maps shown without the scan");
                None
            }
        },
    };
    let size = grey.as_ref().map_or_else(
        || {
            maps.iter()
                .flatten()
                .map(|m| m.0)
                .next()
                .unwrap_or(thumb as usize)
        },
        |g| g.1,
    );
    let black = vec![0f32; size * size];
    let grey_px: &[f32] = grey.as_ref().map_or(&black, |g| &g.0);
    let fit = |img: RgbImage| {
        if img.width() == thumb && img.height() == thumb {
            img
        } else {
            image::imageops::resize(&img, thumb, thumb, image::imageops::FilterType::Triangle)
        }
    };
    let mut tiles = vec![fit(display::grey_to_rgb(
        grey_px,
        size as u32,
        size as u32,
        1,
    ))];
    for m in maps {
        tiles.push(match m {
            Some((w, h, values)) => {
                let big = resize_map(values, *w, *h, size, size);
                fit(display::overlay(
                    grey_px,
                    1,
                    &big,
                    size as u32,
                    size as u32,
                    params,
                ))
            }
            None => RgbImage::from_pixel(thumb, thumb, image::Rgb([235, 235, 235])),
        });
    }
    let step = thumb + STRIP_GAP;
    let mut out = RgbImage::from_pixel(
        step * tiles.len() as u32,
        thumb,
        image::Rgb([255, 255, 255]),
    );
    for (i, t) in tiles.iter().enumerate() {
        image::imageops::replace(&mut out, t, (i as u32 * step) as i64, 0);
    }
    (out, note)
}

/// Draws the boundary of a grid mask, scaled to `side` pixels, in white at column offset `x0`.
fn outline(img: &mut RgbImage, mask: &[bool], grid: usize, x0: u32, side: u32) {
    if grid == 0 || mask.len() != grid * grid {
        return;
    }
    let at = |x: u32, y: u32| -> bool {
        mask[(y as usize * grid / side as usize) * grid + x as usize * grid / side as usize]
    };
    for y in 0..side {
        for x in 0..side {
            if !at(x, y) {
                continue;
            }
            let edge = x == 0
                || y == 0
                || x + 1 == side
                || y + 1 == side
                || !at(x - 1, y)
                || !at(x + 1, y)
                || !at(x, y - 1)
                || !at(x, y + 1);
            if edge {
                img.put_pixel(x0 + x, y, image::Rgb([255, 255, 255]));
            }
        }
    }
}

fn save_png(img: &RgbImage, path: &Path) -> Result<(), ReportError> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder as _;
    let f = std::io::BufWriter::new(
        std::fs::File::create(path).map_err(|e| ReportError::io("write", path, e))?,
    );
    PngEncoder::new_with_quality(f, CompressionType::Best, FilterType::Adaptive)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| ReportError::write(path, e))
}

/// `img` as a JPEG file of `quality` (1-100).
pub(super) fn save_jpeg(img: &RgbImage, path: &Path, quality: u8) -> Result<(), ReportError> {
    let f = std::io::BufWriter::new(
        std::fs::File::create(path).map_err(|e| ReportError::io("write", path, e))?,
    );
    image::codecs::jpeg::JpegEncoder::new_with_quality(f, quality)
        .encode_image(img)
        .map_err(|e| ReportError::write(path, e))
}

pub fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

pub fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                dir_size(&path)
            } else {
                file_size(&path)
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_map_keeps_constants_and_sizes() {
        let m = vec![2.0f32; 4 * 4];
        let r = resize_map(&m, 4, 4, 8, 8);
        assert_eq!(r.len(), 64);
        assert!(r.iter().all(|v| (v - 2.0).abs() < 1e-6));
        // A left-to-right ramp stays monotone.
        let ramp: Vec<f32> = (0..16).map(|i| (i % 4) as f32).collect();
        let r = resize_map(&ramp, 4, 4, 8, 8);
        assert!(r[..8].windows(2).all(|w| w[0] <= w[1]), "{r:?}");
    }
}
