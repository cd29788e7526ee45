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
