//! A programmable HTTP receiver for the delivery tests, and the API helpers they share.
//!
//! The receiver is a real axum server on a loopback socket, started inside the test. It
//! records every request (arrival instant, method, path and query, headers, body) and
//! answers according to a [`Behaviour`] that the test can switch at any time.

use std::{
    collections::HashMap,
    net::{SocketAddr, TcpListener as StdTcpListener},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::harness::{Client, Gateway};

/// How often waits re-check their condition.
const POLL: Duration = Duration::from_millis(50);

/// The body of every failure answer: larger than the 4 KiB the gateway keeps of a
/// response body, so tests can check the cap.
pub const FAILURE_BODY_LEN: usize = 6 * 1024;

/// How the receiver answers. Failure decisions are made per event (the `webhook-id`
/// header) and per request path, so one receiver can serve several webhooks on distinct
/// paths without their counts mixing.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Every request gets this status: 200 is a healthy receiver, 400 a rejecting one.
    Always(u16),
    /// The first `n` requests of each event get `status` (with `Retry-After: <secs>` when
    /// set), later ones 200.
    FailFirst {
        n: u32,
        status: u16,
        retry_after: Option<u32>,
    },
    /// 500 with probability `p`. The draw is a seeded hash of (path, event, attempt
    /// number), not a shared random stream, so a run answers the same way whatever order
    /// concurrent requests arrive in.
    FailRandomly { p: f64, seed: u64 },
    /// Never answers: the request is held until the receiver goes away.
    Hang,
}

impl Behaviour {
    pub const OK: Behaviour = Behaviour::Always(200);
}

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub at: Instant,
    pub method: Method,
    /// Path and query, e.g. `/hook?key=abc`.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status it was answered with; `None` if it was never answered.
    pub answered: Option<u16>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The event id the gateway put in `webhook-id` ("" when missing).
    pub fn webhook_id(&self) -> &str {
        self.header("webhook-id").unwrap_or("")
    }

    pub fn succeeded(&self) -> bool {
        matches!(self.answered, Some(200..=299))
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    /// Decoded query parameters in order.
    pub fn query(&self) -> Vec<(String, String)> {
        let url = url::Url::parse(&format!("http://receiver{}", self.uri)).unwrap();
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

#[derive(Default)]
struct Book {
    requests: Vec<Recorded>,
    /// Requests so far per (path, webhook-id): the attempt number of the next one.
    attempts: HashMap<(String, String), u32>,
    /// 2xx answers per webhook-id; kept apart so waits over thousands of requests are cheap.
    successes: HashMap<String, u32>,
    in_flight: usize,
    max_in_flight: usize,
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    book: Mutex<Book>,
}

impl Shared {
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap()
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Lowers the in-flight gauge when a handler finishes or is dropped mid-way (a hanging
/// request whose connection the gateway closed).
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.book().in_flight -= 1;
    }
}

impl Receiver {
    /// A receiver answering 200 to everything.
    pub async fn start() -> Receiver {
        Self::with(Behaviour::OK).await
    }

    pub async fn with(behaviour: Behaviour) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(behaviour),
            book: Mutex::new(Book::default()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            addr,
            shared,
            server,
        }
    }

    /// The URL of `path` (starting with `/`) on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = behaviour;
    }

    /// A copy of everything received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.book().requests.clone()
    }

    /// How many requests carried this `webhook-id`.
    pub fn count(&self, webhook_id: &str) -> usize {
        self.shared
            .book()
            .requests
            .iter()
            .filter(|r| r.webhook_id() == webhook_id)
            .count()
    }

    /// The `webhook-id` of every request, in arrival order.
    pub fn webhook_ids(&self) -> Vec<String> {
        self.shared
            .book()
            .requests
            .iter()
            .map(|r| r.webhook_id().to_string())
            .collect()
    }

    /// Event ids in the order of their first 2xx answer.
    pub fn first_success_order(&self) -> Vec<String> {
        let book = self.shared.book();
        let mut seen = std::collections::HashSet::new();
        book.requests
            .iter()
            .filter(|r| r.succeeded() && seen.insert(r.webhook_id()))
            .map(|r| r.webhook_id().to_string())
            .collect()
    }

    /// 2xx answers per event id.
    pub fn successes(&self) -> HashMap<String, u32> {
        self.shared.book().successes.clone()
    }

    /// How many distinct events were answered 2xx at least once.
    pub fn delivered_count(&self) -> usize {
        self.shared.book().successes.len()
    }

    /// The most requests that were ever open at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.book().max_in_flight
    }

    /// Polls `done` over the recorded requests until it holds or `within` passes. `done`
    /// runs under the receiver's lock, so it must not call the receiver's methods.
    pub async fn try_wait(&self, within: Duration, done: impl Fn(&[Recorded]) -> bool) -> bool {
        poll_until(within, || done(&self.shared.book().requests)).await
    }

    /// Like [`Receiver::try_wait`], but a timeout fails the test with what was received
    /// and the tail of the gateway's log.
    #[track_caller]
    pub fn wait_for<'a>(
        &'a self,
        gw: &'a Gateway,
        within: Duration,
        what: &'a str,
        done: impl Fn(&[Recorded]) -> bool + 'a,
    ) -> impl Future<Output = Vec<Recorded>> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            if !self.try_wait(within, done).await {
                // Copy first: formatting must not hold the receiver's lock.
                let received = self.requests();
                panic!(
                    "{caller}: receiver: not within {within:?}: {what}\nreceived ({}): {}\ngateway log tail:\n{}",
                    received.len(),
                    summary(&received),
                    log_tail(gw)
                );
            }
            self.requests()
        }
    }

    /// Waits until `n` distinct events were answered 2xx.
    pub async fn wait_delivered(&self, gw: &Gateway, n: usize, within: Duration) {
        if !poll_until(within, || self.delivered_count() >= n).await {
            // Copy first: a lock guard living through the panic's arguments would deadlock
            // against the next one.
            let (delivered, received) = (self.delivered_count(), self.requests());
            panic!(
                "receiver: not within {within:?}: {n} events answered 2xx, only {delivered}\nreceived ({}): {}\ngateway log tail:\n{}",
                received.len(),
                summary(&received),
                log_tail(gw)
            );
        }
    }

    /// Waits until `n` requests arrived.
    pub async fn wait_requests(&self, gw: &Gateway, n: usize, within: Duration) -> Vec<Recorded> {
        let what = format!("{n} requests");
        self.wait_for(gw, within, &what, |r| r.len() >= n).await
    }
}

/// `webhook-id:status` of each request, capped, for failure messages.
pub fn summary(requests: &[Recorded]) -> String {
    let shown: Vec<String> = requests
        .iter()
        .take(40)
        .map(|r| {
            let status = r.answered.map_or("-".into(), |s| s.to_string());
            format!("{} {}:{status}", r.method, r.webhook_id())
        })
        .collect();
    let more = requests.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} … and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Polls `done` every 50 ms until it holds (true) or `within` passes (false).
pub async fn poll_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A URL where nothing listens: a port that was bound and released, so connecting to it
/// is refused.
pub fn refused_url() -> String {
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook")
}

/// SplitMix64: a tiny, well-mixed hash for the seeded failure draws.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn draw(seed: u64, path: &str, webhook_id: &str, attempt: u32) -> f64 {
    let mut h = mix(seed);
    for byte in path.bytes().chain([0]).chain(webhook_id.bytes()) {
        h = mix(h ^ u64::from(byte));
    }
    h = mix(h ^ u64::from(attempt));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// What to answer: a status and an optional `Retry-After`, or `None` to hang.
fn decide(
    behaviour: &Behaviour,
    path: &str,
    webhook_id: &str,
    attempt: u32,
) -> Option<(u16, Option<u32>)> {
    match *behaviour {
        Behaviour::Always(status) => Some((status, None)),
        Behaviour::FailFirst {
            n,
            status,
            retry_after,
        } => Some(if attempt < n {
            (status, retry_after)
        } else {
            (200, None)
        }),
        Behaviour::FailRandomly { p, seed } => Some(if draw(seed, path, webhook_id, attempt) < p {
            (500, None)
        } else {
            (200, None)
        }),
        Behaviour::Hang => None,
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let path = uri.path().to_string();
    let uri = uri
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_string());
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let behaviour = shared.behaviour.lock().unwrap().clone();
    let answer = {
        let mut book = shared.book();
        let attempt = book
            .attempts
            .entry((path.clone(), webhook_id.clone()))
            .or_default();
        let answer = decide(&behaviour, &path, &webhook_id, *attempt);
        *attempt += 1;
        if let Some((200..=299, _)) = answer {
            *book.successes.entry(webhook_id).or_default() += 1;
        }
        book.requests.push(Recorded {
            at,
            method,
            uri,
            headers,
            body,
            answered: answer.map(|(status, _)| status),
        });
        book.in_flight += 1;
        book.max_in_flight = book.max_in_flight.max(book.in_flight);
        answer
    };
    let _in_flight = InFlight(shared.clone());
    let Some((status, retry_after)) = answer else {
        // Longer than any timeout a test configures; the gateway gives up first.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return StatusCode::GATEWAY_TIMEOUT.into_response();
    };
    let status = StatusCode::from_u16(status).unwrap();
    let body = if status.is_success() {
        "ok".to_string()
    } else {
        "no ".repeat(FAILURE_BODY_LEN / 3)
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert("x-receiver", HeaderValue::from_static("e2e"));
    if let Some(secs) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

// ---------------------------------------------------------------------------------------
// Gateway-side helpers shared by the delivery tests.
// ---------------------------------------------------------------------------------------

/// The last lines of the gateway's log, for failure messages, without colour codes.
pub fn log_tail(gw: &Gateway) -> String {
    let log = strip_ansi(&gw.log());
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Removes terminal escape sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Polls `probe` until it returns `Some` or `within` passes; a timeout fails the test
/// with the last value seen and the tail of the gateway's log.
pub async fn eventually<T>(
    gw: &Gateway,
    within: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => panic!(
                "not within {within:?}: {what}\nlast seen: {last}\ngateway log tail:\n{}",
                log_tail(gw)
            ),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// A short retry schedule: the first attempt at once, then `retries` retries 1 s apart.
pub fn schedule(retries: usize) -> Value {
    let mut steps = vec!["PT0S"];
    steps.extend(std::iter::repeat_n("PT1S", retries));
    json!(steps)
}

/// Creates a webhook for `order.created` on `url` with `extra` fields merged in; returns
/// the created webhook.
pub async fn create_webhook(t: &Client<'_>, id: &str, url: &str, extra: Value) -> Value {
    let mut body = json!({
        "id": id, "url": url, "event_types": ["order.created"],
        "timeout": "PT1S", "retry": {"schedule": schedule(3)},
    });
    for (key, value) in extra.as_object().expect("extra is an object") {
        body[key] = value.clone();
    }
    let created = t.post("/webhooks", body).await.expect(201).body;
    assert_eq!(created["status"], "running", "{created}");
    created
}

/// Ingests one `order.created` event with this id; returns the id the gateway gave it.
pub async fn ingest(t: &Client<'_>, id: &str, payload: Value) -> String {
    let reply = t
        .post(
            "/events",
            json!({"event_type": "order.created", "id": id, "payload": payload}),
        )
        .await
        .expect(202);
    assert_eq!(reply.body["id"], id);
    id.to_string()
}

/// Ingests `order.created` events with these ids in one batch, in order.
pub async fn ingest_batch(t: &Client<'_>, ids: &[String]) {
    let events: Vec<Value> = ids
        .iter()
        .map(|id| json!({"event_type": "order.created", "id": id, "payload": {"n": id}}))
        .collect();
    let reply = t
        .post("/events/batch", json!({"events": events}))
        .await
        .expect(202);
    assert_eq!(reply.body["ids"], json!(ids));
}

/// Every message of a webhook (`/webhooks/{id}/messages`), following the iterator.
/// `query` is appended as is (e.g. `&include_runs=true`).
pub async fn webhook_messages(t: &Client<'_>, webhook: &str, query: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut iterator: Option<String> = None;
    loop {
        let mut path = format!("/webhooks/{webhook}/messages?limit=1000{query}");
        if let Some(it) = &iterator {
            path.push_str(&format!("&iterator={it}"));
        }
        let page = t.get(&path).await.expect(200).body;
        all.extend(page["data"].as_array().expect("data").iter().cloned());
        if page["done"] == true {
            return all;
        }
        iterator = Some(page["iterator"].as_str().expect("iterator").to_string());
    }
}

/// The message of `event_id` for `webhook`, if listed.
pub async fn message(t: &Client<'_>, webhook: &str, event_id: &str) -> Option<Value> {
    webhook_messages(t, webhook, "")
        .await
        .into_iter()
        .find(|m| m["id"] == event_id)
}

/// Waits until the message of `event_id` for `webhook` has `status`; returns it.
pub async fn wait_status(
    t: &Client<'_>,
    webhook: &str,
    event_id: &str,
    status: &str,
    within: Duration,
) -> Value {
    let what = format!("message {event_id} of {webhook} is {status}");
    eventually(t.gateway, within, &what, async || {
        match message(t, webhook, event_id).await {
            Some(m) if m["status"] == status => Ok(m),
            Some(m) => Err(m.to_string()),
            None => Err("not listed".into()),
        }
    })
    .await
}

/// The attempts of one event, oldest first (`/messages/{id}/attempts`).
pub async fn attempts(t: &Client<'_>, event_id: &str) -> Vec<Value> {
    let body = t
        .get(&format!("/messages/{event_id}/attempts"))
        .await
        .expect(200)
        .body;
    body["data"].as_array().expect("data").clone()
}

/// The `status_code` of each attempt, `None` where there was no response.
pub fn status_codes(attempts: &[Value]) -> Vec<Option<u64>> {
    attempts.iter().map(|a| a["status_code"].as_u64()).collect()
}

/// The webhook's current `status` field.
pub async fn webhook_status(t: &Client<'_>, webhook: &str) -> String {
    let body = t
        .get(&format!("/webhooks/{webhook}"))
        .await
        .expect(200)
        .body;
    body["status"].as_str().unwrap_or_default().to_string()
}

/// Asserts the shape of an attempt as the contract gives it.
#[track_caller]
pub fn assert_attempt_shape(attempt: &Value, event_id: &str, webhook: &str) {
    assert!(
        attempt["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{attempt}"
    );
    assert_eq!(attempt["event_id"], event_id, "{attempt}");
    assert_eq!(attempt["webhook_id"], webhook, "{attempt}");
    let at = attempt["at"].as_str().expect("at is a string");
    at.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("at `{at}` is not RFC 3339: {e}"));
    assert!(attempt["duration_ms"].is_number(), "{attempt}");
    assert!(
        attempt["status_code"].is_u64() || attempt["status_code"].is_null(),
        "{attempt}"
    );
    assert!(
        attempt["error"].is_null() || attempt["error"].is_string(),
        "{attempt}"
    );
    assert!(attempt["response_headers"].is_object(), "{attempt}");
    assert!(attempt["response_body"].is_string(), "{attempt}");
}

/// The receiver itself, checked without a gateway so that a delivery test failure points
/// at the engine rather than at the test double.
#[cfg(test)]
mod self_test {
    use super::*;

    async fn send(http: &reqwest::Client, url: &str, id: &str) -> reqwest::Response {
        http.post(url)
            .header("webhook-id", id)
            .body("{}")
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn receiver_answers_as_programmed() {
        let http = reqwest::Client::new();
        let rx = Receiver::with(Behaviour::FailFirst {
            n: 2,
            status: 429,
            retry_after: Some(2),
        })
        .await;
        let url = rx.url("/a?x=1");
        let first = send(&http, &url, "e-1").await;
        assert_eq!(first.status(), 429);
        assert_eq!(first.headers()["retry-after"], "2");
        assert_eq!(send(&http, &url, "e-1").await.status(), 429);
        assert_eq!(send(&http, &url, "e-1").await.status(), 200);
        // Counted per event: another id starts failing afresh.
        assert_eq!(send(&http, &url, "e-2").await.status(), 429);
        assert_eq!(rx.count("e-1"), 3);
        assert_eq!(rx.webhook_ids(), ["e-1", "e-1", "e-1", "e-2"]);
        assert_eq!(rx.first_success_order(), ["e-1"]);
        let recorded = &rx.requests()[0];
        assert_eq!(recorded.uri, "/a?x=1");
        assert_eq!(recorded.query(), [("x".to_string(), "1".to_string())]);
        assert_eq!(&recorded.body[..], b"{}");

        rx.set(Behaviour::Always(400));
        assert_eq!(send(&http, &url, "e-3").await.status(), 400);
        rx.set(Behaviour::OK);
        assert_eq!(send(&http, &url, "e-3").await.status(), 200);
        assert_eq!(rx.max_in_flight(), 1);
    }

    #[tokio::test]
    async fn random_failures_are_seeded_and_near_p() {
        let failures = |seed| {
            (0..1000)
                .filter(|i| draw(seed, "/p", &format!("e-{i}"), 0) < 0.3)
                .count()
        };
        assert_eq!(failures(7), failures(7), "same seed, same draws");
        assert!((250..350).contains(&failures(7)), "{}", failures(7));
        assert_ne!(failures(7), failures(8));
    }

    #[tokio::test]
    async fn hang_and_refused() {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let rx = Receiver::with(Behaviour::Hang).await;
        let err = http.post(rx.url("/h")).send().await.unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert_eq!(rx.requests()[0].answered, None);
        let err = http.post(refused_url()).send().await.unwrap_err();
        assert!(err.is_connect(), "{err}");
    }
}
