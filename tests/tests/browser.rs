//! The node's web page in a real browser: headless Chromium driven over WebDriver
//! (chromedriver), against the real `ponte-node serve` of one node of a two-node federation with
//! the real coordinator, over HTTPS with the node's development certificate.
//!
//! A case worker of ASL Lecce logs in (a wrong credential first), finds a person by codice
//! fiscale and by surname, name and birth date with a typo, asks who else takes care of them and
//! sees the Comune di Lecce's relationship; registers a new intake for a person only the Comune
//! knows and sees the Comune's relationship for them; records and revokes a consent, obscures and
//! unobscures a relationship; logs out. Along the way: the page loads nothing from elsewhere,
//! keeps nothing in localStorage, logs nothing identifying to the console, and fits a narrow
//! screen.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages `chromium` and
//! `chromium-driver`). Without them the test says it is skipped and passes, unless
//! `PONTE_REQUIRE_BROWSER=1` (set by `.ci/run`), when it fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ponte_e2e::*;
use ponte_node::normalise::Sex;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long any single expectation about the page may take to come true.
const WAIT: Duration = Duration::from_secs(20);

/// Person X: in care at both the ASL and the Comune, same identity.
fn x_cf() -> String {
    cf("Rossi", "Mario", Sex::M, 1940, 2, 11, "E506")
}

/// Person Y: in care at the Comune only (until the ASL registers an intake in the page).
fn y_cf() -> String {
    cf("Quarta", "Addolorata", Sex::F, 1935, 7, 30, "D862")
}

fn asl_rows() -> Vec<String> {
    vec![
        format!("P1;R1;Rossi;Mario;M;1940-02-11;Lecce;{};cure_domiciliari;attiva;2024-03-01;distretto-lecce;S", x_cf()),
        "P2;R2;Greco;Cosimo;M;1950-12-01;Maglie;;residenziale_rsa;attiva;2023-01-15;distretto-lecce;N".to_string(),
    ]
}

fn comune_rows() -> Vec<String> {
    vec![
        format!("C1;S1;ROSSI;MARIO;M;1940-02-11;LECCE;{};assistenza_domiciliare_sociale;attiva;2024-01-10;servizio-sociale;S", x_cf()),
        format!("C2;S2;QUARTA;ADDOLORATA;F;1935-07-30;GALATINA;{};segretariato_sociale;attiva;2023-05-02;segretariato;S", y_cf()),
    ]
}

/// Whether the browser is installed; fails when it must be (`PONTE_REQUIRE_BROWSER=1`).
fn browser_installed() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER].into_iter().filter(|p| !Path::new(p).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("PONTE_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!(
            "PONTE_REQUIRE_BROWSER=1 but {} missing: install the Debian packages chromium and chromium-driver",
            missing.join(" and ")
        );
    }
    eprintln!(
        "skipped: install chromium and chromium-driver (Debian packages) to run the browser test ({} missing)",
        missing.join(" and ")
    );
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A child process killed (with its whole process group: Chromium's renderers, chromedriver's
/// browser) when dropped, also when the test panics.
struct Killed {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Killed {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Killed {
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Killed { name, child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if the process has exited.
    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}); its output:\n{}", self.name, self.log_text());
        }
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        // The process group has the child's id (process_group(0) above): only what we started.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_port(addr: &str, process: &mut Killed) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        process.check_alive();
        assert!(Instant::now() < deadline, "{} does not listen on {addr}; its output:\n{}", process.name, process.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

// -----------------------------------------------------------------------------------------------
// A minimal WebDriver client: HTTP/1.1 over a plain TCP connection to chromedriver on loopback,
// one connection per command. Enough for navigation, finding elements, clicking, typing and
// running scripts; no TLS, no dependency.

/// A WebDriver error: its W3C error code and a message naming the command.
#[derive(Debug)]
struct WdError {
    error: String,
    message: String,
}

fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value, WdError> {
    let transport = |e: std::io::Error| WdError { error: "transport".into(), message: format!("{method} {path}: {e}") };
    let mut stream = TcpStream::connect(addr).map_err(transport)?;
    stream.set_read_timeout(Some(Duration::from_secs(90))).map_err(transport)?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(transport)?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).map_err(transport)?;
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (mut length, mut chunked) = (None, false);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(transport)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse::<usize>().ok();
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut raw = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).map_err(transport)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).map_err(transport)?;
            raw.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = length {
        raw.resize(n, 0);
        reader.read_exact(&mut raw).map_err(transport)?;
    } else {
        reader.read_to_end(&mut raw).map_err(transport)?;
    }
    let v: Value = serde_json::from_slice(&raw)
        .map_err(|e| WdError { error: "bad response".into(), message: format!("{method} {path}: HTTP {status}: {e}: {}", String::from_utf8_lossy(&raw)) })?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if status != 200 {
        return Err(WdError {
            error: value["error"].as_str().unwrap_or("unknown error").to_string(),
            message: format!("{method} {path}: {}: {}", value["error"].as_str().unwrap_or_default(), value["message"].as_str().unwrap_or_default()),
        });
    }
    Ok(value)
}

/// The W3C WebDriver key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver session, deleted (closing Chromium) when dropped; the driver process after it.
struct Browser {
    addr: String,
    session: String,
    _driver: Killed,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(&self.addr, "DELETE", &format!("/session/{}", self.session), None);
    }
}

impl Browser {
    fn start(dir: &Path) -> Browser {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut driver = Killed::spawn(
            "chromedriver",
            Command::new(CHROMEDRIVER).arg(format!("--port={port}")),
            dir.join("chromedriver.log"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            driver.check_alive();
            if http(&addr, "GET", "/status", None).is_ok_and(|v| v["ready"] == true) {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver is not ready on {addr}:\n{}", driver.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--lang=it-IT".into(),
            "--window-size=1280,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "pageLoadStrategy": "normal",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let created = http(&addr, "POST", "/session", Some(&caps)).unwrap_or_else(|e| panic!("{}\n{}", e.message, driver.log_text()));
        let session = created["sessionId"].as_str().expect("a session id").to_string();
        Browser { addr, session, _driver: driver, _profile: profile }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        http(&self.addr, method, &format!("/session/{}{path}", self.session), body.as_ref())
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).unwrap();
    }

    fn js(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({"script": script, "args": args}))).unwrap_or_else(|e| panic!("{}", e.message))
    }

    fn find(&self, css: &str) -> Option<String> {
        match self.cmd("POST", "/element", Some(json!({"using": "css selector", "value": css}))) {
            Ok(v) => Some(v[ELEMENT_KEY].as_str().unwrap().to_string()),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("{}", e.message),
        }
    }

    /// Waits for `f` to give a value, up to [`WAIT`]; panics with what the page shows.
    fn wait<T>(&self, what: &str, mut f: impl FnMut(&Browser) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out after {WAIT:?} waiting for {what}; the page shows:\n{}", self.page_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The element once it is displayed.
    fn visible(&self, css: &str) -> String {
        self.wait(&format!("{css} to be visible"), |b| {
            let shown = b.js("const e = document.querySelector(arguments[0]); return !!e && e.getClientRects().length > 0;", json!([css]));
            if shown == true { b.find(css) } else { None }
        })
    }

    fn click(&self, css: &str) {
        // Re-found on a stale reference: the page re-renders lists.
        self.wait(&format!("a click on {css}"), |b| {
            let id = b.visible(css);
            match b.cmd("POST", &format!("/element/{id}/click"), Some(json!({}))) {
                Ok(_) => Some(()),
                Err(e) if e.error == "stale element reference" || e.error == "element click intercepted" => None,
                Err(e) => panic!("{}", e.message),
            }
        })
    }

    /// Clears a field and types into it, key by key.
    fn type_into(&self, css: &str, text: &str) {
        let id = self.visible(css);
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({}))).unwrap();
        self.cmd("POST", &format!("/element/{id}/value"), Some(json!({"text": text}))).unwrap();
    }

    /// Picks an option of a select (toggles it, in a multiple select), as a click does.
    fn choose(&self, select_css: &str, value: &str) {
        self.visible(select_css);
        let css = format!("{select_css} option[value=\"{value}\"]");
        let id = self.wait(&format!("the option {css}"), |b| b.find(&css));
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({}))).unwrap();
    }

    fn text(&self, css: &str) -> Option<String> {
        let v = self.js(
            "const e = document.querySelector(arguments[0]); return e && e.getClientRects().length > 0 ? e.innerText : null;",
            json!([css]),
        );
        v.as_str().map(str::to_string)
    }

    /// Waits until the visible text of `css` contains `needle`; returns the text.
    fn wait_text(&self, css: &str, needle: &str) -> String {
        self.wait(&format!("{needle:?} in {css}"), |b| b.text(css).filter(|t| t.contains(needle)))
    }

    /// The who-else rows shown, each as column → text.
    fn who_else_rows(&self) -> Vec<serde_json::Map<String, Value>> {
        let v = self.js(
            "const t = document.getElementById('who-else-table');
             if (!t || t.hidden) return [];
             return Array.from(t.tBodies[0].rows, (tr) => {
               const o = { _band: tr.dataset.band || '', _class: tr.className };
               for (const td of tr.cells) o[td.dataset.col] = td.innerText.trim();
               return o;
             });",
            json!([]),
        );
        v.as_array().unwrap().iter().map(|r| r.as_object().unwrap().clone()).collect()
    }

    fn page_text(&self) -> String {
        let v = self.cmd("POST", "/execute/sync", Some(json!({"script": "return document.body ? document.body.innerText : ''", "args": []})));
        let mut t = v.map(|v| v.as_str().unwrap_or_default().to_string()).unwrap_or_else(|e| e.message);
        t.truncate(6000);
        t
    }

    /// The browser console since the last call.
    fn console(&self) -> Vec<String> {
        let v = self.cmd("POST", "/se/log", Some(json!({"type": "browser"}))).unwrap_or_else(|e| panic!("{}", e.message));
        v.as_array().unwrap().iter().map(|e| format!("{} {}", e["level"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or(""))).collect()
    }

    /// With `PONTE_BROWSER_SCREENSHOTS=DIR`, saves what the browser shows as `DIR/NAME.png` (for
    /// a person to look at; the test does not read them).
    fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("PONTE_BROWSER_SCREENSHOTS") else { return };
        let png = self.cmd("GET", "/screenshot", None).unwrap_or_else(|e| panic!("{}", e.message));
        let png = base64_decode(png.as_str().unwrap());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }

    fn set_width(&self, width: u32) {
        self.cmd("POST", "/window/rect", Some(json!({"width": width, "height": 900}))).unwrap();
    }
}

/// Standard base64 (WebDriver screenshots), without a dependency for it.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = text.bytes().filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, c)| acc | (value(*c) as u32) << (18 - 6 * i));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

// -----------------------------------------------------------------------------------------------

struct Node {
    origin: String,
    _serve: Killed,
}

/// asl-lecce with its API on a free port, serving; comune-lecce published once.
fn federation(fed: &mut Federation) -> (Node, String) {
    fed.start_coordinator();
    let asl = fed.node_config("asl-lecce", &default_import());
    let com = fed.node_config("comune-lecce", &default_import());
    let e1 = small_export(fed.dir.path(), "asl.csv", &asl_rows());
    let e2 = small_export(fed.dir.path(), "com.csv", &comune_rows());
    for (cfg, export) in [(&asl, &e1), (&com, &e2)] {
        ok(&node(cfg, &["import", &export.to_string_lossy()]));
        ok(&node(cfg, &["publish"]));
    }
    let port = free_port();
    edit_node_config(&asl, |c| {
        c.api.listen = format!("127.0.0.1:{port}");
    });
    let help = node(&asl, &["credentials", "--help"]);
    assert!(
        help.status.success(),
        "ponte-node has no `credentials` command (a stale binary? run `cargo build -p ponte-node`):\n{}",
        text(&help)
    );
    let created = ok(&node(&asl, &["credentials", "add", "sistema-pua", "--roles", "operatore_pua,assistente_sociale", "--json"]));
    let created: Value = serde_json::from_str(created.trim()).unwrap_or_else(|e| panic!("{e}: {created}"));
    assert_eq!(created["system_id"], "sistema-pua", "{created}");
    let credential = created["credential"].as_str().expect("the credential is printed once").to_string();

    let mut serve = Killed::spawn(
        "ponte-node serve",
        Command::new(bin_dir().join("ponte-node")).arg("--config").arg(&asl).arg("serve"),
        fed.dir.path().join("asl-serve.log"),
    );
    let addr = format!("127.0.0.1:{port}");
    wait_for_port(&addr, &mut serve);
    (Node { origin: format!("https://{addr}"), _serve: serve }, credential)
}

#[test]
fn a_case_worker_uses_the_page_in_a_real_browser() {
    if !browser_installed() {
        return;
    }
    let started = Instant::now();
    let mut fed = Federation::new();
    let (asl, credential) = federation(&mut fed);
    let browser = Browser::start(fed.dir.path());
    let b = &browser;

    // The page loads, with nothing from elsewhere.
    b.goto(&format!("{}/", asl.origin));
    b.visible("#login-form");
    b.wait("the roles in the login form", |b| {
        (b.js("return document.querySelectorAll('#login-role option').length", json!([])).as_u64() >= Some(6)).then_some(())
    });
    let resources = b.js(
        "return { origin: location.origin, lang: document.documentElement.lang,
                  names: performance.getEntriesByType('resource').map((e) => e.name) };",
        json!([]),
    );
    let origin = resources["origin"].as_str().unwrap();
    assert_eq!(origin, asl.origin);
    assert_eq!(resources["lang"], "it");
    let names: Vec<&str> = resources["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert!(names.iter().any(|n| n.ends_with("/assets/app.js")) && names.iter().any(|n| n.ends_with("/assets/app.css")), "{names:?}");
    for n in &names {
        assert!(n.starts_with(&format!("{origin}/")), "the page loaded {n} from elsewhere");
    }

    // A wrong credential: the Italian alert, still logged out.
    b.type_into("#login-credential", "credenziale-sbagliata");
    b.type_into("#login-operator", "op-17");
    b.choose("#login-role", "operatore_pua");
    b.click("#login-submit");
    let alert = b.wait_text("#alert", "Richiesta rifiutata:");
    assert!(alert.contains("la credenziale di sistema non è valida"), "{alert}");
    b.screenshot("01-credenziale-errata");
    assert!(b.text("#work").is_none(), "the work area is shown without a valid login");
    let stored = b.js("return sessionStorage.length + localStorage.length", json!([]));
    assert_eq!(stored, 0, "a refused login was kept");

    // The right credential.
    b.type_into("#login-credential", &credential);
    b.click("#login-submit");
    b.wait_text("#login-status", "op-17");
    assert!(b.text("#alert").is_none(), "the old alert stays after a good login");
    let keys = b.js("return [Object.keys(sessionStorage), localStorage.length]", json!([]));
    assert_eq!(keys, json!([["ponte.accesso"], 0]), "only the login triple is kept, in sessionStorage");

    // X by codice fiscale → who else: the Comune's home care.
    b.type_into("#search-cf", &x_cf().to_lowercase());
    b.click("#search-cf-submit");
    b.wait_text("[data-testid=\"person-P1\"]", "ROSSI");
    let card = b.text("[data-testid=\"person-P1\"]").unwrap();
    assert!(card.contains("MARIO") && card.contains("11/02/1940") && card.contains(&x_cf()), "{card}");
    b.click("[data-testid=\"who-else-P1\"]");
    let rows = b.wait("a who-else row for X", |b| Some(b.who_else_rows()).filter(|r| !r.is_empty()));
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    let sad_label = b
        .js("return document.querySelector('#intake-service option[value=\"assistenza_domiciliare_sociale\"]').textContent", json!([]))
        .as_str()
        .unwrap()
        .to_string();
    assert!(sad_label.to_lowercase().contains("domiciliare"), "{sad_label}");
    assert_eq!(row["ente"], "Comune di Lecce", "{row:?}");
    assert_eq!(row["unita"], "servizio-sociale", "{row:?}");
    assert_eq!(row["servizio"], sad_label.as_str(), "{row:?}");
    assert_eq!(row["stato"], "Attiva", "{row:?}");
    assert_eq!(row["dal"], "01/2024", "{row:?}");
    assert_eq!(row["case-manager"], "sì", "{row:?}");
    assert_eq!(row["corrispondenza"], "certa", "{row:?}");
    assert!(!row["contatto"].as_str().unwrap().is_empty() && row["contatto"] != "—", "{row:?}");
    let receipt = b.text("#who-else-receipt").unwrap();
    assert!(receipt.contains(':') && receipt.len() > 4, "no audit receipt: {receipt:?}");
    assert!(!b.text("#who-else-notice").unwrap().trim().is_empty(), "no notice");
    assert!(b.text("#who-else-empty").is_none());
    b.screenshot("02-chi-altro-la-segue");

    // Narrow screen: everything fits, the table becomes cards.
    b.set_width(360);
    b.wait("the page and its tables to fit 360 px, rows as cards", |b| {
        let fits = b.js(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1
                 && Array.from(document.querySelectorAll('.table-wrap')).every((w) => w.scrollWidth <= w.clientWidth + 1)
                 && getComputedStyle(document.querySelector('#who-else-rows tr')).display === 'block'",
            json!([]),
        );
        (fits == true).then_some(())
    });
    b.screenshot("03-schermo-stretto");
    b.set_width(1280);

    // X by surname with a typo, name and birth date. The card from the search by codice fiscale
    // is marked, so that only a card of the new answer counts.
    b.js("document.querySelector('[data-testid=\"person-P1\"]').dataset.earlier = '1'", json!([]));
    b.type_into("#search-surname", "Rosdi");
    b.type_into("#search-given", "Mario");
    b.type_into("#search-birth", "11/02/1940");
    b.click("#search-name-submit");
    b.wait_text("[data-testid=\"person-P1\"]:not([data-earlier])", "ROSSI");
    assert!(b.text("#alert").is_none(), "{:?}", b.text("#alert"));

    // A person nobody else follows: the empty answer says so, with no table.
    b.type_into("#search-surname", "Greco");
    b.type_into("#search-given", "Cosimo");
    b.type_into("#search-birth", "01/12/1950");
    b.click("#search-name-submit");
    b.click("[data-testid=\"who-else-P2\"]");
    b.wait_text("#who-else-empty", "Nessun'altra presa in carico visibile");
    assert!(b.text("#who-else-table").is_none() && b.who_else_rows().is_empty());
    assert!(b.text("#who-else-subject").unwrap().contains("GRECO"));

    // A new intake for Y, whom only the Comune knows; then who else, anchored on it.
    b.type_into("#intake-surname", "Quarta");
    b.type_into("#intake-given", "Addolorata");
    b.choose("#intake-sex", "F");
    b.type_into("#intake-birth", "30/07/1935");
    b.type_into("#intake-birthplace", "Galatina");
    b.type_into("#intake-cf", &y_cf());
    b.choose("#intake-service", "cure_domiciliari");
    b.type_into("#intake-unit", "pua-lecce");
    b.click("#intake-submit");
    b.visible("#intake-confirmation");
    let record = b.wait("the new record id", |b| b.text("#intake-record-id").filter(|t| !t.trim().is_empty()));
    let confirmation = b.text("#intake-confirmation").unwrap();
    assert!(confirmation.contains("Segnalazione registrata (nuova scheda)") && confirmation.contains("Segnalata"), "{confirmation}");
    let segretariato = b
        .js("return document.querySelector('#intake-service option[value=\"segretariato_sociale\"]').textContent", json!([]))
        .as_str()
        .unwrap()
        .to_string();
    // The intake is published by serve within a second or so: ask until the Comune shows up.
    let rows = b.wait("the Comune's relationship for Y", |b| {
        b.click("[data-testid=\"who-else-intake\"]");
        std::thread::sleep(Duration::from_millis(500));
        let subject = b.text("#who-else-subject").unwrap_or_default();
        Some(b.who_else_rows()).filter(|r| subject.contains(record.trim()) && r.iter().any(|r| r["ente"] == "Comune di Lecce"))
    });
    let row = rows.iter().find(|r| r["ente"] == "Comune di Lecce").unwrap();
    assert_eq!(row["servizio"], segretariato.as_str(), "{row:?}");
    assert_eq!(row["unita"], "segretariato", "{row:?}");
    assert_eq!(row["dal"], "05/2023", "{row:?}");
    assert_eq!(row["case-manager"], "sì", "{row:?}");
    assert!(["certa", "probabile"].contains(&row["corrispondenza"].as_str().unwrap()), "{row:?}");
    assert!(!rows.iter().any(|r| r["ente"] == "ASL Lecce"), "the asker's own relationship is shown: {rows:?}");
    b.screenshot("04-nuova-segnalata");

    // Consent for X: recorded, listed, revoked.
    b.type_into("#search-cf", &x_cf());
    b.click("#search-cf-submit");
    b.click("[data-testid=\"consent-open-P1\"]");
    b.wait_text("#consent-person", "P1");
    b.choose("#consent-categories", "cure_domiciliari");
    b.click("[data-testid=\"consent-recipients-comune\"]");
    b.click("[data-testid=\"consent-purposes-continuita_assistenziale\"]");
    b.type_into("#consent-valid-until", "31/12/2099");
    b.choose("#consent-given-by", "interessato");
    b.click("#consent-submit");
    let consent_id = b.wait("the consent in the list", |b| {
        b.js("const r = document.querySelector('#consent-rows tr'); return r && !document.getElementById('consent-table').hidden ? r.dataset.testid : null", json!([]))
            .as_str()
            .map(|s| s.trim_start_matches("consent-").to_string())
    });
    let listed = b.text("#consent-table").unwrap();
    assert!(listed.contains("31/12/2099"), "{listed}");
    b.screenshot("05-consenso");
    // Every control on the page, the generated ones included, has an accessible name.
    let unlabelled = b.js(
        "return Array.from(document.querySelectorAll('input, select, button, textarea'))
           .filter((e) => !(e.labels && e.labels.length) && !e.textContent.trim() && !e.getAttribute('aria-label'))
           .map((e) => e.id || e.dataset.testid || e.outerHTML.slice(0, 80));",
        json!([]),
    );
    assert_eq!(unlabelled, json!([]), "controls without a label");
    b.click(&format!("[data-testid=\"revoke-{consent_id}\"]"));
    b.wait_text(&format!("[data-testid=\"consent-state-{consent_id}\"]"), "revocato");

    // Obscuring X's home care at the ASL, and back.
    let obscure = "[data-testid=\"obscure-R1\"]";
    let settled = |checked: bool| {
        b.wait(&format!("the obscuring box to settle at {checked}"), |b| {
            let v = b.js("const e = document.querySelector(arguments[0]); return !!e && !e.disabled && e.checked === arguments[1];", json!([obscure, checked]));
            (v == true).then_some(())
        })
    };
    settled(false);
    b.click(obscure);
    b.wait_text("#status", "oscurata");
    settled(true);
    b.click(obscure);
    b.wait_text("#status", "Oscuramento tolto");
    settled(false);
    assert!(b.text("#alert").is_none(), "{:?}", b.text("#alert"));

    // Nothing identifying in the console, nothing in localStorage.
    let console = b.console();
    for needle in [x_cf(), y_cf(), "ROSSI".into(), "Rossi".into(), "QUARTA".into(), "Quarta".into(), credential.clone()] {
        assert!(!console.iter().any(|l| l.contains(&needle)), "{needle} in the console: {console:?}");
    }
    assert!(!console.iter().any(|l| l.contains("Content Security Policy")), "CSP violations: {console:?}");
    assert_eq!(b.js("return localStorage.length", json!([])), 0);

    // Esci: the session and what the page showed are gone.
    b.click("#logout");
    b.visible("#login-form");
    assert_eq!(b.js("return sessionStorage.length", json!([])), 0);
    assert!(b.text("#work").is_none());
    let shown = b.page_text();
    assert!(!shown.contains("ROSSI") && !shown.contains(&x_cf()), "{shown}");

    eprintln!("browser test took {:.1} s", started.elapsed().as_secs_f64());
}
