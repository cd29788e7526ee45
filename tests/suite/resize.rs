//! `données.image.resize` against PIL and OpenCV themselves (fixtures made once by
//! scripts/make-resize-fixtures.py), and the preprocessing presets / channel order against the
//! explicit keys they stand for.
use image::DynamicImage;
use tumor_audit::config::Settings;
use tumor_audit::imageops::resize::{self, CvFilter, PilFilter, Resampler};
use tumor_audit::preprocess::{self, ResizeFilter};

use super::support::{assert_has_all, refused, repo};

fn fixture(name: &str) -> image::DynamicImage {
    image::open(repo(&format!("tests/fixtures/resize/{name}")))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The script's coordinate image: R = x mod 256, G = y mod 256, B = 64 (x div 256) + 16 (y div 256).
fn coords(w: usize, h: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            v.extend([
                (x % 256) as u8,
                (y % 256) as u8,
                (64 * (x / 256) + 16 * (y / 256)) as u8,
            ]);
        }
    }
    v
}

fn resampler(library: &str, filter: &str) -> Resampler {
    match (library, filter) {
        ("pil", "nearest") => Resampler::Pil(PilFilter::Nearest),
        ("pil", "box") => Resampler::Pil(PilFilter::Box),
        ("pil", "bilinear") => Resampler::Pil(PilFilter::Bilinear),
        ("pil", "hamming") => Resampler::Pil(PilFilter::Hamming),
        ("pil", "bicubic") => Resampler::Pil(PilFilter::Bicubic),
        ("pil", "lanczos") => Resampler::Pil(PilFilter::Lanczos),
        ("opencv", "nearest") => Resampler::OpenCv(CvFilter::Nearest),
        ("opencv", "nearest_exact") => Resampler::OpenCv(CvFilter::NearestExact),
        ("opencv", "linear") => Resampler::OpenCv(CvFilter::Linear),
        ("opencv", "cubic") => Resampler::OpenCv(CvFilter::Cubic),
        ("opencv", "area") => Resampler::OpenCv(CvFilter::Area),
        ("opencv", "lanczos4") => Resampler::OpenCv(CvFilter::Lanczos4),
        other => panic!("fixture names an unknown filter {other:?}"),
    }
}

/// Every stored PIL / OpenCV output, recomputed: nearest pixel for pixel, the filters within one
/// grey level; the grey conversion exactly.
#[test]
fn resize_matches_pil_and_opencv_outputs() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("tests/fixtures/resize/reference.json")).unwrap(),
    )
    .unwrap();
    let source = fixture("source.png").to_rgb8();
    let (sw, sh) = (source.width() as usize, source.height() as usize);
    let source_l = fixture("source-L.png").to_luma8();
    let files = reference["files"].as_array().expect("files");
    assert!(files.len() >= 50, "{} fixtures", files.len());
    let mut checked = 0;
    let mut worst = std::collections::BTreeMap::new();
    for f in files {
        let name = f["file"].as_str().unwrap();
        let (library, filter) = (
            f["library"].as_str().unwrap(),
            f["filter"].as_str().unwrap(),
        );
        let (tw, th) = (
            f["width"].as_u64().unwrap() as usize,
            f["height"].as_u64().unwrap() as usize,
        );
        let src = f["source"].as_str().unwrap();
        let want = fixture(name);
        if filter == "convert_L" {
            assert_eq!(
                resize::pil_luma(source.as_raw()),
                source_l.as_raw().clone(),
                "{name}"
            );
            checked += 1;
            continue;
        }
        let r = resampler(library, filter);
        let (got, want, exact) = if let Some(dims) = src.strip_prefix("coords:") {
            let (w, h) = dims.split_once('x').unwrap();
            let (w, h) = (w.parse().unwrap(), h.parse().unwrap());
            let got = resize::resize_channels(&coords(w, h), w, h, 3, tw, th, r);
            (got, want.to_rgb8().into_raw(), true)
        } else if src == "source.png" {
            let got = resize::resize_channels(source.as_raw(), sw, sh, 3, tw, th, r);
            (
                got,
                want.to_rgb8().into_raw(),
                filter.starts_with("nearest"),
            )
        } else {
            let got = resize::resize_plane(source_l.as_raw(), sw, sh, tw, th, r);
            (
                got,
                want.to_luma8().into_raw(),
                filter.starts_with("nearest"),
            )
        };
        assert_eq!(got.len(), want.len(), "{name}: size");
        let diff = got
            .iter()
            .zip(&want)
            .map(|(&a, &b)| (a as i32 - b as i32).abs())
            .max()
            .unwrap();
        let off = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        let e = worst.entry(format!("{library} {filter}")).or_insert((0, 0));
        *e = (e.0.max(diff), e.1 + off);
        assert!(
            if exact { diff == 0 } else { diff <= 1 },
            "{name}: largest difference {diff} grey level(s), {off} of {} values differ",
            want.len()
        );
        checked += 1;
    }
    assert_eq!(checked, files.len());
    eprintln!("largest difference, values off (per filter): {worst:?}");
}

fn image_cfg(yaml_image: &str) -> preprocess::ImageConfig {
    let text = format!("données:\n  image:\n{yaml_image}");
    Settings::from_yaml(&text, &[])
        .unwrap_or_else(|e| panic!("{yaml_image}: {e}"))
        .donnees
        .image
}

/// The pipeline's own `prepare` with `resize: pil_nearest` picks PIL's source pixels (512 -> 150:
/// column 127 at index 37, which the image crate's nearest does not), and `channel_order: bgr`
/// reverses the channels.
#[test]
fn prepare_with_pil_nearest_reproduces_keras_load_img() {
    let src = coords(512, 512);
    let img = DynamicImage::ImageRgb8(image::RgbImage::from_raw(512, 512, src).unwrap());
    let want = fixture("coords-512x512-pil-nearest-150x150.png").to_rgb8();
    let base =
        "    size: 150\n    normalize: false\n    standardize: false\n    grayscale: false\n";
    let cfg = image_cfg(&format!("{base}    resize: pil_nearest\n"));
    let p = preprocess::prepare(&img, &cfg);
    let n = 150 * 150;
    for i in 0..n {
        for c in 0..3 {
            assert_eq!(
                p.input[c * n + i],
                want.as_raw()[i * 3 + c] as f32,
                "pixel {i} channel {c}"
            );
        }
    }
    assert_eq!(p.input[37], 127.0, "row 0, column 37: PIL's source column");
    let crate_nearest =
        preprocess::prepare(&img, &image_cfg(&format!("{base}    resize: nearest\n")));
    let differ = (0..n)
        .filter(|&i| crate_nearest.input[i] != p.input[i])
        .count();
    assert!(
        differ > 0,
        "the image crate's nearest is not PIL's (it should differ somewhere)"
    );
    let bgr = preprocess::prepare(
        &img,
        &image_cfg(&format!(
            "{base}    resize: pil_nearest\n    channel_order: bgr\n"
        )),
    );
    assert_eq!(&bgr.input[..n], &p.input[2 * n..], "bgr: channel 0 is blue");
    assert_eq!(&bgr.input[2 * n..], &p.input[..n], "bgr: channel 2 is red");
}

/// Each preset equals the explicit keys it stands for; given keys must agree with it.
#[test]
fn presets_equal_their_explicit_keys() {
    let base = "    size: 32\n    grayscale: false\n";
    let cases = [
        ("keras_tf", "    normalize: true\n    standardize: false\n    mean: [0.5, 0.5, 0.5]\n    std: [0.5, 0.5, 0.5]\n"),
        ("keras_torch", "    normalize: true\n    standardize: false\n    mean: [0.485, 0.456, 0.406]\n    std: [0.229, 0.224, 0.225]\n"),
        ("torchvision", "    normalize: true\n    standardize: false\n    mean: [0.485, 0.456, 0.406]\n    std: [0.229, 0.224, 0.225]\n    channel_order: rgb\n"),
        ("keras_caffe", "    normalize: false\n    standardize: false\n    mean: [103.939, 116.779, 123.68]\n    channel_order: bgr\n"),
        ("none", "    normalize: false\n    standardize: false\n"),
    ];
    for (preset, explicit) in cases {
        let from_preset = image_cfg(&format!("{base}    preprocess: {preset}\n"));
        let mut spelled = image_cfg(&format!("{base}{explicit}"));
        spelled.preprocess = from_preset.preprocess;
        assert_eq!(from_preset, spelled, "{preset}");
        // The preset with its own keys repeated is accepted.
        image_cfg(&format!("{base}    preprocess: {preset}\n{explicit}"));
        assert!(
            from_preset.describe().contains(preset),
            "{}",
            from_preset.describe()
        );
    }
    // Known answers on one pixel (R, G, B) = (0, 127.5-ish, 255).
    let pixel =
        DynamicImage::ImageRgb8(image::RgbImage::from_raw(1, 1, vec![0, 128, 255]).unwrap());
    let one = |preset: &str| {
        let mut cfg = image_cfg(&format!("    size: 8\n    grayscale: false\n    preprocess: {preset}\n    resize: pil_nearest\n"));
        cfg.size = 1;
        preprocess::prepare(&pixel, &cfg).input
    };
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
    let tf = one("keras_tf");
    assert!(
        close(&tf, &[-1.0, 128.0 / 127.5 - 1.0, 1.0]),
        "keras_tf {tf:?}"
    );
    let caffe = one("keras_caffe");
    assert!(
        close(&caffe, &[255.0 - 103.939, 128.0 - 116.779, 0.0 - 123.68]),
        "keras_caffe {caffe:?}"
    );
    let torch = one("keras_torch");
    let want = [
        (0.0 - 0.485) / 0.229,
        (128.0 / 255.0 - 0.456) / 0.224,
        (1.0 - 0.406) / 0.225,
    ];
    assert!(close(&torch, &want), "keras_torch {torch:?}");

    // A contradiction names the key, the preset and what it means; a misspelt value, the allowed values.
    for (yaml, parts) in [
        (
            "données:\n  image:\n    size: 32\n    grayscale: false\n    preprocess: keras_caffe\n    normalize: true\n",
            &["données.image.normalize", "keras_caffe"][..],
        ),
        (
            "données:\n  image:\n    size: 32\n    grayscale: true\n    preprocess: keras_torch\n",
            &["données.image.preprocess", "grayscale"],
        ),
        (
            "données:\n  image:\n    size: 32\n    grayscale: false\n    normalize: true\n    standardize: false\n    preprocess: keras\n",
            &["keras_tf", "keras_caffe"],
        ),
        (
            "données:\n  image:\n    size: 32\n    grayscale: false\n    normalize: true\n    standardize: false\n    resize: pil_bicubik\n",
            &["pil_bicubic", "opencv_area"],
        ),
    ] {
        assert_has_all(&refused(Settings::from_yaml(yaml, &[])), parts);
    }
    assert_eq!(ResizeFilter::PilLanczos.name(), "pil_lanczos");
}
