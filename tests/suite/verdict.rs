//! The run's verdict as every reader shows it: an audit whose methods are all untrusted reads
//! inconclusive in the audit's summary, `query shortcuts`, `query runs` and the report; the bundled
//! model's run shows one flagged count (the verdict's) in `query runs`, the report and the verdict;
//! `query image` finds an image by its file name; `evaluate` writes per-image predictions into a
//! folder per data set and split.
use std::path::Path;

use rusqlite::Connection;
use tumor_audit::model::LayerSpec;

use super::support::cli::{bin_with, cheap_sets, ok};
use super::support::db::{count, row};
use super::support::images::{br35h, real_set};
use super::support::models::{cnn, set};
use super::support::tempdir;

const CLASSES: [&str; 2] = ["no", "yes"];

/// Stdout of `command --db DB args...` with the `--set` overrides `sets`, which must succeed.
fn on_db(sets: &[String], command: &str, db: &Path, args: &[&str]) -> String {
    ok(bin_with(sets)
        .arg(command)
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap())
}

/// Stdout of the audit of `sets`' data into `db` as run `run`, without the leakage check.
fn audit(sets: &[String], db: &Path, run: &str) -> String {
    on_db(sets, "audit", db, &["--run", run, "--no-leakage-check"])
}

/// `query --format csv ...` as (header, rows).
fn query_csv(sets: &[String], db: &Path, args: &[&str]) -> (Vec<String>, Vec<Vec<String>>) {
    let out = on_db(sets, "query", db, &[&["--format", "csv"], args].concat());
    let mut r = csv::Reader::from_reader(out.as_bytes());
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

fn cell<'a>(header: &[String], row: &'a [String], name: &str) -> &'a str {
    let i = header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    &row[i]
}

/// A model whose output does not depend on its input (every weight 0, the last bias decides): no
/// deletion curve can fall faster than the random order's, so the trust probe marks every method
/// untrusted, and with two images per class no region could reach significance either.
#[test]
fn every_method_untrusted_reads_inconclusive_everywhere() {
    let dir = tempdir();
    let root = dir.path();
    real_set(root, 2);
    let specs = [
        LayerSpec::Conv {
            out: 2,
            kernel: 3,
            padding: None,
        },
        LayerSpec::Relu,
        LayerSpec::Flatten,
        LayerSpec::Dense { out: 2 },
    ];
    let model = cnn(&specs, 1, 16, 2);
    for (name, values) in model.vs.variables() {
        let n = values.numel();
        let v = if name == "3.bias" {
            vec![1.0, -1.0]
        } else {
            vec![0.0; n]
        };
        set(&model, &name, &v);
    }
    let weights = root.join("constant.safetensors");
    model.save(&weights).unwrap();
    let mut sets = cheap_sets(root, &CLASSES);
    sets.extend([
        "model.architecture=custom".to_string(),
        "model.layers=[{conv: {out: 2}}, relu, flatten, {dense: {out: 2}}]".to_string(),
        format!("model.weights={}", weights.display()),
        "données.image.size=16".to_string(),
        format!("output.dir={}", root.join("out").display()),
    ]);
    let db = root.join("audit.sqlite");
    let stdout = audit(&sets, &db, "constant-1");
    assert!(stdout.contains("verdict: inconclusive"), "{stdout}");
    let verdict_at = stdout.find("verdict:").unwrap();
    let raw_at = stdout.find("raw per-map rules").expect("raw count shown");
    assert!(verdict_at < raw_at, "the verdict comes first:\n{stdout}");

    let out = on_db(&sets, "query", &db, &["shortcuts", "--run", "constant-1"]);
    assert!(
        out.contains("verdict: inconclusive: no method's maps can be trusted"),
        "{out}"
    );
    let c = Connection::open(&db).unwrap();
    let (state, untrusted): (String, String) = row(
        &c,
        "SELECT verdict, untrusted_methods FROM v_verdict WHERE run_id = 'constant-1'",
    );
    assert_eq!(state, "inconclusive");
    let trusted = count(
        &c,
        "SELECT count(*) FROM shortcut_methods WHERE run_id = 'constant-1' AND trusted = 1",
    );
    assert_eq!(trusted, 0, "untrusted: {untrusted}");

    let (h, rows) = query_csv(&sets, &db, &["runs"]);
    assert_eq!(cell(&h, &rows[0], "verdict"), "inconclusive");
    assert_eq!(cell(&h, &rows[0], "images_flagged"), "0");

    let report = root.join("report");
    on_db(
        &sets,
        "report",
        &db,
        &["--run", "constant-1", "--out", report.to_str().unwrap()],
    );
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(
        html.contains("<h2>Verdict: inconclusive</h2>"),
        "report heading"
    );
    assert!(!html.contains("shortcuts confirmed on the model"));

    // `query image` by the file name as stored, without its extension.
    let first = br35h("Testing", "no")[0].clone();
    let stem = first.file_stem().unwrap().to_str().unwrap().to_string();
    let out = on_db(
        &sets,
        "query",
        &db,
        &["image", &stem, "--run", "constant-1"],
    );
    assert!(
        out.contains(first.file_name().unwrap().to_str().unwrap()),
        "{out}"
    );
}

/// The bundled model on four real test images per class: the verdict's flagged count is the one
/// `query runs` and the report's summary card show; the raw per-map rules' count is labelled so.
#[test]
fn the_bundled_models_run_shows_one_flagged_count() {
    let dir = tempdir();
    let root = dir.path();
    real_set(root, 4);
    let mut sets = cheap_sets(root, &CLASSES);
    sets.push(format!("output.dir={}", root.join("out").display()));
    let db = root.join("audit.sqlite");
    let stdout = audit(&sets, &db, "nightly-1");
    let c = Connection::open(&db).unwrap();
    let (state, flagged): (String, i64) = row(
        &c,
        "SELECT verdict, flagged_images FROM v_verdict WHERE run_id = 'nightly-1'",
    );
    assert!(
        stdout.contains(&format!("{flagged} of 8 image(s) flagged for review")),
        "{stdout}"
    );
    let (h, rows) = query_csv(&sets, &db, &["runs"]);
    assert_eq!(cell(&h, &rows[0], "images_flagged"), flagged.to_string());
    assert_eq!(cell(&h, &rows[0], "verdict"), state);
    let raw = count(
        &c,
        "SELECT count(DISTINCT image_id) FROM v_suspicious WHERE run_id = 'nightly-1'",
    );
    assert_eq!(cell(&h, &rows[0], "raw_rule_images"), raw.to_string());

    let report = root.join("report");
    on_db(&sets, "report", &db, &["--out", report.to_str().unwrap()]);
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    let card = html
        .find("flagged images (verdict)")
        .expect("the summary card of the verdict's count");
    let value = &html[card..card + 200];
    assert!(
        value.contains(&format!("<div class=\"v\">{flagged}</div>")),
        "card shows {flagged}: {value}"
    );
    assert!(
        !html.contains(">suspicious images<"),
        "no other headline count"
    );
    let heading = match state.as_str() {
        "shortcut" => "<h2>Verdict: shortcut confirmed on the model</h2>",
        "inconclusive" => "<h2>Verdict: inconclusive</h2>",
        _ => "<h2>Verdict: no shortcut found</h2>",
    };
    assert!(html.contains(heading), "{state}: heading");
    assert!(
        html.contains("a flip rate of at least 30%"),
        "the code's threshold"
    );
}

/// Two data sets' test splits evaluated one after the other: each gets its own folder with one CSV
/// row per image (file, label, predicted class, probabilities summing to 1, predicted = argmax), and
/// the second does not overwrite the first.
#[test]
fn evaluate_writes_per_image_predictions_per_data_set() {
    let dir = tempdir();
    let out_dir = dir.path().join("out");
    let mut written = Vec::new();
    for (set_name, per_class) in [("br35h-a", 2usize), ("other-set", 3)] {
        let root = dir.path().join(set_name);
        real_set(&root, per_class);
        let sets = vec![format!("output.dir={}", out_dir.display())];
        let stdout = ok(bin_with(&sets)
            .args(["evaluate", "--data", root.to_str().unwrap()])
            .output()
            .unwrap());
        let folder = out_dir
            .join("evaluation")
            .join(format!("{set_name}-Testing"));
        assert!(stdout.contains(&folder.display().to_string()), "{stdout}");
        written.push((folder, per_class * 2));
    }
    for (folder, n) in written {
        let mut r = csv::Reader::from_path(folder.join("predictions.csv")).unwrap();
        let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
        assert_eq!(
            header,
            [
                "file",
                "image_id",
                "label",
                "predicted",
                "correct",
                "p_no",
                "p_yes"
            ]
        );
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), n, "{}", folder.display());
        for row in &rows {
            let (p_no, p_yes): (f64, f64) = (row[5].parse().unwrap(), row[6].parse().unwrap());
            assert!((p_no + p_yes - 1.0).abs() < 1e-5);
            let argmax = if p_yes > p_no { "yes" } else { "no" };
            assert_eq!(&row[3], argmax);
            assert!(
                row[0].contains(&format!("/{}/", &row[2])),
                "label from the folder: {row:?}"
            );
            assert!(Path::new(&row[0]).exists());
        }
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("evaluation.json")).unwrap())
                .unwrap();
        assert_eq!(summary["images"], n);
    }
}

/// Migration 0010 on a database written before it: the verdict's CHECK admits 'inconclusive', the
/// stored checks and their child rows (methods) stay, and other values are still refused.
#[test]
fn migration_0010_widens_the_verdict_and_keeps_the_rows() {
    use tumor_audit::store::{Store, MIGRATIONS};
    let dir = tempdir();
    let path = dir.path().join("old.sqlite");
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        for (i, (_, sql)) in MIGRATIONS.iter().take(9).enumerate() {
            c.execute_batch(sql).unwrap();
            c.pragma_update(None, "user_version", i as i64 + 1).unwrap();
        }
        c.execute_batch(
            "INSERT INTO runs (run_id, config_yaml, model_path, model_sha256, data_root, tool_version,
                               device, seed, profile, methods, images_total)
             VALUES ('old', '{}', 'm', 'sha', 'd', '0', 'CPU', 0, 'default', '[\"gradcam\"]', 2);
             INSERT INTO shortcut_checks (run_id, images, verdict, summary, flagged_images,
                                          min_reproducibility, params, forward_passes)
             VALUES ('old', 2, 'no_shortcut', 'no shortcut found', 0, 0.5, '{}', 10);
             INSERT INTO shortcut_methods (run_id, method, trusted, threshold_source)
             VALUES ('old', 'gradcam', 0, 'run');",
        )
        .unwrap();
        let refused = c.execute(
            "UPDATE shortcut_checks SET verdict = 'inconclusive' WHERE run_id = 'old'",
            [],
        );
        assert!(refused.is_err(), "version 9 refuses the new state");
    }
    let store = Store::open(&path).unwrap();
    let c = store.conn();
    let methods = count(
        c,
        "SELECT count(*) FROM shortcut_methods WHERE run_id = 'old'",
    );
    assert_eq!(methods, 1, "child rows kept");
    c.execute(
        "UPDATE shortcut_checks SET verdict = 'inconclusive' WHERE run_id = 'old'",
        [],
    )
    .unwrap();
    assert!(c
        .execute(
            "UPDATE shortcut_checks SET verdict = 'maybe' WHERE run_id = 'old'",
            []
        )
        .is_err());
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}
