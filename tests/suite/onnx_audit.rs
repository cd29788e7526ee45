//! ONNX models through the real binary: what the run record says about the model (its removed final
//! softmax, its input, where the class names came from), and class names read from a model's
//! metadata against `data.classes`.
use std::path::{Path, PathBuf};

use onnx_protobuf::{Message, ModelProto, StringStringEntryProto};
use rusqlite::Connection;

use super::support::cli::{self, assert_exit_for, bin_with, ok, text, CHEAP};
use super::support::db::count;
use super::support::images::{br35h, real_set};
use super::support::models::{explain_input, max_abs, max_diff};
use super::support::{repo, tempdir};

/// The notebook-shaped Keras CNN (tf2onnx, channels-last, 1 x 48 x 48, 4 classes, final softmax).
fn keras_cnn() -> PathBuf {
    repo("tests/fixtures/onnx/keras_notebook_cnn.onnx")
}

/// `--set` overrides for an ONNX audit of `root` at the fixture's input size.
fn onnx_sets(root: &Path, model: &Path, classes: &str) -> Vec<String> {
    let mut sets: Vec<String> = CHEAP.iter().map(|s| s.to_string()).collect();
    sets.extend([
        format!("data.root={}", root.display()),
        format!("data.classes={classes}"),
        "données.image.size=48".into(),
        format!("model.onnx={}", model.display()),
        format!("output.dir={}", root.join("out").display()),
    ]);
    sets
}

fn audit(sets: &[String], set: &Path, db: &Path, run: &str) -> std::process::Output {
    cli::audit(bin_with(sets), set, db, run)
        .args(["--no-leakage-check", "--no-shortcuts"])
        .output()
        .unwrap()
}

fn recorded(db: &Path, run: &str) -> (String, String) {
    Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT model_description, explains FROM runs WHERE run_id = ?1",
            [run],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

#[test]
fn an_onnx_run_records_its_removed_softmax_and_a_native_run_its_own_description() {
    let dir = tempdir();
    let set = real_set(dir.path(), 1);
    let db = dir.path().join("audit.sqlite");
    let sets = onnx_sets(dir.path(), &keras_cnn(), "[no, yes, glioma, pituitary]");
    ok(audit(&sets, &set, &db, "onnx-1"));
    let (description, explains) = recorded(&db, "onnx-1");
    // tf2onnx names the Keras softmax after the layer: whatever its name, it is the one removed.
    assert!(
        explains.starts_with("logits before the removed final softmax `"),
        "{explains}"
    );
    for part in [
        "ONNX ",
        "keras_notebook_cnn.onnx",
        "input nhwc 1x48x48",
        "4 classes",
        "final softmax `",
        "maps explain the logits before it",
        "class names from data.classes: no, yes, glioma, pituitary",
    ] {
        assert!(description.contains(part), "{part}: {description}");
    }

    // The native CNN records its own description.
    let mut native: Vec<String> = CHEAP.iter().map(|s| s.to_string()).collect();
    native.extend([
        format!("data.root={}", dir.path().display()),
        "data.classes=[no, yes]".into(),
    ]);
    ok(audit(&native, &set, &db, "native-1"));
    let (description, explains) = recorded(&db, "native-1");
    assert_eq!(explains, "logits");
    assert!(
        description.starts_with("native CNN [conv, relu")
            && description.contains("input nchw 1x128x128; 2 classes; no final softmax")
            && description.contains("class names from data.classes: no, yes"),
        "{description}"
    );

    // `query runs` and the report's header show them.
    let runs = ok(bin_with(&[])
        .args(["query", "--db"])
        .arg(&db)
        .arg("runs")
        .output()
        .unwrap());
    assert!(
        runs.contains("logits before the removed final softmax") && runs.contains("native CNN ["),
        "{runs}"
    );
    let report = dir.path().join("report");
    ok(bin_with(&[])
        .args(["report", "--db"])
        .arg(&db)
        .args(["--run", "onnx-1", "--out"])
        .arg(&report)
        .output()
        .unwrap());
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(
        html.contains("maps explain") && html.contains("logits before the removed final softmax"),
        "the report's header states what the maps explain"
    );
    assert!(html.contains("input nhwc 1x48x48"));
}

/// A copy of the Keras fixture with `key = value` in its metadata.
fn with_metadata(dir: &Path, key: &str, value: &str) -> PathBuf {
    let mut m = ModelProto::parse_from_bytes(&std::fs::read(keras_cnn()).unwrap()).unwrap();
    m.metadata_props.push(StringStringEntryProto {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    });
    let path = dir.join("named.onnx");
    std::fs::write(&path, m.write_to_bytes().unwrap()).unwrap();
    path
}

#[test]
fn class_names_come_from_the_models_metadata_unless_the_config_names_them() {
    let dir = tempdir();
    let set = real_set(dir.path(), 1);
    let model = with_metadata(
        dir.path(),
        "class_names",
        r#"["no", "yes", "glioma", "pituitary"]"#,
    );
    let db = dir.path().join("audit.sqlite");

    // No data.classes: the model's names, written into the run's config snapshot.
    let sets = onnx_sets(dir.path(), &model, "[]");
    let out = audit(&sets, &set, &db, "named");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("class names from the model's metadata `class_names`"),
        "{}",
        text(&out)
    );
    let (description, _) = recorded(&db, "named");
    assert!(
        description.contains(
            "class names from the model's metadata `class_names`: no, yes, glioma, pituitary"
        ),
        "{description}"
    );
    let conn = Connection::open(&db).unwrap();
    let config: String = conn
        .query_row(
            "SELECT config_yaml FROM runs WHERE run_id = 'named'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let stored = tumor_audit::config::Settings::from_yaml(&config, &[]).unwrap();
    assert_eq!(stored.data.classes, ["no", "yes", "glioma", "pituitary"]);
    let labels = count(
        &conn,
        "SELECT count(*) FROM images WHERE label IN ('no', 'yes')",
    );
    assert_eq!(labels, 2, "the folders' labels are the model's class names");

    // Both name the classes: another count, or the same names in another order, is a config error
    // before any work (exit 2, no database).
    for (classes, says) in [
        ("[no, yes, glioma]", "names 3 classes"),
        ("[yes, no, glioma, pituitary]", "in another order"),
    ] {
        let db2 = dir.path().join("refused.sqlite");
        let out = audit(&onnx_sets(dir.path(), &model, classes), &set, &db2, "r");
        assert_exit_for(&out, 2, classes);
        assert!(
            text(&out).contains("data.classes") && text(&out).contains(says),
            "{classes}: {}",
            text(&out)
        );
        assert!(!db2.exists(), "{classes}: nothing written");
    }

    // Other names: the config's, with a warning naming both lists.
    let sets = onnx_sets(dir.path(), &model, "[no, yes, c, d]");
    let out = bin_with(&sets)
        .args(["evaluate", "--folder"])
        .arg(&set)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(
            "data.classes [no, yes, c, d] differs from the model's metadata `class_names` [no, yes, glioma, pituitary]"
        ),
        "{}",
        text(&out)
    );
}

#[test]
fn a_tight_memory_budget_lowers_the_batch_sizes_and_leaves_the_maps_unchanged() {
    use tumor_audit::attribution::{self, Method};
    use tumor_audit::commands::Plan;
    use tumor_audit::config::Settings;
    use tumor_audit::model::Classifier;

    let context = |budget: Option<&str>| {
        let mut o: Vec<String> = CHEAP.iter().map(|s| s.to_string()).collect();
        o.extend([
            "données.image.size=48".into(),
            format!("model.onnx={}", keras_cnn().display()),
            "data.classes=[a, b, c, d]".into(),
            "explain.batch_size=64".into(),
            "explain.perturbation_batch_size=64".into(),
        ]);
        if let Some(b) = budget {
            o.push(format!("explain.memory_budget={b}"));
        }
        let settings = Settings::load(&repo("config.yml"), &o).unwrap();
        Plan::from_settings(settings, tch::Device::Cpu).unwrap()
    };
    let (wide, tight) = (context(None), context(Some("1MiB")));
    let model = tight.load_model().unwrap();
    let memory = model
        .activation_memory()
        .expect("an ONNX graph's activations are seen");
    let cfg = tight.explain_config(&[]).unwrap();
    let fitted = tight.fit_batches(&cfg, &model);
    // 1 MiB holds 1 MiB / (2 x kept) images of a gradient batch and 1 MiB / (2 x live) of a forward one.
    assert_eq!(
        fitted.batch_size as u64,
        ((1u64 << 20) / memory.per_gradient_image()).clamp(1, 64)
    );
    assert_eq!(
        fitted.perturbation_batch_size as u64,
        ((1u64 << 20) / memory.per_forward_image()).clamp(1, 64)
    );
    assert!(
        fitted.batch_size < 64 && fitted.perturbation_batch_size < 64,
        "{fitted:?}"
    );
    // The integrated gradients' 8 steps and SmoothGrad's 4 samples span several batches now.
    assert!(fitted.batch_size < 4, "{}", fitted.batch_size);
    let unbounded = wide.fit_batches(&wide.explain_config(&[]).unwrap(), &model);
    assert_eq!(
        (unbounded.batch_size, unbounded.perturbation_batch_size),
        (64, 64)
    );

    // A real scan: the same maps at either batch size (same seeds; float sums may differ in the
    // last bits).
    let img = image::open(br35h("Testing", "yes")[0].clone()).unwrap();
    let p = tumor_audit::preprocess::prepare(&img, &tight.settings.donnees.image);
    let x = tch::Tensor::from_slice(&p.input).view([1, 1, 48, 48]);
    for method in Method::SIX {
        // The map of a fresh input (no superpixels cached) under `cfg`.
        let map = |cfg| {
            let input = explain_input("scan", &x, &p.grey, 1);
            attribution::explain(&model, cfg, method, &input)
                .unwrap()
                .map
        };
        let (a, b) = (map(&fitted), map(&unbounded));
        let scale = max_abs(&b);
        let d = max_diff(&a, &b);
        assert!(
            d <= 1e-5 * scale.max(f32::MIN_POSITIVE),
            "{method:?}: {d} vs scale {scale}"
        );
    }
}

/// `line` without its ANSI colour sequences (`ESC [ ... m`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Seconds since midnight of a log line's timestamp (`2025-01-31T19:18:15.123456Z  INFO ...`).
fn log_seconds(line: &str) -> Option<f64> {
    let clock = line.split_whitespace().next()?.split('T').nth(1)?;
    let clock = clock.trim_end_matches('Z');
    let mut parts = clock.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(3600.0 * h + 60.0 * m + s)
}

/// A model whose image takes longer than `--log-every` (here LIME with many samples): without a
/// terminal the log shows the progress inside the image (method, forwards done / announced, ETA)
/// and is never silent much longer than `--log-every`. Not timed: the gap bound has seconds of
/// slack for a loaded machine, and the content is asserted only when the image did take longer
/// than the interval.
#[test]
fn a_slow_image_logs_its_progress_inside_the_image_every_log_every_seconds() {
    let dir = tempdir();
    let set = real_set(dir.path(), 1);
    let db = dir.path().join("audit.sqlite");
    let mut sets = onnx_sets(dir.path(), &keras_cnn(), "[no, yes, glioma, pituitary]");
    sets.push("explain.lime.samples=1000".into());
    let out = bin_with(&sets)
        .args(["audit", "--methods", "lime", "--log-every", "1", "--data"])
        .arg(&set)
        .arg("--db")
        .arg(&db)
        .args(["--run", "slow", "--no-leakage-check", "--no-shortcuts"])
        .output()
        .unwrap();
    ok(out.clone());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<(f64, String)> = err
        .lines()
        .map(plain)
        .filter(|l| l.contains("auditing: "))
        .filter_map(|l| log_seconds(&l).map(|t| (t, l)))
        .collect();
    assert!(lines.len() >= 2, "{err}");
    let span = (lines.last().unwrap().0 - lines[0].0).rem_euclid(86400.0);
    for w in lines.windows(2) {
        let gap = (w[1].0 - w[0].0).rem_euclid(86400.0);
        assert!(
            gap <= 1.0 + 3.0,
            "{gap:.1} s without a progress line:\n{err}"
        );
    }
    let within: Vec<&str> = lines
        .iter()
        .map(|(_, l)| l.as_str())
        .filter(|l| l.contains("; in this image: LIME "))
        .collect();
    if span >= 3.0 {
        assert!(!within.is_empty(), "{err}");
    }
    for l in within {
        assert!(
            l.contains(" forwards, ") && l.contains("/s") && l.contains("/2 images"),
            "{l}"
        );
    }
}
