//! Code the integration tests share: paths into the repository, temp folders and checks on error
//! texts here; the real binary (`cli`), its databases (`db`), image sets (`images`), hand-built
//! networks and their outputs (`models`), headless Chromium driven over the DevTools protocol
//! (`browser`), and report pages seen in it (`pages`).
use std::path::PathBuf;

pub mod browser;
pub mod cli;
pub mod db;
pub mod images;
pub mod models;
pub mod pages;

pub fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// The error text of a call that must have been refused.
#[track_caller]
pub fn refused<T, E: ToString>(result: Result<T, E>) -> String {
    result.err().expect("refused").to_string()
}

/// `text` holds every one of `parts` (else the test fails showing `text`).
#[track_caller]
pub fn assert_has_all(text: &str, parts: &[&str]) {
    assert!(parts.iter().all(|p| text.contains(p)), "{text}");
}
