//! The real binary: the commands that run it (cheaply), and checks on how it exited and what it printed.
use std::path::Path;
use std::process::{Command, Output};

/// The real binary, run from the repository root, with `--set KEY=VALUE` overrides.
pub fn bin(sets: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tumor-audit"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    for s in sets {
        c.args(["--set", s]);
    }
    c
}

/// The real binary with `--set` overrides held as owned strings.
pub fn bin_with(sets: &[String]) -> Command {
    let refs: Vec<&str> = sets.iter().map(String::as_str).collect();
    bin(&refs)
}

/// Few samples and steps for the sampling methods: every code path runs, in a fraction of the time.
pub const CHEAP: [&str; 4] = [
    "explain.lime.samples=24",
    "explain.kernel_shap.samples=24",
    "explain.smoothgrad.samples=4",
    "explain.integrated_gradients.steps=8",
];

/// `--set` overrides for an audit of the class folders `classes` under `root`, at [`CHEAP`] cost.
pub fn cheap_sets(root: &Path, classes: &[&str]) -> Vec<String> {
    let mut sets = vec![
        format!("data.root={}", root.display()),
        format!(
            "data.classes={}",
            serde_json::to_string(classes).expect("classes as a YAML flow list")
        ),
    ];
    sets.extend(CHEAP.iter().map(|s| s.to_string()));
    sets
}

/// The real binary run to completion on the class folders `classes` under `root`, at [`CHEAP`] cost.
pub fn run_cheap(root: &Path, classes: &[&str], args: &[&str]) -> Output {
    bin_with(&cheap_sets(root, classes))
        .args(args)
        .output()
        .unwrap()
}

/// `c` (the binary with its `--set` overrides, as [`bin`] gives it) told `audit --data SET --db DB
/// --run RUN`; more arguments may follow.
pub fn audit(mut c: Command, set: &Path, db: &Path, run: &str) -> Command {
    c.arg("audit")
        .arg("--data")
        .arg(set)
        .arg("--db")
        .arg(db)
        .args(["--run", run]);
    c
}

/// [`audit`] of `set` into `db` with the cheap Grad-CAM only and no leakage check, plus `extra`, run to
/// its end.
pub fn gradcam_audit(set: &Path, db: &Path, run: &str, extra: &[&str]) -> Output {
    audit(bin(&[]), set, db, run)
        .args(["--methods", "gradcam", "--no-leakage-check"])
        .args(extra)
        .output()
        .unwrap()
}

/// `c` (the binary, as [`bin`] gives it) told `merge --into INTO SHARD...`; more arguments may follow.
pub fn merge<P: AsRef<Path>>(mut c: Command, into: &Path, shards: &[P]) -> Command {
    c.arg("merge")
        .arg("--into")
        .arg(into)
        .args(shards.iter().map(|p| p.as_ref()));
    c
}

/// `args` run with the `--set` overrides `sets`, which must succeed (else the test fails showing
/// the arguments and both streams).
#[track_caller]
pub fn run_ok(sets: &[String], args: &[&str]) -> Output {
    let out = bin_with(sets).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit code, stdout and stderr of a finished command, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Stdout of a command that must have succeeded (else the test fails showing both streams).
#[track_caller]
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The command exited with `code` (else the test fails showing [`text`]).
#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
}

/// [`assert_exit`] for one case of several: the message starts with `what`.
#[track_caller]
pub fn assert_exit_for(out: &Output, code: i32, what: &str) {
    assert_eq!(out.status.code(), Some(code), "{what}: {}", text(out));
}

/// The command's stderr holds every one of `parts` (else the test fails showing [`text`]).
#[track_caller]
pub fn assert_stderr(out: &Output, parts: &[&str]) {
    let err = stderr(out);
    assert!(parts.iter().all(|p| err.contains(p)), "{}", text(out));
}

/// [`assert_stderr`] for one case of several: the message starts with `what`.
#[track_caller]
pub fn assert_stderr_for(out: &Output, parts: &[&str], what: &str) {
    let err = stderr(out);
    assert!(
        parts.iter().all(|p| err.contains(p)),
        "{what}: {}",
        text(out)
    );
}

/// The command's stdout holds every one of `parts` (else the test fails showing [`text`]).
#[track_caller]
pub fn assert_stdout(out: &Output, parts: &[&str]) {
    let o = stdout(out);
    assert!(parts.iter().all(|p| o.contains(p)), "{}", text(out));
}

/// The stderr of a command that must have failed, with any exit code.
#[track_caller]
pub fn failed(out: &Output) -> String {
    assert!(!out.status.success());
    stderr(out)
}
