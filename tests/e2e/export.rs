//! Export to S3 (issue 6) against a real S3-compatible server: `moto_server` from PyPI
//! (`tests/requirements.txt`), started by each test on 127.0.0.1 with its own port. The
//! gateway signs with object_store; the test reads the bucket back with plain requests
//! (moto does not check signatures) and checks names, NDJSON content, rotation, and that
//! an S3 outage or a `kill -9` of the gateway loses no event.

use std::{
    collections::{BTreeMap, HashMap},
    net::TcpListener as StdTcpListener,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{net::TcpListener, task::AbortHandle};

use crate::{
    harness::{Client, Gateway},
    receiver::{eventually, log_tail, webhook_messages},
};

const BUCKET: &str = "hookgate-exports";
const ACCESS_KEY: &str = "hookgate-e2e";
const SECRET_KEY: &str = "e2e-secret-access-key-0123456789";
const PIP_INSTALL: &str = "python3 -m pip install 'moto[server]==5.*'";

fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A moto S3 server process on a loopback port. Killed when dropped.
struct Moto {
    child: Option<Child>,
    port: u16,
    http: reqwest::Client,
    /// Once moto checks signatures, the test reads through boto3 with this access key
    /// (id, secret): a client independent of the gateway's.
    signed: Option<(String, String)>,
}

impl Moto {
    async fn start() -> Moto {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run python3 ({e}); the S3 tests need {PIP_INSTALL}")
            });
        let mut moto = Moto {
            child: Some(child),
            port,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .no_proxy()
                .default_headers(owner_header())
                .build()
                .unwrap(),
            signed: None,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = moto.http.get(moto.url()).send().await
                && r.status().is_success()
            {
                break;
            }
            let child = moto.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                use std::io::Read;
                let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
                panic!(
                    "moto_server exited with {status}; the S3 tests need it: {PIP_INSTALL}\n{stderr}"
                );
            }
            assert!(Instant::now() < deadline, "moto_server not ready in 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Its log is not needed; an unread pipe would fill up and block it.
        drop(moto.child.as_mut().unwrap().stderr.take());
        moto
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn create_bucket(&self) {
        let r = self
            .http
            .put(format!("{}/{BUCKET}", self.url()))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// An IAM user allowed `s3:*`, and its access key: (id, secret). moto accepts these
    /// calls unsigned until `enforce_signatures`.
    async fn iam_access_key(&self) -> (String, String) {
        let iam = |form: Vec<(&str, &str)>| {
            self.http
                .post(self.url())
                // moto routes by the service in the credential scope.
                .header(
                    reqwest::header::AUTHORIZATION,
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/iam/aws4_request, \
                     SignedHeaders=host, Signature=0",
                )
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(
                    url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(form)
                        .finish(),
                )
                .send()
        };
        let user = [("UserName", "hookgate"), ("Version", "2010-05-08")];
        let call = |action: &'static str, extra: Vec<(&'static str, &'static str)>| {
            let mut form = vec![("Action", action)];
            form.extend(user);
            form.extend(extra);
            iam(form)
        };
        call("CreateUser", vec![])
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        call(
            "PutUserPolicy",
            vec![("PolicyName", "s3"), ("PolicyDocument", policy)],
        )
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
        let xml = call("CreateAccessKey", vec![])
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let id = between(&xml, "<AccessKeyId>", "</AccessKeyId>").expect("AccessKeyId");
        let secret = between(&xml, "<SecretAccessKey>", "</SecretAccessKey>").expect("secret");
        (id.to_string(), secret.to_string())
    }

    /// From now on moto verifies every request's SigV4 signature against its IAM keys.
    async fn enforce_signatures(&mut self, (id, secret): &(String, String)) {
        let r = self
            .http
            .post(format!("{}/moto-api/reset-auth", self.url()))
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body("0")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "reset-auth: {}", r.status());
        self.signed = Some((id.clone(), secret.clone()));
    }

    /// Through boto3 with the signing key: `list` gives (key, size) under a prefix,
    /// `get` one object's bytes. (moto 5 miscomputes signatures of listings whose prefix
    /// holds a `/`; the prefixes listed here have none.)
    fn boto3(&self, mode: &str, prefix_or_key: &str) -> Vec<(String, usize, Vec<u8>)> {
        let (id, secret) = self.signed.as_ref().expect("signatures enforced");
        let script = r#"
import base64, json, sys, boto3
url, bucket, key, secret, mode, name = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=key,
                  aws_secret_access_key=secret, region_name="us-east-1")
if mode == "get":
    body = s3.get_object(Bucket=bucket, Key=name)["Body"].read()
    print(json.dumps([name, len(body), base64.b64encode(body).decode()]))
else:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=name):
        for obj in page.get("Contents", []):
            print(json.dumps([obj["Key"], obj["Size"], ""]))
"#;
        let out = Command::new("python3")
            .args([
                "-c",
                script,
                &self.url(),
                BUCKET,
                id,
                secret,
                mode,
                prefix_or_key,
            ])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "boto3 {mode} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        use base64::Engine;
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                let (key, size, body): (String, usize, String) =
                    serde_json::from_str(line).unwrap();
                let body = base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .unwrap();
                (key, size, body)
            })
            .collect()
    }

    /// Keys under `prefix` with their sizes (ListObjectsV2, all pages).
    async fn list(&self, prefix: &str) -> Vec<(String, usize)> {
        if self.signed.is_some() {
            return self
                .boto3("list", prefix)
                .into_iter()
                .map(|(key, size, _)| (key, size))
                .collect();
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2".to_string()), ("prefix", prefix.into())];
            if let Some(t) = &token {
                query.push(("continuation-token", t.clone()));
            }
            let url =
                url::Url::parse_with_params(&format!("{}/{BUCKET}", self.url()), &query).unwrap();
            let xml = self
                .http
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            for contents in xml.split("<Contents>").skip(1) {
                let key = between(contents, "<Key>", "</Key>").expect("Key");
                let size = between(contents, "<Size>", "</Size>").expect("Size");
                out.push((key.to_string(), size.parse().unwrap()));
            }
            match between(&xml, "<NextContinuationToken>", "</NextContinuationToken>") {
                Some(next) if xml.contains("<IsTruncated>true</IsTruncated>") => {
                    token = Some(next.to_string())
                }
                _ => return out,
            }
        }
    }

    /// The ETags under `prefix` (unsigned mode): a multipart upload's ends in `-<parts>`.
    async fn etags(&self, prefix: &str) -> Vec<String> {
        let url = url::Url::parse_with_params(
            &format!("{}/{BUCKET}", self.url()),
            &[("list-type", "2"), ("prefix", prefix)],
        )
        .unwrap();
        let xml = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        xml.split("<Contents>")
            .skip(1)
            .map(|c| between(c, "<ETag>", "</ETag>").expect("ETag").to_string())
            .collect()
    }

    async fn get(&self, key: &str) -> Vec<u8> {
        if self.signed.is_some() {
            return self.boto3("get", key).remove(0).2;
        }
        let r = self
            .http
            .get(format!("{}/{BUCKET}/{key}", self.url()))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {key}: {}", r.status());
        r.bytes().await.unwrap().to_vec()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// moto does not verify signatures but does apply object ACLs: objects the gateway wrote
/// are private to its access key, so the test's reads name that key (unsigned).
fn owner_header() -> reqwest::header::HeaderMap {
    let value = format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=0"
    );
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, value.parse().unwrap());
    headers
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = start + text[start..].find(close)?;
    Some(&text[start..end])
}

/// One exported file as read back.
#[derive(Clone, Debug)]
struct File {
    key: String,
    /// The epoch millis in its name.
    millis: i64,
    size: usize,
    lines: Vec<Value>,
}

/// What a bucket prefix holds, read incrementally (objects are written once; a retried
/// upload rewrites the same bytes under the same key).
#[derive(Default)]
struct Seen {
    files: BTreeMap<String, File>,
}

impl Seen {
    /// Reads the files not seen yet; checks each name and line on the way.
    async fn refresh(&mut self, moto: &Moto, prefix: &str, tenant: &str) {
        for (key, size) in moto.list(prefix).await {
            if self.files.contains_key(&key) {
                continue;
            }
            let millis = parse_name(&key, prefix, tenant);
            let body = moto.get(&key).await;
            assert_eq!(body.len(), size, "{key}");
            assert!(body.ends_with(b"\n"), "{key} must end with a newline");
            let lines = body
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    serde_json::from_slice(l).unwrap_or_else(|e| {
                        panic!(
                            "{key}: a line is not JSON ({e}): {}",
                            String::from_utf8_lossy(l)
                        )
                    })
                })
                .collect();
            let file = File {
                key: key.clone(),
                millis,
                size,
                lines,
            };
            self.files.insert(key, file);
        }
    }

    /// How often each event id was exported.
    fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for file in self.files.values() {
            for line in &file.lines {
                *counts
                    .entry(line["id"].as_str().expect("id").to_string())
                    .or_insert(0) += 1;
            }
        }
        counts
    }

    fn missing<'a>(&self, ids: &'a [String]) -> Vec<&'a String> {
        let counts = self.counts();
        ids.iter().filter(|id| !counts.contains_key(*id)).collect()
    }

    /// Files in name (creation time) order.
    fn by_time(&self) -> Vec<File> {
        let mut files: Vec<File> = self.files.values().cloned().collect();
        files.sort_by(|a, b| (a.millis, &a.key).cmp(&(b.millis, &b.key)));
        files
    }
}

/// `{prefix}/{tenant}/{epoch_millis}-data-{random}.export` → the millis.
fn parse_name(key: &str, prefix: &str, tenant: &str) -> i64 {
    let rest = key
        .strip_prefix(&format!("{prefix}/{tenant}/"))
        .unwrap_or_else(|| panic!("{key} is not under {prefix}/{tenant}/"));
    let (millis, random) = rest
        .strip_suffix(".export")
        .and_then(|r| r.split_once("-data-"))
        .unwrap_or_else(|| panic!("{key} is not <millis>-data-<random>.export"));
    assert!(
        millis.len() == 13 && millis.bytes().all(|b| b.is_ascii_digit()),
        "{key}: epoch millis"
    );
    assert!(
        !random.is_empty() && random.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{key}: random part"
    );
    millis.parse().unwrap()
}

/// Polls the bucket until every id in `ids` is there.
async fn wait_exported(
    gw: &Gateway,
    moto: &Moto,
    seen: &mut Seen,
    (prefix, tenant): (&str, &str),
    ids: &[String],
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        seen.refresh(moto, prefix, tenant).await;
        let missing = seen.missing(ids);
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events not exported within {within:?}, e.g. {:?}\ngateway log tail:\n{}",
            missing.len(),
            ids.len(),
            &missing[..missing.len().min(5)],
            log_tail(gw)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The body of an s3 webhook: `order.created` only, retries 1 s apart, 1 s flushes; `extra`
/// fields are merged at the top, `destination` fields into the destination.
fn s3_webhook(id: &str, endpoint: &str, prefix: &str, extra: Value) -> Value {
    let mut body = json!({
        "id": id,
        "event_types": ["order.created"],
        "timeout": "PT2S",
        "retry": {"schedule": ["PT0S", "PT1S"]},
        "destination": {
            "type": "s3", "bucket": BUCKET, "key_prefix": prefix, "region": "us-east-1",
            "endpoint": endpoint, "path_style": true,
            "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY,
            "flush_interval": "PT1S", "max_file_bytes": 1024 * 1024,
        },
    });
    for (key, value) in extra.as_object().expect("extra is an object") {
        if key == "destination" {
            for (k, v) in value.as_object().expect("destination is an object") {
                body["destination"][k] = v.clone();
            }
        } else {
            body[key] = value.clone();
        }
    }
    body
}

async fn create(t: &Client<'_>, body: Value) -> Value {
    let created = t.post("/webhooks", body).await.expect(201).body;
    assert_eq!(created["status"], "running", "{created}");
    created
}

async fn ingest(t: &Client<'_>, events: Vec<Value>) {
    let n = events.len();
    let reply = t
        .post("/events/batch", json!({"events": events}))
        .await
        .expect(202);
    assert_eq!(reply.body["ids"].as_array().map(Vec::len), Some(n));
}

/// `order.created` events with these ids and payload `{"n": id}`.
fn orders(ids: &[String]) -> Vec<Value> {
    ids.iter()
        .map(|id| json!({"event_type": "order.created", "id": id, "payload": {"n": id}}))
        .collect()
}

fn ids(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:05}")).collect()
}

async fn stats(t: &Client<'_>, webhook: &str) -> Value {
    t.get(&format!("/webhooks/{webhook}/stats"))
        .await
        .expect(200)
        .body
}

fn tenant<'a>(gw: &'a Gateway, key: &str) -> Client<'a> {
    Client {
        gateway: gw,
        tenant: "acme".into(),
        key: key.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_have_newstore_names_and_one_event_per_line() {
    let moto = Moto::start().await;
    moto.create_bucket().await;
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let started = now_ms();
    let created = create(
        &t,
        s3_webhook(
            "lake",
            &moto.url(),
            "hookgate/out",
            json!({
                "filter_conditions": {"payload.skip": {"exists": false}},
                "additional_data": {"source": "e2e"},
            }),
        ),
    )
    .await;
    // Credentials are secrets: masked in every view.
    let shown = created["destination"]["secret_access_key"]
        .as_str()
        .unwrap();
    assert_ne!(shown, SECRET_KEY);
    assert!(!created.to_string().contains(SECRET_KEY));

    let wanted = ids("o", 0..60);
    let mut events = orders(&wanted);
    // Not subscribed, and dropped by the filter: neither may appear.
    events.extend(
        (0..10).map(
            |i| json!({"event_type": "order.cancelled", "id": format!("c-{i}"), "payload": {}}),
        ),
    );
    events.extend((0..10).map(
        |i| json!({"event_type": "order.created", "id": format!("s-{i}"), "payload": {"skip": true}}),
    ));
    ingest(&t, events).await;

    let mut seen = Seen::default();
    wait_exported(
        &gw,
        &moto,
        &mut seen,
        ("hookgate/out", "acme"),
        &wanted,
        Duration::from_secs(30),
    )
    .await;
    // One more flush interval: anything extra (duplicates, filtered events) would show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    seen.refresh(&moto, "hookgate/out", "acme").await;

    let counts = seen.counts();
    assert_eq!(
        counts.len(),
        wanted.len(),
        "only the subscribed, unfiltered events"
    );
    assert!(counts.values().all(|&n| n == 1), "every event exactly once");
    for file in seen.files.values() {
        assert!(
            (started..=now_ms()).contains(&file.millis),
            "{}: the name carries the creation time",
            file.key
        );
        for line in &file.lines {
            let id = line["id"].as_str().unwrap();
            assert_eq!(line["tenant"], "acme");
            assert_eq!(line["event_type"], "order.created");
            assert_eq!(line["payload"], json!({"n": id}));
            assert_eq!(line["data"], json!({"source": "e2e"}));
            assert!(
                line["published_at"]
                    .as_str()
                    .is_some_and(|s| s.ends_with('Z')),
                "{line}"
            );
        }
    }
    // Lines keep log order across and within files.
    let order: Vec<String> = seen
        .by_time()
        .iter()
        .flat_map(|f| {
            f.lines
                .iter()
                .map(|l| l["id"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(order, wanted);

    let stats = stats(&t, "lake").await;
    assert_eq!(stats["events"], 60, "{stats}");
    assert_eq!(stats["triggers"], seen.files.len() as u64, "{stats}");
    assert_eq!(stats["success_responses"], stats["triggers"], "{stats}");
    assert_eq!(stats["failure_responses"], 0, "{stats}");
    // Each file is a message of the webhook, with its upload as a run.
    let messages = webhook_messages(&t, "lake", "&include_runs=true").await;
    let files: Vec<&Value> = messages
        .iter()
        .filter(|m| m["status"] == "delivered")
        .collect();
    assert_eq!(files.len(), seen.files.len(), "{messages:?}");
    let run = &files[0]["runs"][0];
    assert_eq!(run["status_code"], 200, "{run}");
    assert!(
        run["response_body"]
            .as_str()
            .is_some_and(|b| b.contains(&format!("s3://{BUCKET}/hookgate/out/acme/"))),
        "{run}"
    );
    let filtered = messages
        .iter()
        .filter(|m| m["status"] == "filtered")
        .count();
    assert_eq!(filtered, 10);
    // A file is sent as a whole: there is no single-message resend.
    let first = files[0]["id"].as_str().unwrap();
    let resend = t
        .post(
            &format!("/webhooks/lake/messages/{first}/resend"),
            json!({}),
        )
        .await;
    assert!(resend.status.is_client_error(), "{}", resend.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_rotate_by_size_and_by_time() {
    let moto = Moto::start().await;
    moto.create_bucket().await;
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    const MAX: usize = 4096;
    create(
        &t,
        s3_webhook(
            "by-size",
            &moto.url(),
            "size",
            json!({"event_types": ["size.test"],
                   "destination": {"max_file_bytes": MAX, "flush_interval": "PT3S"}}),
        ),
    )
    .await;
    create(
        &t,
        s3_webhook(
            "by-time",
            &moto.url(),
            "time",
            json!({"event_types": ["time.test"],
                   "destination": {"flush_interval": "PT1S", "max_file_bytes": 50 * 1024 * 1024}}),
        ),
    )
    .await;

    // Size: 60 lines of ~400 bytes (~24 KB) into files of at most 4 KiB.
    let sized = ids("z", 0..60);
    let pad = "x".repeat(300);
    ingest(
        &t,
        sized
            .iter()
            .map(|id| json!({"event_type": "size.test", "id": id, "payload": {"pad": pad}}))
            .collect(),
    )
    .await;
    // Time: three bursts 2.5 s apart, each well below the size limit.
    let mut bursts = Vec::new();
    for b in 0..3 {
        let burst = ids(&format!("t{b}"), 0..5);
        ingest(
            &t,
            burst
                .iter()
                .map(|id| json!({"event_type": "time.test", "id": id, "payload": {}}))
                .collect(),
        )
        .await;
        bursts.push(burst);
        if b < 2 {
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
    }

    let mut by_size = Seen::default();
    wait_exported(
        &gw,
        &moto,
        &mut by_size,
        ("size", "acme"),
        &sized,
        Duration::from_secs(30),
    )
    .await;
    let total: usize = by_size.files.values().map(|f| f.size).sum();
    let longest_line = by_size
        .files
        .values()
        .flat_map(|f| f.lines.iter().map(|l| l.to_string().len() + 1))
        .max()
        .unwrap();
    assert!(
        by_size.files.len() >= total.div_ceil(MAX),
        "{} files for {total} bytes",
        by_size.files.len()
    );
    for file in by_size.files.values() {
        assert!(file.size <= MAX, "{} has {} bytes", file.key, file.size);
    }
    // Every file but the last was closed because the next line did not fit.
    let files = by_size.by_time();
    for file in &files[..files.len() - 1] {
        assert!(
            file.size + longest_line > MAX,
            "{} closed early at {} bytes",
            file.key,
            file.size
        );
    }
    assert_eq!(
        by_size.counts().values().sum::<usize>(),
        sized.len(),
        "each once"
    );

    let all_timed: Vec<String> = bursts.concat();
    let mut by_time = Seen::default();
    wait_exported(
        &gw,
        &moto,
        &mut by_time,
        ("time", "acme"),
        &all_timed,
        Duration::from_secs(30),
    )
    .await;
    let files = by_time.by_time();
    assert!(files.len() >= 3, "one file per burst at least: {files:?}");
    for file in &files {
        let burst_of = |l: &Value| l["id"].as_str().unwrap()[..2].to_string();
        let first = burst_of(&file.lines[0]);
        assert!(
            file.lines.iter().all(|l| burst_of(l) == first),
            "{} mixes bursts 2.5 s apart with a 1 s flush interval",
            file.key
        );
    }
}

/// A TCP forwarder in front of moto: taking it down refuses new connections and cuts the
/// open ones, like an S3 endpoint that went away; the backend can change meanwhile.
struct Proxy {
    port: u16,
    backend: Arc<AtomicU16>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(backend: u16) -> Proxy {
        let proxy = Proxy {
            port: free_port(),
            backend: Arc::new(AtomicU16::new(backend)),
            tasks: Default::default(),
        };
        proxy.up().await;
        proxy
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn up(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let backend = self.backend.clone();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let port = backend.load(Ordering::SeqCst);
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    fn down(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_loses_nothing() {
    let mut moto = Moto::start().await;
    moto.create_bucket().await;
    let proxy = Proxy::start(moto.port).await;
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    create(&t, s3_webhook("outage", &proxy.url(), "out", json!({}))).await;

    let all = ids("e", 0..300);
    let mut batches = all.chunks(20);
    for batch in batches.by_ref().take(5) {
        ingest(&t, orders(batch)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The server goes away: the endpoint refuses connections, and moto itself is stopped.
    // moto keeps objects in memory only, so what it holds is read first, with the gateway
    // already cut off.
    proxy.down();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut before = Seen::default();
    before.refresh(&moto, "out", "acme").await;
    moto.kill();
    println!(
        "outage: {} events exported before it",
        before.counts().len()
    );
    for batch in batches.by_ref().take(5) {
        ingest(&t, orders(batch)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eventually(
        &gw,
        Duration::from_secs(20),
        "failed uploads are counted",
        async || {
            let s = stats(&t, "outage").await;
            if s["failure_responses"].as_u64() >= Some(2) {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        },
    )
    .await;

    // Back: a fresh moto behind the same endpoint.
    let moto = Moto::start().await;
    moto.create_bucket().await;
    proxy.backend.store(moto.port, Ordering::SeqCst);
    proxy.up().await;
    for batch in batches {
        ingest(&t, orders(batch)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let mut after = Seen::default();
    let pending: Vec<String> = all
        .iter()
        .filter(|id| !before.counts().contains_key(*id))
        .cloned()
        .collect();
    wait_exported(
        &gw,
        &moto,
        &mut after,
        ("out", "acme"),
        &pending,
        Duration::from_secs(60),
    )
    .await;
    let mut counts = before.counts();
    for (id, n) in after.counts() {
        *counts.entry(id).or_insert(0) += n;
    }
    assert!(all.iter().all(|id| counts.contains_key(id)), "nothing lost");
    assert_eq!(counts.len(), all.len(), "nothing else");

    // The outage shows like an HTTP failure: attempts without a response, stats, log.
    let stats = stats(&t, "outage").await;
    assert!(stats["failure_responses"].as_u64() >= Some(2), "{stats}");
    assert!(stats["success_responses"].as_u64() >= Some(2), "{stats}");
    assert_eq!(stats["failures_since_last_success"], 0, "{stats}");
    let messages = webhook_messages(&t, "outage", "&include_runs=true").await;
    let failed_run = messages
        .iter()
        .flat_map(|m| m["runs"].as_array().cloned().unwrap_or_default())
        .find(|run| run["error"].is_string())
        .expect("a failed upload is recorded as an attempt");
    assert!(failed_run["status_code"].is_null(), "{failed_run}");
    let log = t.get("/webhooks/outage/log").await.expect(200).body;
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "retry_triggered"
                && e["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("upload of s3://"))),
        "{log}"
    );
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    println!("outage: {} events, {duplicates} duplicates", all.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_loses_nothing() {
    let moto = Moto::start().await;
    moto.create_bucket().await;
    let mut gw = Gateway::start().await;
    let key = gw.tenant("acme").await;
    // Files stay open for 2 s, so a crash right after ingest finds events in one.
    create(
        &tenant(&gw, &key),
        s3_webhook(
            "crash",
            &moto.url(),
            "crash",
            json!({"destination": {"flush_interval": "PT2S", "max_file_bytes": 16384}}),
        ),
    )
    .await;
    let all = ids("k", 0..1000);
    let mut seen = Seen::default();
    for (n, batch) in all.chunks(100).enumerate() {
        ingest(&tenant(&gw, &key), orders(batch)).await;
        if n == 3 || n == 7 {
            seen.refresh(&moto, "crash", "acme").await;
            let missing = seen.missing(&all[..(n + 1) * 100]).len();
            gw.crash_and_restart().await;
            println!("crash after batch {n}: {missing} acknowledged events not yet in S3");
        }
    }
    wait_exported(
        &gw,
        &moto,
        &mut seen,
        ("crash", "acme"),
        &all,
        Duration::from_secs(60),
    )
    .await;
    let counts = seen.counts();
    assert_eq!(counts.len(), all.len(), "no unknown ids");
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    println!(
        "kill -9: {} events in {} files, {duplicates} duplicates",
        all.len(),
        seen.files.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_endpoint_is_refused_unless_allowed() {
    let moto = Moto::start().await;
    moto.create_bucket().await;
    let gw = Gateway::start_with(&[("HOOKGATE_ALLOW_PRIVATE_DESTINATIONS", "false")]).await;
    let t = Client::new(&gw, "acme").await;
    let reply = t
        .post(
            "/webhooks",
            s3_webhook("private", &moto.url(), "p", json!({})),
        )
        .await;
    if reply.status == 400 {
        // Refused when the webhook is created: as good as refusing every upload.
        assert!(
            reply.body.to_string().contains("destination.endpoint"),
            "{}",
            reply.body
        );
        return;
    }
    assert_eq!(reply.status, 201, "{}", reply.body);
    ingest(&t, orders(&ids("p", 0..3))).await;
    let run = eventually(
        &gw,
        Duration::from_secs(20),
        "a refused upload",
        async || {
            let messages = webhook_messages(&t, "private", "&include_runs=true").await;
            messages
                .iter()
                .flat_map(|m| m["runs"].as_array().cloned().unwrap_or_default())
                .find(|run| run["error"].is_string())
                .ok_or_else(|| format!("{messages:?}"))
        },
    )
    .await;
    assert!(run["error"].as_str().unwrap().contains("refused"), "{run}");
    assert!(
        moto.list("p").await.is_empty(),
        "nothing reached the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_start_and_replay_windows_apply() {
    let moto = Moto::start().await;
    moto.create_bucket().await;
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;

    // Stopped: nothing is exported; started again: the backlog follows.
    create(&t, s3_webhook("paused", &moto.url(), "paused", json!({}))).await;
    t.post("/webhooks/paused/stop", json!({})).await.expect(200);
    let backlog = ids("b", 0..40);
    ingest(&t, orders(&backlog)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(moto.list("paused").await.is_empty(), "stopped: no files");
    t.post("/webhooks/paused/start", json!({}))
        .await
        .expect(200);
    let mut paused = Seen::default();
    wait_exported(
        &gw,
        &moto,
        &mut paused,
        ("paused", "acme"),
        &backlog,
        Duration::from_secs(20),
    )
    .await;

    // A temporary webhook replays the events published inside its window, then completes.
    let iso = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    };
    let day = 24 * 3600 * 1000;
    let old = now_ms() - 10 * day;
    let mut events = Vec::new();
    for (i, published) in [old - day, old, old + 1000, old + day].iter().enumerate() {
        events.push(
            json!({"event_type": "order.created", "id": format!("w-{i}"),
            "published_at": iso(*published), "payload": {}}),
        );
    }
    ingest(&t, events).await;
    create(
        &t,
        s3_webhook(
            "replay",
            &moto.url(),
            "replay",
            json!({"integration_type": "temporary",
                   "starts_at": iso(old - 1), "ends_at": iso(old + 2000),
                   "destination": {"flush_interval": "PT1M"}}),
        ),
    )
    .await;
    let inside = vec!["w-1".to_string(), "w-2".to_string()];
    let mut replay = Seen::default();
    // The window is over and read to its end: the file goes at once, not after PT1M.
    wait_exported(
        &gw,
        &moto,
        &mut replay,
        ("replay", "acme"),
        &inside,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(replay.counts().len(), 2, "only the window's events");
    eventually(
        &gw,
        Duration::from_secs(20),
        "the replay completes",
        async || {
            let w = t.get("/webhooks/replay").await.expect(200).body;
            if w["status"] == "completed" {
                Ok(())
            } else {
                Err(w["status"].to_string())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_signed_with_the_stored_secret() {
    let mut moto = Moto::start().await;
    let key = moto.iam_access_key().await;
    moto.create_bucket().await;
    moto.enforce_signatures(&key).await;
    let (id, secret) = key.clone();
    let mut gw = Gateway::start().await;
    let api_key = gw.tenant("acme").await;
    let t = tenant(&gw, &api_key);
    create(
        &t,
        s3_webhook(
            "signed",
            &moto.url(),
            "signed",
            json!({"destination": {"access_key_id": id, "secret_access_key": secret}}),
        ),
    )
    .await;
    create(
        &t,
        s3_webhook(
            "wrong",
            &moto.url(),
            "wrong",
            json!({"destination": {"access_key_id": id, "secret_access_key": "not-the-secret-key-0000"}}),
        ),
    )
    .await;
    let first = ids("g", 0..20);
    ingest(&t, orders(&first)).await;
    let mut seen = Seen::default();
    wait_exported(
        &gw,
        &moto,
        &mut seen,
        ("signed", "acme"),
        &first,
        Duration::from_secs(20),
    )
    .await;

    // The secret is sealed at rest: after a restart it is opened again to sign.
    gw.crash_and_restart().await;
    let t = tenant(&gw, &api_key);
    let all = ids("g", 0..40);
    ingest(&t, orders(&all[20..])).await;
    wait_exported(
        &gw,
        &moto,
        &mut seen,
        ("signed", "acme"),
        &all,
        Duration::from_secs(20),
    )
    .await;
    for entry in walk(gw.data_dir()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the secret access key in clear",
            entry.display()
        );
    }

    // A wrong secret: S3 refuses the signature, and the attempt says so.
    let run = eventually(
        &gw,
        Duration::from_secs(20),
        "a refused signature",
        async || {
            let messages = webhook_messages(&t, "wrong", "&include_runs=true").await;
            messages
                .iter()
                .flat_map(|m| m["runs"].as_array().cloned().unwrap_or_default())
                .find(|run| run["status_code"] == 403)
                .ok_or_else(|| format!("{messages:?}"))
        },
    )
    .await;
    assert!(
        run["error"]
            .as_str()
            .is_some_and(|e| e.contains("SignatureDoesNotMatch")),
        "{run}"
    );
    assert!(moto.list("wrong").await.is_empty());
}

/// Every file under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_go_up_in_parts() {
    let moto = Moto::start().await;
    moto.create_bucket().await;
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    create(
        &t,
        s3_webhook(
            "big",
            &moto.url(),
            "big",
            json!({"destination": {"max_file_bytes": 64 * 1024 * 1024, "flush_interval": "PT3S"}}),
        ),
    )
    .await;
    // ~10 MiB in one file (sealed by time): above the 8 MiB multipart threshold.
    let all = ids("m", 0..1000);
    let pad = "y".repeat(10 * 1024);
    for batch in all.chunks(50) {
        ingest(
            &t,
            batch
                .iter()
                .map(|id| json!({"event_type": "order.created", "id": id, "payload": {"n": id, "pad": pad}}))
                .collect(),
        )
        .await;
    }
    let mut seen = Seen::default();
    wait_exported(
        &gw,
        &moto,
        &mut seen,
        ("big", "acme"),
        &all,
        Duration::from_secs(60),
    )
    .await;
    let counts = seen.counts();
    assert!(counts.values().all(|&n| n == 1), "each event once");
    let biggest = seen.files.values().map(|f| f.size).max().unwrap();
    assert!(
        biggest > 8 * 1024 * 1024,
        "a file above the threshold: {biggest} bytes"
    );
    let etags = moto.etags("big").await;
    assert!(
        etags.iter().any(|e| e.trim_matches('"').contains('-')),
        "a multipart upload's ETag ends in -<parts>: {etags:?}"
    );
    for file in seen.files.values() {
        for line in &file.lines {
            assert_eq!(
                line["payload"]["pad"].as_str().map(str::len),
                Some(10 * 1024)
            );
        }
    }
}
