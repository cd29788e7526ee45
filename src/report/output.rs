//! What `report --out DIR` may touch in DIR: only what an earlier report wrote there, as listed in its
//! manifest (`DIR/.tumor-audit-report`), and never through a symbolic link.
//!
//! Before writing, the files of the previous report (from the manifest; regular files only, a link put in
//! the place of one is left alone) are removed, with the folders of `report-assets/` that are then empty.
//! Anything the report would write that is still there afterwards (`report.html`, a `gallery-N.html`,
//! `report-assets/` or anything in it) is not the report's: the report is refused, naming it, instead of
//! deleting or overwriting it. The new files are all created fresh, so no write goes through a link. The
//! manifest is written last.
use std::path::{Path, PathBuf};

use super::ASSETS;

/// The manifest of the files a report wrote, one relative path per line.
pub const MANIFEST: &str = ".tumor-audit-report";

/// Why the report will not write into its folder.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "{path} is not the report's (it is not in {manifest}, the list of what an earlier report wrote); \
         the report does not delete or overwrite it: move it away or choose another --out"
    )]
    NotOurs { path: PathBuf, manifest: PathBuf },

    #[error("{path} is a symbolic link: the report does not write through links; remove it or choose another --out")]
    Link { path: PathBuf },

    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(
    context: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> OutputError + 'a {
    move |source| OutputError::Io {
        context,
        path: path.to_path_buf(),
        source,
    }
}

fn is_page(name: &str) -> bool {
    name == "report.html"
        || name
            .strip_prefix("gallery-")
            .and_then(|r| r.strip_suffix(".html"))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Clears the previous report's own files from `dir` and checks that nothing else stands where this one
/// writes (see the module doc). Creates `dir` if needed.
pub fn prepare(dir: &Path) -> Result<(), OutputError> {
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    let manifest = dir.join(MANIFEST);
    match std::fs::symlink_metadata(&manifest) {
        Ok(m) if m.file_type().is_symlink() => return Err(OutputError::Link { path: manifest }),
        Ok(_) => {
            let listed =
                std::fs::read_to_string(&manifest).map_err(io("cannot read", &manifest))?;
            let mut folders = Vec::new();
            for rel in listed
                .lines()
                .filter(|l| !l.is_empty() && !l.contains(".."))
            {
                let path = dir.join(rel);
                if rel.ends_with('/') {
                    folders.push(path);
                    continue;
                }
                // Only a regular file: a link or folder someone put there since is not ours.
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file()) {
                    std::fs::remove_file(&path).map_err(io("cannot remove", &path))?;
                }
            }
            // Deepest first; a folder that still holds something is kept (and refused below).
            folders.sort_by_key(|f| std::cmp::Reverse(f.components().count()));
            for f in folders {
                if std::fs::symlink_metadata(&f).is_ok_and(|m| m.file_type().is_dir()) {
                    let _ = std::fs::remove_dir(&f);
                }
            }
            std::fs::remove_file(&manifest).map_err(io("cannot remove", &manifest))?;
        }
        Err(_) => {}
    }
    let not_ours = |path: PathBuf| {
        let link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if link {
            OutputError::Link { path }
        } else {
            OutputError::NotOurs {
                path,
                manifest: manifest.clone(),
            }
        }
    };
    let assets = dir.join(ASSETS);
    if std::fs::symlink_metadata(&assets).is_ok() {
        // What is left in it (or the name itself, when it is a link or a file) is not ours.
        let first = std::fs::read_dir(&assets)
            .ok()
            .and_then(|mut rd| rd.next())
            .and_then(|e| e.ok())
            .map(|e| e.path());
        return Err(not_ours(first.unwrap_or(assets)));
    }
    for e in std::fs::read_dir(dir)
        .map_err(io("cannot list", dir))?
        .flatten()
    {
        if is_page(&e.file_name().to_string_lossy()) {
            return Err(not_ours(e.path()));
        }
    }
    Ok(())
}

/// Writes the manifest: the pages, every file and folder under `report-assets/`.
pub fn finish(dir: &Path, pages: &[PathBuf]) -> Result<(), OutputError> {
    let mut lines: Vec<String> = pages
        .iter()
        .filter_map(|p| p.strip_prefix(dir).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut stack = vec![dir.join(ASSETS)];
    while let Some(d) = stack.pop() {
        let rel = d
            .strip_prefix(dir)
            .unwrap_or(&d)
            .to_string_lossy()
            .into_owned();
        lines.push(format!("{rel}/"));
        for e in std::fs::read_dir(&d)
            .map_err(io("cannot list", &d))?
            .flatten()
        {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => lines.push(
                    p.strip_prefix(dir)
                        .unwrap_or(&p)
                        .to_string_lossy()
                        .into_owned(),
                ),
                _ => {}
            }
        }
    }
    lines.sort();
    let manifest = dir.join(MANIFEST);
    std::fs::write(&manifest, lines.join("\n") + "\n").map_err(io("cannot write", &manifest))
}
