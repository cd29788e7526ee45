//! The real binary: help texts, and bad input gets a clear error.
use super::support::cli::{bin, failed};
use super::support::{assert_has_all, tempdir};

#[test]
fn help_says_what_each_command_does_with_an_example() {
    let out = bin(&[]).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("Example") && text.contains("Guided Backprop"),
        "{text}"
    );
    for sub in ["split", "train", "evaluate", "explain", "report"] {
        let out = bin(&[]).args([sub, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{sub} --help");
        assert!(
            text.contains("Example: tumor-audit"),
            "{sub} --help has no example:\n{text}"
        );
    }
}

#[test]
fn a_bad_config_key_is_a_clear_error() {
    let out = bin(&["données.image.sise=64"])
        .arg("evaluate")
        .output()
        .unwrap();
    assert_has_all(&failed(&out), &["sise", "données.image"]);
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let out = bin(&[])
        .args(["--config", "no/such.yml", "evaluate"])
        .output()
        .unwrap();
    assert_has_all(&failed(&out), &["no/such.yml"]);
}

#[test]
fn set_before_and_after_the_subcommand_both_count() {
    let sets = |args: &[&str]| {
        let v: Vec<std::ffi::OsString> = std::iter::once("tumor-audit")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect();
        tumor_audit::cli::collect_sets(&v)
    };
    assert_eq!(
        sets(&["--set", "a=1", "audit", "--set=b=2", "--set", "c=[x, y]"]),
        ["a=1", "b=2", "c=[x, y]"]
    );
    assert_eq!(
        sets(&["query", "sql", "--", "--set", "x"]),
        Vec::<String>::new()
    );
    // Through the binary: an override before the subcommand survives one after it.
    let out = bin(&["explain.profile=nonsense"])
        .args(["bench", "--set", "explain.seed=3", "--images", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("explain.profile"), "{err}");
}

#[test]
fn a_target_class_that_does_not_exist_fails_before_any_work_in_audit_as_in_explain() {
    // One resolver for every command: the same refusal, naming the valid classes, before the model
    // is loaded or a database is created.
    let dir = tempdir();
    let db = dir.path().join("audit.sqlite");
    let out = bin(&["explain.target=maybe"])
        .args(["audit", "--limit", "1", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "audit with an unknown target class exited 0"
    );
    let audit_err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_has_all(
        &audit_err,
        &["explain.target", "`maybe`", "predicted, label, no, yes"],
    );
    assert!(
        !db.exists(),
        "the audit created {} before refusing",
        db.display()
    );
    let out = bin(&[])
        .args(["explain", "--target", "maybe", "--out"])
        .arg(dir.path())
        .arg("README.md")
        .output()
        .unwrap();
    let explain_err = failed(&out);
    assert_eq!(explain_err, audit_err, "explain and audit refuse alike");
}
