//! Walks class-folder datasets (`<root>/<class>/<image>`), names labels from folder names, gives each
//! file a stable id (sha256 of its bytes), and reads/decodes files with decompression-bomb limits.
//! A file that cannot be used becomes a [`Skipped`] record with its reason; nothing panics.
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One image file found in a dataset.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub path: PathBuf,
    /// Index into the dataset's class list; `None` for loose files given on the command line.
    pub label: Option<usize>,
}

/// A file that was not used, and why.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Limits against absurd inputs (decompression bombs, huge files).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_image_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 64 << 20,
            max_image_pixels: 64 << 20,
        }
    }
}

/// A class-folder dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
    /// Entries that are not candidate image files (hidden files, nested folders, other extensions).
    pub skipped: Vec<Skipped>,
}

pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "tif", "tiff", "gif"];

/// Sorted class folder names under `root`.
pub fn class_folders(root: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(root).map_err(|e| Error::Dataset {
        path: root.to_path_buf(),
        message: format!(
            "cannot list the dataset folder ({e}); expected <root>/<class>/<image files>"
        ),
    })?;
    let mut classes: Vec<String> = Vec::new();
    for e in entries.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
        let name = e.file_name();
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        // Class names are text (labels, the database, the report): a folder whose name is not UTF-8
        // is refused, named with its bytes escaped, rather than skipped.
        let Some(name) = name.to_str() else {
            return Err(Error::Dataset {
                path: root.to_path_buf(),
                message: format!(
                    "class folder {} has a name that is not valid UTF-8; class names are text, so it \
                     cannot be a class: rename it",
                    escaped(&name)
                ),
            });
        };
        classes.push(name.to_string());
    }
    classes.sort();
    Ok(classes)
}

/// A name as it is written in messages when it may not be UTF-8: quoted, bytes that are not valid
/// UTF-8 as `\xNN` (e.g. `"yes\xFF"`).
pub fn escaped(name: &std::ffi::OsStr) -> String {
    format!("{name:?}")
}

/// A path as text for the database: itself when it is UTF-8, else its escaped form (bytes that are not
/// valid UTF-8 as `\xNN`, no quotes), never a lossy copy that names another file.
pub fn path_text(path: &Path) -> String {
    match path.to_str() {
        Some(s) => s.to_string(),
        None => {
            let e = escaped(path.as_os_str());
            e.strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .map_or(e.clone(), str::to_string)
        }
    }
}

impl Dataset {
    /// Walks `root/<class>/*`. `classes` fixes the label order (the model's output order); when empty
    /// the sorted folder names are used. A class folder that is missing is an error; a folder that is
    /// not in `classes` is an error too (its images would get no label).
    pub fn scan(root: &Path, classes: &[String]) -> Result<Dataset> {
        if root.to_str().is_none() {
            return Err(Error::Dataset {
                path: root.to_path_buf(),
                message: format!(
                    "the dataset folder {} is not valid UTF-8; paths are stored as text: rename it",
                    escaped(root.as_os_str())
                ),
            });
        }
        let found = class_folders(root)?;
        if found.is_empty() {
            return Err(Error::Dataset {
                path: root.to_path_buf(),
                message: "no class folders found; expected <root>/<class>/<image files>".into(),
            });
        }
        let classes: Vec<String> = if classes.is_empty() {
            found.clone()
        } else {
            classes.to_vec()
        };
        if let Some(extra) = found.iter().find(|f| !classes.contains(f)) {
            return Err(Error::Dataset {
                path: root.join(extra),
                message: format!("folder `{extra}` is not one of the model's classes {classes:?}"),
            });
        }
        let mut samples = Vec::new();
        let mut skipped = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let dir = root.join(class);
            if !dir.is_dir() {
                // A class with no folder is allowed (a test set may lack a class); say so in the log.
                tracing::warn!("class `{class}` has no folder under {}", root.display());
                continue;
            }
            let (files, skip) = list_files(&dir)?;
            skipped.extend(skip);
            samples.extend(files.into_iter().map(|path| Sample {
                path,
                label: Some(label),
            }));
        }
        Ok(Dataset {
            root: root.to_path_buf(),
            classes,
            samples,
            skipped,
        })
    }

    /// Loose image files or folders of them (no labels), as given on a command line.
    pub fn from_paths(paths: &[PathBuf]) -> Result<Dataset> {
        let mut samples = Vec::new();
        let mut skipped = Vec::new();
        for p in paths {
            if p.is_dir() {
                // Walk sub-folders too, so a class-folder test set (<dir>/<class>/<image>) can be given.
                let mut dirs = vec![p.clone()];
                while let Some(d) = dirs.pop() {
                    let (files, skip) = list_files(&d)?;
                    for s in skip {
                        if s.reason.starts_with("nested folder") {
                            dirs.push(s.path);
                        } else {
                            skipped.push(s);
                        }
                    }
                    samples.extend(files.into_iter().map(|path| Sample { path, label: None }));
                }
                samples.sort_by(|a, b| a.path.cmp(&b.path));
            } else if p.exists() {
                samples.push(Sample {
                    path: p.clone(),
                    label: None,
                });
            } else {
                return Err(Error::Dataset {
                    path: p.clone(),
                    message: "no such file or folder".into(),
                });
            }
        }
        Ok(Dataset {
            root: PathBuf::new(),
            classes: Vec::new(),
            samples,
            skipped,
        })
    }

    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for s in &self.samples {
            if let Some(l) = s.label {
                counts[l] += 1;
            }
        }
        counts
    }
}

/// Files of one folder, sorted by name. Hidden files (`.DS_Store`), sub-folders and files without an image
/// extension (`README.txt`, `Thumbs.db`, `desktop.ini`) are recorded as skipped, with the reason: they are
/// not images that failed, and one stray file must not fail a nightly run. A file with an image extension
/// is kept even when its content is not an image: the decoder records why it cannot read it.
fn list_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<Skipped>)> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Dataset {
        path: dir.to_path_buf(),
        message: format!("cannot list: {e}"),
    })?;
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            skipped.push(Skipped {
                path,
                reason: "hidden file".into(),
            });
        } else if path.is_dir() {
            skipped.push(Skipped {
                path,
                reason: "nested folder (not walked)".into(),
            });
        } else if has_image_extension(&path) {
            files.push(path);
        } else {
            skipped.push(Skipped {
                path,
                reason: format!(
                    "not an image file: its name does not end in .{}",
                    IMAGE_EXTENSIONS.join(", .")
                ),
            });
        }
    }
    files.sort();
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((files, skipped))
}

/// Whether the file name ends in one of [`IMAGE_EXTENSIONS`] (any case: `.JPG` too).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Hex sha256 of bytes: the stable image id.
pub fn content_id(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A decoded image with its id.
pub struct Decoded {
    pub id: String,
    pub image: image::DynamicImage,
    pub file_bytes: u64,
}

/// Reads and decodes one file with limits; the error is the reason recorded for a skipped file. A path
/// that is not valid UTF-8 is refused: the database keeps paths as text, and a lossy copy of the name
/// would record a file that does not exist.
pub fn read_image(path: &Path, limits: Limits) -> std::result::Result<Decoded, String> {
    if path.to_str().is_none() {
        return Err(format!(
            "the path {} is not valid UTF-8; paths are stored as text, so the file is refused rather than \
             recorded under another name: rename it",
            escaped(path.as_os_str())
        ));
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() == 0 {
        return Err("empty file".into());
    }
    if meta.len() > limits.max_file_bytes {
        return Err(format!(
            "file too large: {} bytes, limit {} (data.max_file_bytes)",
            meta.len(),
            limits.max_file_bytes
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let image = decode(&bytes, limits)?;
    Ok(Decoded {
        id: content_id(&bytes),
        image,
        file_bytes: meta.len(),
    })
}

/// Decodes bytes, guessing the format from the content (not the extension).
pub fn decode(bytes: &[u8], limits: Limits) -> std::result::Result<image::DynamicImage, String> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    let format = reader
        .format()
        .ok_or_else(|| "not an image (unrecognised format)".to_string())?;
    let mut reader = reader;
    let side = (limits.max_image_pixels as f64).sqrt().ceil() as u32;
    let mut l = image::Limits::default();
    // Per-side limits stop a bomb before allocation; the pixel-count check below is the exact one.
    l.max_image_width = Some(side.saturating_mul(16).max(1));
    l.max_image_height = Some(side.saturating_mul(16).max(1));
    l.max_alloc = Some(limits.max_image_pixels.saturating_mul(16));
    reader.limits(l.clone());
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| format!("corrupt or truncated {format:?} (header unreadable): {e}"))?;
    if (w as u64) * (h as u64) > limits.max_image_pixels {
        return Err(format!(
            "image too large: {w}x{h} pixels, limit {} (data.max_image_pixels)",
            limits.max_image_pixels
        ));
    }
    if w == 0 || h == 0 {
        return Err(format!("image has zero size ({w}x{h})"));
    }
    // The JPEG decoder fills a file cut short with grey instead of failing; a real JPEG ends with the
    // end-of-image marker (FF D9), which cannot occur inside entropy-coded data (byte stuffing).
    if format == image::ImageFormat::Jpeg {
        let tail = &bytes[bytes.len().saturating_sub(4096)..];
        if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
            return Err("corrupt or truncated Jpeg: no end-of-image marker".into());
        }
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    reader.limits(l);
    reader
        .decode()
        .map_err(|e| format!("corrupt or truncated {format:?}: {e}"))
}

/// Decodes every sample in parallel (rayon), keeping the order; failures become [`Skipped`].
pub fn read_all(samples: &[Sample], limits: Limits) -> (Vec<(Sample, Decoded)>, Vec<Skipped>) {
    let results: Vec<_> = samples
        .par_iter()
        .map(|s| (s.clone(), read_image(&s.path, limits)))
        .collect();
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    for (s, r) in results {
        match r {
            Ok(d) => ok.push((s, d)),
            Err(reason) => skipped.push(Skipped {
                path: s.path,
                reason,
            }),
        }
    }
    (ok, skipped)
}
