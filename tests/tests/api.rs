//! The node's case-worker API end to end: a real coordinator and real nodes over mTLS, the
//! node's `serve` as a process on loopback, HTTPS requests with bearer credentials and client
//! certificates. The OpenAPI document the node serves is checked against the behaviour: every
//! operation in it is called as documented and its answer validated against the documented
//! schema. Bad requests get clear 4xx and change nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ponte_e2e::{Federation, bin_dir, cf, default_import, edit_node_config, node, small_export, text};
use ponte_node::normalise::Sex;
use serde_json::{Value, json};

const OPERATOR: &str = "op-4711";

/// A running `ponte-node serve`; stopped (SIGTERM, then kill) on drop.
struct Served {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Served {
    fn start(config: &Path, log: &Path, json_logs: bool) -> Served {
        let cfg = ponte_node::config::NodeConfig::load(config).unwrap();
        let port = cfg.api.listen.rsplit(':').next().unwrap().to_string();
        let mut cmd = Command::new(bin_dir().join("ponte-node"));
        cmd.arg("--config").arg(config).arg("serve").env("PONTE_LOG", "info").stdout(Stdio::null()).stderr(std::fs::File::create(log).unwrap());
        if json_logs {
            cmd.env("PONTE_LOG_FORMAT", "json");
        }
        let child = cmd.spawn().unwrap();
        Served { child, base: format!("https://localhost:{port}"), log: log.to_path_buf() }
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A request from a registered system acting for operator [`OPERATOR`] in `role`.
trait OnBehalfOf {
    fn on_behalf_of(self, token: &str, role: &str) -> Self;
}

impl OnBehalfOf for reqwest::RequestBuilder {
    fn on_behalf_of(self, token: &str, role: &str) -> Self {
        self.bearer_auth(token).header("X-Ponte-Operator", OPERATOR).header("X-Ponte-Role", role)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn rossi() -> String {
    cf("Rossi", "Mario", Sex::M, 1940, 2, 11, "E506")
}

fn bianchi() -> String {
    cf("Bianchi", "Anna", Sex::F, 1952, 7, 7, "E506")
}

/// asl-lecce follows Mario Rossi; comune-lecce follows him too (case manager) and Anna Bianchi,
/// whom the ASL does not know yet. Both nodes published. Returns the ASL's config with the API
/// on a free port.
fn federation_with_asl_api(fed: &mut Federation) -> PathBuf {
    fed.start_coordinator();
    let asl = fed.node_config("asl-lecce", &default_import());
    let com = fed.node_config("comune-lecce", &default_import());
    let r = rossi();
    let b = bianchi();
    let e1 = small_export(
        fed.dir.path(),
        "asl.csv",
        &[
            format!("P1;R1;Rossi;Mario;M;1940-02-11;Lecce;{r};cure_domiciliari;attiva;2024-03-01;distretto-lecce;S"),
            "P2;R2;De Giorgi;Maria Grazia;F;1938-05-20;Lecce;;cure_domiciliari;attiva;2024-04-01;distretto-lecce;N".to_string(),
        ],
    );
    let e2 = small_export(
        fed.dir.path(),
        "com.csv",
        &[
            format!("C1;S1;ROSSI;MARIO;M;1940-02-11;LECCE;{r};assistenza_domiciliare_sociale;attiva;2024-01-10;servizio-sociale;S"),
            format!("C2;S2;Bianchi;Anna;F;1952-07-07;Lecce;{b};segretariato_sociale;attiva;2025-06-01;servizio-sociale;S"),
        ],
    );
    for (cfg, export) in [(&asl, &e1), (&com, &e2)] {
        let o = node(cfg, &["import", export.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
        let o = node(cfg, &["publish"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let port = free_port();
    edit_node_config(&asl, |c| c.api.listen = format!("127.0.0.1:{port}"));
    asl
}

/// Registers a system with a bearer credential; returns the credential.
fn bearer(config: &Path, system: &str, roles: &str) -> String {
    let o = node(config, &["--json", "credentials", "add", system, "--roles", roles]);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let t = v["credential"].as_str().unwrap().to_string();
    let file = std::fs::read_to_string(config.parent().unwrap().join("api-credentials.toml")).unwrap();
    assert!(!file.contains(&t), "only the credential's hash is stored");
    t
}

fn https(fed: &Federation, identity: Option<(&str, &str)>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fed.certs.join("ca.pem")).unwrap()).unwrap();
    let mut b = reqwest::Client::builder().add_root_certificate(ca).use_rustls_tls().timeout(Duration::from_secs(30));
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

async fn wait_healthy(client: &reqwest::Client, served: &Served) {
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{}/healthz", served.base)).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "serve did not come up: {}", served.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A JSON Schema validator for `schema` (which may `$ref` the document's components).
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "components": doc["components"].clone()});
    for (k, v) in schema.as_object().unwrap() {
        root[k] = v.clone();
    }
    jsonschema::draft202012::new(&root).unwrap()
}

fn check_against(doc: &Value, op: &Value, status: u16, content_type: &str, body: &Value, what: &str) {
    let resp = &op["responses"][status.to_string()];
    assert!(resp.is_object(), "{what}: status {status} is not documented: {body}");
    let mime = content_type.split(';').next().unwrap().trim();
    let schema = &resp["content"][mime]["schema"];
    assert!(schema.is_object(), "{what}: {status} {mime} is not documented");
    let v = validator(doc, schema);
    let errors: Vec<String> = v.iter_errors(body).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errors.is_empty(), "{what}: the answer does not match the document: {errors:?}\n{body:#}");
}

/// Runs the OpenAPI 3.1 validator from PyPI (openapi-spec-validator) when it is installed; CI
/// installs it and sets PONTE_REQUIRE_OPENAPI_VALIDATOR=1.
fn validate_openapi_document(doc: &Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let o = Command::new("python3").arg("-m").arg("openapi_spec_validator").arg(&path).output();
    let required = std::env::var("PONTE_REQUIRE_OPENAPI_VALIDATOR").is_ok_and(|v| v == "1");
    match o {
        Ok(o) if o.status.success() => {
            assert!(String::from_utf8_lossy(&o.stdout).contains("OK"), "{}", text(&o));
        }
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named") && !required => {
            eprintln!("skipped the OpenAPI validator: `pip install openapi-spec-validator` to run it (CI does)");
        }
        Ok(o) => panic!("the OpenAPI document does not validate: {}", text(&o)),
        Err(e) if !required => eprintln!("skipped the OpenAPI validator: python3 not found ({e})"),
        Err(e) => panic!("python3 is needed for the OpenAPI validator: {e}"),
    }
}

fn example_of(doc: &Value, schema: &Value) -> Value {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        return doc["components"]["schemas"][name]["example"].clone();
    }
    schema["example"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_validates_and_every_operation_in_it_works_against_a_running_node() {
    let mut fed = Federation::new();
    let asl = federation_with_asl_api(&mut fed);
    let token = bearer(&asl, "cartella-sociale", "operatore_pua,assistente_sociale");
    let served = Served::start(&asl, &fed.dir.path().join("serve.log"), false);
    let client = https(&fed, None);
    wait_healthy(&client, &served).await;

    let doc: Value = client.get(format!("{}/openapi.json", served.base)).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    assert_eq!(doc["servers"][0]["url"], served.base.as_str());
    validate_openapi_document(&doc);

    // Every operation, called with the document's own examples (the ids of path parameters
    // pointed at this node's data), answers with a documented success and a body of the
    // documented shape.
    let mut consent_id = String::new();
    let mut called = Vec::new();
    // Order: a consent must exist before it is revoked.
    let order = |p: &str| if p.contains("revoke") { 1 } else { 0 };
    let mut ops: Vec<(String, String, Value)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((path.clone(), method.clone(), op.clone()));
        }
    }
    ops.sort_by_key(|(p, _, _)| order(p));
    for (path, method, op) in &ops {
        let mut url = path.clone();
        let mut query: Vec<(String, String)> = Vec::new();
        let mut headers: Vec<(String, String)> = Vec::new();
        for p in op["parameters"].as_array().cloned().unwrap_or_default() {
            let name = p["name"].as_str().unwrap().to_string();
            let example = p["example"].clone();
            let value = match &example {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                v => v.to_string(),
            };
            match p["in"].as_str().unwrap() {
                "path" => {
                    let value = match name.as_str() {
                        "consent_id" => consent_id.clone(),
                        _ => value,
                    };
                    assert!(!value.is_empty(), "{method} {path}: path parameter {name} has no example");
                    url = url.replace(&format!("{{{name}}}"), &value);
                }
                // One search at a time: the demographic example (codice_fiscale is the other way).
                "query" if name == "codice_fiscale" => {}
                "query" => query.push((name, value)),
                "header" => headers.push((name, value)),
                other => panic!("{other} parameter"),
            }
        }
        let mut req = client.request(method.to_uppercase().parse().unwrap(), format!("{}{url}", served.base)).query(&query);
        if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
            req = req.bearer_auth(&token);
        }
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        if let Some(schema) = op["requestBody"]["content"]["application/json"]["schema"].as_object() {
            let example = example_of(&doc, &Value::Object(schema.clone()));
            assert!(!example.is_null(), "{method} {path}: the request body has no example");
            req = req.json(&example);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let body: Value = r.json().await.unwrap();
        assert!((200..300).contains(&status), "{method} {path} as documented gave {status}: {body}");
        check_against(&doc, op, status, &ct, &body, &format!("{method} {path}"));
        if path.ends_with("/consents") && method == "post" {
            consent_id = body["consent_id"].as_str().unwrap().to_string();
        }
        called.push(format!("{method} {path}"));
    }
    assert_eq!(called.len(), 9, "{called:?}");

    // The who-else example asked about P1: the Comune's relationship, in full to the ASL.
    let answer: Value = client
        .post(format!("{}/api/v1/persons/P1/who-else", served.base))
        .on_behalf_of(&token, "operatore_pua")
        .json(&json!({"purpose": "continuita_assistenziale"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rels = answer["relationships"].as_array().unwrap();
    assert_eq!(rels.len(), 1, "{answer:#}");
    assert_eq!(rels[0]["entity_id"], "comune-lecce");
    assert_eq!(rels[0]["service"], "assistenza_domiciliare_sociale");
    assert_eq!(rels[0]["case_manager"], true);
    assert_eq!(rels[0]["band"], "certain");
    assert_eq!(rels[0]["band_label"], "certa");
    assert!(answer["receipt"].as_str().unwrap().contains(':'));

    // FHIR by content negotiation.
    let r = client
        .post(format!("{}/api/v1/persons/P1/who-else", served.base))
        .on_behalf_of(&token, "operatore_pua")
        .header("Accept", "application/fhir+json")
        .json(&json!({"purpose": "continuita_assistenziale"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/fhir+json"));
    let bundle: Value = r.json().await.unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    let (decoded, issues) = fhirkit::from_json::<fhirkit::r4::Bundle>(&bundle.to_string()).unwrap();
    assert!(decoded.is_some() && issues.is_empty(), "the live bundle reads as FHIR R4: {issues:?}\n{bundle:#}");
    assert_eq!(bundle["total"], 1, "{bundle:#}");
    let episode = &bundle["entry"][0];
    assert_eq!(episode["resource"]["resourceType"], "EpisodeOfCare");
    assert_eq!(episode["resource"]["status"], "active");
    assert_eq!(episode["resource"]["managingOrganization"]["display"], "Comune di Lecce");
    assert_eq!(episode["resource"]["managingOrganization"]["identifier"]["value"], "comune-lecce");
    assert!(episode["resource"]["careManager"]["display"].as_str().unwrap().contains("Case manager"));
    assert_eq!(episode["resource"]["period"]["start"], "2024-01");
    assert_eq!(episode["search"]["extension"][0]["url"], "http://hl7.org/fhir/StructureDefinition/match-grade");
    assert_eq!(episode["search"]["extension"][0]["valueCode"], "certain");
    assert!(!bundle.to_string().contains(&rossi()) && !bundle.to_string().contains("\"P1\""), "nobody is named in the bundle");

    // A search by codice fiscale, and a tolerant one (one letter wrong, particle written apart).
    let found: Value = client
        .get(format!("{}/api/v1/persons", served.base))
        .query(&[("codice_fiscale", rossi().to_lowercase())])
        .on_behalf_of(&token, "assistente_sociale")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["persons"][0]["record_id"], "P1", "{found:#}");
    assert_eq!(found["persons"][0]["match"], "exact");
    let found: Value = client
        .get(format!("{}/api/v1/persons", served.base))
        .query(&[("surname", "de giorgio"), ("given_name", "Maria Grazia"), ("birth_date", "1938-05-20")])
        .on_behalf_of(&token, "assistente_sociale")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["persons"][0]["record_id"], "P2", "{found:#}");
    assert_eq!(found["persons"][0]["match"], "close");

    // An intake for someone only the Comune follows: the PUA asks at once and sees the Comune.
    let created: Value = client
        .post(format!("{}/api/v1/intakes", served.base))
        .on_behalf_of(&token, "operatore_pua")
        .json(&json!({"surname": "Bianchi", "given_names": "Anna", "sex": "F", "birth_date": "1952-07-07", "birthplace": "Lecce", "codice_fiscale": bianchi(), "service": "cure_domiciliari", "unit": "pua-lecce"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let record = created["record_id"].as_str().unwrap().to_string();
    assert_eq!(created["status"], "segnalata");
    let answer: Value = client
        .post(format!("{}/api/v1/persons/{record}/who-else", served.base))
        .on_behalf_of(&token, "operatore_pua")
        .json(&json!({"purpose": "continuita_assistenziale"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["relationships"][0]["entity_id"], "comune-lecce", "{answer:#}");
    assert_eq!(answer["relationships"][0]["service"], "segretariato_sociale");
}

/// Status of a node (records, relationships, consents, queued), read with the CLI while `serve`
/// is stopped.
fn status(config: &Path) -> Value {
    let o = node(config, &["--json", "status"]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_malformed_oversized_or_unknown_get_clear_4xx_and_change_nothing() {
    let mut fed = Federation::new();
    let asl = federation_with_asl_api(&mut fed);
    let token = bearer(&asl, "cartella-sociale", "operatore_pua,assistente_sociale");
    let mmg_only = bearer(&asl, "studio-mmg", "mmg");
    let before = status(&asl);
    let mut served = Served::start(&asl, &fed.dir.path().join("serve.log"), false);
    let client = https(&fed, None);
    wait_healthy(&client, &served).await;
    let base = served.base.clone();

    let ask = |body: Value| {
        client
            .post(format!("{base}/api/v1/persons/P1/who-else"))
            .on_behalf_of(&token, "operatore_pua")
            .json(&body)
    };
    let receipt = |v: &Value| v["receipt"].as_str().unwrap().split(':').next().unwrap().parse::<u64>().unwrap();
    let first: Value = ask(json!({"purpose": "continuita_assistenziale"})).send().await.unwrap().json().await.unwrap();
    let first_seq = receipt(&first);

    let who = format!("{base}/api/v1/persons/P1/who-else");
    let hdr = |r: reqwest::RequestBuilder| r.on_behalf_of(&token, "operatore_pua");
    let big = format!("{{\"purpose\":\"continuita_assistenziale\",\"relationship_id\":\"{}\"}}", "x".repeat(40_000));
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str, Option<&str>)> = vec![
        ("no credentials", client.post(&who).json(&json!({"purpose": "continuita_assistenziale"})), 401, "missing_credentials", None),
        ("wrong credential", client.post(&who).on_behalf_of("ponte_0000", "operatore_pua").json(&json!({"purpose": "continuita_assistenziale"})), 401, "invalid_credentials", None),
        ("basic auth", client.post(&who).basic_auth("a", Some("b")).json(&json!({})), 401, "invalid_credentials", None),
        ("no operator", client.post(&who).bearer_auth(&token).header("X-Ponte-Role", "operatore_pua").json(&json!({"purpose": "continuita_assistenziale"})), 400, "missing_header", Some("X-Ponte-Operator")),
        ("operator with a space", client.post(&who).bearer_auth(&token).header("X-Ponte-Operator", "Mario Rossi").header("X-Ponte-Role", "operatore_pua").json(&json!({"purpose": "continuita_assistenziale"})), 400, "invalid_header", Some("X-Ponte-Operator")),
        ("operator id that is a codice fiscale", client.post(&who).bearer_auth(&token).header("X-Ponte-Operator", rossi().to_lowercase()).header("X-Ponte-Role", "operatore_pua").json(&json!({"purpose": "continuita_assistenziale"})), 400, "invalid_header", Some("X-Ponte-Operator")),
        ("operator id holding an STP code", client.post(&who).bearer_auth(&token).header("X-Ponte-Operator", "op.STP1234567890123").header("X-Ponte-Role", "operatore_pua").json(&json!({"purpose": "continuita_assistenziale"})), 400, "invalid_header", Some("X-Ponte-Operator")),
        ("unknown role", client.post(&who).on_behalf_of(&token, "primario").json(&json!({"purpose": "continuita_assistenziale"})), 400, "invalid_header", Some("X-Ponte-Role")),
        ("role not registered", client.post(&who).on_behalf_of(&mmg_only, "operatore_pua").json(&json!({"purpose": "continuita_assistenziale"})), 403, "role_not_allowed", Some("X-Ponte-Role")),
        ("malformed JSON", hdr(client.post(&who)).header("content-type", "application/json").body("{\"purpose\": "), 400, "malformed_json", None),
        ("oversized body", hdr(client.post(&who)).header("content-type", "application/json").body(big), 413, "body_too_large", None),
        ("not JSON", hdr(client.post(&who)).header("content-type", "text/plain").body("purpose=continuita_assistenziale"), 415, "unsupported_media_type", Some("Content-Type")),
        ("unknown purpose", hdr(client.post(&who)).json(&json!({"purpose": "curiosita"})), 422, "invalid_value", Some("purpose")),
        ("unknown field", hdr(client.post(&who)).json(&json!({"purpose": "continuita_assistenziale", "nome": "Mario"})), 422, "invalid_value", None),
        ("emergency without reason", hdr(client.post(&who)).json(&json!({"purpose": "emergenza"})), 422, "invalid_value", Some("break_glass")),
        ("unknown record", hdr(client.post(format!("{base}/api/v1/persons/NOPE/who-else"))).json(&json!({"purpose": "continuita_assistenziale"})), 404, "not_found", None),
        ("unknown anchor", hdr(client.post(&who)).json(&json!({"purpose": "continuita_assistenziale", "relationship_id": "R9"})), 404, "not_found", Some("relationship_id")),
        ("not acceptable", hdr(client.post(&who)).header("accept", "text/html").json(&json!({"purpose": "continuita_assistenziale"})), 406, "not_acceptable", Some("Accept")),
        ("intake without service", hdr(client.post(format!("{base}/api/v1/intakes"))).json(&json!({"surname": "Verdi", "given_names": "Luca", "birth_date": "1960-01-01"})), 422, "invalid_value", None),
        ("intake with an unknown service", hdr(client.post(format!("{base}/api/v1/intakes"))).json(&json!({"surname": "Verdi", "given_names": "Luca", "birth_date": "1960-01-01", "service": "ADI"})), 422, "invalid_value", Some("service")),
        ("intake with a bad date", hdr(client.post(format!("{base}/api/v1/intakes"))).json(&json!({"surname": "Verdi", "given_names": "Luca", "birth_date": "31/02/1960", "service": "cure_domiciliari"})), 422, "invalid_value", Some("birth_date")),
        ("intake for an existing record with an identity", hdr(client.post(format!("{base}/api/v1/intakes"))).json(&json!({"record_id": "P1", "surname": "Verdi", "given_names": "Luca", "birth_date": "1960-01-01", "service": "cure_domiciliari"})), 422, "invalid_value", Some("record_id")),
        ("consent by an unknown giver", hdr(client.post(format!("{base}/api/v1/persons/P1/consents"))).json(&json!({"categories": ["serd"], "recipients": ["asl"], "purposes": ["continuita_assistenziale"], "valid_until": "2030-01-01", "given_by": "vicino"})), 422, "invalid_value", Some("given_by")),
        ("consent ending before it starts", hdr(client.post(format!("{base}/api/v1/persons/P1/consents"))).json(&json!({"categories": ["serd"], "recipients": ["asl"], "purposes": ["continuita_assistenziale"], "valid_from": "2030-01-01", "valid_until": "2029-01-01", "given_by": "interessato"})), 422, "invalid_value", None),
        ("consent for an unknown record", hdr(client.post(format!("{base}/api/v1/persons/NOPE/consents"))).json(&json!({"categories": ["serd"], "recipients": ["asl"], "purposes": ["continuita_assistenziale"], "valid_until": "2030-01-01", "given_by": "interessato"})), 404, "not_found", None),
        ("revoking an unknown consent", hdr(client.post(format!("{base}/api/v1/consents/nope/revoke"))), 404, "not_found", None),
        ("obscuring an unknown relationship", hdr(client.put(format!("{base}/api/v1/relationships/R9/obscured"))).json(&json!({"obscured": true})), 404, "not_found", None),
        ("obscuring with a string", hdr(client.put(format!("{base}/api/v1/relationships/R1/obscured"))).json(&json!({"obscured": "si"})), 422, "invalid_value", None),
        ("search without terms", hdr(client.get(format!("{base}/api/v1/persons"))), 400, "invalid_query", None),
        ("search with both ways", hdr(client.get(format!("{base}/api/v1/persons?codice_fiscale=X&surname=Rossi"))), 400, "invalid_query", Some("codice_fiscale")),
        ("search with an unknown parameter", hdr(client.get(format!("{base}/api/v1/persons?cognome=Rossi"))), 400, "invalid_query", None),
        ("search with a bad date", hdr(client.get(format!("{base}/api/v1/persons?surname=Rossi&given_name=Mario&birth_date=1940-13-01"))), 400, "invalid_query", Some("birth_date")),
        ("search with an overlong surname", hdr(client.get(format!("{base}/api/v1/persons")).query(&[("surname", "R".repeat(101).as_str()), ("given_name", "Mario"), ("birth_date", "1940-02-11")])), 400, "invalid_query", Some("surname")),
        ("unknown path", hdr(client.get(format!("{base}/api/v1/people"))), 404, "not_found", None),
        ("wrong method", hdr(client.delete(format!("{base}/api/v1/intakes"))), 405, "method_not_allowed", None),
    ];
    for (what, req, want, code, field) in cases {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let www = r.headers().get("www-authenticate").is_some();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, want, "{what}: {body}");
        assert_eq!(ct, "application/problem+json", "{what}");
        assert_eq!(body["code"], code, "{what}: {body}");
        assert_eq!(body["status"], want, "{what}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.len() > 20, "{what}: the detail says what and how to fix: {detail:?}");
        if let Some(f) = field {
            assert_eq!(body["field"], f, "{what}: {body}");
        }
        assert_eq!(www, want == 401, "{what}: WWW-Authenticate only on 401");
    }

    // A personal identifier in the operator header is refused with a detail that says why.
    let r = client.get(format!("{base}/api/v1/session")).bearer_auth(&token).header("X-Ponte-Operator", rossi()).header("X-Ponte-Role", "operatore_pua").send().await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("pseudonymous"), "{body}");
    // A pseudonymous id in mixed case is taken exactly as sent (nothing is lower-cased).
    let r = client.get(format!("{base}/api/v1/session")).bearer_auth(&token).header("X-Ponte-Operator", "Op-4711").header("X-Ponte-Role", "operatore_pua").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let session: Value = r.json().await.unwrap();
    assert_eq!(session["operator"], "Op-4711", "{session}");

    // Nothing reached the coordinator's audit in between: the next question's receipt follows
    // the first one's.
    let again: Value = ask(json!({"purpose": "continuita_assistenziale"})).send().await.unwrap().json().await.unwrap();
    assert_eq!(receipt(&again), first_seq + 1, "no refused request was audited or asked");
    assert_eq!(again["relationships"], first["relationships"]);

    // And nothing changed on the node.
    served.stop();
    assert_eq!(status(&asl), before, "the node's records, relationships, consents and queue are unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_grpc_health_metrics_and_logs_without_personal_data() {
    let mut fed = Federation::new();
    let asl = federation_with_asl_api(&mut fed);
    let token = bearer(&asl, "pua-adi", "operatore_pua");

    // A system with a client certificate of the federation's CA, registered by fingerprint.
    let ca = ponte_certs_dev::DevCa::load(&fed.certs).unwrap();
    let issued = ca.issue(&ponte_certs_dev::Holder::node("cartella-sociale", ponte_proto::v1::EntityType::Comune, "Cartella sociale"), 5).unwrap();
    let cert = fed.dir.path().join("cartella.pem");
    let key = fed.dir.path().join("cartella.key");
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    let o = node(&asl, &["credentials", "add", "cartella-sociale", "--roles", "assistente_sociale", "--cert", cert.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = node(&asl, &["credentials", "list"]);
    assert!(text(&o).contains("cartella-sociale\tassistente_sociale\tclient certificate"), "{}", text(&o));
    assert!(text(&o).contains("pua-adi\toperatore_pua\tbearer credential"), "{}", text(&o));

    let served = Served::start(&asl, &fed.dir.path().join("serve.log"), true);
    let plain = https(&fed, None);
    wait_healthy(&plain, &served).await;
    let with_cert = https(&fed, Some((cert.to_str().unwrap(), key.to_str().unwrap())));
    let found: Value = with_cert
        .get(format!("{}/api/v1/persons", served.base))
        .query(&[("codice_fiscale", rossi())])
        .header("X-Ponte-Operator", OPERATOR)
        .header("X-Ponte-Role", "assistente_sociale")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["persons"][0]["record_id"], "P1", "{found}");
    // A valid certificate of the CA that is not registered: refused.
    let (other_cert, other_key) = fed.cert("asl-brindisi");
    let r = https(&fed, Some((&other_cert, &other_key)))
        .get(format!("{}/api/v1/persons?codice_fiscale={}", served.base, rossi()))
        .header("X-Ponte-Operator", OPERATOR)
        .header("X-Ponte-Role", "assistente_sociale")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // One answered and one refused question, for the metrics.
    let ask = |purpose: &str| {
        plain
            .post(format!("{}/api/v1/persons/P1/who-else", served.base))
            .on_behalf_of(&token, "operatore_pua")
            .json(&json!({"purpose": purpose}))
    };
    assert_eq!(ask("continuita_assistenziale").send().await.unwrap().status(), 200);
    assert_eq!(ask("curiosita").send().await.unwrap().status(), 422);

    // gRPC health and reflection on the same port.
    let port: u16 = served.base.rsplit(':').next().unwrap().parse().unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(fed.certs.join("ca.pem")).unwrap()))
        .domain_name("localhost");
    let ch = tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{port}")).unwrap().tls_config(tls).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    for service in ["", ponte_node::api::COORDINATOR_HEALTH] {
        let s = health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(s.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service:?}");
    }
    let mut refl = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(ch);
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl.server_reflection_info(tonic::codegen::tokio_stream::iter(vec![req])).await.unwrap().into_inner();
    let listed = format!("{:?}", stream.message().await.unwrap());
    assert!(listed.contains("grpc.health.v1.Health"), "{listed}");

    // Prometheus metrics: described, counting what happened, nothing about the person.
    let m = plain.get(format!("{}/metrics", served.base)).send().await.unwrap().text().await.unwrap();
    for name in ["ponte_node_questions_total", "ponte_node_question_seconds", "ponte_node_api_refusals_total", "ponte_node_outbox_depth", "ponte_node_relationships_shown_total", "ponte_node_searches_total"] {
        assert!(m.contains(&format!("# HELP {name}")), "{name} described:\n{m}");
    }
    let line = |prefix: &str| m.lines().find(|l| l.starts_with(prefix)).map(|l| l.rsplit(' ').next().unwrap().to_string());
    assert_eq!(line("ponte_node_questions_total{purpose=\"continuita_assistenziale\",outcome=\"answered\"}").as_deref(), Some("1"), "{m}");
    assert_eq!(line("ponte_node_api_refusals_total{code=\"invalid_value\"}").as_deref(), Some("1"), "{m}");
    assert_eq!(line("ponte_node_api_refusals_total{code=\"invalid_credentials\"}").as_deref(), Some("1"), "{m}");
    assert_eq!(line("ponte_node_relationships_shown_total{band=\"certain\"}").as_deref(), Some("1"), "{m}");
    assert_eq!(line("ponte_node_searches_total{by=\"codice_fiscale\"}").as_deref(), Some("1"), "{m}");
    let needles = [rossi(), "ROSSI".to_string(), "Rossi".to_string(), OPERATOR.to_string(), "P1".to_string(), token.clone()];
    for n in &needles {
        assert!(!m.contains(n.as_str()), "{n:?} in the metrics");
    }

    // Structured logs, one JSON object per line, with nothing identifying.
    drop(served);
    let logs = std::fs::read_to_string(fed.dir.path().join("serve.log")).unwrap();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{logs}");
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
    assert!(logs.contains("who-else answered"), "{logs}");
    for n in &needles {
        assert!(!logs.contains(n.as_str()), "{n:?} in the logs:\n{logs}");
    }
}
