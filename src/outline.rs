//! Ground-truth tumour outlines beside a class-folder test set (`data.masks`): where the mask of each
//! image is, and reading one onto the model's map grid.
//!
//! Two layouts: a parallel tree (`<root>/masks/<split>/<class>/<stem>.png` for the image
//! `<root>/<split>/<class>/<stem>.<ext>`) or a suffix beside the image (`<stem>_mask.<ext>`, the
//! kaggle_3m convention). A mask is a binary or label image: any non-zero pixel is tumour. An image
//! without a mask has no outline (no figures, not an error); a mask that cannot be read, or whose size
//! differs from its image's, is an error of that image naming both files; a mask that belongs to no
//! image is logged and skipped.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dataset::{self, Limits, Sample};
use crate::error::{Error, Result};

/// Where the outlines are.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MaskLayout {
    /// No outlines.
    #[default]
    None,
    /// `<root>/masks/<split>/<class>/<stem>.png` beside `<root>/<split>/<class>/<stem>.<ext>`.
    Tree,
    /// `<stem>_mask.<ext>` in the image's own folder.
    Suffix,
}

/// `data.masks`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MaskConfig {
    pub layout: MaskLayout,
    /// Tree layout only: the folder holding `<class>/<stem>.png`. Default: `masks/<split>` under the
    /// test set's parent folder (for `data.root/Testing`, `data.root/masks/Testing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Classes whose images have no tumour: they get no localisation figures (an outline with tumour
    /// pixels found for one of their images is logged and ignored).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tumor_free_classes: Vec<String>,
}

impl MaskConfig {
    pub fn is_default(&self) -> bool {
        *self == MaskConfig::default()
    }

    /// The tree layout's mask folder for the test set `test_dir`.
    pub fn tree_dir(&self, test_dir: &Path) -> PathBuf {
        if let Some(d) = &self.dir {
            return d.clone();
        }
        let split = test_dir.file_name().map(PathBuf::from).unwrap_or_default();
        let parent = test_dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        parent.join("masks").join(split)
    }

    /// Names in `tumor_free_classes` must be classes of the model.
    pub fn check(&self, classes: &[String]) -> Result<()> {
        if let Some(c) = self
            .tumor_free_classes
            .iter()
            .find(|c| !classes.contains(c))
        {
            return Err(Error::key(
                "data.masks.tumor_free_classes",
                format!("`{c}` is not one of the classes {classes:?}"),
            ));
        }
        if self.dir.is_some() && self.layout != MaskLayout::Tree {
            return Err(Error::key(
                "data.masks.dir",
                "a mask folder is only used with `layout: tree`",
            ));
        }
        Ok(())
    }
}

/// The masks found for a test set: image path -> mask path, and the labels without tumour.
#[derive(Clone, Debug, Default)]
pub struct Outlines {
    masks: HashMap<PathBuf, PathBuf>,
    tumor_free: HashSet<usize>,
}

/// Whether a file stem names a mask of the suffix layout (`<stem>_mask`).
fn suffix_base(path: &Path) -> Option<&str> {
    path.file_stem()?.to_str()?.strip_suffix("_mask")
}

fn stem(path: &Path) -> Option<String> {
    path.file_stem()?.to_str().map(str::to_string)
}

impl Outlines {
    /// No outlines at all.
    pub fn none() -> Outlines {
        Outlines::default()
    }

    /// Pairs the images of a class-folder test set with their masks. With the suffix layout, mask
    /// files are taken out of `samples` (they are not images to audit). Masks that belong to no image
    /// are logged and skipped; two masks for one image are an error naming both.
    pub fn discover(
        cfg: &MaskConfig,
        test_dir: &Path,
        classes: &[String],
        samples: Vec<Sample>,
    ) -> Result<(Vec<Sample>, Outlines)> {
        cfg.check(classes)?;
        let tumor_free = classes
            .iter()
            .enumerate()
            .filter(|(_, c)| cfg.tumor_free_classes.contains(c))
            .map(|(i, _)| i)
            .collect();
        let mut out = Outlines {
            masks: HashMap::new(),
            tumor_free,
        };
        match cfg.layout {
            MaskLayout::None => Ok((samples, out)),
            MaskLayout::Suffix => {
                let (masks, images): (Vec<Sample>, Vec<Sample>) = samples
                    .into_iter()
                    .partition(|s| suffix_base(&s.path).is_some());
                // (folder, stem) -> image paths
                let mut by_stem: HashMap<(PathBuf, String), Vec<PathBuf>> = HashMap::new();
                for s in &images {
                    if let (Some(dir), Some(st)) = (s.path.parent(), stem(&s.path)) {
                        by_stem
                            .entry((dir.to_path_buf(), st))
                            .or_default()
                            .push(s.path.clone());
                    }
                }
                for m in masks {
                    let base = suffix_base(&m.path).unwrap_or_default().to_string();
                    let dir = m.path.parent().unwrap_or(Path::new("")).to_path_buf();
                    match by_stem.get(&(dir, base)) {
                        Some(imgs) => {
                            for img in imgs {
                                out.insert(img, &m.path)?;
                            }
                        }
                        None => tracing::warn!(
                            "mask {} matches no image (expected {} beside it): skipped",
                            m.path.display(),
                            "<stem>.<ext> for <stem>_mask.<ext>"
                        ),
                    }
                }
                Ok((images, out))
            }
            MaskLayout::Tree => {
                let root = cfg.tree_dir(test_dir);
                if !root.is_dir() {
                    return Err(Error::Dataset {
                        path: root,
                        message:
                            "data.masks.layout is `tree` but this mask folder does not exist; \
                                  expected <mask folder>/<class>/<stem>.png"
                                .into(),
                    });
                }
                // class -> stem -> image paths
                let mut by_stem: HashMap<(usize, String), Vec<PathBuf>> = HashMap::new();
                for s in &samples {
                    if let (Some(l), Some(st)) = (s.label, stem(&s.path)) {
                        by_stem.entry((l, st)).or_default().push(s.path.clone());
                    }
                }
                for found in dataset::class_folders(&root)? {
                    if !classes.contains(&found) {
                        tracing::warn!(
                            "mask folder {} is not one of the classes {classes:?}: its masks are skipped",
                            root.join(&found).display()
                        );
                    }
                }
                for (label, class) in classes.iter().enumerate() {
                    let dir = root.join(class);
                    if !dir.is_dir() {
                        continue;
                    }
                    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
                    for e in std::fs::read_dir(&dir)
                        .map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?
                    {
                        let p = e
                            .map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?
                            .path();
                        if p.is_dir()
                            || p.file_name()
                                .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
                        {
                            continue;
                        }
                        if !dataset::has_image_extension(&p) {
                            tracing::info!("skipped {}: not an image file", p.display());
                            continue;
                        }
                        let Some(st) = stem(&p) else {
                            tracing::warn!(
                                "mask {} has a name that is not UTF-8: skipped",
                                p.display()
                            );
                            continue;
                        };
                        if let Some(other) = files.insert(st.clone(), p.clone()) {
                            return Err(Error::Dataset {
                                path: p,
                                message: format!(
                                    "two masks for the stem `{st}` ({} and this one): keep one",
                                    other.display()
                                ),
                            });
                        }
                    }
                    for (st, p) in files {
                        match by_stem.get(&(label, st)) {
                            Some(imgs) => {
                                for img in imgs {
                                    out.insert(img, &p)?;
                                }
                            }
                            None => tracing::warn!(
                                "mask {} matches no image of class `{class}` under {}: skipped",
                                p.display(),
                                test_dir.display()
                            ),
                        }
                    }
                }
                Ok((samples, out))
            }
        }
    }

    fn insert(&mut self, image: &Path, mask: &Path) -> Result<()> {
        if let Some(other) = self.masks.insert(image.to_path_buf(), mask.to_path_buf()) {
            return Err(Error::Dataset {
                path: image.to_path_buf(),
                message: format!(
                    "two masks for this image ({} and {}): keep one",
                    other.display(),
                    mask.display()
                ),
            });
        }
        Ok(())
    }

    /// Images that have a mask file.
    pub fn len(&self) -> usize {
        self.masks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    /// The mask file of an image, if it has one.
    pub fn mask_of(&self, image: &Path) -> Option<&Path> {
        self.masks.get(image).map(PathBuf::as_path)
    }

    /// The outline of one sample on the `side x side` map grid: `Ok(None)` when the image has no
    /// mask, its class has no tumour, or its mask has no tumour pixel on the grid; `Err` (naming both
    /// files) when the mask cannot be read or differs in size from its image (`width x height`).
    pub fn outline(
        &self,
        sample: &Sample,
        width: u32,
        height: u32,
        side: usize,
        limits: Limits,
    ) -> std::result::Result<Option<Outline>, String> {
        let Some(mask) = self.mask_of(&sample.path) else {
            return Ok(None);
        };
        let grid = read_mask(mask, &sample.path, width, height, side, limits)?;
        let pixels = grid.iter().filter(|&&b| b).count();
        if sample.label.is_some_and(|l| self.tumor_free.contains(&l)) {
            if pixels > 0 {
                tracing::warn!(
                    "mask {} has tumour pixels but its image {} is of a class without tumour \
                     (data.masks.tumor_free_classes): ignored",
                    mask.display(),
                    sample.path.display()
                );
            }
            return Ok(None);
        }
        if pixels == 0 {
            tracing::info!(
                "mask {} has no tumour pixel on the {side}x{side} map grid: no outline for {}",
                mask.display(),
                sample.path.display()
            );
            return Ok(None);
        }
        Ok(Some(Outline {
            mask_path: mask.to_path_buf(),
            side,
            inside: grid,
            pixels,
        }))
    }
}

/// An image's outline on the map grid.
#[derive(Clone, Debug)]
pub struct Outline {
    pub mask_path: PathBuf,
    pub side: usize,
    /// Row-major `side x side`: true = tumour.
    pub inside: Vec<bool>,
    /// Tumour pixels on the grid (> 0).
    pub pixels: usize,
}

impl Outline {
    /// Share of the grid inside the outline.
    pub fn area_fraction(&self) -> f64 {
        self.pixels as f64 / (self.side * self.side) as f64
    }
}

/// Reads a mask (any non-zero channel value = tumour, alpha ignored), checks that it is the size of
/// its image, and resizes it to `side x side` with nearest-neighbour sampling.
pub fn read_mask(
    mask: &Path,
    image: &Path,
    width: u32,
    height: u32,
    side: usize,
    limits: Limits,
) -> std::result::Result<Vec<bool>, String> {
    let bytes =
        std::fs::read(mask).map_err(|e| format!("mask {}: cannot read: {e}", mask.display()))?;
    if bytes.is_empty() {
        return Err(format!("mask {}: empty file", mask.display()));
    }
    let img =
        dataset::decode(&bytes, limits).map_err(|e| format!("mask {}: {e}", mask.display()))?;
    let (mw, mh) = (img.width(), img.height());
    if (mw, mh) != (width, height) {
        return Err(format!(
            "mask {} is {mw}x{mh} pixels but its image {} is {width}x{height}: a mask must be the \
             size of its image",
            mask.display(),
            image.display()
        ));
    }
    let rgb = img.to_rgb16();
    let (w, h) = (mw as usize, mh as usize);
    let mut grid = vec![false; side * side];
    for gy in 0..side {
        let sy = ((gy * 2 + 1) * h / (2 * side)).min(h - 1);
        for gx in 0..side {
            let sx = ((gx * 2 + 1) * w / (2 * side)).min(w - 1);
            let p = rgb.get_pixel(sx as u32, sy as u32);
            grid[gy * side + gx] = p.0.iter().any(|&v| v != 0);
        }
    }
    Ok(grid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma};

    fn sample(path: &Path, label: usize) -> Sample {
        Sample {
            path: path.to_path_buf(),
            label: Some(label),
        }
    }

    #[test]
    fn tree_pairs_by_class_and_stem_and_reads_label_images() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let test = root.join("Testing");
        let img = test.join("yes").join("a.jpg");
        std::fs::create_dir_all(img.parent().unwrap()).unwrap();
        std::fs::write(&img, b"x").unwrap();
        let mdir = root.join("masks").join("Testing").join("yes");
        std::fs::create_dir_all(&mdir).unwrap();
        // A label image: value 2 is tumour too; the left half only.
        GrayImage::from_fn(8, 4, |x, _| Luma([if x < 4 { 2 } else { 0 }]))
            .save(mdir.join("a.png"))
            .unwrap();
        GrayImage::new(8, 4).save(mdir.join("orphan.png")).unwrap();
        let cfg = MaskConfig {
            layout: MaskLayout::Tree,
            ..Default::default()
        };
        let classes = vec!["no".to_string(), "yes".to_string()];
        let (samples, o) =
            Outlines::discover(&cfg, &test, &classes, vec![sample(&img, 1)]).unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(o.len(), 1, "the orphan mask pairs with nothing");
        let out = o
            .outline(&samples[0], 8, 4, 4, Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(out.pixels, 8);
        for y in 0..4 {
            assert_eq!(&out.inside[y * 4..y * 4 + 4], &[true, true, false, false]);
        }
        assert!((out.area_fraction() - 0.5).abs() < 1e-12);
        // Another size than the image: an error naming both files.
        let e = o
            .outline(&samples[0], 16, 4, 4, Limits::default())
            .unwrap_err();
        assert!(
            e.contains("a.png") && e.contains("a.jpg") && e.contains("8x4"),
            "{e}"
        );
        // A tumour-free class gets no outline.
        let cfg = MaskConfig {
            layout: MaskLayout::Tree,
            tumor_free_classes: vec!["yes".into()],
            ..Default::default()
        };
        let (samples, o) =
            Outlines::discover(&cfg, &test, &classes, vec![sample(&img, 1)]).unwrap();
        assert!(o
            .outline(&samples[0], 8, 4, 4, Limits::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn suffix_takes_masks_out_of_the_images_and_unreadable_masks_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let test = dir.path().join("Testing");
        let c = test.join("yes");
        std::fs::create_dir_all(&c).unwrap();
        let (img, mask, stray) = (
            c.join("s_1.tif"),
            c.join("s_1_mask.tif"),
            c.join("t_mask.tif"),
        );
        for p in [&img, &mask, &stray] {
            std::fs::write(p, b"not an image").unwrap();
        }
        let cfg = MaskConfig {
            layout: MaskLayout::Suffix,
            ..Default::default()
        };
        let classes = vec!["yes".to_string()];
        let all = vec![sample(&img, 0), sample(&mask, 0), sample(&stray, 0)];
        let (samples, o) = Outlines::discover(&cfg, &test, &classes, all).unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].path, img);
        assert_eq!(o.mask_of(&img), Some(mask.as_path()));
        let e = o
            .outline(&samples[0], 8, 8, 4, Limits::default())
            .unwrap_err();
        assert!(e.contains("s_1_mask.tif"), "{e}");
    }

    #[test]
    fn unknown_tumor_free_class_is_a_key_error() {
        let cfg = MaskConfig {
            layout: MaskLayout::Tree,
            tumor_free_classes: vec!["healthy".into()],
            ..Default::default()
        };
        let e = cfg.check(&["no".into(), "yes".into()]).unwrap_err();
        assert!(
            e.to_string().contains("data.masks.tumor_free_classes"),
            "{e}"
        );
    }
}
