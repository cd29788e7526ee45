//! Baselines in pixel space: with mean / std set (the `keras_torch` preset), the perturbation
//! methods' 'off' value, Integrated Gradients' baseline and the deletion curves' reference are a
//! black image mapped through the same preprocessing, per channel; known answers on a linear model.
use image::{DynamicImage, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};
use tumor_audit::attribution::segment::Segmentation;
use tumor_audit::attribution::{gradient, perturbation, BaselineKind};
use tumor_audit::config::Settings;
use tumor_audit::model::{Classifier, LayerSpec, Model};
use tumor_audit::preprocess;
use tumor_audit::trust::faithfulness;

use super::support::models::{assert_close, cnn, set};

const S: i64 = 4;
const YAML: &str = "données:\n  image:\n    size: 8\n    grayscale: false\n    preprocess: keras_torch\n    resize: pil_bilinear\n";

/// f(x) = w . x + b for class 1 on 3 x 4 x 4 inputs.
fn linear() -> (Model, Vec<f32>, f32) {
    let m = cnn(&[LayerSpec::Flatten, LayerSpec::Dense { out: 2 }], 3, S, 2);
    let w: Vec<f32> = (0..48).map(|i| ((i * 7) % 13) as f32 * 0.1 - 0.6).collect();
    let other: Vec<f32> = (0..48).map(|i| ((i * 5) % 7) as f32 - 3.0).collect();
    set(&m, "1.weight", &[other, w.clone()].concat());
    set(&m, "1.bias", &[0.3, -1.25]);
    (Model::new(m), w, -1.25)
}

#[test]
fn black_baseline_follows_mean_and_std_per_channel() {
    let settings = Settings::from_yaml(YAML, &[]).unwrap();
    let explain = &settings.explain;
    assert_eq!(explain.baseline, BaselineKind::Black, "black by default");
    let want = [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225];
    let reference = explain.reference_values(3);
    assert_close(&reference.0, &want, 1e-6, "perturbation reference");
    assert_close(&explain.ig_baseline().0, &want, 1e-6, "IG baseline");
    // The same values as a black image through the pipeline's own preprocessing.
    let black = DynamicImage::ImageRgb8(RgbImage::new(10, 10));
    let p = preprocess::prepare(&black, &settings.donnees.image);
    let plane = 64;
    for (c, w) in want.iter().enumerate() {
        assert!(p.input[c * plane..(c + 1) * plane]
            .iter()
            .all(|&v| (v - w).abs() < 1e-6));
    }
    let n = (S * S) as usize;

    // A real image's input, and the linear model's score of the black input: w . r + b.
    let x: Vec<f32> = (0..48)
        .map(|i| ((i * 37) % 11) as f32 / 5.0 - 1.0)
        .collect();
    let xt = Tensor::from_slice(&x).view([1, 3, S, S]);
    let (model, w, b) = linear();
    let r_img = reference.image(3, n);
    let f_black: f32 = w.iter().zip(&r_img).map(|(a, r)| a * r).sum::<f32>() + b;
    let f_x: f32 = w.iter().zip(&x).map(|(a, v)| a * v).sum::<f32>() + b;

    // Kernel SHAP on quadrants: the Shapley value of superpixel S is sum over its pixels and
    // channels of w (x - r_channel).
    let raw: Vec<u32> = (0..16)
        .map(|p| ((p / 4) / 2 * 2 + (p % 4) / 2) as u32)
        .collect();
    let seg = Segmentation::from_raw_labels(4, 4, &raw);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let run = perturbation::Perturbation {
        model: &model,
        x: &xt,
        target: 1,
        seg: &seg,
        reference: reference.clone(),
        batch: 64,
        bf16: false,
    };
    let map = run.kernel_shap(200, &mut rng).unwrap().0;
    let mut shapley = [0f32; 4];
    for c in 0..3 {
        for p in 0..n {
            shapley[raw[p] as usize] += w[c * n + p] * (x[c * n + p] - reference.value(c));
        }
    }
    let expected: Vec<f32> = raw.iter().map(|&l| shapley[l as usize]).collect();
    assert_close(
        &map,
        &expected,
        1e-4,
        "Kernel SHAP against the black reference",
    );
    let total: f32 = shapley.iter().sum();
    assert!(
        (total - (f_x - f_black)).abs() < 1e-3,
        "{total} vs {}",
        f_x - f_black
    );

    // Integrated Gradients from the black baseline: exact for a linear model, f(baseline) = w . r + b.
    let ig = gradient::GradientRun {
        forward: &|x| model.logits(x),
        x: &xt,
        target: 1,
        batch: 16,
    }
    .integrated_gradients(explain.ig_baseline(), 16)
    .unwrap();
    assert!(
        (ig.f_baseline as f32 - f_black).abs() < 1e-4,
        "{} vs {f_black}",
        ig.f_baseline
    );
    assert!(ig.completeness_error < 1e-4);

    // Deletion curve: with every pixel deleted the image is the black input.
    let order: Vec<usize> = (0..n).collect();
    let mut score = |imgs: &Tensor| -> tumor_audit::error::Result<Vec<f64>> {
        let out = model.forward(imgs).select(1, 1).to_kind(Kind::Double);
        Ok(Vec::<f64>::try_from(out).unwrap())
    };
    let curves =
        faithfulness::curves_with(&xt, &order, reference.clone(), 4, 8, &mut score).unwrap();
    assert!((curves.deletion[4] as f32 - f_black).abs() < 1e-4);
    assert!((curves.insertion[0] as f32 - f_black).abs() < 1e-4);
    assert!((curves.deletion[0] as f32 - f_x).abs() < 1e-4);

    // The old model-input constants stay available, and are refused without `baseline: constant`.
    let constant = Settings::from_yaml(
        YAML,
        &[
            "explain.baseline=constant".into(),
            "explain.reference_value=0.5".into(),
        ],
    )
    .unwrap();
    assert_eq!(constant.explain.reference_values(3).0, vec![0.5]);
    let err = Settings::from_yaml(YAML, &["explain.reference_value=0.5".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("explain.reference_value") && err.contains("constant"),
        "{err}"
    );
}
