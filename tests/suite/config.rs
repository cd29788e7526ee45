//! config.yml: the notebook's `données` block parses; each error names its key.
use tumor_audit::config::Settings;

use super::support::{assert_has_all, repo};

const NOTEBOOK_BLOCK: &str = "données:\n  image:\n    size: 256\n    normalize: true\n    standardize: false\n    grayscale: true\n";

#[test]
fn notebook_donnees_block_alone_is_a_valid_config() {
    let s = Settings::from_yaml(NOTEBOOK_BLOCK, &[]).expect("the notebook's block is valid");
    assert_eq!(s.donnees.image.size, 256);
    assert!(s.donnees.image.normalize && !s.donnees.image.standardize && s.donnees.image.grayscale);
    // Sections not given take their defaults; the explain profile fills the sample counts.
    assert_eq!(s.explain.integrated_gradients.steps, Some(64));
}

#[test]
fn bundled_config_is_valid() {
    let s = Settings::load(&repo("config.yml"), &[]).expect("config.yml is valid");
    assert_eq!(s.data.classes, vec!["no", "yes"]);
}

#[test]
fn seed_profile_has_the_notebook_parameters() {
    let s = Settings::from_yaml(NOTEBOOK_BLOCK, &["explain.profile=seed".into()]).unwrap();
    let e = &s.explain;
    assert_eq!(e.integrated_gradients.steps, Some(80));
    assert_eq!(e.smoothgrad.samples, Some(80));
    assert_eq!(e.smoothgrad.noise, 0.2);
    assert_eq!(e.lime.samples, Some(1000));
    assert_eq!(e.kernel_shap.samples, Some(1000));
    assert_eq!(e.batch_size, 64);
    assert_eq!(
        (
            e.segmentation.scale,
            e.segmentation.sigma,
            e.segmentation.min_size
        ),
        (1.0, 0.8, 20)
    );
}

/// The error of `yaml` with `overrides` names every one of `parts`.
#[track_caller]
fn assert_error(yaml: &str, overrides: &[&str], parts: &[&str]) {
    assert_has_all(&error_of(yaml, overrides), parts);
}

fn error_of(yaml: &str, overrides: &[&str]) -> String {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    match Settings::from_yaml(yaml, &o) {
        Ok(_) => panic!("expected an error for {overrides:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_config_error_names_its_key() {
    // unknown key
    assert_error(
        NOTEBOOK_BLOCK,
        &["données.image.sise=3"],
        &["données.image", "sise"],
    );
    // wrong type
    let e = error_of(NOTEBOOK_BLOCK, &["données.image.normalize=maybe"]);
    assert!(
        e.contains("données.image.normalize") || e.contains("normalize"),
        "{e}"
    );
    // impossible values
    assert_error(
        NOTEBOOK_BLOCK,
        &["données.image.size=0"],
        &["données.image.size", "0"],
    );
    assert_error(NOTEBOOK_BLOCK, &["training.epochs=0"], &["training.epochs"]);
    assert_error(
        NOTEBOOK_BLOCK,
        &["explain.profile=fast"],
        &["explain.profile", "fast", "seed"],
    );
    assert_error(
        NOTEBOOK_BLOCK,
        &["explain.integrated_gradients.steps=1"],
        &["explain.integrated_gradients.steps"],
    );
    assert_error(
        NOTEBOOK_BLOCK,
        &["model.architecture=resnet"],
        &["model.architecture", "resnet", "cnn128"],
    );
    assert_error(
        NOTEBOOK_BLOCK,
        &["explain.methods=[lime, shapley]"],
        &["explain.methods", "shapley"],
    );
    assert_error(
        NOTEBOOK_BLOCK,
        &["explain.segmentation.method=watershed"],
        &["explain.segmentation.method", "watershed"],
    );
    // a missing notebook block
    assert_error("data:\n  root: x\n", &[], &["données"]);
    // a malformed override
    assert_error(NOTEBOOK_BLOCK, &["données.image.size"], &["key.path=value"]);
}

#[test]
fn overrides_replace_file_values() {
    let s = Settings::from_yaml(
        NOTEBOOK_BLOCK,
        &[
            "données.image.size=64".into(),
            "explain.lime.samples=10".into(),
        ],
    )
    .unwrap();
    assert_eq!(s.donnees.image.size, 64);
    assert_eq!(s.explain.lime.samples, Some(10));
}

#[test]
fn performance_settings_default_as_documented_and_refuse_unknown_values() {
    use tumor_audit::attribution::Precision;
    // config.yml and a config without them agree on the defaults.
    let bundled = Settings::load(&repo("config.yml"), &[]).unwrap();
    let bare = Settings::from_yaml(NOTEBOOK_BLOCK, &[]).unwrap();
    for e in [&bundled.explain, &bare.explain] {
        assert_eq!(e.gradient_precision, Precision::Auto);
        assert!(e.prepacked_weights);
        assert!(!e.shared_evaluations);
    }
    let s = Settings::from_yaml(
        NOTEBOOK_BLOCK,
        &[
            "explain.gradient_precision=bf16".into(),
            "explain.prepacked_weights=false".into(),
            "explain.shared_evaluations=true".into(),
        ],
    )
    .unwrap();
    assert_eq!(s.explain.gradient_precision, Precision::Bf16);
    assert!(!s.explain.prepacked_weights && s.explain.shared_evaluations);
    // An unknown value names the key, the value and the allowed ones; a wrong type names the key.
    assert_error(
        NOTEBOOK_BLOCK,
        &["explain.gradient_precision=fp16"],
        &["explain.gradient_precision", "fp16", "bf16"],
    );
    for key in ["explain.prepacked_weights", "explain.shared_evaluations"] {
        let e = error_of(NOTEBOOK_BLOCK, &[&format!("{key}=maybe")]);
        assert!(e.contains(key), "{e}");
    }
    assert_error(
        NOTEBOOK_BLOCK,
        &["explain.gradient_precison=f32"],
        &["gradient_precison"],
    );
}

#[test]
fn per_channel_mean_and_std_match_the_channels_and_never_divide_by_zero() {
    let rgb =
        "données:\n  image: {size: 64, normalize: true, standardize: false, grayscale: false}\n";
    let s = Settings::from_yaml(
        rgb,
        &[
            "données.image.mean=[0.485, 0.456, 0.406]".into(),
            "données.image.std=[0.229, 0.224, 0.225]".into(),
        ],
    )
    .expect("ImageNet statistics for an RGB model");
    assert_eq!(s.donnees.image.std, Some(vec![0.229, 0.224, 0.225]));
    // Unset, they stay out of the run's snapshot (earlier runs keep theirs).
    let plain = Settings::from_yaml(NOTEBOOK_BLOCK, &[]).unwrap();
    assert!(!plain.to_yaml().contains("mean") && !plain.to_yaml().contains("std:"));
    assert_error(
        NOTEBOOK_BLOCK,
        &["données.image.mean=[0.485, 0.456, 0.406]"],
        &["données.image.mean", "3 value(s)", "1 channel(s)"],
    );
    assert_error(
        rgb,
        &["données.image.std=[0.2, 0.2]"],
        &["données.image.std", "give 3"],
    );
    assert_error(
        rgb,
        &["données.image.std=[0.2, 0, 0.2]"],
        &["données.image.std", "channel 1 has std 0"],
    );
    assert_error(
        NOTEBOOK_BLOCK,
        &["données.image.standardize=true", "données.image.mean=[0.5]"],
        &["choose one"],
    );
}
