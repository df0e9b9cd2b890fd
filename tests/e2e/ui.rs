//! The explain page (`/ui`) in a real browser: headless Chromium driven over WebDriver by
//! fantoccini, against the in-process server on the fixture models. Each test saves a screenshot
//! under target/ui-screenshots. Without a browser the tests say so and pass, unless
//! ARMORM_REQUIRE_BROWSER is set (as `.ci/run` does, after installing Chromium and its driver).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::common::TestServer;

/// Where a binary is: `$VAR`, else the first of `names` on PATH.
fn find(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file())
}

/// A chromedriver process and one browser session; both end on drop.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Chromium outlives a killed chromedriver, so the whole process group goes (chromedriver was
    /// started as its leader): a failed test leaves no browser behind.
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.driver.id())]).status();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// None (after saying why) when no browser is installed and none is required.
    async fn start(width: u32, height: u32, extra: &[&str]) -> Option<Self> {
        let driver = find("ARMORM_CHROMEDRIVER", &["chromedriver"]);
        let chromium = find("ARMORM_CHROMIUM", &["chromium", "chromium-browser", "google-chrome"]);
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            assert!(
                std::env::var_os("ARMORM_REQUIRE_BROWSER").is_none(),
                "ARMORM_REQUIRE_BROWSER is set but chromium or chromedriver is missing (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipping the /ui browser test: no chromium and chromedriver on PATH (apt-get install chromium chromium-driver)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        // The network flags keep Chromium from calling home: CI machines have no network, and the
        // page's own test checks that it made no request outside the server.
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-crash-reporter".into(),
            "--disable-breakpad".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut caps = serde_json::Map::new();
        let mut options = json!({ "binary": chromium, "args": args });
        // Headless Chromium will not make a window narrower than 500 px, so a phone's viewport is
        // emulated: the page then lays out at exactly `width` CSS pixels. (Its screenshots show the
        // first screen only: the emulated viewport does not follow the window.)
        if width < 500 {
            options["mobileEmulation"] =
                json!({ "deviceMetrics": { "width": width, "height": height, "pixelRatio": 1.0, "mobile": true } });
        }
        caps.insert("goog:chromeOptions".into(), options);
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
                Ok(client) => break client,
                Err(e) if started.elapsed() > Duration::from_secs(30) => panic!("no WebDriver session: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Some(Self { client, driver, _profile: profile })
    }

    /// Opens `url` and waits until the page's phase is `phase`.
    async fn open(&self, url: &str, phase: &str) {
        self.client.goto(url).await.unwrap();
        self.phase(phase).await;
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    async fn text(&self, id: &str) -> String {
        self.client.find(Locator::Id(id)).await.unwrap().text().await.unwrap()
    }

    /// Waits until the page's phase (`body[data-phase]`) is `phase`.
    async fn phase(&self, phase: &str) {
        let started = Instant::now();
        loop {
            let now = self.js("return document.body.dataset.phase || ''").await;
            if now == phase {
                return;
            }
            let error = self.js("return document.getElementById('error').textContent").await;
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "page phase {now}, waiting for {phase}; error box: {error}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Nothing on the page is wider than the screen (no sideways scrolling on a phone).
    async fn fits_the_screen(&self) {
        // clientWidth is the layout viewport: a phone zooms out to fit wider content, so innerWidth
        // would grow with the overflow and hide it.
        let widths =
            self.js("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]").await;
        let (content, screen) = (widths[0].as_i64().unwrap(), widths[1].as_i64().unwrap());
        assert!(content <= screen, "page is {} px wider than a {screen} px screen", content - screen);
    }

    async fn screenshot(&self, name: &str) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        // The whole page, not only the window: resize the window to the document's height first.
        let height = self.js("return document.documentElement.scrollHeight").await.as_u64().unwrap_or(1000);
        let width = self.js("return window.innerWidth").await.as_u64().unwrap_or(1280);
        let _ = self.client.set_window_size(width as u32, height.min(8000) as u32 + 120).await;
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Every URL the page loaded or fetched (navigation and resource timing entries).
    async fn requested(&self) -> Vec<String> {
        let v = self.js("return performance.getEntries().map(e => e.name).filter(n => /^[a-z]+:/.test(n))").await;
        v.as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_string()).collect()
    }
}

/// `#j` + the percent-encoded JSON: the page's readable link format.
fn link(server: &TestServer, turns: &[(&str, &str)], responses: &[&str]) -> String {
    let state = json!({ "t": turns.iter().map(|(r, c)| [r, c]).collect::<Vec<_>>(), "r": responses });
    let mut fragment = String::from("j");
    for b in state.to_string().bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            fragment.push(b as char);
        } else {
            fragment.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{}/ui#{fragment}", server.base)
}

const PROMPT: &str = "What is the capital of France?";
const RESPONSES: [&str; 2] = ["Paris is the capital of France.", "I think it might be Lyon, or maybe Rome."];

/// The /score API's answer for the fixture prompt and `response`, with optional weights.
async fn api_score(server: &TestServer, response: &str, weights: Option<&Value>) -> Value {
    let mut body = json!({ "prompt": PROMPT, "response": response });
    if let Some(w) = weights {
        body["weights"] = w.clone();
    }
    let (status, v) = server.post("/score", &body).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn formatted(v: &Value) -> String {
    format!("{:.4}", v.as_f64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_link_scores_at_once_with_the_apis_numbers_and_nothing_external() {
    let server = TestServer::start("tiny-f32", &[]).await;
    let Some(browser) = Browser::start(1280, 1000, &[]).await else { return };
    browser.open(&link(&server, &[("user", PROMPT)], &RESPONSES), "scored").await;
    for (i, response) in RESPONSES.iter().enumerate() {
        let api = api_score(&server, response, None).await;
        assert_eq!(browser.text(&format!("score-{i}")).await, formatted(&api["score"]), "response {i}");
    }
    let (_, info) = server.get("/info").await;
    let info: Value = serde_json::from_str(&info).unwrap();
    let objectives = info["objectives"].as_array().unwrap();
    assert_eq!(objectives.len(), 19);
    let card = browser.text("card-0").await;
    let gating = browser.text("gating-bars").await;
    for name in objectives {
        let name = name.as_str().unwrap();
        assert!(card.contains(name) && gating.contains(name), "{name} missing from the page");
    }
    // The words name the objective with the largest contribution.
    let api = api_score(&server, RESPONSES[0], None).await;
    let (rewards, coefficients) = (api["rewards"].as_array().unwrap(), api["coefficients"].as_array().unwrap());
    let top = (0..19)
        .max_by(|&a, &b| {
            let c = |j: usize| (rewards[j].as_f64().unwrap() * coefficients[j].as_f64().unwrap()).abs();
            c(a).total_cmp(&c(b))
        })
        .unwrap();
    assert!(card.contains(&format!("{} p", objectives[top].as_str().unwrap())), "{card}");
    let summary = browser.text("compare-summary").await;
    assert!(summary.contains("scores") && summary.contains("decided"), "{summary}");
    browser.screenshot("explain").await;
    let requested = browser.requested().await;
    assert!(requested.len() >= 4, "{requested:?}");
    for url in &requested {
        assert!(url.starts_with(&server.base), "the page requested {url} outside the server");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_slider_by_keyboard_gives_the_custom_score_the_api_returns() {
    let server = TestServer::start("tiny-f32", &[]).await;
    let Some(browser) = Browser::start(1280, 1000, &[]).await else { return };
    browser.open(&link(&server, &[("user", PROMPT)], &RESPONSES), "scored").await;
    let slider = browser.client.find(Locator::Id("weight-8")).await.unwrap();
    for _ in 0..20 {
        slider.send_keys(&Key::Right.to_string()).await.unwrap();
    }
    // The debounced request, then its answer.
    let started = Instant::now();
    while browser.js("return document.getElementById('custom-0') === null").await == true {
        assert!(started.elapsed() < Duration::from_secs(30), "no custom score appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.phase("scored").await;
    let weights = browser
        .js("return Object.fromEntries([...document.querySelectorAll('#sliders input')].map(i => [i.dataset.objective, Number(i.value)]))")
        .await;
    assert_eq!(weights.as_object().unwrap().len(), 19);
    for (i, response) in RESPONSES.iter().enumerate() {
        let api = api_score(&server, response, Some(&weights)).await;
        assert_eq!(browser.text(&format!("custom-{i}")).await, formatted(&api["custom_score"]), "response {i}");
        // The model's own score is unchanged by re-weighting.
        assert_eq!(browser.text(&format!("score-{i}")).await, formatted(&api["score"]));
    }
    let custom_before = browser.text("custom-0").await;
    // The link now carries the weights: opening it in a fresh page reproduces the custom score.
    let url = browser.client.current_url().await.unwrap().to_string();
    assert!(url.contains("/ui#z"), "{url}");
    browser.screenshot("reweighted").await;
    browser.client.goto("about:blank").await.unwrap();
    browser.open(&url, "scored").await;
    assert_eq!(browser.text("custom-0").await, custom_before);
    // Reset: back to the model's gating, no custom score.
    browser.client.find(Locator::Id("reset-weights")).await.unwrap().click().await.unwrap();
    assert_eq!(browser.js("return document.getElementById('custom-0') === null").await, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_conversation_shows_the_servers_422_message() {
    let server = TestServer::start("tiny-f32", &[]).await;
    let Some(browser) = Browser::start(1280, 900, &[]).await else { return };
    browser.open(&link(&server, &[("moderator", PROMPT)], &RESPONSES[..1]), "error").await;
    let (status, api) = server
        .post("/rank", &json!({"messages": [{"role": "moderator", "content": PROMPT}], "responses": [RESPONSES[0]]}))
        .await;
    assert_eq!(status, 422);
    let shown = browser.text("error").await;
    assert!(shown.contains("422"), "{shown}");
    assert!(shown.contains(api["error"]["message"].as_str().unwrap()), "{shown} lacks {api}");
    assert!(shown.contains(api["error"]["code"].as_str().unwrap()), "{shown}");
    browser.screenshot("invalid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bradley_terry_model_shows_score_and_rank_with_the_reason_there_is_no_breakdown() {
    let server = TestServer::start("tiny-bt", &[]).await;
    let Some(browser) = Browser::start(390, 844, &[]).await else { return };
    browser.open(&link(&server, &[("user", PROMPT)], &RESPONSES), "scored").await;
    let (_, api) = server.post("/score", &json!({"prompt": PROMPT, "response": RESPONSES[1]})).await;
    assert_eq!(browser.text("score-1").await, formatted(&api["score"]));
    assert!(browser.text("no-breakdown").await.contains("Bradley-Terry"));
    for hidden in ["gating", "weights", "cards"] {
        let shown = browser.client.find(Locator::Id(hidden)).await.unwrap().is_displayed().await.unwrap();
        assert!(!shown, "{hidden} is shown for a single-score model");
    }
    browser.fits_the_screen().await;
    browser.screenshot("bradley-terry-phone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_asks_for_the_api_key_once_and_keeps_it_out_of_the_url() {
    let server = TestServer::start("tiny-f32", &["--api-key", "s3cret-key"]).await;
    let Some(browser) = Browser::start(1280, 900, &[]).await else { return };
    let url = link(&server, &[("user", PROMPT)], &RESPONSES[..1]);
    browser.open(&url, "error").await;
    assert!(browser.text("error").await.contains("401"));
    let input = browser.client.find(Locator::Id("key-input")).await.unwrap();
    input.send_keys("s3cret-key").await.unwrap();
    input.send_keys(&Key::Enter.to_string()).await.unwrap();
    browser.phase("scored").await;
    let (_, api) = server.post("/score", &json!({"prompt": PROMPT, "response": RESPONSES[0]})).await;
    assert_eq!(api["error"]["code"], "unauthorized", "the test's own request has no key");
    let current = browser.client.current_url().await.unwrap().to_string();
    assert!(!current.contains("s3cret"), "{current}");
    // A reload in the same tab does not ask again.
    browser.client.refresh().await.unwrap();
    browser.phase("scored").await;
    let asks = browser.client.find(Locator::Id("key-form")).await.unwrap().is_displayed().await.unwrap();
    assert!(!asks, "the key was asked for again after a reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_the_systems_dark_mode_and_fits_a_phone() {
    let server = TestServer::start("tiny-f32", &[]).await;
    // On a phone, so that the full explanation (bars, gating, sliders) is also held to its width.
    let Some(browser) = Browser::start(390, 844, &["--force-dark-mode"]).await else { return };
    browser.open(&link(&server, &[("user", PROMPT)], &RESPONSES), "scored").await;
    let background = browser.js("return getComputedStyle(document.body).backgroundColor").await;
    assert_eq!(background, "rgb(15, 17, 21)", "the dark palette's background");
    browser.fits_the_screen().await;
    browser.screenshot("dark").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_locked_to_this_server_without_the_key_and_no_ui_turns_it_off() {
    let server = TestServer::start("tiny-f32", &["--api-key", "k"]).await;
    for (path, kind) in [("/ui", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")] {
        let resp = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path} needs no key");
        let header = |name: &str| resp.headers()[name].to_str().unwrap().to_string();
        assert!(header("content-type").starts_with(kind), "{path}");
        assert!(header("content-security-policy").contains("default-src 'none'"), "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff");
    }
    let (status, _) = server.get("/info").await;
    assert_eq!(status, 401, "the API itself still needs the key");
    let off = TestServer::start("tiny-f32", &["--no-ui"]).await;
    for path in ["/ui", "/ui/app.js"] {
        let resp = off.client.get(off.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairwise_model_shows_preferences_between_responses_not_scores() {
    let server = TestServer::start("tiny-pairwise", &[]).await;
    let Some(browser) = Browser::start(390, 844, &[]).await else { return };
    let responses = ["Boil water and steep the leaves.", "Sure, mix them.", "Guten Morgen!"];
    browser.open(&link(&server, &[("user", "How do I make tea?")], &responses), "scored").await;
    let body = json!({"messages": [{"role": "user", "content": "How do I make tea?"}], "responses": responses});
    let (status, api) = server.post("/rank", &body).await;
    assert_eq!(status, 200, "{api}");
    for i in 0..responses.len() {
        assert_eq!(browser.text(&format!("score-{i}")).await, formatted(&api["scores"][i]));
    }
    assert_eq!(browser.text("p-0-1").await, formatted(&api["preferences"][0][1]));
    assert!(browser.text("no-breakdown").await.contains("pairwise preference model"));
    assert!(browser.text("model-line").await.contains("pairwise"));
    for hidden in ["gating", "weights", "compare", "cards"] {
        let shown = browser.client.find(Locator::Id(hidden)).await.unwrap().is_displayed().await.unwrap();
        assert!(!shown, "{hidden} is shown for a pairwise model");
    }
    browser.fits_the_screen().await;
    browser.screenshot("pairwise-phone").await;
}
