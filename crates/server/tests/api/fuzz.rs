//! Property-based requests for every operation `/openapi.json` lists, against the live server.
//!
//! Each case is generated from the document: the operation's path parameters (the caller's own
//! id, another tenant's, an unknown one, or an odd one: percent-encoded slashes, NUL, bytes that
//! are not UTF-8, 2,000 characters), its query parameters (absent, valid by their schema, of the
//! wrong type or out of range, unknown), its key (the tenant's, none, an unknown one, the admin's)
//! and, where it takes one, its body: the document's example, or that example with a member
//! dropped, replaced by a value of another JSON type, by a huge string, a long array or objects
//! nested deep, an unknown member added, a byte that is not UTF-8, text that is not JSON, no body,
//! or an image whose bytes are bad (bad base64, bad `data:` URLs, bytes that are no image).
//!
//! What must hold for every answer: it is documented for the operation and matches its schema
//! (`Conformance::check`); it is never a 5xx; another tenant's id is never served; and a refused
//! mutation names what it broke (the member's key, or `image`). Seeded (a failure prints the
//! shrunk request; the same seed finds it again); `AETHER_FUZZ_CASES` raises the cases per
//! operation (default 48), `AETHER_FUZZ_SEED` (0-255, default 7) draws other ones.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{agent_body, builder, config, instant, turn, Server};
use crate::openapi::{document, Conformance};

/// What is done to the operation's valid body. Indices pick a member path (modulo their number).
#[derive(Debug, Clone)]
enum BodyCase {
    Valid,
    Drop(usize),
    WrongType(usize, usize),
    HugeString(usize, usize),
    LongArray(usize, usize),
    Deep(usize, usize),
    Unknown,
    BadUtf8,
    NotJson(&'static str),
    BadImage(usize),
    Empty,
}

/// Values of each JSON type; a wrong-type case takes one whose type differs from the member's.
const WRONG: [&str; 8] = ["null", "true", "12345", "-1", "1.5", "\"text\"", "[]", "{}"];

/// Image bytes that are not an image, or not even base64.
const BAD_IMAGES: [&str; 7] = [
    "data:image/png;base64,@@@@not-base64@@@@",
    "data:image/png;base64,",
    "data:;base64,aGVsbG8=",
    "data:image/png,not-base64",
    "data:image/png;base64,iVBORw0KGgo=",
    "aGVsbG8gd29ybGQ=",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
];

/// Path ids that are neither an id nor harmless: encoded separators, NUL, not UTF-8, long.
const ODD_IDS: [&str; 6] = ["..%2F..%2Fetc", "%00", "%FF%FE", "%C3%BC%F0%9F%98%80", "a%20b", "LONG"];

#[derive(Debug, Clone, Copy)]
enum Id {
    Own,
    OtherTenant,
    Unknown,
    Odd(usize),
}

#[derive(Debug, Clone)]
enum Query {
    None,
    Valid(usize),
    Invalid(usize, usize),
    UnknownName,
}

#[derive(Debug, Clone, Copy)]
enum Key {
    Tenant,
    Missing,
    Wrong,
    Admin,
}

#[derive(Debug, Clone)]
struct Case {
    body: BodyCase,
    id: Id,
    query: Query,
    key: Key,
}

fn case() -> impl Strategy<Value = Case> {
    let body = prop_oneof![
        4 => Just(BodyCase::Valid),
        3 => any::<usize>().prop_map(BodyCase::Drop),
        4 => (any::<usize>(), 0..WRONG.len()).prop_map(|(i, w)| BodyCase::WrongType(i, w)),
        1 => (any::<usize>(), prop_oneof![Just(10_000usize), Just(2_000_000)]).prop_map(|(i, n)| BodyCase::HugeString(i, n)),
        1 => (any::<usize>(), prop_oneof![Just(1_000usize), Just(100_000)]).prop_map(|(i, n)| BodyCase::LongArray(i, n)),
        1 => (any::<usize>(), prop_oneof![Just(100usize), Just(100_000)]).prop_map(|(i, n)| BodyCase::Deep(i, n)),
        1 => Just(BodyCase::Unknown),
        1 => Just(BodyCase::BadUtf8),
        1 => prop_oneof![Just("{"), Just("[]"), Just("null"), Just("\"text\""), Just("[1,2"), Just("{,}")].prop_map(BodyCase::NotJson),
        2 => (0..BAD_IMAGES.len()).prop_map(BodyCase::BadImage),
        1 => Just(BodyCase::Empty),
    ];
    let id = prop_oneof![
        3 => Just(Id::Own),
        2 => Just(Id::OtherTenant),
        1 => Just(Id::Unknown),
        2 => (0..ODD_IDS.len()).prop_map(Id::Odd),
    ];
    let query = prop_oneof![
        2 => Just(Query::None),
        2 => any::<usize>().prop_map(Query::Valid),
        3 => (any::<usize>(), any::<usize>()).prop_map(|(p, v)| Query::Invalid(p, v)),
        1 => Just(Query::UnknownName),
    ];
    let key = prop_oneof![
        8 => Just(Key::Tenant),
        1 => Just(Key::Missing),
        1 => Just(Key::Wrong),
        1 => Just(Key::Admin),
    ];
    (body, id, query, key).prop_map(|(body, id, query, key)| Case { body, id, query, key })
}

/// The ids the cases use: the caller's (tenant acme) and the other tenant's (globex).
struct Fixtures {
    agent: String,
    other_agent: String,
}

/// The valid body of an operation that takes one, with the fixtures' ids.
fn valid_body(op: &str, f: &Fixtures, n: u64) -> Value {
    match op {
        "createAgent" => {
            let mut b = agent_body(&["crm_lookup"]);
            b["name"] = json!("fuzzed");
            b["model_config"]["temperature"] = json!(0.2);
            b
        }
        "runTask" | "streamTask" => {
            let mut b = turn(&f.agent, "s-acme", &format!("fuzz-{n}"));
            b["metadata"] = json!({"k": "v"});
            b["execution_config"] = json!({"timeout": 30});
            b
        }
        "sendLiveMessage" => json!({"role": "user", "content": "and then?"}),
        "answerApproval" => json!({"approved": true, "user_message": "go ahead"}),
        other => panic!("no valid body for operation {other}"),
    }
}

/// JSON pointers of every object member of `v`, each with the key it names.
fn members(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                let path = format!("{at}/{k}");
                out.push((path.clone(), k.clone()));
                members(child, &path, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                members(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A marker put where raw text goes in, once the body is serialised.
const MARK: &str = "\u{1}fuzz-mark\u{1}";

/// The body's bytes, and the key a refusal must name (if the case broke a member).
fn body_bytes(valid: Value, case: &BodyCase) -> (Vec<u8>, Option<String>) {
    let mut paths = Vec::new();
    members(&valid, "", &mut paths);
    let pick = |i: usize| paths[i % paths.len()].clone();
    let mut body = valid;
    let mut raw: Option<Vec<u8>> = None;
    let mut names = None;
    match case {
        BodyCase::Valid => {}
        BodyCase::Drop(i) => {
            let (path, key) = pick(*i);
            let (parent, _) = path.rsplit_once('/').unwrap();
            if let Some(o) = body.pointer_mut(parent).and_then(Value::as_object_mut) {
                o.remove(&key);
            }
            names = Some(key);
        }
        BodyCase::WrongType(i, w) => {
            let (path, key) = pick(*i);
            let was = json_type(body.pointer(&path).unwrap());
            let wrong = WRONG
                .iter()
                .cycle()
                .skip(*w)
                .map(|t| serde_json::from_str::<Value>(t).unwrap())
                .find(|v| json_type(v) != was)
                .unwrap();
            *body.pointer_mut(&path).unwrap() = wrong;
            names = Some(key);
        }
        BodyCase::HugeString(i, n) => {
            let (path, key) = pick(*i);
            names = Some(key);
            *body.pointer_mut(&path).unwrap() = Value::String("x".repeat(*n));
        }
        BodyCase::LongArray(i, n) => {
            let (path, key) = pick(*i);
            names = Some(key);
            *body.pointer_mut(&path).unwrap() = Value::String(MARK.into());
            raw = Some(format!("[{}0]", "0,".repeat(n - 1)).into_bytes());
        }
        BodyCase::Deep(i, n) => {
            let (path, key) = pick(*i);
            names = Some(key);
            *body.pointer_mut(&path).unwrap() = Value::String(MARK.into());
            raw = Some(format!("{}1{}", "{\"a\":".repeat(*n), "}".repeat(*n)).into_bytes());
        }
        BodyCase::Unknown => {
            body["no_such_member"] = json!(1);
            names = Some("no_such_member".into());
        }
        BodyCase::BadUtf8 => {
            let (path, key) = paths
                .iter()
                .find(|(p, _)| body.pointer(p).is_some_and(Value::is_string))
                .cloned()
                .unwrap_or_else(|| pick(0));
            names = Some(key);
            *body.pointer_mut(&path).unwrap() = Value::String(MARK.into());
            raw = Some(b"\"bad \xff\xfe utf-8\"".to_vec());
        }
        // Broken as a whole: a refusal names the body.
        BodyCase::NotJson(text) => return (text.as_bytes().to_vec(), Some("body".into())),
        BodyCase::Empty => return (Vec::new(), Some("body".into())),
        BodyCase::BadImage(i) => {
            let image = json!([{"image_reference": {"image_path": BAD_IMAGES[*i], "image_format": "png"}}]);
            let at = if body.pointer("/messages/0/content").is_some() {
                "/messages/0/content"
            } else {
                "/content"
            };
            if let Some(content) = body.pointer_mut(at) {
                *content = image;
                names = Some("image".into());
            }
        }
    }
    let text = serde_json::to_vec(&body).unwrap();
    let Some(raw) = raw else { return (text, names) };
    let mark = serde_json::to_vec(&Value::String(MARK.into())).unwrap();
    let at = text.windows(mark.len()).position(|w| w == mark).unwrap();
    let mut out = text[..at].to_vec();
    out.extend_from_slice(&raw);
    out.extend_from_slice(&text[at + mark.len()..]);
    (out, names)
}

/// One query parameter's value: valid by its schema, or not.
fn query_value(schema: &Value, valid: bool, pick: usize) -> String {
    let ty = schema["type"].as_str().unwrap_or("string");
    if valid {
        return match (ty, schema["enum"].as_array()) {
            (_, Some(e)) => e[pick % e.len()].as_str().unwrap().to_owned(),
            ("integer", _) => schema["minimum"].as_i64().unwrap_or(0).max(1).to_string(),
            ("boolean", _) => "false".into(),
            _ => "x".into(),
        };
    }
    let bad: &[&str] = match (ty, schema["enum"].as_array()) {
        (_, Some(_)) => &["bogus", "", "ACTIVE"],
        ("integer", _) => &["abc", "-1", "0", "99999999999999999999999", "1.5", "", "1e3"],
        ("boolean", _) => &["maybe", "2", ""],
        _ => &["%FF", "%00"],
    };
    bad[pick % bad.len()].to_owned()
}

/// The text a refusal gives about what was wrong: `Error` or `TaskResult` bodies.
fn refusal_text(body: &Value) -> String {
    [
        &body["error"]["message"],
        &body["error"]["field"],
        &body["error"]["details"],
        &body["error_message"],
    ]
    .iter()
    .filter(|v| !v.is_null())
    .map(|v| v.to_string())
    .collect::<Vec<_>>()
    .join(" ")
}

struct Op {
    method: Method,
    template: String,
    id: String,
    query: Vec<(String, Value)>,
    has_body: bool,
}

fn operations(doc: &Value) -> Vec<Op> {
    let mut out = Vec::new();
    for (template, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let query = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| (p["name"].as_str().unwrap().to_owned(), p["schema"].clone()))
                .collect();
            out.push(Op {
                method: method.to_uppercase().parse().unwrap(),
                template: template.clone(),
                id: op["operationId"].as_str().unwrap().to_owned(),
                query,
                has_body: op["requestBody"].is_object(),
            });
        }
    }
    out
}

/// The id a path parameter gets for this case.
fn path_id(op: &Op, param: &str, id: Id, f: &Fixtures) -> String {
    let agent_route = op.template.starts_with("/v1/agents/");
    let session_route = op.template.starts_with("/v1/sessions/");
    match id {
        // Deleting the fixtures would leave the other cases nothing to find.
        Id::Own if op.method == Method::DELETE => "fuzz-unknown".into(),
        Id::Own if agent_route => f.agent.clone(),
        Id::Own if session_route => "s-acme".into(),
        Id::OtherTenant if agent_route => f.other_agent.clone(),
        Id::OtherTenant if session_route => "s-globex".into(),
        Id::Own | Id::OtherTenant | Id::Unknown => format!("fuzz-unknown-{param}"),
        Id::Odd(i) if ODD_IDS[i] == "LONG" => "l".repeat(2000),
        Id::Odd(i) => ODD_IDS[i].to_owned(),
    }
}

/// Sends one case and checks its answer against the document and the rules above.
async fn one(
    s: &Server,
    c: &tokio::sync::Mutex<Conformance>,
    op: &Op,
    f: &Fixtures,
    case: &Case,
    n: u64,
) -> Result<(), String> {
    let mut path = op.template.clone();
    let params: Vec<String> = op
        .template
        .split('{')
        .skip(1)
        .map(|rest| rest.split('}').next().unwrap().to_owned())
        .collect();
    for p in &params {
        path = path.replace(&format!("{{{p}}}"), &path_id(op, p, case.id, f));
    }
    // What the case broke: a refusal must name one of them.
    let mut broken: Vec<String> = Vec::new();
    // Only an id that is not UTF-8 once decoded is invalid; the other odd ones are merely unknown.
    if matches!(case.id, Id::Odd(i) if ODD_IDS[i] == "%FF%FE") {
        broken.extend(params.iter().cloned());
    }
    let mut query = Vec::new();
    match &case.query {
        Query::None => {}
        _ if op.query.is_empty() => {}
        Query::Valid(i) => {
            let (name, schema) = &op.query[i % op.query.len()];
            query.push(format!("{name}={}", query_value(schema, true, *i)));
        }
        Query::Invalid(i, v) => {
            let (name, schema) = &op.query[i % op.query.len()];
            query.push(format!("{name}={}", query_value(schema, false, *v)));
            broken.push(name.clone());
        }
        Query::UnknownName => {
            query.push("no_such_parameter=1".into());
            broken.push("no_such_parameter".into());
        }
    }
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    // The profile route runs for `seconds` with the admin key: the other routes' cases cover it.
    let key = match case.key {
        Key::Admin if op.id == "cpuProfile" => Some("key-acme"),
        Key::Admin => Some("key-admin"),
        Key::Tenant => Some("key-acme"),
        Key::Missing => None,
        Key::Wrong => Some("key-nobody"),
    };
    let mut request = s.req(op.method.clone(), &path, key);
    let mut body_len = 0;
    if op.has_body {
        let (bytes, named) = body_bytes(valid_body(&op.id, f, n), &case.body);
        broken.extend(named);
        body_len = bytes.len();
        request = request.header("content-type", "application/json").body(bytes);
    }
    let what = format!("{} {path} ({case:?})", op.method);
    let resp = match tokio::time::timeout(Duration::from_secs(20), request.send()).await {
        Err(_) => return Err(format!("{what}: no answer in 20 s")),
        Ok(Ok(resp)) => resp,
        // A request refused for its key is answered before its body is read, and the connection
        // closed (`Connection: close`): a client still writing a large body sees the close first.
        Ok(Err(e)) if !matches!(case.key, Key::Tenant | Key::Admin) && body_len > 64 * 1024 && e.is_request() => {
            return Ok(());
        }
        Ok(Err(e)) => return Err(format!("{what}: {e:?}")),
    };
    let status = resp.status();
    if status.is_server_error() {
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("{what}: {status} {text}"));
    }
    let sse = resp
        .headers()
        .get("content-type")
        .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
    let body = if sse {
        // A live turn: the first event is checked, then the connection is closed (a cancel).
        let documented = c.lock().await.operation(&op.method, &op.template)["responses"][status.as_str()].is_object();
        if !documented {
            return Err(format!("{what}: {status} not in the document"));
        }
        let mut resp = resp;
        let mut buf = String::new();
        while !buf.contains("\n\n") {
            match tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await {
                Ok(Ok(Some(b))) => buf.push_str(&String::from_utf8_lossy(&b)),
                other => return Err(format!("{what}: the stream ended before its first event: {other:?}")),
            }
        }
        let frame = &buf[..buf.find("\n\n").unwrap() + 2];
        c.lock().await.check_event(frame);
        Value::Null
    } else {
        c.lock().await.check(op.method.clone(), &op.template, resp).await.1
    };
    if matches!(case.id, Id::OtherTenant) && !params.is_empty() && status.is_success() && key == Some("key-acme") {
        return Err(format!("{what}: another tenant's id was served: {status} {body}"));
    }
    if status == StatusCode::BAD_REQUEST && body["error"]["field"] == "?" {
        return Err(format!("{what}: refused naming the field `?`: {body}"));
    }
    if !broken.is_empty() && status == StatusCode::BAD_REQUEST {
        let text = refusal_text(&body);
        if !broken.iter().any(|name| text.contains(name.as_str())) {
            return Err(format!("{what}: refused without naming any of {broken:?}: {body}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_to_every_operation_get_documented_answers() {
    let mut cfg = config();
    cfg.add_env_admin_keys("key-admin");
    cfg.limits.max_body_bytes = 1024 * 1024;
    cfg.validate().unwrap();
    let s = Server::start(cfg, builder(instant()).build().unwrap()).await;
    let doc = document(&s).await;

    // Each tenant has an agent and a session with one turn.
    let (_, a) = s.post("/v1/agents", "key-acme", agent_body(&["crm_lookup"])).await;
    let (_, g) = s.post("/v1/agents", "key-globex", agent_body(&["crm_lookup"])).await;
    let f = Fixtures {
        agent: a["agent_id"].as_str().unwrap().to_owned(),
        other_agent: g["agent_id"].as_str().unwrap().to_owned(),
    };
    let (st, _) = s.post("/v1/tasks", "key-acme", turn(&f.agent, "s-acme", "fix-1")).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .post("/v1/tasks", "key-globex", turn(&f.other_agent, "s-globex", "fix-2"))
        .await;
    assert_eq!(st, StatusCode::OK);

    let cases: u32 = std::env::var("AETHER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let seed: u8 = std::env::var("AETHER_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let ops = operations(&doc);
    assert!(ops.len() >= 17, "the document lists {} operations", ops.len());
    let conformance = tokio::sync::Mutex::new(Conformance::new(doc));
    let handle = tokio::runtime::Handle::current();
    let counter = std::sync::atomic::AtomicU64::new(0);
    let mut sent = 0u64;
    for op in &ops {
        let config = Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 256,
            ..Config::default()
        };
        let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]));
        let result = tokio::task::block_in_place(|| {
            runner.run(&case(), |case| {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                handle
                    .block_on(one(&s, &conformance, op, &f, &case, n))
                    .map_err(TestCaseError::fail)
            })
        });
        if let Err(e) = result {
            panic!("{} {}: {e}", op.method, op.template);
        }
        sent += u64::from(cases);
    }
    eprintln!("fuzz: {sent} generated requests over {} operations", ops.len());
    s.shutdown().await;
}
