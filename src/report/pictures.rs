//! The pictures of the report's image pages, under `report-assets/`: each image's file at full
//! resolution (`inputs/<id>.jpg`), the model's input (`inputs/<id>-model.png`), each method's map
//! coloured alone (`heat/<id>-<k>.png`, laid over the model input by the browser at the display's
//! opacity, which is the same blend as the strips), the ground-truth outline as a transparent picture
//! laid over the input and each map (`outline/<id>.png`, when the image has one), and the colour scale
//! (`colorbar.png`). Nothing here reads the database: the maps come through a closure.
use std::path::Path;

use std::collections::HashMap;

use image::{RgbImage, Rgba, RgbaImage};

use super::assets::{in_chunks, save_jpeg};
use super::ReportError;
use crate::config::ImageConfig;
use crate::dataset::{self, Limits};
use crate::display::{self, DisplayParams};
use crate::query::report::{GalleryEntry, StoredMap, StoredOutline};

/// JPEG quality of the full-resolution inputs (grey scans: artefacts stay below what the eye sees).
const INPUT_QUALITY: u8 = 90;

/// Images whose pictures are made at once (their maps are held in memory together).
const CHUNK: usize = 64;

/// What was written for one image, for its page.
#[derive(Debug, Clone, Default)]
pub struct ImagePictures {
    /// `inputs/<id>.jpg` and its width x height, when the original could be read.
    pub original: Option<(String, u32, u32)>,
    /// `inputs/<id>-model.png`, the model's input (None without the original or the image config).
    pub model_input: Option<String>,
    /// Size of the model's input in pixels.
    pub model_size: usize,
    /// The model input in words (size, grey or RGB, resize, channel order, scaling).
    pub model_input_words: String,
    /// Per method (run order): `heat/<id>-<k>.png` and the raw values of the colour scale's ends.
    pub maps: Vec<Option<(String, (f32, f32))>>,
    /// `outline/<id>.png`: the ground-truth outline's contour on a transparent ground.
    pub outline: Option<String>,
}

/// Colour of the outline's contour: magenta, which neither the grey scan nor the jet and diverging
/// colour maps use.
const OUTLINE_COLOUR: Rgba<u8> = Rgba([255, 0, 255, 255]);

/// The outline's contour, `scale` times its stored grid: the pixels inside (coverage at least half)
/// with a 4-neighbour outside or on the picture's edge, thickened to two pixels; the rest transparent.
pub fn outline_picture(o: &StoredOutline, scale: usize) -> RgbaImage {
    let side = o.size * scale;
    let inside = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && (x as usize) < side
            && (y as usize) < side
            && o.coverage[(y as usize / scale) * o.size + x as usize / scale] >= 128
    };
    RgbaImage::from_fn(side as u32, side as u32, |x, y| {
        let (x, y) = (x as i64, y as i64);
        let edge = |x: i64, y: i64| {
            inside(x, y)
                && [(-1, 0), (1, 0), (0, -1), (0, 1)]
                    .iter()
                    .any(|(dx, dy)| !inside(x + dx, y + dy))
        };
        if edge(x, y) || edge(x + 1, y) || edge(x, y + 1) {
            OUTLINE_COLOUR
        } else {
            Rgba([0, 0, 0, 0])
        }
    })
}

/// `<file>` under the assets: a colour scale, 256 x 1 (the page stretches it). Returns its path
/// relative to the report folder.
pub fn write_colorbar(
    dir: &Path,
    file: &str,
    params: &DisplayParams,
) -> Result<String, ReportError> {
    save_png(&display::scale_image(256, 1, params), &dir.join(file))?;
    Ok(format!("{}/{file}", super::ASSETS))
}

/// Writes the pictures of every entry's page (in parallel, in chunks); `names[i]` is entry `i`'s
/// asset name, `maps_of` reads an image's stored maps.
pub fn write_all(
    dir: &Path,
    entries: &[GalleryEntry],
    names: &[String],
    cfg: Option<&ImageConfig>,
    params: &DisplayParams,
    outlines: &HashMap<String, StoredOutline>,
    maps_of: impl FnMut(&str) -> Result<Vec<Option<StoredMap>>, ReportError>,
) -> Result<Vec<ImagePictures>, ReportError> {
    let subs: &[&str] = if outlines.is_empty() {
        &["inputs", "heat"]
    } else {
        &["inputs", "heat", "outline"]
    };
    for sub in subs {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| ReportError::io("create", &d, e))?;
    }
    in_chunks(entries, CHUNK, maps_of, |i, e, maps| {
        let pics = one_image(dir, e, &names[i], cfg, params, maps)?;
        with_outline(dir, pics, &names[i], outlines.get(&e.image_id))
    })
}

fn one_image(
    dir: &Path,
    e: &GalleryEntry,
    name: &str,
    cfg: Option<&ImageConfig>,
    params: &DisplayParams,
    maps: &[Option<StoredMap>],
) -> Result<ImagePictures, ReportError> {
    let assets = super::ASSETS;
    let mut pics = ImagePictures::default();
    // The same rule as the strips: the original only when it is still the audited file.
    if let Ok(d) = dataset::read_image(Path::new(&e.path), Limits::default()) {
        if d.id == e.image_id {
            let rgb = d.image.to_rgb8();
            let file = format!("inputs/{name}.jpg");
            save_jpeg(&rgb, &dir.join(&file), INPUT_QUALITY)?;
            pics.original = Some((format!("{assets}/{file}"), rgb.width(), rgb.height()));
            if let Some(cfg) = cfg {
                let prep = crate::preprocess::prepare(&d.image, cfg);
                let s = prep.size;
                let grey = display::grey_to_rgb(&prep.grey, s as u32, s as u32, 1);
                let file = format!("inputs/{name}-model.png");
                save_png(&grey, &dir.join(&file))?;
                pics.model_input = Some(format!("{assets}/{file}"));
                pics.model_size = s;
                pics.model_input_words = cfg.describe();
            }
        }
    }
    for (k, m) in maps.iter().enumerate() {
        pics.maps.push(match m {
            Some((w, h, values)) => {
                let img = display::heatmap(values, *w as u32, *h as u32, params);
                let file = format!("heat/{name}-{k}.png");
                save_png(&img, &dir.join(&file))?;
                Some((
                    format!("{assets}/{file}"),
                    display::display_range(values, params),
                ))
            }
            None => None,
        });
    }
    Ok(pics)
}

/// Adds the outline's picture (four times the stored grid) when the image has one.
fn with_outline(
    dir: &Path,
    mut pics: ImagePictures,
    name: &str,
    outline: Option<&StoredOutline>,
) -> Result<ImagePictures, ReportError> {
    if let Some(o) = outline {
        let file = format!("outline/{name}.png");
        let path = dir.join(&file);
        outline_picture(o, 4)
            .save_with_format(&path, image::ImageFormat::Png)
            .map_err(|e| ReportError::write(&path, e))?;
        pics.outline = Some(format!("{}/{file}", super::ASSETS));
    }
    Ok(pics)
}

fn save_png(img: &RgbImage, path: &Path) -> Result<(), ReportError> {
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| ReportError::write(path, e))
}
