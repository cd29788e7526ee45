//! Nothing of the user's is touched: a database of another application is refused and left
//! byte-identical, and `report` removes or overwrites only the files an earlier report wrote.
use std::path::Path;

use rusqlite::Connection;

use crate::support::cli::{assert_exit, assert_exit_for, assert_stderr, bin, gradcam_audit, merge};
use crate::support::db::one;
use crate::support::images::real_set;
use crate::support::tempdir;

/// Point 7: a database of another application is neither migrated nor switched to WAL: refused, and its
/// bytes stay the same; ours carry tumor-audit's application id.
#[test]
fn a_foreign_database_is_refused_and_left_byte_identical() {
    let dir = tempdir();
    let set = real_set(dir.path(), 1);
    let foreign = dir.path().join("contacts.sqlite");
    {
        let c = Connection::open(&foreign).unwrap();
        c.execute_batch(
            "CREATE TABLE contacts (name TEXT, phone TEXT); INSERT INTO contacts VALUES ('Ada', '555');",
        )
        .unwrap();
    }
    let marked = dir.path().join("marked.sqlite");
    Connection::open(&marked)
        .unwrap()
        .execute_batch("PRAGMA application_id = 1234;")
        .unwrap();
    let before = |p: &Path| std::fs::read(p).unwrap();
    let (foreign_bytes, marked_bytes) = (before(&foreign), before(&marked));

    for db in [&foreign, &marked] {
        let out = gradcam_audit(&set, db, "r", &[]);
        assert_exit(&out, 1);
        assert_stderr(&out, &["is not a tumor-audit database"]);
    }
    // merge --into the foreign file, from a real shard.
    let shard = dir.path().join("shard.sqlite");
    let out = gradcam_audit(&set, &shard, "s", &["--shard", "0/1"]);
    assert_exit(&out, 0);
    assert_eq!(one::<i64>(&shard, "PRAGMA application_id"), 0x5441_7564);
    let out = merge(bin(&[]), &foreign, &[&shard]).output().unwrap();
    assert_exit(&out, 1);
    assert_stderr(&out, &["is not a tumor-audit database"]);
    assert_eq!(before(&foreign), foreign_bytes);
    assert_eq!(before(&marked), marked_bytes);
    assert!(!dir.path().join("contacts.sqlite-wal").exists());
}

/// Point 4: `report --out DIR` removes only what an earlier report wrote, never writes through a
/// symbolic link, and runs whose names sanitise alike get their own folders.
#[test]
fn report_touches_only_its_own_files() {
    let dir = tempdir();
    let set = real_set(dir.path(), 1);
    let db = dir.path().join("a.sqlite");
    for run in ["a_b", "a%b"] {
        let out = gradcam_audit(&set, &db, run, &[]);
        assert_exit(&out, 0);
    }
    let report = |run: &str, out: Option<&Path>| {
        let mut c = bin(&[]);
        // From a folder without config.yml: the output goes beside the database.
        c.current_dir(dir.path());
        c.args([
            "report",
            "--db",
            db.to_str().unwrap(),
            "--run",
            run,
            "--per-page",
            "1",
        ]);
        if let Some(o) = out {
            c.arg("--out").arg(o);
        }
        c.output().unwrap()
    };
    let out_dir = dir.path().join("site");
    // Twice into the same folder: the second replaces the first's files.
    for _ in 0..2 {
        let out = report("a_b", Some(&out_dir));
        assert_exit(&out, 0);
    }
    assert!(out_dir.join("report.html").is_file() && out_dir.join("gallery-2.html").is_file());

    // A user's files in the folder: refused, and left as they were.
    let user_asset = out_dir.join("report-assets/notes.txt");
    std::fs::write(&user_asset, b"my notes").unwrap();
    let user_page = out_dir.join("gallery-9.html");
    std::fs::write(&user_page, b"my own page").unwrap();
    let out = report("a_b", Some(&out_dir));
    assert_exit(&out, 1);
    assert_stderr(&out, &["is not the report's"]);
    assert_eq!(std::fs::read(&user_asset).unwrap(), b"my notes");
    assert_eq!(std::fs::read(&user_page).unwrap(), b"my own page");

    // A symbolic link where report.html goes: refused, the link's target untouched.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let precious = dir.path().join("precious.txt");
    std::fs::write(&precious, b"keep me").unwrap();
    std::os::unix::fs::symlink(&precious, fresh.join("report.html")).unwrap();
    let out = report("a_b", Some(&fresh));
    assert_exit(&out, 1);
    assert_stderr(&out, &["symbolic link"]);
    assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");
    assert!(std::fs::symlink_metadata(fresh.join("report.html"))
        .unwrap()
        .file_type()
        .is_symlink());

    // Runs a%b and a_b: two folders beside the database.
    for run in ["a_b", "a%b"] {
        let out = report(run, None);
        assert_exit_for(&out, 0, run);
    }
    let folders: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("a_b"))
        .collect();
    assert_eq!(folders.len(), 2, "{folders:?}");
}
