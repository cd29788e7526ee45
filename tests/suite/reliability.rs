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
            err.lines()
                .any(|l| l.contains("skipped") && l.contains(name)),
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
        stdout(&help).contains("Exit codes:")
            && stdout(&help).contains("3  finished, but some images failed"),
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
    assert_eq!(out.status.code(), Some(2), "usage error: {}", text(&out));
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

/// The bundled CNN traced into a TorchScript file (`scale` multiplies its logits: NaN gives a model
/// whose every output is NaN).
fn torchscript_model(dir: &Path, name: &str, scale: f64) -> PathBuf {
    use tch::{Device, Kind, Tensor};
    use tumor_audit::model::{InputSpec, NativeCnn};
    let settings = tumor_audit::config::Settings::load(&repo("config.yml"), &[]).unwrap();
    let mut cnn = NativeCnn::new(
        &settings.layers(),
        InputSpec {
            channels: 1,
            size: 128,
            classes: 2,
        },
        Device::Cpu,
    )
    .unwrap();
    cnn.load(&repo("models/cnn128-br35h.safetensors")).unwrap();
    cnn.vs.freeze();
    let probe = Tensor::zeros([1, 1, 128, 128], (Kind::Float, Device::Cpu));
    let module = tch::CModule::create_by_tracing("Cnn", "forward", &[probe], &mut |xs| {
        vec![cnn.forward_t(&xs[0], false) * scale]
    })
    .unwrap();
    let path = dir.join(name);
    module.save(&path).unwrap();
    path
}

/// Point 1 (and 10: `explain` and `audit` with a method that cannot run): a duplicated method is refused
/// up front; an image on which a method fails is a failed image, printed, and sets the exit code.
#[test]
fn duplicate_methods_are_refused_and_a_failed_method_fails_the_image() {
    let dir = tempdir();
    let set = real_set(dir.path(), "Testing", 2);
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
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("listed twice"), "{}", text(&out));
    assert!(!db.exists(), "refused before the database is created");

    // Grad-CAM cannot run on a TorchScript module: every image fails at that method.
    let ts = torchscript_model(dir.path(), "cnn.pt", 1.0);
    let ts_set = format!("model.torchscript={}", ts.display());
    let out = bin(&[&ts_set])
        .args([
            "audit",
            "--methods",
            "gradient,gradcam",
            "--no-leakage-check",
            "--run",
            "ts",
        ])
        .args([
            "--data",
            set.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = stderr(&out);
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("attribution:gradcam failed") && l.contains("not supported"))
            .count(),
        4,
        "{}",
        text(&out)
    );
    assert!(stdout(&out).contains("4 failed"), "{}", text(&out));
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
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        stderr(&out).contains("Grad-CAM failed") && stderr(&out).contains("not supported"),
        "{}",
        text(&out)
    );
    assert!(pictures.join("montage.png").is_file());
}

/// Point 6: a count whose buffers cannot fit, a NaN or infinite value, NaN weights or a model whose output
/// is NaN: refused with a clear error before any work.
#[test]
fn absurd_counts_non_finite_values_and_nan_models_are_refused_before_any_work() {
    let dir = tempdir();
    let set = real_set(dir.path(), "Testing", 1);
    let db = dir.path().join("a.sqlite");
    let run = |sets: &[&str]| {
        bin(sets)
            .args([
                "audit",
                "--no-leakage-check",
                "--data",
                set.to_str().unwrap(),
            ])
            .args(["--db", db.to_str().unwrap()])
            .output()
            .unwrap()
    };
    for (set, key, expect) in [
        (
            "explain.lime.samples=1000000000",
            "explain.lime.samples",
            "at most",
        ),
        (
            "explain.kernel_shap.samples=100000000000",
            "explain.kernel_shap.samples",
            "at most",
        ),
        (
            "explain.integrated_gradients.steps=100000000000",
            "explain.integrated_gradients.steps",
            "at most",
        ),
        (
            "explain.integrated_gradients.baseline_value=.nan",
            "explain.integrated_gradients.baseline_value",
            "finite",
        ),
        (
            "explain.lime.kernel_width=.inf",
            "explain.lime.kernel_width",
            "finite",
        ),
        (
            "explain.segmentation.sigma=-.inf",
            "explain.segmentation.sigma",
            "finite",
        ),
    ] {
        let out = run(&[set]);
        assert_eq!(out.status.code(), Some(2), "{set}: {}", text(&out));
        let err = stderr(&out);
        assert!(err.contains(key) && err.contains(expect), "{set}: {err}");
        assert!(
            !db.exists(),
            "{set}: refused before the database is created"
        );
    }

    // Weights with a NaN.
    let mut tensors =
        tch::Tensor::read_safetensors(repo("models/cnn128-br35h.safetensors")).unwrap();
    for (name, t) in tensors.iter_mut() {
        if name == "0.weight" {
            let flat = t.flatten(0, -1);
            let _ = flat.get(3).fill_(f64::NAN);
        }
    }
    let bad = dir.path().join("nan.safetensors");
    tch::Tensor::write_safetensors(&tensors, &bad).unwrap();
    let out = run(&[&format!("model.weights={}", bad.display())]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("`0.weight` holds NaN or infinite values"),
        "{}",
        text(&out)
    );
    // A module whose every output is NaN.
    let ts = torchscript_model(dir.path(), "nan.pt", f64::NAN);
    let out = run(&[&format!("model.torchscript={}", ts.display())]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("NaN or infinite"), "{}", text(&out));
    assert!(!db.exists(), "refused before the database is created");
}

/// Point 7: a database of another application is neither migrated nor switched to WAL: refused, and its
/// bytes stay the same; ours carry tumor-audit's application id.
#[test]
fn a_foreign_database_is_refused_and_left_byte_identical() {
    let dir = tempdir();
    let set = real_set(dir.path(), "Testing", 1);
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
        let out = audit(&set, db, "r", &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            stderr(&out).contains("is not a tumor-audit database"),
            "{}",
            text(&out)
        );
    }
    // merge --into the foreign file, from a real shard.
    let shard = dir.path().join("shard.sqlite");
    let out = audit(&set, &shard, "s", &["--shard", "0/1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(one::<i64>(&shard, "PRAGMA application_id"), 0x5441_7564);
    let out = bin(&[])
        .args([
            "merge",
            "--into",
            foreign.to_str().unwrap(),
            shard.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("is not a tumor-audit database"),
        "{}",
        text(&out)
    );
    assert_eq!(before(&foreign), foreign_bytes);
    assert_eq!(before(&marked), marked_bytes);
    assert!(!dir.path().join("contacts.sqlite-wal").exists());
}

/// Point 9: without a terminal, the audit logs its progress (done / total, rate), every skipped and
/// failed file with its reason, and the final summary, on stderr.
#[test]
fn without_a_terminal_the_audit_logs_progress_failures_and_the_summary() {
    let dir = tempdir();
    let set = real_set(dir.path(), "Testing", 2);
    std::fs::write(set.join("yes/broken.jpg"), b"\xff\xd8\xff\xe0 not a jpeg").unwrap();
    std::fs::write(set.join("no/README.txt"), b"notes").unwrap();
    let db = dir.path().join("a.sqlite");
    // stderr is a pipe here, as under cron.
    let out = audit(&set, &db, "cron", &["--log-every", "1"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
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

/// Point 10: a run lock against two audits of the same run.
#[test]
fn a_second_audit_of_the_same_run_is_refused_while_the_first_runs() {
    let dir = tempdir();
    let set = real_set(dir.path(), "Testing", 2);
    let db = dir.path().join("a.sqlite");
    // The first keeps running through the leakage check (a few seconds on the real training folder).
    let first = bin(&[])
        .args(["audit", "--methods", "gradcam", "--run", "night"])
        .args([
            "--data",
            set.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
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
    let second = audit(&set, &db, "night", &[]);
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(
        stderr(&second).contains("run night is being audited by another process (pid"),
        "{}",
        text(&second)
    );
    assert!(!lock.exists(), "the lock file goes with its holder");
    // Once the first has ended, the run can be audited again (a no-op: everything is done).
    let out = audit(&set, &db, "night", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM run_images"), 4);
}

/// Point 10: a kill during the leakage check leaves the run unfinished; the rerun completes it.
#[test]
fn a_kill_during_the_leakage_check_leaves_the_run_unfinished() {
    use std::io::BufRead;
    let dir = tempdir();
    let set = real_set(dir.path(), "Testing", 1);
    let db = dir.path().join("a.sqlite");
    let mut child = bin(&[])
        .args(["audit", "--methods", "gradcam", "--run", "night"])
        .args([
            "--data",
            set.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
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
    let out = audit_with_leakage(&set, &db, "night");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(one::<String>(&db, "SELECT status FROM runs"), "finished");
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM leakage"), 2);
}

fn audit_with_leakage(set: &Path, db: &Path, run: &str) -> Output {
    bin(&[])
        .args(["audit", "--methods", "gradcam", "--run", run])
        .args([
            "--data",
            set.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ])
        .output()
        .unwrap()
}

/// Point 10: a resumed run prints the run's accuracy; the read-only commands need only the database; a
/// file that is not TorchScript is a one-line error.
#[test]
fn resumed_runs_report_the_run_read_commands_need_only_the_database() {
    let dir = tempdir();
    let set = real_set(dir.path(), "Testing", 2);
    let db = dir.path().join("results").join("a.sqlite");
    let out = audit(&set, &db, "r", &["--limit", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = audit(&set, &db, "r", &["--limit", "4"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("2 images audited, 2 resumed as done"),
        "{}",
        text(&out)
    );
    assert!(
        stdout(&out).contains("run r totals: 4 of 4 images done, 0 failed; accuracy")
            && stdout(&out).contains(" / 4)"),
        "{}",
        text(&out)
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
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
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
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
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
    let a = real_set(dir.path(), "A", 2);
    let b = real_set(dir.path(), "B", 3);
    let shard = |k: u32, set: &Path, db: &str, extra: &[&str]| {
        let db = dir.path().join(db);
        let out = audit(
            set,
            &db,
            "r",
            &[&["--shard", &format!("{k}/2")], extra].concat(),
        );
        (out, db)
    };
    let merge = |into: &str, shards: &[&PathBuf]| {
        bin(&[])
            .args(["merge", "--into", dir.path().join(into).to_str().unwrap()])
            .args(shards.iter().map(|p| p.to_str().unwrap()))
            .output()
            .unwrap()
    };
    let ok = |(out, db): (Output, PathBuf)| {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
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
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
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
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("the shards differ in their image list")
            && stderr(&out).contains("4 images")
            && stderr(&out).contains("5 images"),
        "{}",
        text(&out)
    );
    // Resuming shard 0 on the changed folder is refused as well.
    let (out, _) = shard(0, &a, "a0.sqlite", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("was begun on a list of 4 images"),
        "{}",
        text(&out)
    );
    // Shards of one test set still merge into a complete run.
    let out = merge("good.sqlite", &[&a0, &a1]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("(complete: 2 of 2 shards)"),
        "{}",
        text(&out)
    );
}

/// Point 5: a database locked by another process is waited for (`--lock-timeout`), then the audit gives
/// up saying so; a lock taken mid-run stops the writer, and the audit prints that cause and marks the run
/// 'failed' instead of "see the error above".
#[test]
fn a_locked_database_is_waited_for_then_the_cause_is_printed() {
    let dir = tempdir();
    let set = real_set(dir.path(), "Testing", 3);
    let db = dir.path().join("a.sqlite");
    let out = audit(&set, &db, "first", &["--limit", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let holder = Connection::open(&db).unwrap();

    // Held past the wait: refused, saying how long it waited.
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let out = audit(&set, &db, "second", &["--lock-timeout", "2"]);
    holder.execute_batch("COMMIT").unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("is locked by another process; waited 2 s (--lock-timeout)"),
        "{}",
        text(&out)
    );

    // Released within the wait: the audit waits and goes on.
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let child = bin(&[])
        .args([
            "audit",
            "--methods",
            "gradcam",
            "--no-leakage-check",
            "--run",
            "third",
        ])
        .args(["--lock-timeout", "60", "--limit", "2"])
        .args([
            "--data",
            set.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(4));
    holder.execute_batch("COMMIT").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Taken while the writer is at work: the writer gives up after its wait, and the audit says why.
    let child = bin(&["explain.integrated_gradients.steps=64"])
        .args([
            "audit",
            "--methods",
            "integrated_gradients",
            "--no-leakage-check",
            "--run",
            "fourth",
        ])
        .args(["--lock-timeout", "2"])
        .args([
            "--data",
            set.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let n: i64 = holder
            .query_row(
                "SELECT count(*) FROM run_images WHERE run_id = 'fourth'",
                [],
                |r| r.get(0),
            )
            .unwrap();
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

/// Point 2: a misspelt method, metric, class or scope name on the command line is an error naming the
/// valid ones (exit 2), not a check that silently never fires.
#[test]
fn misspelt_names_in_rules_and_filters_are_refused() {
    let dir = tempdir();
    let set = real_set(dir.path(), "Testing", 1);
    let db = dir.path().join("a.sqlite");
    for run in ["a", "b"] {
        let out = audit(&set, &db, run, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let d = db.to_str().unwrap();
    let diff = |rule: &str| {
        bin(&[])
            .args(["diff", "a", "b", "--db", d, "--fail-on", rule])
            .output()
            .unwrap()
    };
    for (rule, expect) in [
        ("mass_background@gradcma down 0.01", "no method `gradcma`"),
        ("mass_background@GradCAM down 0.01", "no method `GradCAM`"),
        ("recall@Yes down 1", "no class `Yes`"),
        ("precision@maybe down 1", "no class `maybe`"),
        ("accuracy@gradcam down 1", "accuracy is run-wide"),
    ] {
        let out = diff(rule);
        assert_eq!(out.status.code(), Some(2), "{rule}: {}", text(&out));
        let err = stderr(&out);
        assert!(err.contains(expect), "{rule}: {err}");
        assert!(
            err.contains("gradcam") || err.contains("no, yes") || expect.contains("run-wide"),
            "{rule}: the valid names: {err}"
        );
    }
    // Known names still work.
    for rule in [
        "mass_background@gradcam down 0.01",
        "recall@yes down 1",
        "accuracy down 1",
    ] {
        let out = diff(rule);
        assert_eq!(out.status.code(), Some(0), "{rule}: {}", text(&out));
    }
    let out = bin(&[])
        .args(["query", "--db", d, "suspicious", "--method", "limee"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("no method `limee`") && stderr(&out).contains("gradcam"),
        "{}",
        text(&out)
    );
}

/// Point 4: `report --out DIR` removes only what an earlier report wrote, never writes through a
/// symbolic link, and runs whose names sanitise alike get their own folders.
#[test]
fn report_touches_only_its_own_files() {
    let dir = tempdir();
    let set = real_set(dir.path(), "Testing", 1);
    let db = dir.path().join("a.sqlite");
    for run in ["a_b", "a%b"] {
        let out = audit(&set, &db, run, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
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
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    assert!(out_dir.join("report.html").is_file() && out_dir.join("gallery-2.html").is_file());

    // A user's files in the folder: refused, and left as they were.
    let user_asset = out_dir.join("report-assets/notes.txt");
    std::fs::write(&user_asset, b"my notes").unwrap();
    let user_page = out_dir.join("gallery-9.html");
    std::fs::write(&user_page, b"my own page").unwrap();
    let out = report("a_b", Some(&out_dir));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("is not the report's"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read(&user_asset).unwrap(), b"my notes");
    assert_eq!(std::fs::read(&user_page).unwrap(), b"my own page");

    // A symbolic link where report.html goes: refused, the link's target untouched.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let precious = dir.path().join("precious.txt");
    std::fs::write(&precious, b"keep me").unwrap();
    std::os::unix::fs::symlink(&precious, fresh.join("report.html")).unwrap();
    let out = report("a_b", Some(&fresh));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("symbolic link"), "{}", text(&out));
    assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");
    assert!(std::fs::symlink_metadata(fresh.join("report.html"))
        .unwrap()
        .file_type()
        .is_symlink());

    // Runs a%b and a_b: two folders beside the database.
    for run in ["a_b", "a%b"] {
        let out = report(run, None);
        assert_eq!(out.status.code(), Some(0), "{run}: {}", text(&out));
    }
    let folders: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("a_b"))
        .collect();
    assert_eq!(folders.len(), 2, "{folders:?}");
}

mod no_input_panics {
    //! Property-based checks, a bounded number of cases each: no text given to the config loader (a whole
    //! file or a `--set` override) and no bytes given to the image decoder make them panic; they return
    //! an error instead.
    use proptest::prelude::*;
    use tumor_audit::config::Settings;
    use tumor_audit::dataset::{self, Limits};

    use super::repo;

    /// Keys that exist, so that overrides reach the typed fields and their validation.
    const KEYS: &[&str] = &[
        "données.image.size",
        "données.image.grayscale",
        "data.classes",
        "data.max_image_pixels",
        "model.architecture",
        "model.layers",
        "explain.profile",
        "explain.methods",
        "explain.target",
        "explain.batch_size",
        "explain.integrated_gradients.steps",
        "explain.integrated_gradients.baseline_value",
        "explain.smoothgrad.noise",
        "explain.lime.samples",
        "explain.lime.kernel_width",
        "explain.segmentation.method",
        "explain.segmentation.grid_cells",
        "explain.gradient_precision",
        "explain.prepacked_weights",
        "explain.shared_evaluations",
        "explain.faithfulness.steps",
        "training.learning_rate",
        "output.dir",
    ];

    fn config() -> String {
        std::fs::read_to_string(repo("config.yml")).unwrap()
    }

    /// Small real images as bytes: a JPEG and a PNG (made once).
    fn real_images() -> &'static [Vec<u8>] {
        static IMAGES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        IMAGES.get_or_init(make_images)
    }

    fn make_images() -> Vec<Vec<u8>> {
        let jpeg = std::fs::read(repo("data/raw/br35h/yes/y1.jpg")).unwrap();
        let img = image::load_from_memory(&jpeg).unwrap().thumbnail(24, 24);
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let mut small_jpeg = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut small_jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        vec![small_jpeg, png]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,24}",
            "-?[0-9]{1,24}(\\.[0-9]{0,6})?(e[+-]?[0-9]{1,3})?",
            Just(".nan".to_string()),
            Just("-.inf".to_string()),
            Just("[gradcam, gradcam]".to_string()),
            Just("{a: [1, {b: 2}]}".to_string()),
            Just("!!binary AAAA".to_string()),
            Just("~".to_string()),
            Just("18446744073709551616".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn overrides_of_known_keys_never_panic(key in prop::sample::select(KEYS), value in value()) {
            let _ = Settings::from_yaml(&config(), &[format!("{key}={value}")]);
        }

        #[test]
        fn arbitrary_overrides_never_panic(assignment in ".{0,48}") {
            let _ = Settings::from_yaml(&config(), &[assignment]);
        }

        #[test]
        fn arbitrary_config_text_never_panics(text in ".{0,300}") {
            let _ = Settings::from_yaml(&text, &[]);
        }

        #[test]
        fn a_mangled_config_file_never_panics(cut in 0usize..4000, insert in ".{0,12}") {
            let mut text = config();
            let mut at = cut.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.insert_str(at, &insert);
            let _ = Settings::from_yaml(&text, &[]);
        }

        #[test]
        fn random_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
            let _ = dataset::decode(&bytes, Limits::default());
        }

        #[test]
        fn damaged_real_images_never_panic_the_decoder(
            which in 0usize..2,
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..24),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = real_images()[which].clone();
            for (at, v) in edits {
                let i = at.index(bytes.len());
                bytes[i] = v;
            }
            let keep = cut.index(bytes.len()).max(1);
            bytes.truncate(keep);
            // Small limits too: the limit checks themselves see damaged headers.
            let _ = dataset::decode(&bytes, Limits::default());
            let _ = dataset::decode(&bytes, Limits { max_file_bytes: 4096, max_image_pixels: 64 });
        }
    }
}
