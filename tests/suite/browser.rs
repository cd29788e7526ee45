//! The Chromium the report's browser checks use: where it is found, and the pinned headless shell that
//! `make test` installs on a machine without one (the driver is `support::browser`).
use std::process::Command;

use super::support::browser::{find_chromium, pinned_chromium, screenshot};
use super::support::cli::text;
use super::support::repo;

/// `make test` on a machine without Chromium (issue point 11): its `chromium` step, the setup script
/// (`--force`: this machine may have a Chromium of its own), installs Debian's pinned headless shell
/// under .deps/chromium without root; with nothing on PATH and no CHROMIUM the tests' lookup finds it;
/// it is the pinned version, and it renders text with the fonts it brought (a page's text is not blank
/// in its screenshot). A CHROMIUM that names no file is no Chromium: the browser tests then fail.
#[test]
fn the_pinned_headless_chromium_serves_a_machine_without_one() {
    let out = Command::new("bash")
        .arg(repo("scripts/setup-chromium.sh"))
        .arg("--force")
        .env_remove("CHROMIUM")
        .output()
        .expect("run scripts/setup-chromium.sh");
    assert!(
        out.status.success(),
        "scripts/setup-chromium.sh --force: {}",
        text(&out)
    );

    let nothing = tempfile::tempdir().unwrap();
    let bare = |k: &str| (k == "PATH").then(|| nothing.path().as_os_str().to_owned());
    let bin = find_chromium(bare).expect("the pinned Chromium under .deps/chromium is found");
    assert_eq!(bin, pinned_chromium());
    let missing = nothing.path().join("no-chromium-here");
    assert_eq!(
        find_chromium(|k| (k == "CHROMIUM").then(|| missing.as_os_str().to_owned())),
        None,
        "CHROMIUM naming no file is not replaced by another Chromium"
    );

    let script = std::fs::read_to_string(repo("scripts/setup-chromium.sh")).unwrap();
    let pinned = script
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"chromium-headless-shell="))
        .and_then(|v| v.split(['-', ' ']).next())
        .expect("the chromium-headless-shell pin in scripts/setup-chromium.sh")
        .to_string();
    let version = Command::new(&bin).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    assert!(
        version.contains(&pinned),
        "{} --version says {version:?}, the pin is {pinned}",
        bin.display()
    );

    let png = nothing.path().join("text.png");
    screenshot(
        &bin,
        "data:text/html,<body style='margin:0;background:%23fff'>\
         <p style='margin:0;font:96px sans-serif;color:%23000'>MRI audit</p>",
        &png,
        600,
        200,
    );
    let img = image::open(&png).unwrap().to_rgb8();
    let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 96)).count();
    assert!(
        dark > 2_000,
        "black 96 px text in the screenshot of the pinned Chromium: {dark} dark pixels (no font?)"
    );
}
