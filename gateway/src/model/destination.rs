//! Where a webhook's events go: one typed value, [`Destination`], an http endpoint with
//! its request settings or an s3 bucket with its upload settings. This module holds the
//! types, their validation, and their wire form.
//!
//! The wire form (`API.md`, the contract) is flat: the http settings (`url`, `method`,
//! `headers`, `query_key`, `authentication`, `tls`) sit at the top level of the webhook
//! whatever its destination, `timeout` too (for s3 it is the upload timeout), and
//! `destination` holds only the type and the s3 settings. `Destination::from_wire` and
//! `Destination::into_wire` convert; [`flatten_nested`] also accepts the http settings
//! (and `timeout`) inside `destination` on input. Error paths name the wire fields
//! (`url`, `headers.X-Env`, `destination.bucket`), since that is what a client sent.

use std::collections::BTreeMap;

use hookgate_signing::{
    AuthConfig, DestinationPolicy, SecretString, TlsConfig, transport::check_url,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::problems::{FieldError, Problems};
use crate::iso::IsoDuration;

pub const DEFAULT_TIMEOUT: &str = "PT30S";
const MAX_TIMEOUT_SECS: u64 = 600;
const MAX_HEADERS: usize = 50;
/// Headers the gateway owns on the wire; letting a tenant (or a plugin) set them would
/// corrupt framing or forge the gateway's own headers.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

const ONLY_HTTP: &str = "only applies to http destinations";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Post,
    Get,
}

/// Where a webhook's events go.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    /// One request per event (the delivery engine, `delivery/`).
    Http(HttpDestination),
    /// NDJSON files uploaded to a bucket (the export engine, `export/`).
    S3(S3Destination),
}

/// An http endpoint and how each request to it is made.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpDestination {
    pub url: String,
    pub method: HttpMethod,
    pub headers: BTreeMap<String, String>,
    /// Appended as `?key=…` (Automation API).
    pub query_key: Option<SecretString>,
    pub authentication: AuthConfig,
    pub tls: Option<TlsConfig>,
    /// Per request.
    pub timeout: IsoDuration,
}

/// A bucket and how files are cut and uploaded to it.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Destination {
    pub bucket: String,
    pub key_prefix: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub flush_interval: IsoDuration,
    pub max_file_bytes: u64,
    /// Per upload (the webhook's top-level `timeout` on the wire).
    pub timeout: IsoDuration,
}

impl Destination {
    pub fn http(&self) -> Option<&HttpDestination> {
        match self {
            Destination::Http(http) => Some(http),
            Destination::S3(_) => None,
        }
    }

    pub fn http_mut(&mut self) -> Option<&mut HttpDestination> {
        match self {
            Destination::Http(http) => Some(http),
            Destination::S3(_) => None,
        }
    }

    /// Per request or upload.
    pub fn timeout(&self) -> &IsoDuration {
        match self {
            Destination::Http(http) => &http.timeout,
            Destination::S3(s3) => &s3.timeout,
        }
    }

    /// Every problem of the destination, named by its wire path.
    pub fn validate(&self, problems: &mut Problems, policy: &DestinationPolicy) {
        match self {
            Destination::Http(http) => http.validate(problems, policy),
            Destination::S3(s3) => s3.validate(problems, policy),
        }
    }
}

fn check_timeout(problems: &mut Problems, timeout: &IsoDuration) {
    let timeout = timeout.duration();
    if timeout.is_zero() || timeout.as_secs() > MAX_TIMEOUT_SECS {
        problems.add("timeout", "must be more than PT0S and at most PT10M");
    }
}

impl HttpDestination {
    fn validate(&self, problems: &mut Problems, policy: &DestinationPolicy) {
        match check_http_url(&self.url) {
            Err(message) => problems.add("url", message),
            Ok(parsed) => {
                if let Err(refused) = check_url(&parsed, policy) {
                    problems.add("url", refused.to_string());
                }
            }
        }
        let auth_problems = self
            .authentication
            .validate()
            .and_then(|()| self.authentication.check_destinations(policy));
        if let Err(errors) = auth_problems {
            problems.extend(errors.into_iter().map(|e| FieldError {
                field: e.field,
                message: e.message,
            }));
        }
        if let Some(tls) = &self.tls
            && let Err(errors) = tls.validate()
        {
            problems.extend(errors.into_iter().map(|e| FieldError {
                field: e.field,
                message: e.message,
            }));
        }
        self.validate_headers(problems);
        if let Some(key) = &self.query_key
            && (key.expose().is_empty() || key.expose().len() > 512)
        {
            problems.add("query_key", "must be 1 to 512 characters");
        }
        check_timeout(problems, &self.timeout);
    }

    fn validate_headers(&self, problems: &mut Problems) {
        if self.headers.len() > MAX_HEADERS {
            problems.add("headers", format!("at most {MAX_HEADERS} headers"));
        }
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            match http::HeaderName::from_bytes(name.as_bytes()) {
                Err(_) => problems.add(field, "is not a valid HTTP header name"),
                Ok(parsed) if RESERVED_HEADERS.contains(&parsed.as_str()) => {
                    problems.add(field, "is set by the gateway and cannot be overridden")
                }
                Ok(_) => {
                    if http::HeaderValue::from_str(value).is_err() {
                        problems.add(field, "value must be visible ASCII without line breaks");
                    }
                }
            }
        }
    }
}

impl S3Destination {
    fn validate(&self, problems: &mut Problems, policy: &DestinationPolicy) {
        if !is_bucket_name(&self.bucket) {
            problems.add("destination.bucket", "is not a valid S3 bucket name");
        }
        if self.region.trim().is_empty() {
            problems.add("destination.region", "is required");
        }
        if self.access_key_id.is_empty() {
            problems.add("destination.access_key_id", "is required");
        }
        if self.secret_access_key.expose().is_empty() {
            problems.add("destination.secret_access_key", "is required");
        }
        if let Some(endpoint) = &self.endpoint {
            match check_http_url(endpoint) {
                Err(message) => problems.add("destination.endpoint", message),
                Ok(parsed) => {
                    if let Err(refused) = check_url(&parsed, policy) {
                        problems.add("destination.endpoint", refused.to_string());
                    }
                    let is_ip =
                        matches!(parsed.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)));
                    if is_ip && !self.path_style {
                        problems.add(
                            "destination.path_style",
                            "must be true when the endpoint is an IP address",
                        );
                    }
                }
            }
        }
        if self.flush_interval.duration().is_zero() {
            problems.add("destination.flush_interval", "must be more than PT0S");
        }
        if !(1024..=5 * 1024 * 1024 * 1024).contains(&self.max_file_bytes) {
            problems.add(
                "destination.max_file_bytes",
                "must be between 1024 and 5368709120",
            );
        }
        if let Err(message) = check_key_prefix(&self.key_prefix) {
            problems.add("destination.key_prefix", message);
        }
        check_timeout(problems, &self.timeout);
    }
}

/// Object keys are `{key_prefix}/{tenant}/…`: the prefix must make a clean key path.
fn check_key_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > 512 {
        return Err("at most 512 characters".into());
    }
    if prefix.starts_with('/') || prefix.ends_with('/') {
        return Err("must not start or end with /".into());
    }
    if prefix.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if !prefix.is_empty()
        && prefix
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("segments must not be empty, `.` or `..`".into());
    }
    Ok(())
}

pub fn check_http_url(text: &str) -> Result<url::Url, String> {
    if text.len() > 2048 {
        return Err("at most 2048 characters".into());
    }
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("needs a host".into());
    }
    if url.fragment().is_some() {
        return Err("must not contain a #fragment".into());
    }
    Ok(url)
}

fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
}

// ---------------------------------------------------------------------------------------
// The wire form.

/// The http settings and `timeout` as the wire form holds them: flat on the webhook,
/// optional or defaulted, whatever the destination. (Not serde: the webhook's wire struct
/// holds these fields in its own order and hands them over.)
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FlatSettings {
    pub url: Option<String>,
    pub method: HttpMethod,
    pub headers: BTreeMap<String, String>,
    pub query_key: Option<SecretString>,
    pub timeout: IsoDuration,
    pub authentication: AuthConfig,
    pub tls: Option<TlsConfig>,
}

/// `destination` on the wire: the type, and for s3 its settings (without `timeout`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum WireDestination {
    #[default]
    Http,
    S3(WireS3),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WireS3 {
    bucket: String,
    #[serde(default)]
    key_prefix: String,
    region: String,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    path_style: bool,
    access_key_id: String,
    secret_access_key: SecretString,
    #[serde(default = "default_flush_interval")]
    flush_interval: IsoDuration,
    #[serde(default = "default_max_file_bytes")]
    max_file_bytes: u64,
}

fn default_flush_interval() -> IsoDuration {
    "PT5M".parse().expect("valid literal")
}

fn default_max_file_bytes() -> u64 {
    50 * 1024 * 1024
}

pub(super) fn default_timeout() -> IsoDuration {
    DEFAULT_TIMEOUT.parse().expect("valid literal")
}

/// Who wrote a wire form: what an s3 destination does with http settings depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WrittenBy {
    /// A client: an http setting on an s3 destination is refused, never dropped.
    Client,
    /// The store. Before the destination was typed, an s3 webhook could be stored with
    /// `headers`, `query_key`, `authentication` or `tls` set (validation refused only
    /// `url` and `method`); export never used them. Such a record must still load, so
    /// they are dropped: nothing they did is lost.
    Store,
}

impl Destination {
    /// The typed value of the wire form. An http destination needs a `url`; an s3 one
    /// from a client refuses every http setting that is not at its default (the defaults
    /// are what a GET of an s3 webhook shows, so a read-modify-write passes), rather than
    /// dropping it (see [`WrittenBy`] for stored ones).
    pub(super) fn from_wire(
        flat: FlatSettings,
        destination: WireDestination,
        written_by: WrittenBy,
    ) -> Result<Destination, Vec<FieldError>> {
        let FlatSettings {
            url,
            method,
            headers,
            query_key,
            timeout,
            authentication,
            tls,
        } = flat;
        match destination {
            WireDestination::Http => match url {
                Some(url) => Ok(Destination::Http(HttpDestination {
                    url,
                    method,
                    headers,
                    query_key,
                    authentication,
                    tls,
                    timeout,
                })),
                None => Err(vec![FieldError {
                    field: "url".into(),
                    message: "is required for http destinations".into(),
                }]),
            },
            WireDestination::S3(s3) => {
                let mut problems = Problems::default();
                let http_only = [
                    ("url", url.is_some()),
                    ("method", method != HttpMethod::Post),
                    ("headers", !headers.is_empty()),
                    ("query_key", query_key.is_some()),
                    ("authentication", authentication != AuthConfig::None),
                    ("tls", tls.is_some()),
                ];
                for (field, set) in http_only {
                    if set && written_by == WrittenBy::Client {
                        problems.add(field, ONLY_HTTP);
                    }
                }
                problems.into_result()?;
                let WireS3 {
                    bucket,
                    key_prefix,
                    region,
                    endpoint,
                    path_style,
                    access_key_id,
                    secret_access_key,
                    flush_interval,
                    max_file_bytes,
                } = s3;
                Ok(Destination::S3(S3Destination {
                    bucket,
                    key_prefix,
                    region,
                    endpoint,
                    path_style,
                    access_key_id,
                    secret_access_key,
                    flush_interval,
                    max_file_bytes,
                    timeout,
                }))
            }
        }
    }

    /// The wire form: for s3 the flat http settings at their defaults.
    pub(super) fn into_wire(self) -> (FlatSettings, WireDestination) {
        match self {
            Destination::Http(http) => (
                FlatSettings {
                    url: Some(http.url),
                    method: http.method,
                    headers: http.headers,
                    query_key: http.query_key,
                    timeout: http.timeout,
                    authentication: http.authentication,
                    tls: http.tls,
                },
                WireDestination::Http,
            ),
            Destination::S3(s3) => (
                FlatSettings {
                    url: None,
                    method: HttpMethod::default(),
                    headers: BTreeMap::new(),
                    query_key: None,
                    timeout: s3.timeout,
                    authentication: AuthConfig::None,
                    tls: None,
                },
                WireDestination::S3(WireS3 {
                    bucket: s3.bucket,
                    key_prefix: s3.key_prefix,
                    region: s3.region,
                    endpoint: s3.endpoint,
                    path_style: s3.path_style,
                    access_key_id: s3.access_key_id,
                    secret_access_key: s3.secret_access_key,
                    flush_interval: s3.flush_interval,
                    max_file_bytes: s3.max_file_bytes,
                }),
            ),
        }
    }
}

/// The settings a client may also give inside `destination` (the nested form), all kept
/// at the top level on the wire.
const NESTED_SETTINGS: [&str; 7] = [
    "url",
    "method",
    "headers",
    "query_key",
    "authentication",
    "tls",
    "timeout",
];

/// Accepts the nested form on input: `{"destination": {"type": "http", "url": …,
/// "timeout": …}}` (and `timeout` inside an s3 destination) becomes the flat wire form,
/// the settings moved to the top level. Done on the JSON body before anything else looks
/// at it (restoring masked secrets, merging a patch, parsing), so those see one form.
///
/// A setting given in both places is refused, as is an http setting inside an s3
/// destination, each naming `destination.<setting>`. A top-level `null` counts as not
/// given. Without a `type` (a merge patch that leaves it as it is) the settings move as
/// for http; parsing then judges them against the destination they end up with.
/// Anything that is not an object is left for parsing to report.
pub fn flatten_nested(body: &mut Value) -> Result<(), Vec<FieldError>> {
    let Value::Object(map) = body else {
        return Ok(());
    };
    let Some(Value::Object(destination)) = map.get_mut("destination") else {
        return Ok(());
    };
    let s3 = match destination.get("type") {
        None => false,
        Some(Value::String(kind)) if kind == "http" => false,
        Some(Value::String(kind)) if kind == "s3" => true,
        // An unknown type: parsing names it.
        Some(_) => return Ok(()),
    };
    let nested: Vec<(&str, Value)> = NESTED_SETTINGS
        .into_iter()
        .filter_map(|name| destination.remove(name).map(|value| (name, value)))
        .collect();
    let mut problems = Problems::default();
    let mut moved = Vec::new();
    for (name, value) in nested {
        let field = format!("destination.{name}");
        if s3 && name != "timeout" {
            problems.add(field, ONLY_HTTP);
        } else if map.get(name).is_some_and(|top| !top.is_null()) {
            problems.add(
                field,
                format!("given both here and as the top-level `{name}`; send one"),
            );
        } else {
            moved.push((name, value));
        }
    }
    problems.into_result()?;
    for (name, value) in moved {
        map.insert(name.to_string(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::webhook::parse_spec;

    fn fields(body: Value) -> Vec<(String, String)> {
        match parse_spec(body) {
            Ok(spec) => panic!("accepted: {spec:?}"),
            Err(errors) => errors.into_iter().map(|e| (e.field, e.message)).collect(),
        }
    }

    /// An s3 `destination` with its required settings.
    fn s3() -> Value {
        json!({"type": "s3", "bucket": "exports", "region": "eu-west-1",
               "access_key_id": "AKIA", "secret_access_key": "s3-secret-value-0003"})
    }

    #[test]
    fn the_nested_form_is_the_flat_form() {
        let settings = json!({
            "url": "https://erp.example.com/hook", "method": "GET",
            "headers": {"X-Env": "prod"}, "query_key": "query-key-value-0001",
            "authentication": {"type": "hmac", "secret": "hmac-secret-value-0002"},
            "tls": {"ca_pem": null}, "timeout": "PT10S",
        });
        let mut flat = settings.clone();
        flat["id"] = json!("erp-1");
        flat["destination"] = json!({"type": "http"});
        let mut nested_destination = settings;
        nested_destination["type"] = json!("http");
        let nested = json!({"id": "erp-1", "destination": nested_destination});
        let from_flat = parse_spec(flat.clone()).unwrap();
        assert_eq!(parse_spec(nested.clone()).unwrap(), from_flat);
        // Written back flat, as the contract shows it.
        assert_eq!(
            serde_json::to_value(&from_flat).unwrap()["url"],
            flat["url"]
        );
        assert_eq!(
            serde_json::to_value(&from_flat).unwrap()["destination"],
            json!({"type": "http"})
        );
        let Destination::Http(http) = &from_flat.destination else {
            panic!("{from_flat:?}");
        };
        assert_eq!(http.method, HttpMethod::Get);
        assert_eq!(http.timeout.as_str(), "PT10S");

        // Some settings nested, others flat: one spec all the same.
        let mixed = json!({"id": "erp-1", "method": "GET", "headers": {"X-Env": "prod"},
            "query_key": "query-key-value-0001", "tls": {"ca_pem": null},
            "authentication": {"type": "hmac", "secret": "hmac-secret-value-0002"},
            "destination": {"type": "http", "url": "https://erp.example.com/hook",
                            "timeout": "PT10S"}});
        assert_eq!(parse_spec(mixed).unwrap(), from_flat);

        // s3: the upload timeout nested or top level.
        let mut nested_s3 = s3();
        nested_s3["timeout"] = json!("PT10S");
        let nested = parse_spec(json!({"destination": nested_s3})).unwrap();
        let flat = parse_spec(json!({"timeout": "PT10S", "destination": s3()})).unwrap();
        assert_eq!(nested, flat);
        let Destination::S3(bucket) = &flat.destination else {
            panic!("{flat:?}");
        };
        assert_eq!(bucket.timeout.as_str(), "PT10S");
        assert_eq!(serde_json::to_value(&flat).unwrap()["timeout"], "PT10S");
        assert!(
            serde_json::to_value(&flat).unwrap()["destination"]
                .get("timeout")
                .is_none()
        );
    }

    #[test]
    fn a_setting_given_twice_is_refused_by_name() {
        let errors = fields(json!({"url": "https://a.example.com", "timeout": "PT5S",
            "destination": {"type": "http", "url": "https://b.example.com", "timeout": "PT5S"}}));
        assert_eq!(
            errors,
            [
                (
                    "destination.url".to_string(),
                    "given both here and as the top-level `url`; send one".to_string()
                ),
                (
                    "destination.timeout".to_string(),
                    "given both here and as the top-level `timeout`; send one".to_string()
                ),
            ]
        );
        let mut nested_s3 = s3();
        nested_s3["timeout"] = json!("PT10S");
        let errors = fields(json!({"timeout": "PT10S", "destination": nested_s3}));
        assert_eq!(errors[0].0, "destination.timeout");
        // A top-level null is no setting.
        parse_spec(json!({"url": null, "tls": null,
            "destination": {"type": "http", "url": "https://b.example.com", "tls": null}}))
        .unwrap();
    }

    #[test]
    fn http_settings_on_an_s3_destination_are_refused_by_name() {
        let cases = [
            ("url", json!("https://erp.example.com/hook")),
            ("method", json!("GET")),
            ("headers", json!({"X-Env": "prod"})),
            ("query_key", json!("abc")),
            ("authentication", json!({"type": "hmac", "secret": "s"})),
            ("tls", json!({})),
        ];
        for (name, value) in cases {
            let mut top = json!({"destination": s3()});
            top[name] = value.clone();
            assert_eq!(
                fields(top),
                [(name.to_string(), ONLY_HTTP.to_string())],
                "{name} at the top level"
            );
            let mut destination = s3();
            destination[name] = value;
            assert_eq!(
                fields(json!({"destination": destination})),
                [(format!("destination.{name}"), ONLY_HTTP.to_string())],
                "{name} inside destination"
            );
        }
        // Their defaults (what a GET of an s3 webhook shows) are no setting.
        let spec = parse_spec(json!({"url": null, "method": "POST", "headers": {},
            "query_key": null, "authentication": {"type": "none"}, "tls": null,
            "timeout": "PT30S", "destination": s3()}))
        .unwrap();
        assert!(matches!(spec.destination, Destination::S3(_)));
    }

    #[test]
    fn an_http_destination_needs_a_url() {
        for body in [
            json!({}),
            json!({"destination": {"type": "http"}}),
            json!({"destination": {"type": "http", "method": "GET"}}),
        ] {
            assert_eq!(
                fields(body),
                [(
                    "url".to_string(),
                    "is required for http destinations".to_string()
                )]
            );
        }
    }

    #[test]
    fn a_patch_without_a_type_moves_its_settings_up() {
        let mut patch = json!({"destination": {"tls": null, "timeout": "PT5S"}});
        flatten_nested(&mut patch).unwrap();
        assert_eq!(
            patch,
            json!({"tls": null, "timeout": "PT5S", "destination": {}})
        );
        // Flat bodies, unknown types and non-objects are left as they are.
        for body in [
            json!({"url": "https://a.example.com", "destination": {"type": "http"}}),
            json!({"destination": {"type": "kafka", "url": "x"}}),
            json!({"destination": "s3"}),
            json!([1]),
        ] {
            let mut same = body.clone();
            flatten_nested(&mut same).unwrap();
            assert_eq!(same, body);
        }
    }
}
