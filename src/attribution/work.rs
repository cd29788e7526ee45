//! Progress inside one image: which method is running and how many of its forwards are done, for
//! the headless progress log of a slow model (one image longer than `--log-every`; see
//! `commands::progress`). The method's scope is opened by [`begin`]; the batch loops announce the
//! forwards they will run ([`plan`], as soon as they know them: LIME and Kernel SHAP run each
//! distinct coalition once) and count those done ([`done`]). One process-wide record: the methods
//! of an image run one after the other on the calling thread.
use std::sync::Mutex;
use std::time::Instant;

struct State {
    method: String,
    done: u64,
    total: u64,
    start: Instant,
    /// Which [`begin`] opened it (a scope closes only its own record).
    id: u64,
}

static CURRENT: Mutex<Option<State>> = Mutex::new(None);
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn current() -> std::sync::MutexGuard<'static, Option<State>> {
    CURRENT.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running method's progress, as [`snapshot`] reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The method's title (`LIME`, `Integrated Gradients`).
    pub method: String,
    /// Forwards done and announced so far (one image or perturbed sample = one forward).
    pub done: u64,
    pub total: u64,
    /// Seconds since the method started on this image.
    pub seconds: f64,
}

/// Closes its method's record when dropped.
pub struct Scope {
    id: u64,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let mut c = current();
        if c.as_ref().is_some_and(|s| s.id == self.id) {
            *c = None;
        }
    }
}

/// Opens the record of `method` (replacing any other): no forwards announced yet.
pub fn begin(method: &str) -> Scope {
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    *current() = Some(State {
        method: method.to_string(),
        done: 0,
        total: 0,
        start: Instant::now(),
        id,
    });
    Scope { id }
}

/// Announces `n` more forwards of the running method (a no-op outside a scope).
pub fn plan(n: u64) {
    if let Some(s) = current().as_mut() {
        s.total += n;
    }
}

/// Counts `n` forwards done.
pub fn done(n: u64) {
    if let Some(s) = current().as_mut() {
        s.done += n;
    }
}

/// The running method's progress, `None` between methods.
pub fn snapshot() -> Option<Snapshot> {
    current().as_ref().map(|s| Snapshot {
        method: s.method.clone(),
        done: s.done,
        total: s.total,
        seconds: s.start.elapsed().as_secs_f64(),
    })
}
