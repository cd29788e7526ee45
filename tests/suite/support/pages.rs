//! Report pages as the browser tests open them: their `file://` addresses, the folder their
//! screenshots are kept in, and the JSON a page's probe answers. (The Chromium driver is [`super::browser`].)
use std::path::{Path, PathBuf};

use super::browser::Visit;

/// The `file://` address of a page.
pub fn url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// Where the screenshots go (kept after the test, for a person to look at).
pub fn shots_dir() -> PathBuf {
    let d = std::env::temp_dir().join("tumor-audit-report-shots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What a visit's probe answered, read from the JSON string it returned.
pub fn probe(v: &Visit) -> serde_json::Value {
    serde_json::from_str(v.probe.as_str().expect("probe answered a string")).unwrap()
}
