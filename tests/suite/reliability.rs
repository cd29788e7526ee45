//! Nothing fails silently and nothing of the user's is touched: exit codes, failed images, absurd values,
//! foreign databases, headless logs, run locks, merge fingerprints, name checks and report ownership,
//! each through the real binary on small real images.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::Connection;

use super::util::{bin, repo, tempdir};

/// `per_class` real Br35H test images per class under `<dir>/<name>/<class>/`.
fn real_set(dir: &Path, name: &str, per_class: usize) -> PathBuf {
    let set = dir.join(name);
    for class in ["no", "yes"] {
        std::fs::create_dir_all(set.join(class)).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(repo(&format!("data/br35h/Testing/{class}")))
            .expect("run `make data` first")
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files.iter().take(per_class) {
            std::fs::copy(f, set.join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
    set
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `audit` of `set` into `db` with the cheap Grad-CAM only and no leakage check, plus `extra`.
fn audit(set: &Path, db: &Path, run: &str, extra: &[&str]) -> Output {
    bin(&[])
        .args(["audit", "--methods", "gradcam", "--no-leakage-check"])
        .args(["--data", set.to_str().unwrap()])
        .args(["--db", db.to_str().unwrap(), "--run", run])
        .args(extra)
        .output()
        .unwrap()
}

fn one<T: rusqlite::types::FromSql>(db: &Path, sql: &str) -> T {
    Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

/// Point 8: usage errors, partial failures and success have distinct codes; stray non-image files are
/// skipped with a log line, not failed images; the deploy templates act on the codes.
#[test]
fn exit_codes_are_distinct_and_stray_files_are_skipped_not_failed() {
    let dir = tempdir();
    let set = real_set(dir.path(), "Testing", 1);
    std::fs::write(set.join("yes/README.txt"), b"scans from the 2026 batch\n").unwrap();
    std::fs::write(set.join("no/Thumbs.db"), b"\xd0\xcf\x11\xe0 thumbnails").unwrap();
    std::fs::write(set.join("no/.DS_Store"), b"\0\0\0\x01Bud1").unwrap();
    let db = dir.path().join("a.sqlite");

    // Stray files: skipped, each named on stderr with its reason; the run is a success.
    let out = audit(&set, &db, "clean", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = stderr(&out);
    for name in ["README.txt", "Thumbs.db", ".DS_Store"] {
        assert!(
            err.lines().any(|l| l.contains("skipped") && l.contains(name)),
            "{name} not logged: {}",
            text(&out)
        );
    }
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM errors"), 0);
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM run_images"), 2);

    // A broken image is a failed image: exit 3.
    std::fs::write(set.join("yes/broken.jpg"), b"\xff\xd8\xff\xe0 not a jpeg").unwrap();
    let out = audit(&set, &db, "partial", &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));

    // A configuration mistake: exit 2, nothing done (the run does not exist).
    let out = bin(&["explain.nope=1"])
        .args(["audit", "--data", set.to_str().unwrap(), "--db"])
        .arg(&db)
        .args(["--run", "typo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        one::<i64>(&db, "SELECT count(*) FROM runs WHERE run_id = 'typo'"),
        0
    );
    // --help lists the codes.
    let help = bin(&[]).arg("--help").output().unwrap();
    assert!(
        stdout(&help).contains("Exit codes:") && stdout(&help).contains("3  finished, but some images failed"),
        "{}",
        text(&help)
    );

    // The Slurm shard script fails on a usage error (it used to treat 2 as success) and succeeds on 3.
    let exe = env!("CARGO_BIN_EXE_tumor-audit");
    let sbatch = |audit_args: String| {
        Command::new("bash")
            .arg(repo("deploy/slurm/audit-shard.sbatch"))
            .current_dir(repo("."))
            .env("RUN", "slurm")
            .env("TUMOR_AUDIT", exe)
            .env("OUT", dir.path().join("slurm-out"))
            .env("AUDIT_ARGS", audit_args)
            .env("SLURM_CPUS_PER_TASK", "1")
            .env("SLURM_ARRAY_TASK_ID", "0")
            .env("SLURM_ARRAY_TASK_MIN", "0")
            .env("SLURM_ARRAY_TASK_STEP", "1")
            .env("SLURM_ARRAY_TASK_COUNT", "1")
            .env_remove("JOB_COMPLETION_INDEX")
            .output()
            .unwrap()
    };
    let data = set.display();
    let out = sbatch(format!(
        "--data {data} --methods gradcam --no-leakage-check --set explain.nope=1"
    ));
    assert_eq!(out.status.code(), Some(2), "usage error: {}", text(&out));
    let out = sbatch(format!("--data {data} --methods gradcam --no-leakage-check"));
    assert!(out.status.success(), "images failed: {}", text(&out));
    // Kubernetes: a usage error fails the whole Job instead of being retried in every pod.
    let job: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo("deploy/kubernetes/audit-shards.yaml")).unwrap(),
    )
    .unwrap();
    let rules = job["spec"]["podFailurePolicy"]["rules"]
        .as_sequence()
        .expect("a podFailurePolicy");
    assert!(rules.iter().any(|r| r["action"] == "FailJob"
        && r["onExitCodes"]["values"]
            .as_sequence()
            .is_some_and(|v| v.iter().any(|c| c.as_u64() == Some(2)))));
}
