//! A real headless Chromium driven through chromedriver's WebDriver HTTP API (W3C), with plain
//! JSON calls: start a session, open a page, find elements by CSS, click, read text, take
//! screenshots. Debian's `chromium` and `chromium-driver` packages provide both programs;
//! `e2e/install-chromium.sh` installs them.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine;
use serde_json::{Value, json};

use super::harness::free_port;

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where `program` is on `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file())
}

/// A chromedriver process and one browser session; both end when dropped.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
    pub log: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session in a 1280×1000 window.
    /// Panics, naming the script that installs them, when chromium or chromedriver is missing.
    pub async fn start(name: &str) -> Browser {
        let (Some(_), Some(driver)) = (on_path("chromium"), on_path("chromedriver")) else {
            panic!(
                "chromium and chromedriver must be on PATH for this test: run e2e/install-chromium.sh \
                 (it installs Debian's chromium and chromium-driver packages)"
            );
        };
        let port = free_port();
        let log = std::env::temp_dir().join(format!("chromedriver-{name}.log"));
        let out = std::fs::File::create(&log).expect("a log file");
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::from(out.try_clone().expect("log handle")))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let http =
            veer::http::client_builder().timeout(Duration::from_secs(60)).build().expect("an HTTP client");
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser { http, base, session: String::new(), driver: child, log };
        super::wait_for("chromedriver to be ready", Duration::from_secs(30), || async {
            match browser.call(reqwest::Method::GET, "/status", None).await {
                Ok(v) if v["ready"] == true => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                "--force-device-scale-factor=1",
            ]},
        }}});
        let session = browser
            .call(reqwest::Method::POST, "/session", Some(capabilities))
            .await
            .unwrap_or_else(|e| panic!("cannot start a Chromium session: {e}\n{}", browser.tail()));
        browser.session = session["sessionId"].as_str().expect("a session id").to_string();
        browser
    }

    /// The end of chromedriver's log.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// One WebDriver command: its `value`, or the error it answered.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let answer: Value = response.json().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(answer["value"].clone())
        } else {
            Err(format!("{status}: {}", answer["value"]))
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, &self.path("/url"), Some(json!({"url": url})))
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// The first element matching `css`, if any.
    async fn find(&self, css: &str) -> Result<String, String> {
        let found = self
            .call(
                reqwest::Method::POST,
                &self.path("/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        found[ELEMENT].as_str().map(str::to_string).ok_or_else(|| format!("no element reference in {found}"))
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> Result<String, String> {
        let element = self.find(css).await?;
        let text =
            self.call(reqwest::Method::GET, &self.path(&format!("/element/{element}/text")), None).await?;
        Ok(text.as_str().unwrap_or_default().to_string())
    }

    /// Whether the first element matching `css` is enabled (a button without `disabled`).
    pub async fn enabled(&self, css: &str) -> Result<bool, String> {
        let element = self.find(css).await?;
        let v =
            self.call(reqwest::Method::GET, &self.path(&format!("/element/{element}/enabled")), None).await?;
        v.as_bool().ok_or_else(|| format!("not a boolean: {v}"))
    }

    /// Clicks the first element matching `css`; retried while the page swaps its content (the
    /// element found a moment ago is then stale).
    pub async fn click(&self, css: &str) {
        super::wait_for(&format!("a click on {css}"), Duration::from_secs(10), || async {
            let element = self.find(css).await?;
            self.call(
                reqwest::Method::POST,
                &self.path(&format!("/element/{element}/click")),
                Some(json!({})),
            )
            .await
            .map(|_| ())
        })
        .await;
    }

    /// Waits until the text of `css` satisfies `ok`, and returns it.
    pub async fn wait_text(&self, css: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        super::wait_for(&format!("the text of {css}"), timeout, || async {
            let text = self.text(css).await?;
            if ok(&text) { Ok(text) } else { Err(format!("{text:?} after {:?}", start.elapsed())) }
        })
        .await
    }

    /// Runs `script` (an async WebDriver script: it calls its last argument with the result) in
    /// the page, with `args`, and returns its result.
    pub async fn execute_async(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            &self.path("/execute/async"),
            Some(json!({"script": script, "args": args})),
        )
        .await
        .unwrap_or_else(|e| panic!("the script failed: {e}"))
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        let data = self
            .call(reqwest::Method::GET, &self.path("/screenshot"), None)
            .await
            .unwrap_or_else(|e| panic!("no screenshot: {e}"));
        base64::engine::general_purpose::STANDARD.decode(data.as_str().expect("base64")).expect("a PNG")
    }

    /// Saves a screenshot of the whole page (the window made as tall as the page, up to 4,000
    /// pixels, for the shot) as `file` in `dir` and returns its path.
    pub async fn save_page_screenshot(&self, dir: &Path, file: &str) -> PathBuf {
        let height = self
            .call(
                reqwest::Method::POST,
                &self.path("/execute/sync"),
                Some(json!({"script": "return document.documentElement.scrollHeight", "args": []})),
            )
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .unwrap_or(1000);
        let rect = self.path("/window/rect");
        let resize = |height: u64| {
            let size = json!({"width": 1280, "height": height.clamp(600, 4000)});
            self.call(reqwest::Method::POST, &rect, Some(size))
        };
        resize(height).await.unwrap_or_else(|e| panic!("cannot resize the window: {e}"));
        let path = self.save_screenshot(dir, file).await;
        resize(1000).await.unwrap_or_else(|e| panic!("cannot resize the window: {e}"));
        path
    }

    /// Saves a screenshot as `file` in `dir` and returns its path.
    pub async fn save_screenshot(&self, dir: &Path, file: &str) -> PathBuf {
        let png = self.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::create_dir_all(dir).expect("the screenshot directory");
        let path = dir.join(file);
        std::fs::write(&path, png).expect("the screenshot written");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the session first, so that chromedriver stops Chromium; a plain blocking request,
        // since the async runtime may be gone.
        if !self.session.is_empty()
            && let Ok(mut s) = std::net::TcpStream::connect(self.base.trim_start_matches("http://"))
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.session,
                self.base.trim_start_matches("http://")
            );
            if s.write_all(request.as_bytes()).is_ok() {
                let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        if std::thread::panicking() {
            eprintln!("---- last lines of chromedriver ({}) ----\n{}", self.log.display(), self.tail());
        }
    }
}
