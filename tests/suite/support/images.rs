//! Image sets for the tests: real Br35H images copied into class folders, broken files, and the
//! synthetic slices with a planted marker that a small model learns as a shortcut.
use std::path::{Path, PathBuf};

use image::GrayImage;

use super::repo;

/// The files of a folder, sorted by path (the folders come from `make data`).
pub fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make data` first)", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// The images of one class of one split of the Br35H data (`make data`), sorted by path.
pub fn br35h(split: &str, class: &str) -> Vec<PathBuf> {
    sorted_files(&repo(&format!("data/br35h/{split}/{class}")))
}

/// Copies the first `n` of `files` into the folder `to` (made if missing), under their own names.
pub fn copy_first(files: &[PathBuf], to: &Path, n: usize) {
    std::fs::create_dir_all(to).unwrap();
    for f in files.iter().take(n) {
        std::fs::copy(f, to.join(f.file_name().unwrap())).unwrap();
    }
}

/// A small real test set under `root/Testing`: the first `per_class` Br35H test images per class.
pub fn real_set(root: &Path, per_class: usize) -> PathBuf {
    real_set_named(root, "Testing", per_class)
}

/// [`real_set`] in the folder `root/name`.
pub fn real_set_named(root: &Path, name: &str, per_class: usize) -> PathBuf {
    let set = root.join(name);
    for class in ["no", "yes"] {
        copy_first(&br35h("Testing", class), &set.join(class), per_class);
    }
    set
}

/// A file with a JPEG's first bytes and then text: it fails at decode.
pub fn write_broken_jpeg(path: &Path) {
    std::fs::write(path, b"\xff\xd8\xff\xe0 not a jpeg").unwrap();
}

/// Real Br35H images in two class folders named `classes` (Br35H's `no` and `yes`, in that order):
/// under `root/Testing/<class>` the first `per_class` test images, the i-th renamed to what
/// `rename(class, i)` gives, if anything; under `root/Training/<class>` the first `train` training
/// images. Returns each class's Br35H test images.
pub fn test_and_training_set(
    root: &Path,
    classes: [&str; 2],
    per_class: usize,
    train: usize,
    rename: impl Fn(&str, usize) -> Option<String>,
) -> [Vec<PathBuf>; 2] {
    std::array::from_fn(|k| {
        let (class, src_class) = (classes[k], ["no", "yes"][k]);
        let files = br35h("Testing", src_class);
        let test = root.join("Testing").join(class);
        std::fs::create_dir_all(&test).unwrap();
        for (i, f) in files.iter().take(per_class).enumerate() {
            let name = rename(class, i)
                .unwrap_or_else(|| f.file_name().unwrap().to_string_lossy().into_owned());
            std::fs::copy(f, test.join(name)).unwrap();
        }
        copy_first(
            &br35h("Training", src_class),
            &root.join("Training").join(class),
            train,
        );
        files
    })
}

/// `src` re-encoded at `to` (a PNG: other bytes, the same picture): a planted leak.
pub fn leaked_copy(src: &Path, to: &Path) {
    image::open(src).unwrap().save(to).unwrap();
}

/// Writes the grey images `images(class)` gives, each with its file name, into `root/split/<class>/`
/// for the classes `no` and `yes`: a synthetic set.
pub fn write_set(root: &Path, split: &str, images: impl Fn(&str) -> Vec<(String, GrayImage)>) {
    for class in ["no", "yes"] {
        let dir = root.join(split).join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, img) in images(class) {
            img.save(dir.join(name)).unwrap();
        }
    }
}
