//! Interrupted, resumed and merged runs: a kill leaves the run unfinished for the rerun to complete,
//! a resumed run reports the whole run, read commands need only the database, and shards or resumed
//! runs continue only the test set they were begun on.
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::cli::{
    self, assert_exit, assert_exit_for, assert_stderr, assert_stdout, audit, bin, gradcam_audit,
    stderr, text,
};
use crate::support::db::one;
use crate::support::images::{real_set, real_set_named};
use crate::support::{repo, tempdir};

/// Point 10: a kill during the leakage check leaves the run unfinished; the rerun completes it.
#[test]
fn a_kill_during_the_leakage_check_leaves_the_run_unfinished() {
    use std::io::BufRead;
    let dir = tempdir();
    let set = real_set(dir.path(), 1);
    let db = dir.path().join("a.sqlite");
    let with_leakage_check = || {
        let mut c = audit(bin(&[]), &set, &db, "night");
        c.args(["--methods", "gradcam"]);
        c
    };
    let mut child = with_leakage_check()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        let start = line.contains("leakage check: hashing");
        seen.push(line);
        if start {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        seen.last()
            .is_some_and(|l| l.contains("leakage check: hashing")),
        "{seen:?}"
    );
    assert_eq!(one::<String>(&db, "SELECT status FROM runs"), "running");
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM leakage"), 0);
    let out = with_leakage_check().output().unwrap();
    assert_exit(&out, 0);
    assert_eq!(one::<String>(&db, "SELECT status FROM runs"), "finished");
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM leakage"), 2);
}

/// Point 10: a resumed run prints the run's accuracy; the read-only commands need only the database; a
/// file that is not TorchScript is a one-line error.
#[test]
fn resumed_runs_report_the_run_read_commands_need_only_the_database() {
    let dir = tempdir();
    let set = real_set(dir.path(), 2);
    let db = dir.path().join("results").join("a.sqlite");
    let out = gradcam_audit(&set, &db, "r", &["--limit", "2"]);
    assert_exit(&out, 0);
    let out = gradcam_audit(&set, &db, "r", &["--limit", "4"]);
    assert_exit(&out, 0);
    assert_stdout(&out, &["2 images audited, 2 resumed as done"]);
    assert_stdout(
        &out,
        &[
            "run r totals: 4 of 4 images done, 0 failed; accuracy",
            " / 4)",
        ],
    );

    // From a folder without config.yml, with --db alone.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let read = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tumor-audit"))
            .current_dir(&elsewhere)
            .args(args)
            .output()
            .unwrap()
    };
    let d = db.to_str().unwrap();
    for args in [
        vec!["query", "runs", "--db", d],
        vec!["query", "suspicious", "--db", d],
        vec!["export", "--db", d],
        vec!["diff", "r", "r", "--db", d],
        vec!["report", "--db", d],
    ] {
        let out = read(&args);
        assert_exit_for(&out, 0, &format!("{args:?}"));
    }
    // Their output goes beside the database.
    assert!(dir.path().join("results/r/report.html").is_file());
    assert!(!elsewhere.join("out").exists());

    // Not a TorchScript file: one line, no C++ backtrace.
    let fake = dir.path().join("model.pt");
    std::fs::write(&fake, b"not a model at all").unwrap();
    let out = bin(&[&format!("model.torchscript={}", fake.display())])
        .args(["audit", "--data", set.to_str().unwrap(), "--db", d])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("not a loadable TorchScript module"), "{err}");
    assert!(
        !err.contains("frame #")
            && !err.contains("Exception raised from")
            && err.lines().count() == 1,
        "{err}"
    );
}

/// Point 3: shards cut from different test sets (another folder, another --limit, another image list)
/// are refused by merge, naming what differs; a shard resumed on another list is refused too.
#[test]
fn merge_refuses_shards_cut_from_different_test_sets() {
    let dir = tempdir();
    let a = real_set_named(dir.path(), "A", 2);
    let b = real_set_named(dir.path(), "B", 3);
    let shard = |k: u32, set: &Path, db: &str, extra: &[&str]| {
        let db = dir.path().join(db);
        let out = gradcam_audit(
            set,
            &db,
            "r",
            &[&["--shard", &format!("{k}/2")], extra].concat(),
        );
        (out, db)
    };
    let merge = |into: &str, shards: &[&PathBuf]| {
        cli::merge(bin(&[]), &dir.path().join(into), shards)
            .output()
            .unwrap()
    };
    let ok = |(out, db): (Output, PathBuf)| {
        assert_exit(&out, 0);
        db
    };
    let a0 = ok(shard(0, &a, "a0.sqlite", &[]));
    let a1 = ok(shard(1, &a, "a1.sqlite", &[]));
    let b1 = ok(shard(1, &b, "b1.sqlite", &[]));
    let a1_limited = ok(shard(1, &a, "a1-limit.sqlite", &["--limit", "3"]));
    for (into, other, field) in [
        ("m1.sqlite", &b1, "data root"),
        ("m2.sqlite", &a1_limited, "--limit"),
    ] {
        let out = merge(into, &[&a0, other]);
        assert_exit(&out, 1);
        assert!(
            stderr(&out).contains(&format!("the shards differ in their {field}")),
            "{field}: {}",
            text(&out)
        );
        assert!(
            !dir.path().join(into).exists(),
            "nothing written when refused"
        );
    }
    // The same folder, but an image added between the two shards: another image list.
    std::fs::copy(
        repo("data/raw/br35h/yes/y1.jpg"),
        a.join("yes/y1-added.jpg"),
    )
    .unwrap();
    let a1_later = ok(shard(1, &a, "a1-later.sqlite", &[]));
    let out = merge("m3.sqlite", &[&a0, &a1_later]);
    assert_exit(&out, 1);
    assert_stderr(
        &out,
        &[
            "the shards differ in their image list",
            "4 images",
            "5 images",
        ],
    );
    // Resuming shard 0 on the changed folder is refused as well.
    let (out, _) = shard(0, &a, "a0.sqlite", &[]);
    assert_exit(&out, 1);
    assert_stderr(&out, &["was begun on a list of 4 images"]);
    // Shards of one test set still merge into a complete run.
    let out = merge("good.sqlite", &[&a0, &a1]);
    assert_exit(&out, 0);
    assert_stdout(&out, &["(complete: 2 of 2 shards)"]);
}
