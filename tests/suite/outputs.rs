//! What the commands write and refuse, probed as a hostile user would, through the real binary on small
//! real Br35H images: output folders owned by manifest (no write through a link, nothing deleted outside
//! the folder, a stopped run leaves the previous output), a newer database left byte-identical, bounded
//! `--threads`, the exit codes of misspelt runs and `--limit 0`, names that are not UTF-8, the file size
//! limit, and plain logs with each summary line once.
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use rusqlite::Connection;

use super::support::cli::{
    self, assert_exit, assert_exit_for, assert_stderr, assert_stderr_for, bin, stderr, text,
};
use super::support::db::{count, row};
use super::support::images::{br35h, real_set};
use super::support::models::{json_list, onnx_meta};
use super::support::{repo, tempdir};

/// A database with two finished runs of the same two real images per class: `r1` (Grad-CAM) and `r2`
/// (the plain gradient, so its mean maps have other names).
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    db: PathBuf,
    set: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempdir();
        let root = dir.path().to_path_buf();
        let set = real_set(&root, 2);
        let db = root.join("a.sqlite");
        for (run, method) in [("r1", "gradcam"), ("r2", "gradient")] {
            let out = audit(&set, &db, run, &["--methods", method]);
            assert_exit_for(&out, 0, run);
        }
        Fixture {
            _dir: dir,
            root,
            db,
            set,
        }
    })
}

/// The `audit` command of `set` into `db`, cheap: no leakage or shortcut check.
fn audit_command(set: &Path, db: &Path, run: &str) -> Command {
    let mut c = cli::audit(bin(&[]), set, db, run);
    c.args(["--no-leakage-check", "--no-shortcuts"]);
    c
}

/// [`audit_command`] with `extra`, run to its end.
fn audit(set: &Path, db: &Path, run: &str, extra: &[&str]) -> Output {
    audit_command(set, db, run).args(extra).output().unwrap()
}

/// `report` or `export` of `run` of the fixture's database into `out`.
fn write(what: &str, run: &str, out: &Path) -> Output {
    bin(&[])
        .arg(what)
        .arg("--db")
        .arg(&fixture().db)
        .args(["--run", run, "--out"])
        .arg(out)
        .output()
        .unwrap()
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Nothing in `dir` has a name starting with `prefix` (a staging folder left beside the output).
#[track_caller]
fn assert_nothing_named(dir: &Path, prefix: &str) {
    let names = names(dir);
    assert!(!names.iter().any(|n| n.starts_with(prefix)), "{names:?}");
}

/// Every file under `dir` (relative path, bytes), links not followed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
                out.push((rel, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Point 1: `export` into a folder holding the user's `metrics.csv` and an `errors.csv` link is refused,
/// the link's target and the user's file untouched; a second run exported into the same folder replaces
/// the first's files, mean maps included, and leaves nothing else.
#[test]
fn export_refuses_what_it_does_not_own_and_replaces_only_its_own() {
    let f = fixture();
    let e = f.root.join("e1");
    std::fs::create_dir_all(&e).unwrap();
    std::fs::write(e.join("metrics.csv"), b"mine\n").unwrap();
    let victim = f.root.join("victim1.txt");
    std::fs::write(&victim, b"victim\n").unwrap();
    std::os::unix::fs::symlink(&victim, e.join("errors.csv")).unwrap();
    let out = write("export", "r1", &e);
    assert_exit(&out, 1);
    assert_stderr(&out, &["errors.csv is a symbolic link"]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"victim\n");
    assert_eq!(std::fs::read(e.join("metrics.csv")).unwrap(), b"mine\n");
    assert_eq!(names(&e), vec!["errors.csv", "metrics.csv"]);
    // The user's file alone: refused too, by name.
    std::fs::remove_file(e.join("errors.csv")).unwrap();
    let out = write("export", "r1", &e);
    assert_exit(&out, 1);
    assert_stderr(&out, &["metrics.csv is not the export's"]);
    assert_eq!(std::fs::read(e.join("metrics.csv")).unwrap(), b"mine\n");

    // Run r1, then r2, into one folder: only r2's files remain.
    let both = f.root.join("e2");
    for run in ["r1", "r2"] {
        let out = write("export", run, &both);
        assert_exit_for(&out, 0, run);
    }
    let maps = names(&both.join("mean-maps"));
    assert!(
        maps.iter().any(|n| n.contains("gradient")),
        "r2's mean maps: {maps:?}"
    );
    assert!(
        !maps.iter().any(|n| n.contains("gradcam")),
        "r1's mean maps left beside r2's files: {maps:?}"
    );
    let metrics = std::fs::read_to_string(both.join("metrics.csv")).unwrap();
    let rows: Vec<&str> = metrics.lines().skip(1).collect();
    assert!(
        !rows.is_empty() && rows.iter().all(|l| l.starts_with("r2,")),
        "{metrics}"
    );
    // Nothing beside the folder: the staging folder went with the rename.
    assert_nothing_named(&f.root, ".e2.");
}

/// Point 2: `views/` and `images/` linked to another folder: the report is refused, and nothing in that
/// folder is written or overwritten.
#[test]
fn report_never_writes_through_linked_folders() {
    let f = fixture();
    let r = f.root.join("r-linked");
    let v = f.root.join("elsewhere");
    std::fs::create_dir_all(&r).unwrap();
    std::fs::create_dir_all(&v).unwrap();
    std::fs::write(v.join("all--confidence-1.html"), b"USER\n").unwrap();
    std::os::unix::fs::symlink(&v, r.join("views")).unwrap();
    std::os::unix::fs::symlink(&v, r.join("images")).unwrap();
    let out = write("report", "r1", &r);
    assert_exit(&out, 1);
    assert_stderr(&out, &["images is a symbolic link"]);
    assert_eq!(
        snapshot(&v),
        vec![(PathBuf::from("all--confidence-1.html"), b"USER\n".to_vec())]
    );
    assert_eq!(names(&r), vec!["images", "views"]);
    // The output folder itself a link: refused as well.
    let link = f.root.join("r-link");
    std::os::unix::fs::symlink(&v, &link).unwrap();
    let out = write("report", "r1", &link);
    assert_exit(&out, 1);
    assert_stderr(&out, &["r-link is a symbolic link"]);
    assert_eq!(names(&v), vec!["all--confidence-1.html"]);
}

/// Point 3: a manifest naming files outside the folder (absolute, or through `..`) deletes nothing: the
/// folder is refused, naming the line.
#[test]
fn a_crafted_manifest_deletes_nothing_outside_the_folder() {
    let f = fixture();
    let keep = f.root.join("keep.txt");
    std::fs::write(&keep, b"x\n").unwrap();
    for (name, line) in [
        ("o-abs", keep.display().to_string()),
        ("o-dots", "../keep.txt".to_string()),
    ] {
        let o = f.root.join(name);
        std::fs::create_dir_all(&o).unwrap();
        std::fs::write(o.join(".tumor-audit-report"), format!("{line}\n")).unwrap();
        let out = write("report", "r1", &o);
        assert_exit_for(&out, 1, name);
        assert_stderr_for(&out, &["line 1", "is not a path inside the folder"], name);
        assert_eq!(std::fs::read(&keep).unwrap(), b"x\n", "{name}");
        assert_eq!(names(&o), vec![".tumor-audit-report"], "{name}");
    }
}

/// Point 4: a report killed half-way (kill -9) leaves the previous complete report as it was; the
/// rerun removes what the killed one left and writes the new report.
#[test]
fn a_killed_report_leaves_the_previous_one_and_the_rerun_works() {
    let f = fixture();
    let site = f.root.join("site");
    let out = write("report", "r1", &site);
    assert_exit(&out, 0);
    let before = snapshot(&site);
    assert!(before.iter().any(|(p, _)| p == Path::new("report.html")));

    let mut child = bin(&[])
        .args(["report", "--db"])
        .arg(&f.db)
        .args(["--run", "r2", "--out"])
        .arg(&site)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let staging = f.root.join(format!(".site.tmp-{}", child.id()));
    // Wait until it is writing (its asset folder exists), then kill it.
    let t0 = std::time::Instant::now();
    while !staging.join("new/report-assets").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the report ended before it could be killed"
        );
        assert!(
            t0.elapsed().as_secs() < 60,
            "the report never started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(9), "killed half-way: {status:?}");
    assert!(staging.exists(), "the killed run's staging folder is left");
    assert!(
        snapshot(&site) == before,
        "the previous report changed under a killed run"
    );

    let out = write("report", "r2", &site);
    assert_exit(&out, 0);
    assert!(!staging.exists(), "the stale staging folder is removed");
    let html = std::fs::read_to_string(site.join("report.html")).unwrap();
    assert!(html.contains("r2"), "the rerun's report is in place");
    assert_nothing_named(&f.root, ".site.");
}

/// Point 5: a database of a newer schema, in rollback-journal mode, is refused by `audit` and by
/// `merge --into` without a byte of it changing (not even the switch to WAL).
#[test]
fn refusing_a_newer_database_leaves_it_byte_identical() {
    let f = fixture();
    let dir = tempdir();
    let newer = dir.path().join("newer.sqlite");
    {
        let src = Connection::open(&f.db).unwrap();
        src.execute("VACUUM INTO ?1", [newer.to_str().unwrap()])
            .unwrap();
    }
    {
        let c = Connection::open(&newer).unwrap();
        c.pragma_update(None, "journal_mode", "DELETE").unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let bytes = std::fs::read(&newer).unwrap();
    assert_eq!(
        &bytes[18..20],
        &[1, 1],
        "rollback-journal mode to start with"
    );

    let out = audit(&f.set, &newer, "x", &["--methods", "gradcam"]);
    assert_exit(&out, 1);
    assert_stderr(&out, &["has schema version 99"]);
    let shard = dir.path().join("shard.sqlite");
    let set = real_set(dir.path(), 1);
    let out = audit(
        &set,
        &shard,
        "s",
        &["--methods", "gradcam", "--shard", "0/1"],
    );
    assert_exit(&out, 0);
    let out = cli::merge(bin(&[]), &newer, &[&shard]).output().unwrap();
    assert_exit(&out, 1);
    assert_stderr(&out, &["has schema version 99"]);
    assert!(
        std::fs::read(&newer).unwrap() == bytes,
        "the refused database changed"
    );
    assert!(!dir.path().join("newer.sqlite-wal").exists());
}

/// Point 7: `--threads` is bounded with a clear error (exit 2); the bound itself runs.
#[test]
fn threads_are_bounded_with_a_clear_error() {
    let f = fixture();
    for n in ["100000", "0", "-3"] {
        let out = bin(&[])
            .arg(format!("--threads={n}"))
            .args(["query", "runs", "--db"])
            .arg(&f.db)
            .output()
            .unwrap();
        assert_exit_for(&out, 2, n);
        assert_stderr_for(&out, &["from 1 to 1024"], n);
    }
    let image = &br35h("Testing", "yes")[0];
    let out = bin(&[])
        .args([
            "--threads",
            "1024",
            "explain",
            "--methods",
            "gradient",
            "--out",
        ])
        .arg(f.root.join("explain-1024"))
        .arg(image)
        .output()
        .unwrap();
    assert_exit(&out, 0);
}

/// Point 8: a run that does not exist is a usage error (exit 2) in every command that takes one, and
/// `audit --limit 0` is refused as such, before anything is created.
#[test]
fn unknown_runs_and_a_zero_limit_exit_2() {
    let f = fixture();
    let db = f.db.to_str().unwrap();
    let out_dir = f.root.join("never");
    let o = out_dir.to_str().unwrap();
    for args in [
        vec!["query", "suspicious", "--db", db, "--run", "nope"],
        vec!["export", "--db", db, "--run", "nope", "--out", o],
        vec!["report", "--db", db, "--run", "nope", "--out", o],
        vec!["diff", "nope", "r1", "--db", db],
    ] {
        let out = bin(&[]).args(&args).output().unwrap();
        let what = format!("{args:?}");
        assert_exit_for(&out, 2, &what);
        assert_stderr_for(&out, &["no run \"nope\"", "r1"], &what);
    }
    assert!(!out_dir.exists());
    let db = f.root.join("limit0.sqlite");
    let out = audit(&f.set, &db, "z", &["--methods", "gradcam", "--limit", "0"]);
    assert_exit(&out, 2);
    assert_stderr(&out, &["--limit", "at least 1"]);
    assert!(!stderr(&out).contains("no image files"), "{}", text(&out));
    assert!(!db.exists());
}

/// Point 9: a class folder whose name is not UTF-8 is refused by name (escaped), not skipped; an image
/// file with such a name is a failed image, named, never stored under a lossy path.
#[test]
fn names_that_are_not_utf8_are_refused_by_name_never_dropped() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = tempdir();
    let set = dir.path().join("odd");
    let yes = set.join(std::ffi::OsStr::from_bytes(b"yes\xff"));
    std::fs::create_dir_all(set.join("no")).unwrap();
    std::fs::create_dir_all(&yes).unwrap();
    let (no_files, yes_files) = (br35h("Testing", "no"), br35h("Testing", "yes"));
    std::fs::copy(&no_files[0], set.join("no/a.jpg")).unwrap();
    std::fs::copy(&yes_files[0], yes.join("b.jpg")).unwrap();
    let db = dir.path().join("a.sqlite");
    let out = audit(&set, &db, "u", &["--methods", "gradcam"]);
    assert_exit(&out, 1);
    assert_stderr(&out, &[r#"class folder "yes\xFF""#]);

    // A file: the image fails (exit 3), with its name escaped in the log and the errors table.
    std::fs::remove_dir_all(&yes).unwrap();
    std::fs::create_dir_all(set.join("yes")).unwrap();
    std::fs::copy(&yes_files[0], set.join("yes/b.jpg")).unwrap();
    let odd = set
        .join("yes")
        .join(std::ffi::OsStr::from_bytes(b"bad\xff\xfe.jpg"));
    // Other content than b.jpg: its failure is its own.
    std::fs::copy(&yes_files[1], &odd).unwrap();
    let out = audit(&set, &db, "u", &["--methods", "gradcam"]);
    assert_exit(&out, 3);
    let shown = r"bad\xFF\xFE.jpg";
    assert_stderr(&out, &[shown, "not valid UTF-8"]);
    let c = Connection::open(&db).unwrap();
    let (path, message): (String, String) =
        row(&c, "SELECT path, message FROM errors WHERE run_id = 'u'");
    assert!(
        path.ends_with(shown) && message.contains(shown),
        "{path}: {message}"
    );
    let lossy = count(
        &c,
        "SELECT (SELECT count(*) FROM images WHERE instr(path, char(65533)) > 0) \
              + (SELECT count(*) FROM errors WHERE instr(path, char(65533)) > 0)",
    );
    assert_eq!(
        lossy, 0,
        "a path recorded with U+FFFD in place of its bytes"
    );
}

/// Point 10: under a file size limit (`ulimit -f`) the write fails with its cause printed, instead of
/// SIGXFSZ killing the process without a word; the previous report is kept.
#[test]
fn a_file_size_limit_is_reported_and_the_previous_report_kept() {
    let f = fixture();
    let site = f.root.join("limited");
    let out = write("report", "r1", &site);
    assert_exit(&out, 0);
    let before = snapshot(&site);
    // 40 KiB: SQLite's 32 KiB shared-memory file fits, the report's full-size inputs do not.
    let exe = env!("CARGO_BIN_EXE_tumor-audit");
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"ulimit -f 40 && exec "$0" report --db "$1" --run r2 --out "$2""#)
        .arg(exe)
        .arg(&f.db)
        .arg(&site)
        .current_dir(repo("."))
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert_stderr(&out, &["File too large"]);
    assert!(snapshot(&site) == before, "the previous report changed");
    assert_nothing_named(&f.root, ".limited.");
}

/// Point 12: without a terminal the log has no escape codes, and with stdout and stderr in one file
/// (cron mail, `2>&1`) each summary line is there once; on a terminal (a pty from `script`) the log
/// is coloured unless `NO_COLOR` is set.
#[test]
fn logs_are_plain_without_a_terminal_and_summaries_appear_once() {
    let f = fixture();
    let dir = tempdir();
    let log = dir.path().join("log.txt");
    let file = std::fs::File::create(&log).unwrap();
    let db = dir.path().join("a.sqlite");
    let status = audit_command(&f.set, &db, "once")
        .args(["--methods", "gradcam"])
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(!text.contains('\x1b'), "escape codes: {text:?}");
    for line in [
        "run once: 4 images audited",
        "run once totals: 4 of 4 images done",
    ] {
        assert_eq!(
            text.lines().filter(|l| l.contains(line)).count(),
            1,
            "{line}: {text}"
        );
    }
    assert!(text.contains(" INFO "), "the log is there: {text}");

    // On a terminal: `script` runs the command on a pseudo-terminal. The INFO line of a read command
    // started away from config.yml is coloured, unless NO_COLOR is set.
    let on_tty = |no_color: bool| {
        let cmd = format!(
            "'{}' query runs --db '{}'",
            env!("CARGO_BIN_EXE_tumor-audit"),
            f.db.display()
        );
        let mut c = Command::new("script");
        c.args(["-q", "-e", "-c", &cmd, "/dev/null"])
            .current_dir(dir.path())
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG");
        if no_color {
            c.env("NO_COLOR", "1");
        }
        let out = c
            .output()
            .expect("`script` (util-linux) runs the command on a terminal");
        assert!(out.status.success(), "{}", cli::text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_tty(false);
    assert!(
        coloured.contains("INFO") && coloured.contains("\x1b["),
        "{coloured:?}"
    );
    let plain = on_tty(true);
    assert!(
        plain.contains("INFO") && !plain.contains('\x1b'),
        "{plain:?}"
    );
}

/// Point 12: an ONNX producer version without a revision (tf2onnx writes "1.17.0 None") is described as
/// "tf2onnx 1.17.0".
#[test]
fn an_onnx_producer_without_a_revision_is_described_without_none() {
    use onnx_protobuf::{Message as _, ModelProto};
    let dir = tempdir();
    let src = repo("tests/fixtures/onnx/keras_notebook_cnn.onnx");
    let mut m = ModelProto::parse_from_bytes(&std::fs::read(&src).unwrap()).unwrap();
    assert_eq!(m.producer_name, "tf2onnx");
    m.producer_version = "1.17.0 None".into();
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, m.write_to_bytes().unwrap()).unwrap();
    let meta = onnx_meta("keras_notebook_cnn");
    let shape = json_list(&meta["input_shape"], serde_json::Value::as_i64);
    let classes = meta["logits"][0].as_array().unwrap().len() as i64;
    let model = tumor_audit::model::onnx::OnnxModel::load(
        &path,
        tumor_audit::model::InputSpec {
            channels: shape[1],
            size: shape[2],
            classes,
        },
        "auto",
        tch::Device::Cpu,
        1,
    )
    .unwrap();
    let d = model.describe();
    assert!(d.contains("tf2onnx 1.17.0;"), "{d}");
    assert!(!d.contains("None"), "{d}");
}
