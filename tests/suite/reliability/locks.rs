//! Concurrent access: a run lock against two audits of the same run, and a database locked by another
//! process waited for, then the cause printed and the run marked 'failed'.
use std::process::Stdio;

use rusqlite::Connection;

use crate::support::cli::{assert_exit, assert_stderr, audit, bin, gradcam_audit, text};
use crate::support::db::{count, one};
use crate::support::images::real_set;
use crate::support::tempdir;

/// Point 10: a run lock against two audits of the same run.
#[test]
fn a_second_audit_of_the_same_run_is_refused_while_the_first_runs() {
    let dir = tempdir();
    let set = real_set(dir.path(), 2);
    let db = dir.path().join("a.sqlite");
    // The first keeps running through the leakage check (a few seconds on the real training folder).
    let first = audit(bin(&[]), &set, &db, "night")
        .args(["--methods", "gradcam"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = tumor_audit::store::RunLock::path_for(&db, "night");
    let t0 = std::time::Instant::now();
    while !lock.exists() {
        assert!(
            t0.elapsed().as_secs() < 120,
            "the first audit never took its lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = gradcam_audit(&set, &db, "night", &[]);
    let first = first.wait_with_output().unwrap();
    assert_exit(&first, 0);
    assert_exit(&second, 1);
    assert_stderr(
        &second,
        &["run night is being audited by another process (pid"],
    );
    assert!(!lock.exists(), "the lock file goes with its holder");
    // Once the first has ended, the run can be audited again (a no-op: everything is done).
    let out = gradcam_audit(&set, &db, "night", &[]);
    assert_exit(&out, 0);
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM run_images"), 4);
}

/// Point 5: a database locked by another process is waited for (`--lock-timeout`), then the audit gives
/// up saying so; a lock taken mid-run stops the writer, and the audit prints that cause and marks the run
/// 'failed' instead of "see the error above".
#[test]
fn a_locked_database_is_waited_for_then_the_cause_is_printed() {
    let dir = tempdir();
    let set = real_set(dir.path(), 3);
    let db = dir.path().join("a.sqlite");
    let out = gradcam_audit(&set, &db, "first", &["--limit", "1"]);
    assert_exit(&out, 0);
    let holder = Connection::open(&db).unwrap();

    // Held past the wait: refused, saying how long it waited.
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let out = gradcam_audit(&set, &db, "second", &["--lock-timeout", "2"]);
    holder.execute_batch("COMMIT").unwrap();
    assert_exit(&out, 1);
    assert_stderr(
        &out,
        &["is locked by another process; waited 2 s (--lock-timeout)"],
    );

    // Released within the wait: the audit waits and goes on.
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let child = audit(bin(&[]), &set, &db, "third")
        .args(["--methods", "gradcam", "--no-leakage-check"])
        .args(["--lock-timeout", "60", "--limit", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(4));
    holder.execute_batch("COMMIT").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 0);

    // Taken while the writer is at work: the writer gives up after its wait, and the audit says why.
    let child = audit(
        bin(&["explain.integrated_gradients.steps=64"]),
        &set,
        &db,
        "fourth",
    )
    .args([
        "--methods",
        "integrated_gradients",
        "--no-leakage-check",
        "--lock-timeout",
        "2",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let n = count(
            &holder,
            "SELECT count(*) FROM run_images WHERE run_id = 'fourth'",
        );
        if n > 0 {
            break;
        }
        assert!(t0.elapsed().as_secs() < 120, "the audit wrote nothing");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Held until the writer says it gave up, then released: the run can still be marked 'failed'.
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut child = child;
    let mut err = String::new();
    {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let stopped = line.contains("the database writer stopped");
            err += &line;
            err.push('\n');
            if stopped {
                break;
            }
        }
        holder.execute_batch("COMMIT").unwrap();
        for line in lines {
            err += &line.unwrap();
            err.push('\n');
        }
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}\n{err}", text(&out));
    assert!(
        err.contains("is locked by another process; waited 2 s")
            && !err.contains("see the error above"),
        "{err}"
    );
    assert!(err.contains("its status is 'failed'"), "{err}");
    assert_eq!(
        one::<String>(&db, "SELECT status FROM runs WHERE run_id = 'fourth'"),
        "failed"
    );
}
