//! The output folders of `report`, `export` and `explain` (`--out`): what they may touch there, and how a
//! new output replaces the previous one so that a run stopped at any point (kill -9, full disk, a file
//! size limit) leaves the previous complete output, and a rerun always works.
//!
//! **Ownership.** Each kind of output lists what it wrote in a manifest inside the folder
//! (`.tumor-audit-report`, `.tumor-audit-export`, `.tumor-audit-explain`: one relative path per line,
//! folders with a trailing `/`). A folder may hold the outputs of several kinds (by default `report` and
//! `export` of a run share `<output.dir>/<run>/`) and nothing else: every entry in it must be listed by one
//! of its manifests and none may be a symbolic link, or the command is refused before any work, naming
//! the entry, and the folder is left as it is. A manifest only classifies what is in the folder; nothing
//! is ever deleted by following its lines, and a line that is not a plain relative path (absolute, with
//! `..`, `.` or empty parts) refuses the folder.
//!
//! **Replacing.** The new output is written into `<staging>/new`, a fresh folder beside the target
//! (`<parent>/.<name>.tmp-<pid>`), so every file is created new and no write goes through a link. On
//! [`Staged::commit`] the manifest is written, the other kinds' files are hard-linked into the new folder
//! (neither copied nor changed; copied where the file system has no hard links), then the old folder is
//! renamed to `<staging>/old` and `<staging>/new` to the target, and the staging folder is removed with
//! the old output. The previous output of the same kind goes as a whole: nothing of an earlier run is
//! left to be read as this run's.
//!
//! **Stopped runs.** The staging folder holds a `lock` file, locked (`flock`) while its process lives, so
//! the kernel releases it when the process dies. A later run removes every staging folder of the same
//! target whose lock it can take (after renaming its `old` back when the target itself is missing: a run
//! stopped between its two renames); one whose lock is held means another process is writing the same
//! folder, and the run is refused.
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{File, TryLockError};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// The kinds of output, each with its own manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Report,
    Export,
    Explain,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Report, Kind::Export, Kind::Explain];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Report => "report",
            Kind::Export => "export",
            Kind::Explain => "explain",
        }
    }

    /// The manifest's file name inside the output folder.
    pub fn manifest(self) -> &'static str {
        match self {
            Kind::Report => ".tumor-audit-report",
            Kind::Export => ".tumor-audit-export",
            Kind::Explain => ".tumor-audit-explain",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A file or folder of an output that could not be made (`what`: `create`, `write`), with its path
/// and the reason (an I/O error, or the image or plot that could not be encoded).
#[derive(Debug, thiserror::Error)]
#[error("cannot {what} {}", path.display())]
pub struct FileError {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl FileError {
    pub fn new(
        what: &'static str,
        path: &Path,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> FileError {
        FileError {
            what,
            path: path.to_path_buf(),
            source: Box::new(source),
        }
    }
}

/// Why an output will not be written into its folder; the folder is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "{path} is not the {kind}'s: no tumor-audit manifest in {dir} lists it; the {kind} does not delete, \
         overwrite or move what it did not write: move it away or choose another --out"
    )]
    NotOurs {
        path: PathBuf,
        dir: PathBuf,
        kind: Kind,
    },

    #[error(
        "{path} is a symbolic link: the {kind} neither writes through links nor replaces them; remove it or \
         choose another --out"
    )]
    Link { path: PathBuf, kind: Kind },

    #[error(
        "--out {path} is not a folder: the {kind} does not replace a file; choose another --out"
    )]
    NotAFolder { path: PathBuf, kind: Kind },

    #[error("--out {path} names no folder (it ends in `..` or is a root): give a path that ends in a folder name")]
    NoName { path: PathBuf },

    #[error(
        "{path}, line {line}: {text:?} is not a path inside the folder (tumor-audit writes relative paths \
         only), so this manifest is not one it wrote; the {kind} leaves the folder as it is: remove the \
         folder or choose another --out"
    )]
    BadManifest {
        path: PathBuf,
        line: usize,
        text: String,
        kind: Kind,
    },

    #[error(
        "another tumor-audit process is writing {path} (its staging folder {staging} is locked): wait for it \
         to end, or choose another --out"
    )]
    Busy { path: PathBuf, staging: PathBuf },

    #[error(
        "{path} belongs to the {other} in the same folder and the {kind} writes it too: choose another --out \
         for one of them"
    )]
    Collision {
        path: PathBuf,
        kind: Kind,
        other: Kind,
    },

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

/// What one manifest lists: files, and folders (those listed and every folder above a listed path).
#[derive(Debug, Default)]
struct Listing {
    files: BTreeSet<PathBuf>,
    dirs: BTreeSet<PathBuf>,
    text: String,
}

/// A manifest line as a relative path (and whether it names a folder), or `None` when it is not a plain
/// path inside the folder.
fn clean_relative(line: &str) -> Option<(PathBuf, bool)> {
    let (body, is_dir) = match line.strip_suffix('/') {
        Some(b) => (b, true),
        None => (line, false),
    };
    if body.is_empty() {
        return None;
    }
    let mut p = PathBuf::new();
    for part in body.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains('\0') {
            return None;
        }
        p.push(part);
    }
    Some((p, is_dir))
}

/// The manifest of `of` in `dir`, if there is one (`kind`: the output being written, for messages).
fn read_manifest(dir: &Path, of: Kind, kind: Kind) -> Result<Option<Listing>, OutputError> {
    let path = dir.join(of.manifest());
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("cannot read", &path)(e)),
        Ok(m) if m.file_type().is_symlink() => return Err(OutputError::Link { path, kind }),
        Ok(m) if !m.is_file() => {
            return Err(OutputError::NotOurs {
                path,
                dir: dir.to_path_buf(),
                kind,
            })
        }
        Ok(_) => {}
    }
    let text = std::fs::read_to_string(&path).map_err(io("cannot read", &path))?;
    let mut listing = Listing::default();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let Some((rel, is_dir)) = clean_relative(line) else {
            return Err(OutputError::BadManifest {
                path,
                line: i + 1,
                text: line.to_string(),
                kind,
            });
        };
        for a in rel.ancestors().skip(1) {
            if !a.as_os_str().is_empty() {
                listing.dirs.insert(a.to_path_buf());
            }
        }
        if is_dir {
            listing.dirs.insert(rel);
        } else {
            listing.files.insert(rel);
        }
    }
    listing.text = text;
    Ok(Some(listing))
}

/// What is in a target folder: whether it exists, and the manifests in it.
struct Survey {
    exists: bool,
    listed: Vec<(Kind, Listing)>,
}

/// Checks that everything in `target` is listed by one of its manifests and that nothing in it is a
/// symbolic link (see the module doc); `kind` is the output about to be written.
fn survey(target: &Path, kind: Kind) -> Result<Survey, OutputError> {
    match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Survey {
                exists: false,
                listed: Vec::new(),
            })
        }
        Err(e) => return Err(io("cannot read", target)(e)),
        Ok(m) if m.file_type().is_symlink() => {
            return Err(OutputError::Link {
                path: target.to_path_buf(),
                kind,
            })
        }
        Ok(m) if !m.is_dir() => {
            return Err(OutputError::NotAFolder {
                path: target.to_path_buf(),
                kind,
            })
        }
        Ok(_) => {}
    }
    let mut listed = Vec::new();
    for of in Kind::ALL {
        if let Some(l) = read_manifest(target, of, kind)? {
            listed.push((of, l));
        }
    }
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = target.join(&rel);
        let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(&here)
            .map_err(io("cannot list", &here))?
            .collect::<Result<_, _>>()
            .map_err(io("cannot list", &here))?;
        entries.sort_by_key(|e| e.file_name());
        // Deepest last: the first entry refused is the first in sorted order at this level.
        let mut below = Vec::new();
        for e in entries {
            let name = e.file_name();
            if rel.as_os_str().is_empty() && Kind::ALL.iter().any(|k| name == k.manifest()) {
                continue;
            }
            let r = rel.join(&name);
            let path = target.join(&r);
            let ft = e.file_type().map_err(io("cannot read", &path))?;
            if ft.is_symlink() {
                return Err(OutputError::Link { path, kind });
            }
            let ours = if ft.is_dir() {
                listed.iter().any(|(_, l)| l.dirs.contains(&r))
            } else if ft.is_file() {
                listed.iter().any(|(_, l)| l.files.contains(&r))
            } else {
                false
            };
            if !ours {
                return Err(OutputError::NotOurs {
                    path,
                    dir: target.to_path_buf(),
                    kind,
                });
            }
            if ft.is_dir() {
                below.push(r);
            }
        }
        stack.extend(below.into_iter().rev());
    }
    Ok(Survey {
        exists: true,
        listed,
    })
}

/// `target` made absolute (without resolving links), checked to end in a folder name.
fn resolve(target: &Path) -> Result<PathBuf, OutputError> {
    let abs = std::path::absolute(target).map_err(io("cannot resolve", target))?;
    if abs.file_name().is_none() || abs.parent().is_none() {
        return Err(OutputError::NoName {
            path: target.to_path_buf(),
        });
    }
    Ok(abs)
}

/// The name prefix of the staging folders of `target`: `.<name>.tmp-`.
fn staging_prefix(target: &Path) -> OsString {
    let mut s = OsString::from(".");
    s.push(target.file_name().unwrap_or_default());
    s.push(".tmp-");
    s
}

/// Removes the staging folders that stopped runs left beside `target` (restoring the target from one
/// stopped between its two renames); refuses when another live process is writing `target`.
fn recover(target: &Path) -> Result<(), OutputError> {
    let parent = target.parent().unwrap_or(Path::new("/"));
    let prefix = staging_prefix(target);
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Ok(());
    };
    let mut stale: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let rest = name.as_bytes().strip_prefix(prefix.as_bytes());
            rest.is_some_and(|r| {
                !r.is_empty() && r.iter().all(|b| b.is_ascii_digit() || *b == b'-')
            }) && e.file_type().is_ok_and(|t| t.is_dir())
        })
        .map(|e| e.path())
        .collect();
    stale.sort();
    for staging in stale {
        let lock_path = staging.join("lock");
        // A folder of that name without our lock file is not ours (or is being created): left alone.
        if !std::fs::symlink_metadata(&lock_path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let lock = File::open(&lock_path).map_err(io("cannot open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(OutputError::Busy {
                    path: target.to_path_buf(),
                    staging,
                })
            }
            Err(TryLockError::Error(e)) => return Err(io("cannot lock", &lock_path)(e)),
        }
        let old = staging.join("old");
        let target_missing = std::fs::symlink_metadata(target)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
        if target_missing && std::fs::symlink_metadata(&old).is_ok_and(|m| m.is_dir()) {
            std::fs::rename(&old, target)
                .map_err(io("cannot restore the previous output from", &old))?;
            tracing::warn!(
                "restored {} from {}: a run stopped while replacing it",
                target.display(),
                old.display()
            );
        }
        match std::fs::remove_dir_all(&staging) {
            Ok(()) => tracing::info!(
                "removed {}, left by a run that was stopped",
                staging.display()
            ),
            Err(e) => tracing::warn!("cannot remove {}: {e}", staging.display()),
        }
    }
    Ok(())
}

/// Creates this process's staging folder beside `target`, with its lock held.
fn create_staging(target: &Path) -> Result<(PathBuf, File), OutputError> {
    let parent = target.parent().unwrap_or(Path::new("/"));
    let pid = std::process::id();
    for n in 0..64 {
        let mut name = staging_prefix(target);
        name.push(pid.to_string());
        if n > 0 {
            name.push(format!("-{n}"));
        }
        let staging = parent.join(name);
        match std::fs::create_dir(&staging) {
            Ok(()) => {}
            // Another process with the same pid (another pid namespace on a shared file system).
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(io(
                    "cannot create the staging folder (the output is built beside its folder, then renamed into place)",
                    &staging,
                )(e))
            }
        }
        let lock_path = staging.join("lock");
        let mut lock = File::options()
            .write(true)
            .create_new(true)
            .open(&lock_path)
            .map_err(io("cannot create", &lock_path))?;
        lock.try_lock().map_err(|e| match e {
            TryLockError::Error(e) => io("cannot lock", &lock_path)(e),
            TryLockError::WouldBlock => OutputError::Busy {
                path: target.to_path_buf(),
                staging: staging.clone(),
            },
        })?;
        let _ = writeln!(lock, "pid {pid}");
        return Ok((staging, lock));
    }
    Err(io("cannot create a staging folder beside", target)(
        std::io::Error::new(std::io::ErrorKind::AlreadyExists, "64 names taken"),
    ))
}

/// Writes `kind`'s manifest into `dir`: every folder (with a trailing `/`) and file under it.
fn write_manifest(dir: &Path, kind: Kind) -> Result<(), OutputError> {
    let mut lines = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        for e in std::fs::read_dir(&here).map_err(io("cannot list", &here))? {
            let e = e.map_err(io("cannot list", &here))?;
            let r = rel.join(e.file_name());
            let path = dir.join(&r);
            let ft = e.file_type().map_err(io("cannot read", &path))?;
            let Some(text) = r.to_str().map(str::to_string) else {
                return Err(io("cannot list", &path)(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the name is not valid UTF-8",
                )));
            };
            if ft.is_dir() {
                lines.push(format!("{text}/"));
                stack.push(r);
            } else if ft.is_file() {
                lines.push(text);
            } else {
                return Err(io("unexpected entry (not a file or folder)", &path)(
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "refused"),
                ));
            }
        }
    }
    lines.sort();
    write_new(&dir.join(kind.manifest()), &(lines.join("\n") + "\n"))
}

/// Writes `text` into the file `path`, which must not exist yet (a manifest).
fn write_new(path: &Path, text: &str) -> Result<(), OutputError> {
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io("cannot create", path))?;
    f.write_all(text.as_bytes())
        .map_err(io("cannot write", path))
}

/// Links the files of another kind's output (`listing`, from the target) into the new folder, with its
/// manifest. Hard links: the files are neither copied nor changed; a copy where that is not possible.
fn carry(
    target: &Path,
    new: &Path,
    other: Kind,
    listing: &Listing,
    kind: Kind,
) -> Result<(), OutputError> {
    let collision = |path: PathBuf| OutputError::Collision { path, kind, other };
    for d in &listing.dirs {
        if !std::fs::symlink_metadata(target.join(d)).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let dst = new.join(d);
        match std::fs::symlink_metadata(&dst) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(collision(target.join(d))),
            Err(_) => std::fs::create_dir(&dst).map_err(io("cannot create", &dst))?,
        }
    }
    for f in &listing.files {
        let src = target.join(f);
        if !std::fs::symlink_metadata(&src).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let dst = new.join(f);
        if std::fs::symlink_metadata(&dst).is_ok() {
            return Err(collision(src));
        }
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(io("cannot copy", &src))?;
        }
    }
    write_new(&new.join(other.manifest()), &listing.text)
}

/// An output being written: a fresh folder beside its target, renamed into place by [`Staged::commit`].
/// Dropped without a commit (an error, a panic), it is removed and the target is left as it was.
#[derive(Debug)]
pub struct Staged {
    kind: Kind,
    target: PathBuf,
    staging: PathBuf,
    new: PathBuf,
    _lock: File,
    /// Set once the staging folder must no longer be removed on drop.
    keep: bool,
}

impl Staged {
    /// Checks that `target` can take an output of `kind` (see the module doc: a missing folder, or one
    /// that holds only tumor-audit outputs and no link), after clearing what stopped runs left; creates
    /// the staging folder (and the target's parent folders).
    pub fn begin(target: &Path, kind: Kind) -> Result<Staged, OutputError> {
        let target = resolve(target)?;
        let parent = target.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
        recover(&target)?;
        let survey = survey(&target, kind)?;
        let (staging, lock) = create_staging(&target)?;
        let new = staging.join("new");
        let staged = Staged {
            kind,
            target,
            staging,
            new,
            _lock: lock,
            keep: false,
        };
        std::fs::create_dir(&staged.new).map_err(io("cannot create", &staged.new))?;
        if survey.exists {
            // The replaced folder keeps its permissions.
            if let Ok(m) = std::fs::metadata(&staged.target) {
                let _ = std::fs::set_permissions(&staged.new, m.permissions());
            }
        }
        Ok(staged)
    }

    /// The folder to write the output into.
    pub fn dir(&self) -> &Path {
        &self.new
    }

    /// The folder the output will be renamed to (absolute).
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Writes the manifest, links the other kinds' outputs in, and puts the new folder in the target's
    /// place (two renames); the previous output is then removed. Returns the target.
    pub fn commit(mut self) -> Result<PathBuf, OutputError> {
        write_manifest(&self.new, self.kind)?;
        // Again: the target may have changed while the output was written.
        let survey = survey(&self.target, self.kind)?;
        for (other, listing) in survey.listed.iter().filter(|(k, _)| *k != self.kind) {
            carry(&self.target, &self.new, *other, listing, self.kind)?;
        }
        if survey.exists {
            let old = self.staging.join("old");
            std::fs::rename(&self.target, &old)
                .map_err(io("cannot move the previous output aside:", &self.target))?;
            if let Err(e) = std::fs::rename(&self.new, &self.target) {
                if let Err(back) = std::fs::rename(&old, &self.target) {
                    // Keep the staging folder: the next run puts the previous output back.
                    self.keep = true;
                    tracing::error!(
                        "cannot put the previous output back from {}: {back}; the next run will",
                        old.display()
                    );
                }
                return Err(io("cannot rename the new output to", &self.target)(e));
            }
        } else {
            std::fs::rename(&self.new, &self.target)
                .map_err(io("cannot rename the new output to", &self.target))?;
        }
        self.keep = true;
        if let Err(e) = std::fs::remove_dir_all(&self.staging) {
            tracing::warn!(
                "cannot remove {} (the previous output): {e}",
                self.staging.display()
            );
        }
        Ok(self.target.clone())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// `path` under `from` moved to the same place under `to` (an output's paths after its commit).
pub fn rebase(path: &Path, from: &Path, to: &Path) -> PathBuf {
    path.strip_prefix(from)
        .map_or_else(|_| path.to_path_buf(), |rel| to.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn stage(target: &Path, kind: Kind, files: &[(&str, &str)]) -> Result<PathBuf, OutputError> {
        let s = Staged::begin(target, kind)?;
        for (name, text) in files {
            write(&s.dir().join(name), text);
        }
        s.commit()
    }

    /// A fresh temporary folder and its output `name`, written once as `kind` with `files`.
    fn staged_once(name: &str, kind: Kind, files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().join(name);
        stage(&t, kind, files).unwrap();
        (tmp, t)
    }

    fn siblings(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn manifest_lines_must_be_plain_relative_paths() {
        assert_eq!(
            clean_relative("a/b.html"),
            Some((PathBuf::from("a/b.html"), false))
        );
        assert_eq!(clean_relative("a/"), Some((PathBuf::from("a"), true)));
        for bad in [
            "/tmp/keep.txt",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "/",
            "a/./b",
        ] {
            assert_eq!(clean_relative(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_second_output_replaces_its_own_kind_and_keeps_the_other() {
        let (tmp, t) = staged_once(
            "run",
            Kind::Export,
            &[("metrics.csv", "a"), ("mean-maps/x.png", "a")],
        );
        stage(
            &t,
            Kind::Report,
            &[("report.html", "r1"), ("report-assets/s.svg", "r1")],
        )
        .unwrap();
        // The second export has no mean maps: the first's are gone, the report is kept.
        stage(&t, Kind::Export, &[("metrics.csv", "b")]).unwrap();
        assert_eq!(read(&t.join("metrics.csv")), "b");
        assert!(!t.join("mean-maps").exists());
        assert_eq!(read(&t.join("report.html")), "r1");
        assert_eq!(read(&t.join("report-assets/s.svg")), "r1");
        assert_eq!(read(&t.join(Kind::Export.manifest())), "metrics.csv\n");
        // Nothing left beside it.
        assert_eq!(siblings(tmp.path()), vec!["run"]);
    }

    #[test]
    fn a_stale_staging_folder_is_removed_and_a_missing_target_restored() {
        let (tmp, t) = staged_once("site", Kind::Report, &[("report.html", "first")]);
        // As a run stopped between its two renames leaves it: the target moved to <staging>/old, the
        // staging lock released (its process died).
        let staging = tmp.path().join(".site.tmp-999999999");
        std::fs::create_dir_all(staging.join("new")).unwrap();
        std::fs::write(staging.join("lock"), "pid 999999999\n").unwrap();
        std::fs::rename(&t, staging.join("old")).unwrap();
        assert!(!t.exists());
        let s = Staged::begin(&t, Kind::Report).unwrap();
        assert_eq!(
            read(&t.join("report.html")),
            "first",
            "restored before the new output is written"
        );
        assert!(!staging.exists());
        // While this one runs, a second writer of the same folder is refused.
        let busy = Staged::begin(&t, Kind::Export).unwrap_err();
        assert!(matches!(busy, OutputError::Busy { .. }), "{busy}");
        write(&s.dir().join("report.html"), "second");
        s.commit().unwrap();
        assert_eq!(read(&t.join("report.html")), "second");
        assert_eq!(siblings(tmp.path()), vec!["site"]);
    }

    #[test]
    fn a_dropped_output_leaves_the_previous_one() {
        let (tmp, t) = staged_once("x", Kind::Explain, &[("montage.png", "1")]);
        {
            let s = Staged::begin(&t, Kind::Explain).unwrap();
            write(&s.dir().join("montage.png"), "2");
        }
        assert_eq!(read(&t.join("montage.png")), "1");
        assert_eq!(siblings(tmp.path()), vec!["x"]);
    }

    #[test]
    fn foreign_entries_links_and_bad_manifests_are_refused_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().join("o");
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("notes.txt"), "mine").unwrap();
        let e = Staged::begin(&t, Kind::Report).unwrap_err();
        assert!(
            matches!(&e, OutputError::NotOurs { path, .. } if path.ends_with("notes.txt")),
            "{e}"
        );
        std::fs::remove_file(t.join("notes.txt")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), t.join("views")).unwrap();
        let e = Staged::begin(&t, Kind::Report).unwrap_err();
        assert!(matches!(&e, OutputError::Link { .. }), "{e}");
        std::fs::remove_file(t.join("views")).unwrap();
        let keep = tmp.path().join("keep.txt");
        std::fs::write(&keep, "x").unwrap();
        std::fs::write(
            t.join(Kind::Report.manifest()),
            format!("{}\n", keep.display()),
        )
        .unwrap();
        let e = Staged::begin(&t, Kind::Report).unwrap_err();
        assert!(
            matches!(&e, OutputError::BadManifest { line: 1, .. }),
            "{e}"
        );
        assert!(keep.exists());
        // The target itself a link: refused.
        let link = tmp.path().join("l");
        std::os::unix::fs::symlink(&t, &link).unwrap();
        let e = Staged::begin(&link, Kind::Export).unwrap_err();
        assert!(matches!(&e, OutputError::Link { .. }), "{e}");
        assert_eq!(siblings(tmp.path()), vec!["keep.txt", "l", "o"]);
    }
}
