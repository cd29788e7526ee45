//! Bad values and names are refused with a clear error before any work: counts whose buffers cannot
//! fit, non-finite values, NaN weights or outputs, and misspelt method, metric, class or scope names.
use crate::support::cli::{
    assert_exit, assert_exit_for, assert_stderr, bin, gradcam_audit, stderr,
};
use crate::support::images::real_set;
use crate::support::models::bundled_torchscript;
use crate::support::{repo, tempdir};

/// Point 6: a count whose buffers cannot fit, a NaN or infinite value, NaN weights or a model whose output
/// is NaN: refused with a clear error before any work.
#[test]
fn absurd_counts_non_finite_values_and_nan_models_are_refused_before_any_work() {
    let dir = tempdir();
    let set = real_set(dir.path(), 1);
    let db = dir.path().join("a.sqlite");
    let run = |sets: &[&str]| {
        bin(sets)
            .args([
                "audit",
                "--no-leakage-check",
                "--data",
                set.to_str().unwrap(),
            ])
            .args(["--db", db.to_str().unwrap()])
            .output()
            .unwrap()
    };
    for (set, key, expect) in [
        (
            "explain.lime.samples=1000000000",
            "explain.lime.samples",
            "at most",
        ),
        (
            "explain.kernel_shap.samples=100000000000",
            "explain.kernel_shap.samples",
            "at most",
        ),
        (
            "explain.integrated_gradients.steps=100000000000",
            "explain.integrated_gradients.steps",
            "at most",
        ),
        (
            "explain.integrated_gradients.baseline_value=.nan",
            "explain.integrated_gradients.baseline_value",
            "finite",
        ),
        (
            "explain.lime.kernel_width=.inf",
            "explain.lime.kernel_width",
            "finite",
        ),
        (
            "explain.segmentation.sigma=-.inf",
            "explain.segmentation.sigma",
            "finite",
        ),
    ] {
        let out = run(&[set]);
        assert_exit_for(&out, 2, set);
        let err = stderr(&out);
        assert!(err.contains(key) && err.contains(expect), "{set}: {err}");
        assert!(
            !db.exists(),
            "{set}: refused before the database is created"
        );
    }

    // Weights with a NaN.
    let mut tensors =
        tch::Tensor::read_safetensors(repo("models/cnn128-br35h.safetensors")).unwrap();
    for (name, t) in tensors.iter_mut() {
        if name == "0.weight" {
            let flat = t.flatten(0, -1);
            let _ = flat.get(3).fill_(f64::NAN);
        }
    }
    let bad = dir.path().join("nan.safetensors");
    tch::Tensor::write_safetensors(&tensors, &bad).unwrap();
    let out = run(&[&format!("model.weights={}", bad.display())]);
    assert_exit(&out, 1);
    assert_stderr(&out, &["`0.weight` holds NaN or infinite values"]);
    // A module whose every output is NaN.
    let ts = bundled_torchscript(dir.path(), "nan.pt", f64::NAN);
    let out = run(&[&format!("model.torchscript={}", ts.display())]);
    assert_exit(&out, 1);
    assert_stderr(&out, &["NaN or infinite"]);
    assert!(!db.exists(), "refused before the database is created");
}

/// Point 2: a misspelt method, metric, class or scope name on the command line is an error naming the
/// valid ones (exit 2), not a check that silently never fires.
#[test]
fn misspelt_names_in_rules_and_filters_are_refused() {
    let dir = tempdir();
    let set = real_set(dir.path(), 1);
    let db = dir.path().join("a.sqlite");
    for run in ["a", "b"] {
        let out = gradcam_audit(&set, &db, run, &[]);
        assert_exit(&out, 0);
    }
    let d = db.to_str().unwrap();
    let diff = |rule: &str| {
        bin(&[])
            .args(["diff", "a", "b", "--db", d, "--fail-on", rule])
            .output()
            .unwrap()
    };
    for (rule, expect) in [
        ("mass_background@gradcma down 0.01", "no method `gradcma`"),
        ("mass_background@GradCAM down 0.01", "no method `GradCAM`"),
        ("recall@Yes down 1", "no class `Yes`"),
        ("precision@maybe down 1", "no class `maybe`"),
        ("accuracy@gradcam down 1", "accuracy is run-wide"),
    ] {
        let out = diff(rule);
        assert_exit_for(&out, 2, rule);
        let err = stderr(&out);
        assert!(err.contains(expect), "{rule}: {err}");
        assert!(
            err.contains("gradcam") || err.contains("no, yes") || expect.contains("run-wide"),
            "{rule}: the valid names: {err}"
        );
    }
    // Known names still work.
    for rule in [
        "mass_background@gradcam down 0.01",
        "recall@yes down 1",
        "accuracy down 1",
    ] {
        let out = diff(rule);
        assert_exit_for(&out, 0, rule);
    }
    let out = bin(&[])
        .args(["query", "--db", d, "suspicious", "--method", "limee"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert_stderr(&out, &["no method `limee`", "gradcam"]);
}
