//! Failures are reported, never silent: distinct exit codes (acted on by the deploy templates), a
//! method that fails on an image fails that image, and without a terminal the audit logs its
//! progress, every skipped and failed file, and its summary.
use std::process::Command;

use crate::support::cli::{
    assert_exit, assert_exit_for, assert_stderr, assert_stdout, audit, bin, gradcam_audit, stderr,
    text,
};
use crate::support::db::one;
use crate::support::images::{real_set, write_broken_jpeg};
use crate::support::models::bundled_torchscript;
use crate::support::{repo, tempdir};

/// Point 8: usage errors, partial failures and success have distinct codes; stray non-image files are
/// skipped with a log line, not failed images; the deploy templates act on the codes.
#[test]
fn exit_codes_are_distinct_and_stray_files_are_skipped_not_failed() {
    let dir = tempdir();
    let set = real_set(dir.path(), 1);
    std::fs::write(set.join("yes/README.txt"), b"scans from the 2026 batch\n").unwrap();
    std::fs::write(set.join("no/Thumbs.db"), b"\xd0\xcf\x11\xe0 thumbnails").unwrap();
    std::fs::write(set.join("no/.DS_Store"), b"\0\0\0\x01Bud1").unwrap();
    let db = dir.path().join("a.sqlite");

    // Stray files: skipped, each named on stderr with its reason; the run is a success.
    let out = gradcam_audit(&set, &db, "clean", &[]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    for name in ["README.txt", "Thumbs.db", ".DS_Store"] {
        assert!(
            err.lines()
                .any(|l| l.contains("skipped") && l.contains(name)),
            "{name} not logged: {}",
            text(&out)
        );
    }
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM errors"), 0);
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM run_images"), 2);

    // A broken image is a failed image: exit 3.
    write_broken_jpeg(&set.join("yes/broken.jpg"));
    let out = gradcam_audit(&set, &db, "partial", &[]);
    assert_exit(&out, 3);

    // A configuration mistake: exit 2, nothing done (the run does not exist).
    let out = audit(bin(&["explain.nope=1"]), &set, &db, "typo")
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert_eq!(
        one::<i64>(&db, "SELECT count(*) FROM runs WHERE run_id = 'typo'"),
        0
    );
    // --help lists the codes.
    let help = bin(&[]).arg("--help").output().unwrap();
    assert_stdout(
        &help,
        &["Exit codes:", "3  finished, but some images failed"],
    );

    // The Slurm shard script fails on a usage error (it used to treat 2 as success) and succeeds on 3.
    let exe = env!("CARGO_BIN_EXE_tumor-audit");
    let sbatch = |audit_args: String| {
        Command::new("bash")
            .arg(repo("deploy/slurm/audit-shard.sbatch"))
            .current_dir(repo("."))
            .env("RUN", "slurm")
            .env("SHARDS", "1")
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
    assert_exit_for(&out, 2, "usage error");
    let out = sbatch(format!(
        "--data {data} --methods gradcam --no-leakage-check"
    ));
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

/// Point 1 (and 10: `explain` and `audit` with a method that cannot run): a duplicated method is refused
/// up front; an image on which a method fails is a failed image, printed, and sets the exit code.
#[test]
fn duplicate_methods_are_refused_and_a_failed_method_fails_the_image() {
    let dir = tempdir();
    let set = real_set(dir.path(), 2);
    let db = dir.path().join("a.sqlite");
    let out = bin(&[])
        .args(["audit", "--methods", "gradcam,gradcam", "--limit", "3"])
        .args([
            "--data",
            set.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert_stderr(&out, &["listed twice"]);
    assert!(!db.exists(), "refused before the database is created");

    // Grad-CAM cannot run on a TorchScript module: every image fails at that method.
    let ts = bundled_torchscript(dir.path(), "cnn.pt", 1.0);
    let ts_set = format!("model.torchscript={}", ts.display());
    let out = audit(bin(&[&ts_set]), &set, &db, "ts")
        .args(["--methods", "gradient,gradcam", "--no-leakage-check"])
        .output()
        .unwrap();
    assert_exit(&out, 3);
    let err = stderr(&out);
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("attribution:gradcam failed") && l.contains("not supported"))
            .count(),
        4,
        "{}",
        text(&out)
    );
    assert_stdout(&out, &["4 failed"]);
    assert_eq!(
        one::<i64>(
            &db,
            "SELECT count(*) FROM errors WHERE stage = 'attribution:gradcam'"
        ),
        4
    );
    // The gradient maps of the same images are kept.
    assert_eq!(
        one::<i64>(
            &db,
            "SELECT count(*) FROM attribution_metrics WHERE method = 'gradient'"
        ),
        4
    );

    // `explain` says so without a terminal, and exits 3.
    let pictures = dir.path().join("pictures");
    let out = bin(&[&ts_set])
        .args(["explain", "--methods", "gradient,gradcam", "--out"])
        .arg(&pictures)
        .arg(set.join("yes"))
        .output()
        .unwrap();
    assert_exit(&out, 3);
    assert_stderr(&out, &["Grad-CAM failed", "not supported"]);
    assert!(pictures.join("montage.png").is_file());
}

/// Point 9: without a terminal, the audit logs its progress (done / total, rate), every skipped and
/// failed file with its reason, and the final summary, on stderr.
#[test]
fn without_a_terminal_the_audit_logs_progress_failures_and_the_summary() {
    let dir = tempdir();
    let set = real_set(dir.path(), 2);
    write_broken_jpeg(&set.join("yes/broken.jpg"));
    std::fs::write(set.join("no/README.txt"), b"notes").unwrap();
    let db = dir.path().join("a.sqlite");
    // stderr is a pipe here, as under cron.
    let out = gradcam_audit(&set, &db, "cron", &["--log-every", "1"]);
    assert_exit(&out, 3);
    let err = stderr(&out);
    let has = |s: &str| err.lines().any(|l| l.contains(s));
    assert!(has("auditing: 0/5 images"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("auditing: 5/5 images (100.0%)") && l.contains("images/s")),
        "{err}"
    );
    assert!(
        has("broken.jpg: decode failed: corrupt or truncated"),
        "{err}"
    );
    assert!(
        has("skipped") && has("README.txt: not an image file"),
        "{err}"
    );
    assert!(
        has("run cron totals: 4 of 5 images done, 1 failed; accuracy"),
        "{err}"
    );
}
