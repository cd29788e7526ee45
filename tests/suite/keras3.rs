//! A Keras 3 `.keras` model converted with the documented recipe (tests/fixtures/onnx/
//! keras3_xception_like.*, made by scripts/make-onnx-fixtures.py keras3): through tumor-audit's own
//! decode, `resize: pil_nearest` and `preprocess: keras_tf`, `evaluate` gives the class Keras's own
//! pipeline (`load_img` defaults, `xception.preprocess_input`, `predict`) gives on every image of the
//! Kaggle sample's test set, with probabilities within 1e-3.
use super::support::cli::{bin_with, ok};
use super::support::models::{json_list, onnx_meta};
use super::support::{repo, tempdir};

#[test]
fn a_keras3_model_gives_keras_pipelines_classes_and_probabilities_through_evaluate() {
    let meta = onnx_meta("keras3_xception_like");
    let classes = json_list(&meta["classes"], |c| c.as_str().map(str::to_string));
    let images = meta["images"].as_array().unwrap();
    assert_eq!(
        images.len(),
        17,
        "every image of the Kaggle sample's test set"
    );
    let dir = tempdir();
    let sets = vec![
        "données.image.size=150".to_string(),
        "données.image.grayscale=false".to_string(),
        "données.image.resize=pil_nearest".to_string(),
        "données.image.preprocess=keras_tf".to_string(),
        format!(
            "model.onnx={}",
            repo("tests/fixtures/onnx/keras3_xception_like.onnx").display()
        ),
        format!("data.classes={}", serde_json::to_string(&classes).unwrap()),
        format!("output.dir={}", dir.path().display()),
    ];
    let test_dir = repo("data/kaggle-sample/Testing");
    ok(bin_with(&sets)
        .args(["evaluate", "--folder", test_dir.to_str().unwrap()])
        .output()
        .unwrap());
    let csv_path = dir
        .path()
        .join("evaluation/kaggle-sample-Testing/predictions.csv");
    let mut r = csv::Reader::from_path(&csv_path).unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), images.len());
    let mut worst = 0f64;
    for want in images {
        let file = want["file"].as_str().unwrap();
        let row = rows
            .iter()
            .find(|r| r[0].ends_with(file))
            .unwrap_or_else(|| panic!("{file} not evaluated"));
        let probs = json_list(&want["probabilities"], serde_json::Value::as_f64);
        let keras_class = (0..probs.len())
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
            .unwrap();
        assert_eq!(&row[3], classes[keras_class].as_str(), "{file}: class");
        for (k, p) in probs.iter().enumerate() {
            let got: f64 = row[5 + k].parse().unwrap();
            worst = worst.max((got - p).abs());
            assert!(
                (got - p).abs() <= 1e-3,
                "{file}: p_{} {got} vs Keras {p}",
                classes[k]
            );
        }
    }
    eprintln!("largest probability difference from Keras's pipeline: {worst:.2e}");
}
