//! The run lock: at most one `audit` process writes a given run of a given database at a time.
//!
//! SQLite serialises the writes, but two processes auditing the same `--run` would each compute every
//! image and overwrite each other's rows. The lock is an advisory `flock` on a small file next to the
//! database (`<db>.<hash of the run name>.lock`), so the kernel releases it when the process dies, even
//! by `kill -9`: a stale file never blocks the next run. The holder removes the file while it still holds
//! the lock; a process that locked a file that was removed meanwhile notices (the path no longer names
//! the locked file) and tries again.
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Result, StoreError};

/// A held run lock; dropping it releases the lock and removes its file.
#[derive(Debug)]
pub struct RunLock {
    file: Option<File>,
    path: PathBuf,
}

impl RunLock {
    /// The lock file of `run_id` in database `db`.
    pub fn path_for(db: &Path, run_id: &str) -> PathBuf {
        let digest = Sha256::digest(run_id.as_bytes());
        let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".run-{hash}.lock"));
        db.with_file_name(name)
    }

    /// Takes the lock of `run_id` in `db` without waiting: held by another process, it is refused with
    /// what that process wrote into the file (its pid, host and start time).
    pub fn acquire(db: &Path, run_id: &str) -> Result<RunLock> {
        let path = Self::path_for(db, run_id);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: db.to_path_buf(),
                source,
            })?;
        }
        let io = |source| StoreError::LockFile {
            path: path.clone(),
            source,
        };
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    return Err(StoreError::RunLocked {
                        path: db.to_path_buf(),
                        run_id: run_id.to_string(),
                        lock: path,
                        holder: holder.trim().to_string(),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
            // The previous holder may have removed the file between our open and our lock.
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            let since = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "unknown host".into());
            file.set_len(0).map_err(io)?;
            writeln!(
                file,
                "pid {} on {host}, auditing run {run_id} since unix time {since}",
                std::process::id()
            )
            .map_err(io)?;
            return Ok(RunLock {
                file: Some(file),
                path,
            });
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked, so no other process can lock this file and think it is alone.
        let _ = std::fs::remove_file(&self.path);
        self.file = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_of_the_same_run_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.sqlite");
        let first = RunLock::acquire(&db, "nightly").unwrap();
        let e = RunLock::acquire(&db, "nightly").unwrap_err().to_string();
        assert!(
            e.contains("nightly") && e.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        // Another run of the same database is not blocked.
        let other = RunLock::acquire(&db, "nightly-2").unwrap();
        drop(first);
        assert!(!RunLock::path_for(&db, "nightly").exists());
        RunLock::acquire(&db, "nightly").unwrap();
        drop(other);
    }
}
