//! Tests of the store: migrations, pragmas, read-only access, runs and resume, the writer, the views, foreign keys.
use std::path::PathBuf;
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

use super::*;

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("nested/folder/audit.sqlite")
}

/// The tables the writer fills with an image's result (the faithfulness curves aside).
pub(crate) const RESULT_TABLES: [&str; 7] = [
    "images",
    "run_images",
    "predictions",
    "attribution_metrics",
    "agreement",
    "maps",
    "errors",
];

/// Sends one image's result to the writer.
fn send_image(writer: &Writer, result: ImageResult) {
    writer
        .sender()
        .send(WriterMessage::Image(Box::new(result)))
        .unwrap();
}

fn run_record(run_id: &str) -> RunRecord {
    RunRecord {
        run_id: run_id.into(),
        config_yaml: "explain:\n  methods: [saliency, integrated_gradients]\n".into(),
        model_path: "models/resnet.pt".into(),
        model_sha256: "ab".repeat(32),
        data_root: "data/test".into(),
        tool_version: "0.1.0".into(),
        device: "Cpu".into(),
        seed: 7,
        profile: "fast".into(),
        methods: vec!["saliency".into(), "integrated_gradients".into()],
        baseline_value: 0.0,
        reference_value: -1.5,
        images_total: 3,
        model_description: "TorchScript models/resnet.pt".into(),
        explains: "logits".into(),
    }
}

fn metric(method: &str, background: f64, border: f64) -> MetricRecord {
    MetricRecord {
        method: method.into(),
        mass_inside: 1.0 - background,
        mass_background: background,
        mass_border: border,
        concentration_inside: 1.2,
        concentration_border: 0.8,
        top1_inside: 0.9,
        top5_inside: 0.95,
        gini: 0.6,
        empty: false,
        completeness_error: (method == "integrated_gradients").then_some(0.01),
        segments: None,
        seconds: 0.25,
        reproducibility: None,
    }
}

/// An image result with two methods, their agreement and 4x4 maps.
fn image_result(
    run_id: &str,
    n: usize,
    label: &str,
    predicted: &str,
    confidence: f64,
    background: f64,
) -> ImageResult {
    let id = format!("{n:064x}");
    let methods = ["saliency", "integrated_gradients"];
    ImageResult {
        run_id: run_id.into(),
        image: ImageRecord {
            image_id: id.clone(),
            path: format!("data/test/{label}/img{n}.png"),
            label: Some(label.into()),
            width: 512,
            height: 512,
            brain_area_fraction: 0.4,
            mask_fallback: false,
        },
        prediction: Some(PredictionRecord {
            predicted: predicted.into(),
            confidence,
            probabilities: format!(r#"{{"{predicted}": {confidence}}}"#),
            target: predicted.into(),
            correct: Some(label == predicted),
        }),
        metrics: methods.iter().map(|m| metric(m, background, 0.1)).collect(),
        agreement: vec![AgreementRecord {
            method_a: methods[0].into(),
            method_b: methods[1].into(),
            spearman: 0.5,
            iou_top10: 0.3,
        }],
        maps: methods
            .iter()
            .map(|m| MapRecord {
                method: m.to_string(),
                width: 4,
                height: 4,
                encoding: crate::store::maps::F16LE.into(),
                data: vec![0; 32],
            })
            .collect(),
        faithfulness: vec![],
        outline: None,
        localisation: vec![],
        errors: vec![ErrorRecord {
            run_id: run_id.into(),
            image_id: Some(id),
            path: format!("data/test/{label}/img{n}.png"),
            stage: "attribution:occlusion".into(),
            message: "out of memory".into(),
        }],
        seconds: 1.5,
    }
}

/// A fresh database in a temp dir with one run begun: the fixture most tests start from.
fn store_with_run(run_id: &str) -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).unwrap();
    store.begin_run(&run_record(run_id)).unwrap();
    (dir, path, store)
}

fn count(store: &Store, sql: &str) -> i64 {
    scalar(store, sql)
}

/// The first column of the query's one row.
fn scalar<T: rusqlite::types::FromSql>(store: &Store, sql: &str) -> T {
    store.conn().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn migrations_apply_and_set_user_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).unwrap();
    assert!(path.is_file(), "open creates the file and its folders");
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count();
    assert_eq!(files, MIGRATIONS.len(), "every migration file is embedded");
    assert_eq!(store.schema_version().unwrap(), files as i64);
    // Numbered files 0001, 0002, ... applied in that order, no gaps.
    let numbers: Vec<u32> = MIGRATIONS
        .iter()
        .map(|(name, _)| {
            name.get(..4)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{name} does not start with a 4-digit number"))
        })
        .collect();
    assert!(
        numbers.iter().enumerate().all(|(i, &n)| n == i as u32 + 1),
        "migrations not numbered 1..: {numbers:?}"
    );
    let objects: Vec<String> = store
        .conn()
        .prepare("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    for want in [
        "runs",
        "images",
        "run_images",
        "predictions",
        "attribution_metrics",
        "agreement",
        "errors",
        "maps",
        "run_shards",
        "v_image_method",
        "v_suspicious",
        "v_bias_summary",
        "v_run_summary",
        "faithfulness",
        "sanity_checks",
        "sanity_stages",
        "sanity_other_class",
        "v_faithfulness_image",
        "v_faithfulness_summary",
        "v_faithfulness_by_class",
        "v_sanity_curve",
        "v_sanity_verdict",
        "v_sanity_other_class",
        "outlines",
        "localisation",
        "v_localisation",
        "v_localisation_summary",
    ] {
        assert!(
            objects.iter().any(|o| o == want),
            "{want} missing from {objects:?}"
        );
    }
}

#[test]
fn reopening_applies_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let store = Store::open(&path).unwrap();
        store.begin_run(&run_record("r1")).unwrap();
    }
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(
        count(&store, "SELECT count(*) FROM runs"),
        1,
        "data survives a reopen"
    );
    assert_eq!(
        migrate(&mut store.conn, &path).unwrap(),
        0,
        "nothing left to apply"
    );
    // A database stopped between migrations (here after the first) gets only the missing ones.
    let partial = dir.path().join("partial.sqlite");
    let mut conn = Connection::open(&partial).unwrap();
    conn.execute_batch(MIGRATIONS[0].1).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    assert_eq!(migrate(&mut conn, &partial).unwrap(), MIGRATIONS.len() - 1);
    assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
}

#[test]
fn a_database_of_schema_10_takes_the_acquisition_migration_with_its_checks_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    // A database as the build before the acquisition part left it: migrations 1-10, a run and its
    // (inconclusive) shortcut check with one candidate region.
    let before = MIGRATIONS
        .iter()
        .position(|(name, _)| *name == "0011_acquisition.sql")
        .unwrap();
    assert_eq!(before, 10);
    {
        let conn = Connection::open(&path).unwrap();
        for (_, sql) in &MIGRATIONS[..before] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", before as i64)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO runs (run_id, config_yaml, model_path, model_sha256, data_root, tool_version, \
               device, seed, profile, methods, images_total) \
             VALUES ('old', '{}', 'm.safetensors', 'abc', 'data', '0', 'cpu', 1, 'default', '[]', 4); \
             INSERT INTO shortcut_checks (run_id, images, verdict, summary, flagged_images, \
               min_reproducibility, params, forward_passes, seconds) \
             VALUES ('old', 4, 'inconclusive', 'inconclusive: too few images', 0, 0.9, '{}', 10, 1.5);",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    // The migrations after it applied too (the outlines' 0012 follows the acquisition's 0011).
    assert!(SCHEMA_VERSION > before as i64);
    let localisation = "SELECT count(*) FROM sqlite_master WHERE name = 'v_localisation'";
    assert_eq!(count(&store, localisation), 1);
    // The old check reads through the new view: no acquisition part, nothing confirmed.
    let row: (String, i64, String, Option<i64>, Option<f64>) = store
        .conn()
        .query_row(
            "SELECT verdict, confirmed_acquisition, acquisition_kinds, acquisition_forward_passes, \
             acquisition_seconds FROM v_verdict WHERE run_id = 'old'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(row, ("inconclusive".into(), 0, "[]".into(), None, None));
    // The new tables take the old run's rows, and the verdict's CHECK of migration 10 still holds.
    store
        .conn()
        .execute_batch(
            "INSERT INTO acquisition_tests (run_id, test, kind, transform, parameter, from_class, \
               to_class, images, flips, control_images, control_flips, verdict, summary) \
             VALUES ('old', 1, 'noise', 'add_noise', 'sigma 9', 'no', 'yes', 32, 31, 32, 0, \
               'confirmed', 'noise'); \
             UPDATE shortcut_checks SET acquisition_forward_passes = 96 WHERE run_id = 'old';",
        )
        .unwrap();
    assert_eq!(
        count(
            &store,
            "SELECT confirmed_acquisition FROM v_verdict WHERE run_id = 'old'"
        ),
        1
    );
    assert!(store
        .conn()
        .execute(
            "UPDATE shortcut_checks SET verdict = 'unknown' WHERE run_id = 'old'",
            []
        )
        .is_err());
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(Store::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let want = format!(
        "database {} has schema version 99, this tumor-audit knows up to {SCHEMA_VERSION}; use a newer tumor-audit",
        path.display()
    );
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::TooNew { found: 99, .. }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), want);
    assert_eq!(Store::open_read_only(&path).unwrap_err().to_string(), want);
    assert!(Writer::spawn(&path, 4, 4).is_err());
}

#[test]
fn pragmas_wal_foreign_keys_synchronous_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).unwrap();
    let q = |sql: &str| -> String {
        store
            .conn()
            .query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
            .map(|v| format!("{v:?}"))
            .unwrap()
    };
    assert_eq!(q("PRAGMA journal_mode"), "Text(\"wal\")");
    assert_eq!(q("PRAGMA foreign_keys"), "Integer(1)");
    assert_eq!(q("PRAGMA synchronous"), "Integer(1)", "NORMAL");
    // The stated wait for a locked database (`--lock-timeout`, 60 s unless set).
    assert_eq!(
        q("PRAGMA busy_timeout"),
        format!("Integer({})", super::BUSY_TIMEOUT.as_millis())
    );
    let ro = Store::open_read_only(&path).unwrap();
    let mode: String = ro
        .conn()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal", "WAL is kept in the file");
    assert_eq!(count(&ro, "PRAGMA foreign_keys"), 1);
}

#[test]
fn reader_is_not_blocked_by_an_open_writer_transaction() {
    let (_dir, path, _store) = store_with_run("r1");
    let writer = Writer::spawn(&path, 100, 8).unwrap();
    send_image(&writer, image_result("r1", 1, "glioma", "glioma", 0.8, 0.1));
    writer.sender().send(WriterMessage::Flush).unwrap();
    let (held_tx, held_rx) = sync_channel(1);
    let (release_tx, release_rx) = sync_channel(1);
    let second = image_result("r1", 2, "glioma", "glioma", 0.8, 0.1);
    writer
        .sender()
        .send(WriterMessage::Hold(Box::new(second), held_tx, release_rx))
        .unwrap();
    held_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the writer holds its transaction");

    // The writer now holds the write lock with image 2 written but not committed.
    let reader = Store::open_read_only(&path).unwrap();
    let t0 = Instant::now();
    let done = reader.done_images("r1").unwrap();
    assert_eq!(
        done,
        HashSet::from([format!("{:064x}", 1)]),
        "the reader sees the last commit only"
    );
    assert_eq!(
        count(
            &reader,
            "SELECT count(*) FROM v_image_method WHERE run_id = 'r1'"
        ),
        2
    );
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "the reader waited {:?}",
        t0.elapsed()
    );
    // A second writer would wait for the lock (busy_timeout) rather than fail at once; not tested here.

    release_tx.send(()).unwrap();
    let stats = writer.finish().unwrap();
    assert_eq!(stats.images, 2);
    assert_eq!(
        reader.done_images("r1").unwrap().len(),
        2,
        "after the commit the reader sees both"
    );
}

#[test]
fn read_only_store_rejects_writes_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(Store::open(&path).unwrap());
    // No other connection is open: the -wal/-shm files are gone, and reading still works.
    let ro = Store::open_read_only(&path).unwrap();
    assert_eq!(ro.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(count(&ro, "SELECT count(*) FROM v_run_summary"), 0);
    let err = ro
        .conn()
        .execute("INSERT INTO images (image_id, path) VALUES ('x', 'y')", [])
        .unwrap_err();
    assert_eq!(err.sqlite_error_code(), Some(ErrorCode::ReadOnly), "{err}");
    let err = ro.begin_run(&run_record("r1")).unwrap_err();
    assert!(err.to_string().contains("readonly"), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    let missing = dir.path().join("nope.sqlite");
    let err = Store::open_read_only(&missing).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("database {} does not exist", missing.display())
    );
    assert!(!missing.exists(), "open_read_only creates nothing");
}

#[test]
fn begin_run_resumes_only_the_same_config_and_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).unwrap();
    let run = run_record("nightly-2026-11-25");
    assert!(!store.begin_run(&run).unwrap(), "a new run");
    let described = |store: &Store| -> (String, String) {
        store
            .conn()
            .query_row(
                "SELECT model_description, explains FROM runs WHERE run_id = ?1",
                [&run.run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    assert_eq!(
        described(&store),
        ("TorchScript models/resnet.pt".into(), "logits".into())
    );
    store.finish_run(&run.run_id, "interrupted").unwrap();
    // A resume records the description this build gives (like the tool version).
    let redescribed = RunRecord {
        model_description: "TorchScript models/resnet.pt; input 1x64x64".into(),
        ..run.clone()
    };
    assert!(
        store.begin_run(&redescribed).unwrap(),
        "same config and model: resume"
    );
    assert_eq!(described(&store).0, redescribed.model_description);
    let (status, finished, methods): (String, Option<String>, String) = store
        .conn()
        .query_row(
            "SELECT status, finished_at, methods FROM runs WHERE run_id = ?1",
            [&run.run_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), finished), ("running", None));
    assert_eq!(methods, r#"["saliency","integrated_gradients"]"#);

    let other_config = RunRecord {
        config_yaml: "explain: {}\n".into(),
        ..run.clone()
    };
    let err = store.begin_run(&other_config).unwrap_err();
    assert!(
        matches!(err, StoreError::RunMismatch { what: "config", .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("run nightly-2026-11-25 already exists with a different config"),
        "{err}"
    );
    let other_model = RunRecord {
        model_sha256: "cd".repeat(32),
        ..run.clone()
    };
    let err = store.begin_run(&other_model).unwrap_err();
    assert!(err.to_string().contains("different model"), "{err}");

    store.finish_run(&run.run_id, "finished").unwrap();
    let finished: Option<String> = store
        .conn()
        .query_row("SELECT finished_at FROM runs", [], |r| r.get(0))
        .unwrap();
    assert!(finished.is_some_and(|t| t.ends_with('Z')));
    assert!(matches!(
        store.finish_run(&run.run_id, "done"),
        Err(StoreError::BadStatus { .. })
    ));
    assert!(matches!(
        store.finish_run("nope", "finished"),
        Err(StoreError::NoSuchRun { .. })
    ));
}

#[test]
fn writer_writes_all_rows_and_rewrites_replace() {
    let (_dir, path, store) = store_with_run("r1");
    let n = 10;
    let writer = Writer::spawn(&path, 3, 2).unwrap();
    let send = writer.sender();
    for i in 0..n {
        send.send(WriterMessage::Image(Box::new(image_result(
            "r1",
            i,
            "glioma",
            "meningioma",
            0.7,
            0.2,
        ))))
        .unwrap();
    }
    drop(send);
    let stats = writer.finish().unwrap();
    assert_eq!(stats.images, n);
    assert_eq!(stats.errors, n, "one attribution error per image");
    assert!(
        stats.transactions >= n.div_ceil(3) && stats.transactions <= n,
        "{stats:?}"
    );

    let counts =
        |store: &Store| RESULT_TABLES.map(|t| count(store, &format!("SELECT count(*) FROM {t}")));
    let n = n as i64;
    assert_eq!(counts(&store), [n, n, n, 2 * n, n, 2 * n, n]);
    let done = store.done_images("r1").unwrap();
    assert_eq!(done.len() as i64, n);
    assert!(done.contains(&format!("{:064x}", 3)));
    let (id, path_err): (Option<String>, String) = store
        .conn()
        .query_row("SELECT image_id, path FROM errors LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(id.is_some() && path_err.starts_with("data/test/glioma/"));

    // A resumed run recomputes image 3 with one method and a new label: its rows are replaced.
    let mut again = image_result("r1", 3, "pituitary", "pituitary", 0.99, 0.6);
    again.metrics.truncate(1);
    again.maps.truncate(1);
    again.agreement.clear();
    again.errors.clear();
    let writer = Writer::spawn(&path, 3, 2).unwrap();
    send_image(&writer, again.clone());
    send_image(&writer, again);
    assert_eq!(writer.finish().unwrap().images, 2);
    assert_eq!(
        counts(&store),
        [n, n, n, 2 * n - 1, n - 1, 2 * n - 1, n - 1]
    );
    let (label, bg): (String, f64) = store
        .conn()
        .query_row(
            "SELECT label, mass_background FROM v_image_method WHERE image_id = ?1",
            [format!("{:064x}", 3)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((label.as_str(), bg), ("pituitary", 0.6));
}

#[test]
fn writer_records_failed_files_and_bad_results() {
    let (_dir, path, store) = store_with_run("r1");
    let unreadable = ErrorRecord {
        run_id: "r1".into(),
        image_id: None,
        path: "data/test/glioma/broken.png".into(),
        stage: "decode".into(),
        message: "cannot read: permission denied".into(),
    };
    let undecodable = ErrorRecord {
        image_id: Some("ff".repeat(32)),
        path: "data/test/glioma/trunc.png".into(),
        message: "truncated PNG".into(),
        ..unreadable.clone()
    };
    // A result that breaks a constraint (the same method twice) is rolled back and logged, not fatal.
    let mut bad = image_result("r1", 1, "glioma", "glioma", 0.9, 0.1);
    bad.metrics.push(bad.metrics[0].clone());
    let good = image_result("r1", 2, "glioma", "glioma", 0.9, f64::NAN);
    for _ in 0..2 {
        // The second round is a rerun: nothing is duplicated.
        let writer = Writer::spawn(&path, 16, 16).unwrap();
        let send = writer.sender();
        send.send(WriterMessage::Error(unreadable.clone())).unwrap();
        send.send(WriterMessage::Error(undecodable.clone()))
            .unwrap();
        send.send(WriterMessage::Image(Box::new(bad.clone())))
            .unwrap();
        send.send(WriterMessage::Image(Box::new(good.clone())))
            .unwrap();
        drop(send);
        let stats = writer.finish().unwrap();
        assert_eq!((stats.images, stats.errors), (1, 4), "{stats:?}");
    }
    let stages: Vec<(Option<String>, String)> = store
        .conn()
        .prepare("SELECT image_id, stage FROM errors ORDER BY path")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let id = |n: usize| Some(format!("{n:064x}"));
    assert_eq!(
        stages,
        vec![
            (None, "decode".to_string()),
            (id(1), "write".to_string()),
            (id(2), "attribution:occlusion".to_string()),
            (Some("ff".repeat(32)), "decode".to_string()),
        ]
    );
    assert_eq!(
        count(
            &store,
            &format!(
                "SELECT count(*) FROM attribution_metrics WHERE image_id = '{}'",
                id(1).unwrap()
            )
        ),
        0
    );
    assert_eq!(
        store.done_images("r1").unwrap(),
        HashSet::from([id(2).unwrap()])
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM run_images WHERE status = 'failed'"
        ),
        2
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM attribution_metrics WHERE mass_background IS NULL"
        ),
        2,
        "NaN -> NULL"
    );
    let (failed, errors): (i64, i64) = store
        .conn()
        .query_row(
            "SELECT images_failed, errors FROM v_run_summary WHERE run_id = 'r1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((failed, errors), (3, 4));
}

#[test]
fn views_on_a_hand_made_example() {
    let (_dir, path, store) = store_with_run("r1");
    let writer = Writer::spawn(&path, 8, 8).unwrap();
    let send = writer.sender();
    // 1: glioma, right, background 0.8 -> suspicious (background) for both methods.
    // 2: glioma, right, clean.
    // 3: glioma, wrong with confidence 0.95 -> suspicious (confidently wrong) for both methods.
    // 4: meningioma, right; integrated_gradients has a border mass of 0.6 -> suspicious (border),
    // saliency 0.4 -> not (below 0.5, the threshold since migration 0003).
    let mut four = image_result("r1", 4, "meningioma", "meningioma", 0.6, 0.1);
    four.metrics[1].mass_border = 0.6;
    four.metrics[0].mass_border = 0.4;
    for r in [
        image_result("r1", 1, "glioma", "glioma", 0.7, 0.8),
        image_result("r1", 2, "glioma", "glioma", 0.7, 0.1),
        image_result("r1", 3, "glioma", "pituitary", 0.95, 0.1),
        four,
    ] {
        send.send(WriterMessage::Image(Box::new(r))).unwrap();
    }
    drop(send);
    writer.finish().unwrap();
    store.finish_run("r1", "finished").unwrap();

    assert_eq!(
        count(&store, "SELECT count(*) FROM v_image_method"),
        8,
        "run x image x method"
    );
    let rows: Vec<(String, String, String, f64)> = store
        .conn()
        .prepare("SELECT image_id, method, reason, score FROM v_suspicious ORDER BY score DESC, image_id, method")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let id = |n: usize| format!("{n:064x}");
    let ig = "integrated_gradients".to_string();
    let sal = "saliency".to_string();
    let bg = "background mass 0.80 > 0.5".to_string();
    let wrong = "wrong with confidence 0.95 > 0.9".to_string();
    let border = "border mass 0.60 > 0.5".to_string();
    assert_eq!(rows.len(), 5, "{rows:#?}");
    assert_eq!(rows[0], (id(1), ig.clone(), bg.clone(), 1.6));
    assert_eq!(rows[1], (id(1), sal.clone(), bg, 1.6));
    assert_eq!(
        (&rows[2].0, &rows[2].1, &rows[2].2),
        (&id(4), &ig, &border),
        "metrics[1] is integrated_gradients"
    );
    assert!((rows[2].3 - 1.2).abs() < 1e-9);
    for (row, method) in [(&rows[3], &ig), (&rows[4], &sal)] {
        assert_eq!((&row.0, &row.1, &row.2), (&id(3), method, &wrong));
        assert!((row.3 - 0.95 / 0.9).abs() < 1e-9);
    }

    let bias: Vec<(String, i64, String, i64, f64, f64)> = store
        .conn()
        .prepare(
            "SELECT label, correct, method, images, mean_mass_background, share_flagged FROM v_bias_summary \
             ORDER BY label, correct, method",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let g = "glioma".to_string();
    let m = "meningioma".to_string();
    assert_eq!(bias.len(), 6, "{bias:#?}");
    assert_eq!(bias[0], (g.clone(), 0, ig.clone(), 1, 0.1, 1.0));
    assert_eq!(bias[1], (g.clone(), 0, sal.clone(), 1, 0.1, 1.0));
    assert_eq!(
        (&bias[2].0, bias[2].1, &bias[2].2, bias[2].3, bias[2].5),
        (&g, 1, &ig, 2, 0.5)
    );
    assert!((bias[2].4 - 0.45).abs() < 1e-9);
    assert_eq!(
        (&bias[3].0, bias[3].1, &bias[3].2, bias[3].3, bias[3].5),
        (&g, 1, &sal, 2, 0.5)
    );
    assert_eq!(bias[4], (m.clone(), 1, ig, 1, 0.1, 1.0));
    assert_eq!(bias[5], (m, 1, sal, 1, 0.1, 0.0));

    let summary: (String, i64, i64, i64, i64, f64, i64) = store
        .conn()
        .query_row(
            "SELECT status, images_done, images_failed, labelled, correct, accuracy, images_flagged FROM v_run_summary",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
        )
        .unwrap();
    assert_eq!(summary, ("finished".into(), 4, 0, 4, 3, 0.75, 3));
}

#[test]
fn foreign_keys_are_enforced_and_runs_cascade() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).unwrap();
    let c = store.conn();
    c.execute(
        "INSERT INTO images (image_id, path) VALUES ('i1', 'a.png')",
        [],
    )
    .unwrap();
    let err = c
        .execute("INSERT INTO run_images (run_id, image_id, status) VALUES ('no-such-run', 'i1', 'done')", [])
        .unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(ErrorCode::ConstraintViolation),
        "{err}"
    );
    assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
    store.begin_run(&run_record("r1")).unwrap();
    let err = c
        .execute("INSERT INTO run_images (run_id, image_id, status) VALUES ('r1', 'no-such-image', 'done')", [])
        .unwrap_err();
    assert!(err.to_string().contains("FOREIGN KEY"), "{err}");

    let writer = Writer::spawn(&path, 4, 4).unwrap();
    send_image(&writer, image_result("r1", 1, "glioma", "glioma", 0.9, 0.1));
    writer.finish().unwrap();
    assert!(count(&store, "SELECT count(*) FROM maps") > 0);
    c.execute("DELETE FROM runs WHERE run_id = 'r1'", [])
        .unwrap();
    // Everything but `images` (one row per file, shared by runs) belongs to the run.
    for t in &RESULT_TABLES[1..] {
        assert_eq!(
            count(&store, &format!("SELECT count(*) FROM {t}")),
            0,
            "{t} cascades"
        );
    }
    assert_eq!(
        count(&store, "SELECT count(*) FROM images"),
        2,
        "images outlive runs"
    );

    // A result for a run that does not exist cannot even be logged: the writer stops with the error.
    let writer = Writer::spawn(&path, 4, 4).unwrap();
    let _ = writer
        .sender()
        .send(WriterMessage::Image(Box::new(image_result(
            "nope", 1, "glioma", "glioma", 0.9, 0.1,
        ))));
    let err = writer.finish().unwrap_err();
    assert!(
        err.to_string().contains("FOREIGN KEY")
            && err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn bias_side_by_side_has_one_row_per_class_and_method() {
    // A class with right and wrong predictions must not list its methods twice.
    let (_dir, path, store) = store_with_run("r1");
    let writer = Writer::spawn(&path, 8, 8).unwrap();
    let send = writer.sender();
    for r in [
        image_result("r1", 1, "glioma", "glioma", 0.7, 0.8),
        image_result("r1", 2, "glioma", "pituitary", 0.95, 0.1),
        image_result("r1", 3, "pituitary", "pituitary", 0.9, 0.2),
    ] {
        send.send(WriterMessage::Image(Box::new(r))).unwrap();
    }
    drop(send);
    writer.finish().unwrap();
    let t = crate::query::bias::side_by_side(store.conn(), "r1").unwrap();
    let keys: Vec<String> = t
        .rows
        .iter()
        .map(|r| format!("{:?}/{:?}", r[0], r[1]))
        .collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "{keys:?}");
    let glioma_ig = t
        .rows
        .iter()
        .find(|r| {
            r[0] == crate::query::Cell::text("glioma")
                && r[1] == crate::query::Cell::text("integrated_gradients")
        })
        .unwrap();
    // n_right and n_wrong on the same row.
    assert_eq!(glioma_ig[2], crate::query::Cell::Int(1));
    assert_eq!(glioma_ig[7], crate::query::Cell::Int(1));
}

#[test]
fn outline_rows_are_written_replaced_and_summarised() {
    let (_dir, path, store) = store_with_run("r1");
    let with_outline = |n: usize, label: &str, predicted: &str, mass: f64, hit: bool| {
        let mut r = image_result("r1", n, label, predicted, 0.8, 0.2);
        r.errors.clear();
        r.outline = Some(OutlineRecord {
            mask_path: format!("data/masks/Testing/{label}/img{n}.png"),
            grid: 128,
            area_fraction: 0.05,
            tolerance_px: 9,
            outline_size: 2,
            outline: vec![0, 255, 0, 128],
        });
        r.localisation = ["saliency", "integrated_gradients"]
            .iter()
            .map(|m| LocalisationRecord {
                method: m.to_string(),
                mass_on_tumor: mass,
                pointing_hit: hit,
                energy_pointing: mass + 0.1,
                iou_top_area: mass / 2.0,
            })
            .collect();
        r
    };
    let writer = Writer::spawn(&path, 4, 4).unwrap();
    let send = writer.sender();
    for r in [
        with_outline(1, "yes", "yes", 0.6, true),
        with_outline(2, "yes", "yes", 0.2, false),
        with_outline(3, "yes", "no", 0.1, false),
        // No outline: no rows.
        image_result("r1", 4, "no", "no", 0.9, 0.1),
    ] {
        send.send(WriterMessage::Image(Box::new(r))).unwrap();
    }
    // Written again without its outline: the image's outline rows go.
    let mut again = with_outline(2, "yes", "yes", 0.2, false);
    again.outline = None;
    again.localisation.clear();
    send.send(WriterMessage::Image(Box::new(again))).unwrap();
    drop(send);
    writer.finish().unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM outlines"), 2);
    assert_eq!(count(&store, "SELECT count(*) FROM localisation"), 4);
    let rows: Vec<(Option<i64>, String, i64, f64, f64, f64)> = store
        .conn()
        .prepare(
            "SELECT correct, method, images, mean_mass_on_tumor, pointing_rate, mean_outline_area \
             FROM v_localisation_summary WHERE run_id = 'r1' AND label = 'yes' ORDER BY correct, method",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(
        rows[0],
        (Some(0), "integrated_gradients".into(), 1, 0.1, 0.0, 0.05)
    );
    assert_eq!(rows[3], (Some(1), "saliency".into(), 1, 0.6, 1.0, 0.05));
    let concentration: f64 = scalar(
        &store,
        "SELECT tumor_concentration FROM v_localisation WHERE method = 'saliency' AND correct = 1",
    );
    assert!((concentration - 12.0).abs() < 1e-9, "{concentration}");
    // An outline without tumour pixels is refused by the schema.
    let e = store.conn().execute(
        "INSERT INTO outlines (run_id, image_id, mask_path, grid, area_fraction, tolerance_px, \
         outline_size, outline) SELECT 'r1', image_id, 'm.png', 128, 0.0, 9, 1, x'00' FROM images LIMIT 1",
        [],
    );
    assert!(e.is_err(), "area 0 must be refused");
}

/// A shortcut check written and read back: each test's counts land in their own columns (a region's
/// occlusion in `occlusion_*`, its paste in `paste_*`, the controls' rate and upper bound), a NaN
/// becomes NULL, and an acquisition row reads back as the record that was written.
#[test]
fn a_shortcut_check_round_trips_column_by_column() {
    use shortcuts::*;
    let (_dir, _path, store) = store_with_run("r1");
    let flips = |images, flips, shift| FlipCount {
        images,
        flips,
        rate: Some(flips as f64 / images as f64),
        low: Some(0.1),
        high: Some(0.9),
        shift,
    };
    let toward = AcquisitionTestRecord {
        toward: flips(32, 31, Some(0.4)),
        control: FlipCount {
            low: None,
            shift: None,
            ..flips(32, 1, None)
        },
        verdict: "confirmed".into(),
        example_image: None,
        example_before: Some(vec![1, 2, 3]),
        example_after: Some(vec![4, 5]),
        example_prob_before: Some(0.2),
        example_prob_after: Some(0.7),
        transform: "noise".into(),
        parameter: "sigma 12".into(),
        strength: Some(12.0),
        ..AcquisitionTestRecord::not_tested(1, "noise", "no", "yes", "31 of 32 flip")
    };
    let check = ShortcutCheck {
        check: ShortcutCheckRecord {
            run_id: "r1".into(),
            reference_run: None,
            images: 64,
            verdict: "shortcut".into(),
            summary: "s".into(),
            flagged_images: 0,
            min_reproducibility: 0.5,
            params: "{}".into(),
            forward_passes: 10,
            seconds: f64::NAN,
        },
        methods: Vec::new(),
        regions: vec![ShortcutRegionRecord {
            region: 1,
            class: "yes".into(),
            methods: vec!["saliency".into()],
            x0: 0.0,
            y0: 0.0,
            x1: 0.25,
            y1: 0.25,
            area: 0.0625,
            grid: 2,
            mask: vec![1, 0, 0, 0],
            mass_share: 0.5,
            lift: 3.0,
            occlusion: flips(20, 18, Some(0.6)),
            paste: flips(40, 10, Some(0.2)),
            control_occlusion: flips(20, 1, None),
            control_paste: flips(40, 2, None),
            verdict: "confirmed".into(),
        }],
        tests: Vec::new(),
        flags: Vec::new(),
        acquisition: Some(AcquisitionRecords {
            properties: Vec::new(),
            tests: vec![
                toward.clone(),
                AcquisitionTestRecord::not_tested(2, "jpeg", "no", "yes", "all PNG"),
            ],
            images_measured: 64,
            forward_passes: 96,
            seconds: 1.5,
            params: "{}".into(),
        }),
    };
    store.write_shortcut_check(&check).unwrap();
    let region_where = "SELECT count(*) FROM shortcut_regions WHERE run_id = 'r1'
        AND occluded_images = 20 AND occlusion_flips = 18 AND occlusion_rate = 0.9
        AND occlusion_drop = 0.6 AND pasted_images = 40 AND paste_flips = 10 AND paste_rate = 0.25
        AND paste_gain = 0.2 AND control_occlusion_rate = 0.05 AND control_paste_high = 0.9";
    assert_eq!(
        count(&store, region_where),
        1,
        "each test in its own columns"
    );
    let seconds: Option<f64> = scalar(&store, "SELECT seconds FROM shortcut_checks");
    assert_eq!(seconds, None, "NaN -> NULL");
    let back = crate::query::shortcuts::acquisition_examples(store.conn(), "r1").unwrap();
    assert_eq!(
        back,
        vec![toward],
        "only the row with an example pair, as written"
    );
    let untested: (i64, Option<f64>, i64) = store
        .conn()
        .query_row(
            "SELECT images, rate, control_images FROM acquisition_tests WHERE test = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(untested, (0, None, 0));
}
