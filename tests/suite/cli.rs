//! The real binary: help texts, and bad input gets a clear error.
use super::util::bin;

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
    let out = bin(&[])
        .args(["--set", "données.image.sise=64", "evaluate"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sise") && err.contains("données.image"),
        "{err}"
    );
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let out = bin(&[])
        .args(["--config", "no/such.yml", "evaluate"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no/such.yml"), "{err}");
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
    let out = super::util::bin(&["explain.profile=nonsense"])
        .args(["bench", "--set", "explain.seed=3", "--images", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("explain.profile"), "{err}");
}
