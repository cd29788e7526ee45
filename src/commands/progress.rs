//! Progress of a long step: a bar on a terminal, and without one (cron, Slurm, Kubernetes logs, a pipe)
//! periodic log lines through `tracing` on stderr: done / total, items per second and the time left.
//! Also the summary lines of a command, printed once whatever stdout and stderr are ([`summary`]).
//! Without a terminal the log is never silent for longer than `--log-every`: a heartbeat thread logs
//! the line again when nothing was logged for that long, with the progress inside the image being
//! explained (the running method, its forwards done / announced and their ETA; see
//! `attribution::work`), so a model that takes minutes per image still shows it is moving.
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Seconds between two progress lines without a terminal (`--log-every`).
static LOG_EVERY_SECS: AtomicU64 = AtomicU64::new(30);

/// Sets the interval of the headless progress lines (the global `--log-every` option).
pub fn set_log_every(secs: u64) {
    LOG_EVERY_SECS.store(secs.max(1), Ordering::Relaxed);
}

/// A progress bar, or its headless log lines.
pub struct Progress {
    bar: ProgressBar,
    headless: Option<Arc<Mutex<Headless>>>,
    heartbeat: Option<Heartbeat>,
}

/// The thread that logs when the log has been silent for `--log-every` seconds.
struct Heartbeat {
    stop: Arc<AtomicBool>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Heartbeat {
    /// How often the thread looks at the time of the last line (the most a gap exceeds the interval).
    const TICK: Duration = Duration::from_millis(100);

    fn spawn(h: Arc<Mutex<Headless>>) -> Heartbeat {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::park_timeout(Heartbeat::TICK);
                let mut h = lock(&h);
                if !flag.load(Ordering::Relaxed) && h.last.elapsed() >= h.every {
                    h.last = Instant::now();
                    h.log();
                }
            }
        });
        Heartbeat {
            stop,
            handle: Mutex::new(Some(handle)),
        }
    }

    /// Stops the thread and waits for it (idempotent).
    fn end(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = handle {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn lock(h: &Mutex<Headless>) -> std::sync::MutexGuard<'_, Headless> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}

struct Headless {
    what: String,
    unit: String,
    total: u64,
    done: u64,
    start: Instant,
    last: Instant,
    every: Duration,
}

impl Progress {
    /// Progress over `total` items (0 = unknown) of `unit` ("images"), labelled `what` ("auditing").
    pub fn new(total: u64, what: &str, unit: &str) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar.set_message(what.to_string());
            return Progress {
                bar,
                headless: None,
                heartbeat: None,
            };
        }
        let now = Instant::now();
        let h = Headless {
            what: what.to_string(),
            unit: unit.to_string(),
            total,
            done: 0,
            start: now,
            last: now,
            every: Duration::from_secs(LOG_EVERY_SECS.load(Ordering::Relaxed)),
        };
        if total > 0 {
            tracing::info!("{}: 0/{total} {unit}", h.what);
        }
        let h = Arc::new(Mutex::new(h));
        Progress {
            bar: ProgressBar::hidden(),
            heartbeat: Some(Heartbeat::spawn(h.clone())),
            headless: Some(h),
        }
    }

    /// The bar itself (hidden without a terminal), for library code that takes one.
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if let Some(h) = &self.headless {
            let mut h = lock(h);
            h.done += n;
            if h.last.elapsed() >= h.every {
                h.last = Instant::now();
                h.log();
            }
        }
    }

    /// Runs `f` (which may print or log) with the bar cleared, so its lines are not torn by the bar.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Removes the bar; without a terminal, logs the final count and rate.
    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
        if let Some(b) = &self.heartbeat {
            b.end();
        }
        if let Some(h) = &self.headless {
            let h = lock(h);
            if h.total > 0 || h.done > 0 {
                h.log();
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.heartbeat {
            b.end();
        }
    }
}

/// `; in this image: LIME 320/1000 forwards, 12.3/s, ETA 55s` while a method runs, else nothing.
fn within_image() -> String {
    let Some(w) = crate::attribution::work::snapshot() else {
        return String::new();
    };
    let rate = w.done as f64 / w.seconds.max(1e-9);
    let left = w.total.saturating_sub(w.done);
    let eta = if left == 0 {
        String::new()
    } else if w.done == 0 {
        ", ETA unknown".to_string()
    } else {
        format!(", ETA {}", duration(left as f64 / rate))
    };
    format!(
        "; in this image: {} {}/{} forwards, {rate:.1}/s{eta}",
        w.method, w.done, w.total
    )
}

impl Headless {
    fn log(&self) {
        let within = within_image();
        let secs = self.start.elapsed().as_secs_f64();
        let rate = self.done as f64 / secs.max(1e-9);
        if self.total == 0 {
            tracing::info!(
                "{}: {} {}, {rate:.2} {}/s{within}",
                self.what,
                self.done,
                self.unit,
                self.unit
            );
            return;
        }
        let left = self.total.saturating_sub(self.done);
        let eta = if left == 0 {
            "done".to_string()
        } else if self.done == 0 {
            "ETA unknown".to_string()
        } else {
            format!("ETA {}", duration(left as f64 / rate))
        };
        tracing::info!(
            "{}: {}/{} {} ({:.1}%), {rate:.2} {}/s, {:.0} s elapsed, {eta}{within}",
            self.what,
            self.done,
            self.total,
            self.unit,
            100.0 * self.done as f64 / self.total as f64,
            self.unit,
            secs
        );
    }
}

/// `1h 02m`, `3m 05s`, `42s`.
fn duration(secs: f64) -> String {
    let s = secs.round().max(0.0) as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

/// A summary line of a command: on stdout, and also in the log (stderr) unless both are the same file
/// (a terminal, `2>&1`, cron mail), where it would be read twice.
pub fn summary(line: &str) {
    println!("{line}");
    if !stdout_is_stderr() {
        tracing::info!("{line}");
    }
}

/// Whether stdout and stderr are the same open file (same device and inode).
fn stdout_is_stderr() -> bool {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let id = |fd: std::os::fd::BorrowedFd<'_>| {
        let f = std::fs::File::from(fd.try_clone_to_owned().ok()?);
        let m = f.metadata().ok()?;
        Some((m.dev(), m.ino()))
    };
    match (id(std::io::stdout().as_fd()), id(std::io::stderr().as_fd())) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(super::duration(42.4), "42s");
        assert_eq!(super::duration(185.0), "3m 05s");
        assert_eq!(super::duration(3720.0), "1h 02m");
    }
}
