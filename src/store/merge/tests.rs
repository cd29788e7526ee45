//! Merge tests on hand-made shard databases written through the real writer.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::types::Value;

use super::*;
use crate::shard::{shard_of, Shard};
use crate::store::tests::RESULT_TABLES;
use crate::store::{
    AgreementRecord, ErrorRecord, ImageRecord, ImageResult, MapRecord, MetricRecord,
    PredictionRecord, RunRecord, Writer, WriterMessage,
};

fn record(run_id: &str, config: &str) -> RunRecord {
    RunRecord {
        run_id: run_id.into(),
        config_yaml: config.into(),
        model_path: "models/m.safetensors".into(),
        model_sha256: "cd".repeat(32),
        data_root: "data/test".into(),
        tool_version: "0.1.0".into(),
        device: "Cpu".into(),
        seed: 0,
        profile: "default".into(),
        methods: vec!["gradcam".into(), "lime".into()],
        baseline_value: 0.0,
        reference_value: 0.0,
        images_total: 0,
        model_description: "native CNN".into(),
        explains: "logits".into(),
    }
}

fn id(n: usize) -> String {
    crate::dataset::content_id(format!("image {n}").as_bytes())
}

/// Image `n`: two methods; every third image also has an attribution error.
fn result(run_id: &str, n: usize) -> ImageResult {
    let id = id(n);
    let methods = ["gradcam", "lime"];
    let x = n as f64 / 100.0;
    ImageResult {
        run_id: run_id.into(),
        image: ImageRecord {
            image_id: id.clone(),
            path: format!("data/test/no/{n}.jpg"),
            label: Some("no".into()),
            width: 100 + n as i64,
            height: 90,
            brain_area_fraction: 0.3 + x,
            mask_fallback: n.is_multiple_of(5),
        },
        prediction: Some(PredictionRecord {
            predicted: "no".into(),
            confidence: 0.5 + x,
            probabilities: format!(r#"{{"no": {}, "yes": {}}}"#, 0.5 + x, 0.5 - x),
            target: "no".into(),
            correct: Some(true),
        }),
        metrics: methods
            .iter()
            .map(|m| MetricRecord {
                method: m.to_string(),
                mass_inside: 0.6 + x,
                mass_background: 0.4 - x,
                mass_border: 0.1,
                concentration_inside: 1.1,
                concentration_border: 0.9,
                top1_inside: 0.5,
                top5_inside: 0.6,
                gini: x,
                empty: false,
                completeness_error: None,
                segments: Some(40 + n as i64),
                seconds: 0.1,
                reproducibility: (*m == "lime").then_some(0.5 + x),
            })
            .collect(),
        agreement: vec![AgreementRecord {
            method_a: "gradcam".into(),
            method_b: "lime".into(),
            spearman: x,
            iou_top10: 1.0 - x,
        }],
        maps: methods
            .iter()
            .map(|m| MapRecord {
                method: m.to_string(),
                width: 2,
                height: 2,
                encoding: crate::store::maps::F16LE.into(),
                data: vec![n as u8, 1, 2, 3, 4, 5, 6, m.len() as u8],
            })
            .collect(),
        errors: if n.is_multiple_of(3) {
            vec![ErrorRecord {
                run_id: run_id.into(),
                image_id: Some(id),
                path: format!("data/test/no/{n}.jpg"),
                stage: "attribution:lime".into(),
                message: format!("failed {n}"),
            }]
        } else {
            Vec::new()
        },
        seconds: 1.0,
        faithfulness: Vec::new(),
        outline: None,
        localisation: Vec::new(),
    }
}

const IMAGES: usize = 12;
const CONFIG: &str = "explain:\n  profile: default\n  methods: [gradcam, lime]\n";

/// Writes run `run_id` with the images `0..IMAGES` that `keep` selects, one file that failed to decode
/// (with an id: image 100) and one unreadable file (no id, shard 0 only), then sets `status`.
fn write_db(path: &Path, run_id: &str, config: &str, shard: Option<Shard>, status: &str) {
    let keep = |image_id: &str| shard.is_none_or(|s| s.contains(image_id));
    let store = Store::open(path).unwrap();
    let mut rec = record(run_id, config);
    let unreadable = shard.is_none_or(|s| s.index == 0);
    rec.images_total = ((0..IMAGES).filter(|&n| keep(&id(n))).count()
        + keep(&id(100)) as usize
        + unreadable as usize) as i64;
    store.begin_shard_run(&rec, shard).unwrap();
    let writer = Writer::spawn(path, 4, 8).unwrap();
    let send = writer.sender();
    for n in (0..IMAGES).filter(|&n| keep(&id(n))) {
        send.send(WriterMessage::Image(Box::new(result(run_id, n))))
            .unwrap();
    }
    if keep(&id(100)) {
        send.send(WriterMessage::Error(ErrorRecord {
            run_id: run_id.into(),
            image_id: Some(id(100)),
            path: "data/test/yes/broken.jpg".into(),
            stage: "decode".into(),
            message: "corrupt".into(),
        }))
        .unwrap();
    }
    if unreadable {
        send.send(WriterMessage::Error(ErrorRecord {
            run_id: run_id.into(),
            image_id: None,
            path: "data/test/yes/unreadable.jpg".into(),
            stage: "decode".into(),
            message: "cannot read: permission denied".into(),
        }))
        .unwrap();
    }
    drop(send);
    writer.finish().unwrap();
    store.finish_run(run_id, status).unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    single: PathBuf,
    shards: Vec<PathBuf>,
}

fn fixture(n: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let single = root.join("single.sqlite");
    write_db(&single, "r", CONFIG, None, "finished");
    let shards = (0..n)
        .map(|k| {
            let s = Shard::new(k, n).unwrap();
            let p = root.join(s.db_file_name());
            write_db(&p, "r", CONFIG, Some(s), "finished");
            p
        })
        .collect();
    Fixture {
        _dir: dir,
        dir: root,
        single,
        shards,
    }
}

/// Every row of `table` (of run `r` where the table has a run), without the columns in `skip`, sorted.
fn rows(path: &Path, table: &str, skip: &[&str]) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let cols: Vec<String> = columns(&conn, table)
        .unwrap()
        .into_iter()
        .filter(|c| !skip.contains(&c.as_str()))
        .collect();
    let filter = if table == "images" {
        ""
    } else {
        " WHERE run_id = 'r'"
    };
    let mut st = conn
        .prepare(&format!(
            "SELECT {} FROM {table}{filter}",
            quoted(&cols, "")
        ))
        .unwrap();
    let mut out: Vec<String> = st
        .query_map([], |r| {
            (0..cols.len())
                .map(|i| r.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map(|v| format!("{v:?}"))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    out.sort();
    out
}

/// Everything of run `r`, errors without their id and time.
fn dump(path: &Path) -> BTreeMap<&'static str, Vec<String>> {
    RESULT_TABLES
        .iter()
        .map(|t| (*t, rows(path, t, &["id", "at"])))
        .collect()
}

fn merge(target: &Path, shards: &[PathBuf]) -> Result<MergeReport, MergeError> {
    merge_shards(target, shards, &MergeOptions::default())
}

#[test]
fn three_shards_merge_into_the_same_rows_as_one_run() {
    let f = fixture(3);
    // the fixture really is sharded: every shard holds some images and they partition the set
    let mut seen = Vec::new();
    for p in &f.shards {
        let ids = rows(p, "run_images", &["run_id", "status", "seconds"]);
        assert!(!ids.is_empty());
        seen.extend(ids);
    }
    seen.sort();
    assert_eq!(
        seen,
        rows(&f.single, "run_images", &["run_id", "status", "seconds"])
    );

    let target = f.dir.join("merged/audit.sqlite");
    let report = merge(&target, &f.shards).unwrap();
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.status, "finished");
    assert_eq!(report.missing, Vec::<u32>::new());
    assert_eq!(report.merged_now, vec![0, 1, 2]);
    assert_eq!(report.images_total, IMAGES as i64 + 2);
    assert_eq!(report.images_done, IMAGES as i64);
    assert_eq!(
        report.images_failed, 2,
        "the broken file and the unreadable one"
    );
    assert_eq!(dump(&target), dump(&f.single));

    let conn = rusqlite::Connection::open(&target).unwrap();
    let (status, total, index, count, finished): (String, i64, Option<i64>, i64, Option<String>) = conn
        .query_row(
            "SELECT status, images_total, shard_index, shard_count, finished_at FROM runs WHERE run_id = 'r'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        (status.as_str(), total, index, count),
        ("finished", IMAGES as i64 + 2, None, 3)
    );
    assert!(finished.is_some());
    let summary: (i64, i64) = conn
        .query_row(
            "SELECT images_done, images_failed FROM v_run_summary WHERE run_id = 'r'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(summary, (IMAGES as i64, 2));
    // error ids are the target's own: 1..n without gaps
    let ids: Vec<i64> = conn
        .prepare("SELECT id FROM errors ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<_>>());
}

#[test]
fn merging_twice_changes_nothing() {
    let f = fixture(3);
    let target = f.dir.join("audit.sqlite");
    merge(&target, &f.shards).unwrap();
    let everything = |p: &Path| {
        let mut d: BTreeMap<String, Vec<String>> = RESULT_TABLES
            .iter()
            .chain(&["runs", "run_shards"])
            .map(|t| (t.to_string(), rows(p, t, &[])))
            .collect();
        d.insert(
            "count".into(),
            vec![format!("{:?}", rows(p, "errors", &[]).len())],
        );
        d
    };
    let once = everything(&target);
    let report = merge(&target, &f.shards).unwrap();
    assert!(report.complete());
    assert_eq!(
        everything(&target),
        once,
        "a second merge changes no row (error ids included)"
    );
    // one shard again, alone, in another order of operations: still the same
    merge(&target, &f.shards[1..2]).unwrap();
    assert_eq!(everything(&target), once);
}

#[test]
fn a_missing_shard_is_reported_and_the_run_stays_interrupted_until_it_comes() {
    let f = fixture(3);
    let target = f.dir.join("audit.sqlite");
    let report = merge(&target, &[f.shards[2].clone(), f.shards[0].clone()]).unwrap();
    assert_eq!(report.missing, vec![1]);
    assert!(!report.complete());
    assert_eq!(report.status, "interrupted");
    assert_eq!(report.merged_now, vec![0, 2]);
    let finished: Option<String> = rusqlite::Connection::open(&target)
        .unwrap()
        .query_row("SELECT finished_at FROM runs WHERE run_id = 'r'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(finished, None);
    // the late shard alone completes the run
    let report = merge(&target, &f.shards[1..2]).unwrap();
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.status, "finished");
    assert_eq!(report.shards.len(), 3);
    assert_eq!(dump(&target), dump(&f.single));
}

#[test]
fn an_unfinished_shard_is_reported_and_replaced_when_merged_again() {
    let dir = tempfile::tempdir().unwrap();
    let shards: Vec<PathBuf> = (0..2)
        .map(|k| {
            let s = Shard::new(k, 2).unwrap();
            let p = dir.path().join(s.db_file_name());
            write_db(
                &p,
                "r",
                CONFIG,
                Some(s),
                if k == 1 { "running" } else { "finished" },
            );
            p
        })
        .collect();
    let target = dir.path().join("audit.sqlite");
    let report = merge(&target, &shards).unwrap();
    assert!(report.missing.is_empty());
    let unfinished: Vec<(u32, &str)> = report
        .unfinished()
        .iter()
        .map(|s| (s.index, s.status.as_str()))
        .collect();
    assert_eq!(unfinished, vec![(1, "running")]);
    assert_eq!(report.status, "interrupted");
    // the shard finishes; merging it again completes the run
    Store::open(&shards[1])
        .unwrap()
        .finish_run("r", "finished")
        .unwrap();
    let report = merge(&target, &shards[1..]).unwrap();
    assert!(report.complete());
    assert_eq!(report.status, "finished");
}

fn refused(target: &Path, shards: &[PathBuf]) -> String {
    let e = merge(target, shards).unwrap_err().to_string();
    assert!(
        !target.exists() || e.contains("already exists"),
        "the target is not created: {e}"
    );
    e
}

#[test]
fn shards_of_other_configs_models_runs_or_counts_are_refused_naming_files_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let s = |k, n| Some(Shard::new(k, n).unwrap());
    write_db(&p("a.sqlite"), "r", CONFIG, s(0, 2), "finished");
    write_db(
        &p("b-config.sqlite"),
        "r",
        &CONFIG.replace("default", "seed"),
        s(1, 2),
        "finished",
    );
    write_db(&p("b-run.sqlite"), "other", CONFIG, s(1, 2), "finished");
    write_db(&p("b-count.sqlite"), "r", CONFIG, s(1, 3), "finished");
    write_db(&p("b-dup.sqlite"), "r", CONFIG, s(0, 2), "finished");
    write_db(&p("b-model.sqlite"), "r", CONFIG, s(1, 2), "finished");
    Store::open(&p("b-model.sqlite"))
        .unwrap()
        .conn()
        .execute("UPDATE runs SET model_sha256 = 'ee'", [])
        .unwrap();
    write_db(&p("whole.sqlite"), "r", CONFIG, None, "finished");
    let target = p("out.sqlite");
    let pair = |b: &str| vec![p("a.sqlite"), p(b)];

    // Each refusal names what differs, and where.
    let refused_naming = |shards: &[PathBuf], words: &[&str]| {
        let e = refused(&target, shards);
        assert!(words.iter().all(|w| e.contains(w)), "{e}");
    };
    refused_naming(
        &pair("b-config.sqlite"),
        &[
            "differ in their config",
            "a.sqlite",
            "b-config.sqlite",
            "profile: default",
            "profile: seed",
        ],
    );
    refused_naming(
        &pair("b-model.sqlite"),
        &["model (sha256)", "b-model.sqlite", "ee"],
    );
    refused_naming(&pair("b-run.sqlite"), &["run id", "run other", "a.sqlite"]);
    refused_naming(
        &pair("b-count.sqlite"),
        &["shard count", "2 shards", "3 shards"],
    );
    refused_naming(
        &pair("b-dup.sqlite"),
        &["shard 0 of 2 is given twice", "b-dup.sqlite"],
    );
    let e = refused(&target, &[p("whole.sqlite")]);
    assert!(e.contains("no sharded run"), "{e}");
    let e = merge_shards(
        &target,
        &[p("whole.sqlite")],
        &MergeOptions {
            run_id: Some("r".into()),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("a run over the whole test set, not a shard"),
        "{e}"
    );
    let e = refused(&target, &[p("nothing-here.sqlite")]);
    assert!(
        e.contains("nothing-here.sqlite") && e.contains("does not exist"),
        "{e}"
    );
    let e = merge(&p("a.sqlite"), &[p("a.sqlite")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("both the merge target and one of the shards"),
        "{e}"
    );
    assert!(!target.exists());

    // the same file named twice is one shard
    let report = merge(&target, &[p("a.sqlite"), p("a.sqlite")]).unwrap();
    assert_eq!(report.shards.len(), 1);
    assert_eq!(report.missing, vec![1]);
    // the target now holds run r from 2 shards: shards of 3, or a whole run, do not go in
    let e = merge(&target, &[p("b-count.sqlite")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("already exists") && e.contains("merged from 2 shards"),
        "{e}"
    );
    let other = p("other.sqlite");
    write_db(&other, "r", CONFIG, None, "finished");
    let e = merge(&other, &[p("a.sqlite")]).unwrap_err().to_string();
    assert!(e.contains("whole test set, not a merged run"), "{e}");
}

#[test]
fn a_shard_file_with_several_runs_needs_run() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.sqlite");
    let s = Some(Shard::new(0, 1).unwrap());
    write_db(&a, "r", CONFIG, s, "finished");
    write_db(&a, "r2", CONFIG, s, "finished");
    let target = dir.path().join("t.sqlite");
    let e = merge(&target, std::slice::from_ref(&a))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("several sharded runs (r, r2)") && e.contains("--run"),
        "{e}"
    );
    let report = merge_shards(
        &target,
        &[a],
        &MergeOptions {
            run_id: Some("r2".into()),
        },
    )
    .unwrap();
    assert_eq!(report.run_id, "r2");
    assert!(report.complete());
}

#[test]
fn a_shard_is_resumed_only_as_the_same_shard() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sqlite");
    let store = Store::open(&path).unwrap();
    let rec = record("r", CONFIG);
    let s = |k| Some(Shard::new(k, 3).unwrap());
    assert!(!store.begin_shard_run(&rec, s(1)).unwrap());
    assert!(
        store.begin_shard_run(&rec, s(1)).unwrap(),
        "same shard: a resume"
    );
    let e = store.begin_shard_run(&rec, s(2)).unwrap_err().to_string();
    assert!(
        e.contains("begun as shard 1 of 3, not as shard 2 of 3"),
        "{e}"
    );
    let e = store.begin_run(&rec).unwrap_err().to_string();
    assert!(e.contains("not as a run over the whole test set"), "{e}");
    let _ = shard_of(&id(0), 3);
}
