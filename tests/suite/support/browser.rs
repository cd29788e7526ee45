//! A page as a person's browser sees it: headless Chromium driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: commands on fd 3, answers on fd 4, NUL-separated JSON), std only.
//!
//! [`Browser::visit`] opens a page, scrolls through it so that lazy images load, and reports console
//! messages (errors, warnings, uncaught exceptions, browser log entries such as "Failed to load
//! resource" or a Content-Security-Policy violation), failed requests, images that did not decode,
//! JavaScript dialogs, and the answer of a probe expression evaluated in the page.
//! [`Browser::visit_at`] does the same in a window of a given width and can save a screenshot of the
//! whole page (`Page.captureScreenshot` beyond the viewport).
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The Chromium binary, or a failed test saying how to get one: the browser checks are part of the
/// suite, not optional (`make test` provides the pinned headless Chromium under .deps/chromium when
/// none is found; run by hand, `bash scripts/setup-chromium.sh` does the same).
pub fn require_chromium() -> PathBuf {
    chromium().expect(
        "the report's browser checks need Chromium: `make chromium` (or `bash scripts/setup-chromium.sh`) \
         installs Debian's headless shell into .deps/chromium without root; or install Chromium (Debian: \
         apt-get install chromium) or set CHROMIUM=/path/to/chromium",
    )
}

/// Where `scripts/setup-chromium.sh` puts the pinned headless Chromium (its wrapper script).
pub fn pinned_chromium() -> PathBuf {
    super::repo(".deps/chromium/bin/chromium")
}

/// The Chromium binary: `$CHROMIUM`, else `chromium` / `chromium-browser` / `google-chrome` on PATH,
/// else the pinned one under .deps/chromium.
pub fn chromium() -> Option<PathBuf> {
    find_chromium(|k| std::env::var_os(k))
}

/// [`chromium`] with the environment given by `env`.
pub fn find_chromium(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    if let Some(p) = env("CHROMIUM").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    if let Some(path) = env("PATH") {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            for dir in std::env::split_paths(&path) {
                let p = dir.join(name);
                if p.is_file() {
                    return Some(p);
                }
            }
        }
    }
    let pinned = pinned_chromium();
    pinned.is_file().then_some(pinned)
}

/// Flags for every headless run: no sandbox (CI runs as root), no GPU, no first-run UI, nothing that
/// would reach the network on its own.
fn common_flags(profile: &Path) -> Vec<String> {
    vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-extensions".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--hide-scrollbars".into(),
        "--mute-audio".into(),
        format!("--user-data-dir={}", profile.display()),
    ]
}

/// A full-window screenshot with Chromium's own `--screenshot` (lazy images in the window load).
pub fn screenshot(bin: &Path, url: &str, png: &Path, width: u32, height: u32) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args(common_flags(profile.path()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium --screenshot");
    assert!(
        png.is_file(),
        "no screenshot from chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The DOM after load, as `chromium --dump-dom` prints it.
pub fn dump_dom(bin: &Path, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args(common_flags(profile.path()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium --dump-dom");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a page did while it loaded and was scrolled through.
#[derive(Debug, Default)]
pub struct Visit {
    /// Console errors and warnings, uncaught exceptions, browser log entries of level error/warning.
    pub console: Vec<String>,
    /// Requests that failed (`Network.loadingFailed`) or answered with an HTTP error status.
    pub failed_requests: Vec<String>,
    /// `<img>` elements that finished without a decodable picture.
    pub broken_images: Vec<String>,
    /// Every URL the page requested.
    pub requested: Vec<String>,
    /// alert / confirm / prompt dialogs the page opened.
    pub dialogs: Vec<String>,
    /// The value of the probe expression.
    pub probe: Value,
}

impl Visit {
    pub fn is_clean(&self) -> bool {
        self.console.is_empty()
            && self.failed_requests.is_empty()
            && self.broken_images.is_empty()
            && self.dialogs.is_empty()
    }
}

pub struct Browser {
    child: Child,
    input: ChildStdin,
    rx: Receiver<Value>,
    next_id: u64,
    backlog: Vec<Value>,
    _profile: tempfile::TempDir,
}

const TIMEOUT: Duration = Duration::from_secs(60);

impl Browser {
    pub fn launch(bin: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        // The shell moves our pipes to fds 3 (commands) and 4 (answers), where Chromium expects them.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(bin)
            .args(common_flags(profile.path()))
            .args(["--remote-debugging-pipe", "--window-size=1400,1000"])
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let input = child.stdin.take().unwrap();
        let output = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(output);
            let mut buf = Vec::new();
            while let Ok(n) = r.read_until(0, &mut buf) {
                if n == 0 {
                    break;
                }
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                buf.clear();
            }
        });
        Browser {
            child,
            input,
            rx,
            next_id: 0,
            backlog: Vec::new(),
            _profile: profile,
        }
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let mut msg = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.input.write_all(&bytes).expect("write to chromium");
        self.input.flush().unwrap();
        self.next_id
    }

    /// Handles a message that is not the answer being waited for: dialogs are dismissed at once (a
    /// page blocked on alert() would stop answering), everything is kept for the report.
    fn keep(&mut self, v: Value) {
        if v["method"] == "Page.javascriptDialogOpening" {
            let session = v["sessionId"].as_str().map(str::to_string);
            self.send(
                session.as_deref(),
                "Page.handleJavaScriptDialog",
                json!({"accept": false}),
            );
        }
        self.backlog.push(v);
    }

    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.send(session, method, params);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) if v["id"] == json!(id) => {
                    assert!(v.get("error").is_none(), "{method}: {}", v["error"]);
                    return v["result"].clone();
                }
                Ok(v) => self.keep(v),
                Err(RecvTimeoutError::Timeout) => panic!("chromium did not answer {method}"),
                Err(RecvTimeoutError::Disconnected) => panic!("chromium exited during {method}"),
            }
        }
    }

    fn wait_event(&mut self, method: &str) {
        if self.backlog.iter().any(|v| v["method"] == method) {
            return;
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) => {
                    let hit = v["method"] == method;
                    self.keep(v);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!("no {method} from chromium"),
            }
        }
    }

    /// Collects what arrives during `d`.
    fn settle(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while let Ok(v) = self
            .rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            self.keep(v);
        }
    }

    /// Opens `url` in a new tab (1400 x 1000), scrolls to the end so that every lazy image loads,
    /// waits for the images, evaluates `probe` (an expression whose value is JSON-serialisable) and
    /// reports what happened.
    pub fn visit(&mut self, url: &str, probe: &str) -> Visit {
        self.visit_with(url, probe, true)
    }

    /// [`Browser::visit`] with or without scrolling: without, only what a reader loads on opening the
    /// page (lazy images below the window stay unloaded).
    pub fn visit_with(&mut self, url: &str, probe: &str, scroll: bool) -> Visit {
        self.visit_at(url, probe, scroll, 1400, None)
    }

    /// [`Browser::visit_with`] in a window `width` pixels wide (1000 high); with `shot`, after the
    /// probe, a PNG of the whole page (its full height, at most 16000 pixels) is written there.
    pub fn visit_at(
        &mut self,
        url: &str,
        probe: &str,
        scroll: bool,
        width: u32,
        shot: Option<&Path>,
    ) -> Visit {
        self.backlog.clear();
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        let sid = attached["sessionId"].as_str().unwrap().to_string();
        let s = Some(sid.as_str());
        for domain in ["Page", "Runtime", "Log", "Network"] {
            self.call(s, &format!("{domain}.enable"), json!({}));
        }
        self.call(
            s,
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
        );
        let nav = self.call(s, "Page.navigate", json!({"url": url}));
        let mut visit = Visit::default();
        if let Some(e) = nav["errorText"].as_str() {
            visit.failed_requests.push(format!("{url}: {e}"));
        }
        self.wait_event("Page.loadEventFired");
        // Scroll like a reader, then wait until every image has loaded or failed.
        let scroll_js = if scroll {
            "for (let y = 0; y <= document.documentElement.scrollHeight; y += 700) { window.scrollTo(0, y); await pause(15); } \
             window.scrollTo(0, document.documentElement.scrollHeight);"
        } else {
            ""
        };
        let scrolled = self.call(
            s,
            "Runtime.evaluate",
            json!({
                "expression": format!(r#"(async () => {{
                    const pause = ms => new Promise(r => setTimeout(r, ms));
                    {scroll_js}
                    await pause(300);
                    const wanted = Array.from(document.images).filter(i => {scroll} || i.loading !== 'lazy'
                        || i.getBoundingClientRect().top < window.innerHeight);
                    await Promise.all(wanted.map(i => i.complete ? null :
                        new Promise(r => {{ i.addEventListener('load', r); i.addEventListener('error', r); }})));
                    return wanted.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'));
                }})()"#),
                "awaitPromise": true,
                "returnByValue": true,
            }),
        );
        if let Some(broken) = scrolled["result"]["value"].as_array() {
            visit.broken_images = broken.iter().map(|b| b.to_string()).collect();
        }
        let probe = self.call(
            s,
            "Runtime.evaluate",
            json!({"expression": probe, "returnByValue": true}),
        );
        visit.probe = probe["result"]["value"].clone();
        if let Some(png) = shot {
            // Back to the top, so that the sticky navigation is drawn where a reader first sees it.
            self.call(
                s,
                "Runtime.evaluate",
                json!({"expression": "window.scrollTo(0, 0)", "returnByValue": true}),
            );
            let metrics = self.call(s, "Page.getLayoutMetrics", json!({}));
            let height = metrics["cssContentSize"]["height"]
                .as_f64()
                .unwrap_or(1000.0)
                .clamp(1.0, 16000.0);
            let image = self.call(
                s,
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true,
                       "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}),
            );
            let data = image["data"].as_str().expect("screenshot data");
            std::fs::write(png, base64_decode(data)).expect("write screenshot");
        }
        self.settle(Duration::from_millis(300));
        let mut urls = std::collections::HashMap::new();
        for v in std::mem::take(&mut self.backlog) {
            let p = &v["params"];
            match v["method"].as_str().unwrap_or("") {
                "Runtime.consoleAPICalled" => {
                    let kind = p["type"].as_str().unwrap_or("");
                    if matches!(kind, "error" | "warning" | "assert") {
                        visit.console.push(format!("console.{kind}: {}", p["args"]));
                    }
                }
                "Runtime.exceptionThrown" => {
                    visit
                        .console
                        .push(format!("exception: {}", p["exceptionDetails"]));
                }
                "Log.entryAdded" => {
                    let level = p["entry"]["level"].as_str().unwrap_or("");
                    if matches!(level, "error" | "warning") {
                        visit.console.push(format!(
                            "log {level}: {} {}",
                            p["entry"]["text"], p["entry"]["url"]
                        ));
                    }
                }
                "Network.requestWillBeSent" => {
                    let u = p["request"]["url"].as_str().unwrap_or("").to_string();
                    urls.insert(p["requestId"].to_string(), u.clone());
                    visit.requested.push(u);
                }
                "Network.loadingFailed" => {
                    let u = urls.get(&p["requestId"].to_string()).cloned();
                    visit.failed_requests.push(format!(
                        "{}: {}",
                        u.unwrap_or_default(),
                        p["errorText"]
                    ));
                }
                "Network.responseReceived" => {
                    let status = p["response"]["status"].as_i64().unwrap_or(0);
                    if status >= 400 {
                        visit
                            .failed_requests
                            .push(format!("{}: HTTP {status}", p["response"]["url"]));
                    }
                }
                "Page.javascriptDialogOpening" => {
                    visit
                        .dialogs
                        .push(format!("{}: {}", p["type"], p["message"]));
                }
                _ => {}
            }
        }
        self.call(None, "Target.closeTarget", json!({"targetId": target_id}));
        visit
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.send(None, "Browser.close", json!({}));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (the screenshot's encoding), std only.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c) << (18 - 6 * i);
        }
        let n = chunk.len().saturating_sub(1);
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    out
}
