//! A real browser for tests: headless Chromium driven through chromedriver's WebDriver API (Debian
//! packages `chromium` and `chromium-driver`, installed by `scripts/install-ci-deps.sh`). The
//! browser's console (errors of scripts, failed loads, Content-Security-Policy violations) is
//! read through chromedriver's log endpoint.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

fn find(names: &[&str]) -> Option<PathBuf> {
    for n in names {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
            let p = Path::new(dir).join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window of `width` × `height` CSS pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        let chromium = find(&["chromium", "chromium-browser"]).expect(
            "headless Chromium is needed (Debian packages chromium, chromium-driver: scripts/install-ci-deps.sh)",
        );
        let chromedriver = find(&["chromedriver"]).expect(
            "chromedriver is needed (Debian package chromium-driver: scripts/install-ci-deps.sh)",
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            rt,
            http: reqwest::Client::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while b.call("GET", "/status", None).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", b._profile.path().display()),
                    format!("--window-size={width},{height}"),
                    "--hide-scrollbars", "--force-device-scale-factor=1",
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let s = b
            .call("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("cannot start a Chromium session: {e}"));
        b.session = s["sessionId"].as_str().expect("session id").to_string();
        b
    }

    /// A WebDriver call: its `value`, or the error WebDriver reported.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body.unwrap_or(json!({}))),
        };
        self.rt.block_on(async {
            let r = req
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let ok = r.status().is_success();
            let v: Value = r.json().await.map_err(|e| e.to_string())?;
            if ok {
                Ok(v["value"].clone())
            } else {
                Err(format!(
                    "{}: {}",
                    v["value"]["error"], v["value"]["message"]
                ))
            }
        })
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `return` its result) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Waits until `script` returns `true`; panics with `what` and `explain`'s result otherwise.
    pub fn wait_for(&self, what: &str, timeout: Duration, script: &str, explain: &str) {
        let deadline = Instant::now() + timeout;
        while self.eval(script) != json!(true) {
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for: {what}; page says {}",
                    self.eval(explain)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Makes the window as tall as the page, so that a screenshot shows all of it.
    pub fn fit_to_page(&self) {
        let size = self.eval(
            "return [window.outerWidth, document.documentElement.scrollHeight + \
             window.outerHeight - window.innerHeight]",
        );
        self.session_call(
            "POST",
            "/window/rect",
            Some(json!({"width": size[0], "height": size[1]})),
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Writes a PNG of the window.
    pub fn screenshot(&self, path: &Path) {
        let b64 = self.session_call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64"))
            .expect("screenshot is base64");
        std::fs::write(path, png).unwrap();
    }

    /// Browser console entries at level SEVERE (script errors, failed loads, CSP violations),
    /// since the last call.
    pub fn console_errors(&self) -> Vec<Value> {
        let logs = self.session_call("POST", "/se/log", Some(json!({"type": "browser"})));
        logs.as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
