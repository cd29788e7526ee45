//! Dataset walking, decoding limits, preprocessing values and the leak-free split.
use std::path::Path;

use image::{GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use tumor_audit::config::ImageConfig;
use tumor_audit::dataset::{self, Dataset, Limits};
use tumor_audit::preprocess;
use tumor_audit::split::{self, SplitOptions};

use super::support::tempdir;

fn gradient_image(w: u32, h: u32, seed: u32) -> GrayImage {
    GrayImage::from_fn(w, h, |x, y| {
        Luma([((x * 7 + y * 3 + seed * 41) % 256) as u8])
    })
}

/// The preprocessing of `size` x `size` inputs scaled to [0, 1], grey or RGB, no other statistics.
fn image_config(size: u32, grayscale: bool) -> ImageConfig {
    ImageConfig {
        size,
        normalize: true,
        standardize: false,
        grayscale,
        resize: Default::default(),
        preprocess: None,
        channel_order: Default::default(),
        mean: None,
        std: None,
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn walking_gets_labels_and_records_skipped_files_with_reasons() {
    let dir = tempdir();
    let root = dir.path();
    std::fs::create_dir_all(root.join("yes")).unwrap();
    std::fs::create_dir_all(root.join("no")).unwrap();
    gradient_image(20, 20, 1)
        .save(root.join("yes/a.png"))
        .unwrap();
    gradient_image(20, 20, 2)
        .save(root.join("yes/b.jpg"))
        .unwrap();
    RgbImage::from_pixel(10, 12, Rgb([10, 200, 30]))
        .save(root.join("no/c.bmp"))
        .unwrap();
    RgbaImage::from_pixel(10, 12, Rgba([10, 200, 30, 128]))
        .save(root.join("no/d.tiff"))
        .unwrap();
    // a truncated JPEG: the first half of a real one
    let jpeg = std::fs::read(root.join("yes/b.jpg")).unwrap();
    write(&root.join("yes/truncated.jpg"), &jpeg[..jpeg.len() / 2]);
    write(
        &root.join("no/notes.jpg"),
        b"this is a text file, not an image\n",
    );
    write(&root.join("no/empty.png"), b"");
    write(&root.join("no/.DS_Store"), b"\0\0\0\x01Bud1");

    let ds = Dataset::scan(root, &[]).unwrap();
    assert_eq!(ds.classes, vec!["no", "yes"]);
    let label_of = |name: &str| {
        ds.samples
            .iter()
            .find(|s| s.path.ends_with(name))
            .and_then(|s| s.label)
    };
    assert_eq!(label_of("a.png"), Some(1));
    assert_eq!(label_of("c.bmp"), Some(0));
    assert!(ds
        .skipped
        .iter()
        .any(|s| s.path.ends_with(".DS_Store") && s.reason == "hidden file"));

    let (ok, skipped) = dataset::read_all(&ds.samples, Limits::default());
    let names: Vec<_> = ok
        .iter()
        .map(|(s, _)| s.path.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, vec!["c.bmp", "d.tiff", "a.png", "b.jpg"]);
    let reason = |name: &str| {
        skipped
            .iter()
            .find(|s| s.path.ends_with(name))
            .map(|s| s.reason.clone())
            .unwrap_or_default()
    };
    assert!(
        reason("truncated.jpg").contains("corrupt or truncated"),
        "{}",
        reason("truncated.jpg")
    );
    assert!(
        reason("notes.jpg").contains("not an image"),
        "{}",
        reason("notes.jpg")
    );
    assert_eq!(reason("empty.png"), "empty file");
    assert_eq!(skipped.len(), 3);
}

#[test]
fn decompression_limits_skip_absurd_images() {
    let dir = tempdir();
    let p = dir.path().join("big.png");
    gradient_image(64, 64, 0).save(&p).unwrap();
    let limits = Limits {
        max_file_bytes: 1 << 20,
        max_image_pixels: 1000,
    };
    let err = dataset::read_image(&p, limits)
        .err()
        .expect("64x64 > 1000 pixels");
    assert!(
        err.contains("image too large") && err.contains("64x64"),
        "{err}"
    );
    let limits = Limits {
        max_file_bytes: 10,
        max_image_pixels: 1 << 20,
    };
    let err = dataset::read_image(&p, limits)
        .err()
        .expect("file > 10 bytes");
    assert!(err.contains("file too large"), "{err}");
}

#[test]
fn image_id_is_the_hash_of_the_bytes() {
    // sha256("abc") is a published test vector.
    assert_eq!(
        dataset::content_id(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn preprocessing_gives_known_values_on_a_hand_made_image() {
    // 2x2 grey image [0, 255; 255, 0] at size 2 (no resampling).
    let img =
        image::DynamicImage::ImageLuma8(GrayImage::from_raw(2, 2, vec![0, 255, 255, 0]).unwrap());
    let cfg = image_config(2, true);
    let p = preprocess::prepare(&img, &cfg);
    assert_eq!(p.input, vec![0.0, 1.0, 1.0, 0.0]); // normalize = /255
    let cfg = ImageConfig {
        normalize: false,
        ..cfg
    };
    assert_eq!(
        preprocess::prepare(&img, &cfg).input,
        vec![0.0, 255.0, 255.0, 0.0]
    );
    // standardize: mean 0.5, population std 0.5 -> [-1, 1, 1, -1]
    let cfg = ImageConfig {
        normalize: true,
        standardize: true,
        ..cfg
    };
    assert_eq!(
        preprocess::prepare(&img, &cfg).input,
        vec![-1.0, 1.0, 1.0, -1.0]
    );
    // a constant image is centred, never divided by a zero std
    let flat = image::DynamicImage::ImageLuma8(GrayImage::from_pixel(2, 2, Luma([7])));
    assert_eq!(preprocess::prepare(&flat, &cfg).input, vec![0.0; 4]);
    // RGB, channel-first; the grey display image is always in [0, 1]
    let rgb = image::DynamicImage::ImageRgb8(RgbImage::from_pixel(2, 2, Rgb([255, 0, 51])));
    let cfg = image_config(2, false);
    let p = preprocess::prepare(&rgb, &cfg);
    assert_eq!(p.channels, 3);
    assert_eq!(
        p.input,
        vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.2, 0.2, 0.2]
    );
    assert!(p.grey.iter().all(|&g| (0.0..=1.0).contains(&g)));
    // resize to size x size
    let big = image::DynamicImage::ImageLuma8(gradient_image(50, 30, 0));
    let cfg = image_config(16, true);
    let p = preprocess::prepare(&big, &cfg);
    assert_eq!(
        (p.input.len(), p.original_width, p.original_height),
        (256, 50, 30)
    );
}

#[test]
fn per_channel_mean_and_std_scale_each_channel_after_normalize() {
    // 1x2 RGB pixels (255, 0, 51) and (0, 255, 102): after /255 R = [1, 0], G = [0, 1], B = [0.2, 0.4].
    let rgb = image::DynamicImage::ImageRgb8(
        RgbImage::from_raw(2, 1, vec![255, 0, 51, 0, 255, 102]).unwrap(),
    );
    let rgb = image::DynamicImage::ImageRgb8(
        rgb.resize_exact(2, 2, image::imageops::FilterType::Nearest)
            .to_rgb8(),
    );
    let cfg = ImageConfig {
        mean: Some(vec![0.5, 0.25, 0.2]),
        std: Some(vec![0.5, 0.25, 0.1]),
        ..image_config(2, false)
    };
    // R: (1 - 0.5) / 0.5 = 1, (0 - 0.5) / 0.5 = -1; G: (0 - 0.25) / 0.25 = -1, (1 - 0.25) / 0.25 = 3;
    // B: (0.2 - 0.2) / 0.1 = 0, (0.4 - 0.2) / 0.1 = 2 (rows repeat: the image is 2 rows of the pair).
    let p = preprocess::prepare(&rgb, &cfg).input;
    let want = [
        1.0, -1.0, 1.0, -1.0, -1.0, 3.0, -1.0, 3.0, 0.0, 2.0, 0.0, 2.0,
    ];
    for (i, (a, b)) in p.iter().zip(want).enumerate() {
        assert!((a - b).abs() < 1e-5, "value {i}: {a} vs {b} ({p:?})");
    }
    // mean alone (std 1), std alone (mean 0)
    let only_mean = ImageConfig {
        std: None,
        ..cfg.clone()
    };
    assert!((preprocess::prepare(&rgb, &only_mean).input[5] - 0.75).abs() < 1e-6);
    let only_std = ImageConfig {
        mean: None,
        ..cfg.clone()
    };
    assert!((preprocess::prepare(&rgb, &only_std).input[9] - 4.0).abs() < 1e-5);
    // one grey value
    let grey =
        image::DynamicImage::ImageLuma8(GrayImage::from_raw(2, 2, vec![0, 255, 255, 0]).unwrap());
    let cfg = ImageConfig {
        grayscale: true,
        mean: Some(vec![0.5]),
        std: Some(vec![0.5]),
        ..cfg
    };
    assert_eq!(
        preprocess::prepare(&grey, &cfg).input,
        vec![-1.0, 1.0, 1.0, -1.0]
    );
}

#[test]
fn near_duplicate_split_never_puts_a_group_on_both_sides() {
    let dir = tempdir();
    let src = dir.path().join("src");
    // 30 distinct images per class, each saved also at a second resolution (a near-duplicate).
    for (c, class) in ["no", "yes"].iter().enumerate() {
        for i in 0..30u32 {
            let img = GrayImage::from_fn(64, 64, |x, y| {
                let v = ((x / (4 + i % 5)) + (y / (3 + i % 7)) * (i + 1) + c as u32 * 3) % 2;
                Luma([if v == 1 { 220 } else { 30 }])
            });
            std::fs::create_dir_all(src.join(class)).unwrap();
            img.save(src.join(format!("{class}/{i}.png"))).unwrap();
            image::imageops::resize(&img, 48, 48, image::imageops::FilterType::Triangle)
                .save(src.join(format!("{class}/{i}-small.png")))
                .unwrap();
        }
    }
    let opts = SplitOptions {
        fractions: [0.6, 0.2, 0.2],
        max_distance: 2,
        seed: 7,
        keep_groups: true,
        dir_names: ["Training".into(), "Validation".into(), "Testing".into()],
    };
    let dest = dir.path().join("dest");
    let report = split::split_dataset(&src, &dest, &opts, Limits::default()).unwrap();
    assert_eq!(report.images, 120);
    assert!(
        report.near_duplicate_groups >= 30,
        "groups found: {}",
        report.near_duplicate_groups
    );
    assert_eq!(report.groups_spanning_splits, 0);
    // Every image and its resized copy are in the same split folder.
    for class in ["no", "yes"] {
        for i in 0..30 {
            let side = |name: String| {
                opts.dir_names
                    .iter()
                    .position(|d| dest.join(d).join(class).join(&name).exists())
                    .expect("placed")
            };
            assert_eq!(
                side(format!("{i}.png")),
                side(format!("{i}-small.png")),
                "{class}/{i}"
            );
        }
    }
    // Deterministic: the same input gives the same split hash.
    let again =
        split::split_dataset(&src, &dir.path().join("dest2"), &opts, Limits::default()).unwrap();
    assert_eq!(report.split_hash, again.split_hash);
    assert!(dest.join("split.json").exists());
}

#[test]
fn groups_are_connected_components_of_close_hashes() {
    // Hashes a-b at distance 1 and b-c at distance 2 form one group with max distance 2; d is alone.
    let a = [0u64; 4];
    let b = [1u64, 0, 0, 0];
    let c = [0b111u64, 0, 0, 0];
    let d = [u64::MAX; 4];
    let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    assert_eq!(
        split::near_duplicate_groups(&[a, b, c, d], &ids, 2),
        vec![0, 0, 0, 1]
    );
    assert_eq!(
        split::near_duplicate_groups(&[a, b, c, d], &ids, 0),
        vec![0, 1, 2, 3]
    );
}

#[test]
fn loose_inputs_walk_class_folders() {
    // `explain data/kaggle-sample/Testing` gets the images inside the class folders, in path order.
    let dir = tempdir();
    for (class, name) in [("glioma", "b.png"), ("notumor", "a.png")] {
        std::fs::create_dir_all(dir.path().join(class)).unwrap();
        gradient_image(8, 8, 0)
            .save(dir.path().join(class).join(name))
            .unwrap();
    }
    let ds = Dataset::from_paths(&[dir.path().to_path_buf()]).unwrap();
    let names: Vec<_> = ds
        .samples
        .iter()
        .map(|s| s.path.strip_prefix(dir.path()).unwrap().to_path_buf())
        .collect();
    assert_eq!(
        names,
        vec![Path::new("glioma/b.png"), Path::new("notumor/a.png")]
    );
    let e = Dataset::from_paths(&[dir.path().join("missing.jpg")])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("missing.jpg") && e.contains("no such file"),
        "{e}"
    );
}
