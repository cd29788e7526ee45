//! The audit job through the real binary on a small real test set: SQLite contents, a bad file recorded,
//! and a rerun of the same run resuming instead of recomputing.
use std::path::Path;

use rusqlite::Connection;

use super::support::cli::{assert_exit, audit, bin, failed, stderr, CHEAP};
use super::support::db::count;
use super::support::images::{copy_first, real_set, sorted_files};
use super::support::{assert_has_all, repo, tempdir};

#[test]
fn audit_stores_every_method_records_bad_files_and_resumes() {
    let dir = tempdir();
    let set = dir.path().join("Testing");
    for class in ["no", "yes"] {
        let src = repo(&format!("data/raw/br35h/{class}"));
        copy_first(&sorted_files(&src), &set.join(class), 2);
    }
    // Four bad files: a JPEG header with garbage, a real JPEG cut in half, an empty file, a text file.
    std::fs::write(
        set.join("yes/broken.jpg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    )
    .unwrap();
    let real = std::fs::read(repo("data/raw/br35h/yes/y1.jpg")).unwrap();
    std::fs::write(set.join("yes/truncated.jpg"), &real[..real.len() / 2]).unwrap();
    std::fs::write(set.join("no/empty.jpg"), b"").unwrap();
    std::fs::write(set.join("no/notes.png"), b"scan notes, not an image\n").unwrap();
    let db_path = dir.path().join("audit.sqlite");
    let night = || {
        audit(bin(&CHEAP), &set, &db_path, "night-1")
            .output()
            .unwrap()
    };

    let out = night();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // exit code 3: the run finished, but images failed
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("4 images audited") && stdout.contains("4 failed"),
        "{stdout}"
    );

    let db = Connection::open(&db_path).unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM predictions WHERE run_id = 'night-1'"
        ),
        4
    );
    // six methods per image, every pair of methods compared, every map stored
    assert_eq!(count(&db, "SELECT COUNT(*) FROM attribution_metrics"), 24);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM agreement"), 4 * 15);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM maps"), 24);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(DISTINCT method) FROM attribution_metrics"
        ),
        6
    );
    // shares are shares; IG has its completeness error; LIME/SHAP their superpixel counts
    assert_eq!(count(&db, "SELECT COUNT(*) FROM attribution_metrics WHERE mass_inside < 0 OR mass_inside > 1 OR abs(mass_inside + mass_background - 1) > 1e-4"), 0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM attribution_metrics WHERE method = 'integrated_gradients' AND completeness_error IS NOT NULL"), 4);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM attribution_metrics WHERE method IN ('lime', 'kernel_shap') AND segments > 20"), 8);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM images WHERE brain_area_fraction > 0.2 AND brain_area_fraction < 0.95"), 4);
    // the broken file: recorded with its stage and reason, nothing else lost
    let (stage, message): (String, String) = db
        .query_row(
            "SELECT stage, message FROM errors WHERE path LIKE '%broken.jpg'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(stage, "decode");
    assert!(message.contains("corrupt or truncated"), "{message}");
    for (file, reason) in [
        ("truncated.jpg", "corrupt or truncated"),
        ("empty.jpg", "empty file"),
        ("notes.png", "not an image"),
    ] {
        let message: String = db
            .query_row(
                "SELECT message FROM errors WHERE stage = 'decode' AND path LIKE ?1",
                [format!("%{file}")],
                |r| r.get(0),
            )
            .unwrap();
        assert!(message.contains(reason), "{file}: {message}");
    }
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM errors WHERE run_id = 'night-1'"),
        4
    );
    let status: String = db
        .query_row(
            "SELECT status FROM runs WHERE run_id = 'night-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "finished");
    // the views answer the same questions from plain SQL
    assert_eq!(
        count(
            &db,
            "SELECT images_done FROM v_run_summary WHERE run_id = 'night-1'"
        ),
        4
    );

    // A rerun of the same run resumes: nothing is recomputed or duplicated.
    let out = night();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("0 images audited, 4 resumed as done"),
        "{stdout}"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM attribution_metrics"), 24);

    // The same run name with another config is refused with a clear message.
    let out = audit(bin(&[]), &set, &db_path, "night-1").output().unwrap();
    assert_has_all(&failed(&out), &["night-1", "different config"]);
}

#[test]
fn a_wrong_size_model_fails_before_any_work() {
    let dir = tempdir();
    let db = dir.path().join("a.sqlite");
    let out = bin(&["données.image.size=64"])
        .args(["audit", "--db", db.to_str().unwrap(), "--limit", "1"])
        .output()
        .unwrap();
    assert_has_all(&failed(&out), &["expects", "11.weight"]);
    assert!(
        !db.exists(),
        "no database is created when the model does not fit"
    );
}

#[test]
fn a_run_killed_halfway_resumes_with_exactly_one_row_per_image_and_method() {
    let dir = tempdir();
    let set = real_set(dir.path(), 4);
    let db_path = dir.path().join("audit.sqlite");
    let command = || {
        let sets = [
            "explain.lime.samples=200",
            "explain.kernel_shap.samples=200",
        ];
        audit(bin(&sets), &set, &db_path, "killed")
    };
    let mut child = command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some, but not all, images are committed, then SIGKILL.
    let t0 = std::time::Instant::now();
    let done = loop {
        let n = Connection::open(&db_path)
            .ok()
            .and_then(|db| {
                db.query_row(
                    "SELECT COUNT(*) FROM run_images WHERE run_id = 'killed'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .ok()
            })
            .unwrap_or(0);
        if n >= 2 || t0.elapsed().as_secs() > 240 {
            break n;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!((2..8).contains(&done), "killed after {done} of 8 images");
    let out = command().output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("resumed as done"), "{stdout}");
    let db = Connection::open(&db_path).unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM run_images WHERE run_id = 'killed' AND status = 'done'"
        ),
        8
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM attribution_metrics WHERE run_id = 'killed'"
        ),
        8 * 6
    );
    assert_eq!(count(&db, "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM attribution_metrics GROUP BY image_id, method)"), 1);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM maps WHERE run_id = 'killed'"),
        8 * 6
    );
}

#[test]
fn results_are_identical_for_1_and_2_worker_threads() {
    let dir = tempdir();
    let set = real_set(dir.path(), 2);
    let run = |threads: &str, name: &str| {
        let db = dir.path().join(format!("{name}.sqlite"));
        let sets = ["explain.lime.samples=32", "explain.kernel_shap.samples=32"];
        let out = audit(bin(&sets), &set, &db, "r")
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Connection::open(db).unwrap();
        let mut st = c
            .prepare("SELECT m.image_id, m.method, m.mass_inside, m.gini, m.mass_border, p.data FROM attribution_metrics m JOIN maps p USING (run_id, image_id, method) ORDER BY 1, 2")
            .unwrap();
        let rows: Vec<(String, String, f64, f64, f64, Vec<u8>)> = st
            .query_map([], |r| r.try_into())
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        rows
    };
    let one = run("1", "one");
    let two = run("2", "two");
    assert_eq!(one.len(), 4 * 6);
    assert!(
        one == two,
        "maps or metrics differ between 1 and 2 worker threads"
    );
}

#[test]
fn a_corrupt_database_or_an_unwritable_path_is_a_clear_error_before_any_work() {
    let dir = tempdir();
    // The audit of one image into `db`, which must fail with exit code 1: its stderr.
    let refused = |db: &Path| {
        let out = bin(&[])
            .args(["audit", "--limit", "1", "--db", db.to_str().unwrap()])
            .output()
            .unwrap();
        assert_exit(&out, 1);
        stderr(&out)
    };
    let bad = dir.path().join("bad.sqlite");
    std::fs::write(&bad, b"this is not an SQLite database, just text").unwrap();
    assert_has_all(&refused(&bad), &["bad.sqlite", "not a database"]);
    // The file is left as it was: nothing partial written into it.
    assert_eq!(
        std::fs::read(&bad).unwrap(),
        b"this is not an SQLite database, just text"
    );

    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let unwritable = blocker.join("audit.sqlite");
    assert_has_all(
        &refused(&unwritable),
        &["audit.sqlite", "cannot create its folder"],
    );
}
