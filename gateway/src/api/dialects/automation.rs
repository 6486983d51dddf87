//! The Automation API's `"webHook": {…}` configuration block, sent as (part of) a webhook
//! body: `endpoint`, `enabled`, `key` (the `?key=` query value), `connectionTimeout`
//! (ISO-8601) and `secret` (hex HMAC-SHA256 in `X-Signature`). Its TLS switches are the
//! deliberate difference: Hookgate always verifies certificates, and cannot read key or
//! trust files named by a path on someone else's machine, so those are refused with the
//! setting to use instead (`docs/API.md`).

use serde_json::{Map, Value, json};

use super::{set, take_object};
use crate::model::problems::Problems;

const BLOCK: &str = "webHook";

pub(super) fn webhook_body(map: &mut Map<String, Value>, problems: &mut Problems) {
    let Some(block) = take_object(map, BLOCK, problems) else {
        return;
    };
    for (key, value) in block {
        let from = format!("{BLOCK}.{key}");
        let setting = match key.as_str() {
            "endpoint" => ("url", value),
            "enabled" => ("enabled", value),
            "key" => ("query_key", value),
            "connectionTimeout" => ("timeout", value),
            "secret" => (
                "authentication",
                json!({"type": "hmac", "secret": value, "header": "X-Signature"}),
            ),
            // Asking for what Hookgate does anyway is fine.
            "useSslTrustAll" | "useSslClientCert" if value == json!(false) => continue,
            "useSslTrustAll" => {
                problems.add(
                    from,
                    "Hookgate always verifies TLS certificates; to trust a private CA, \
                     send its PEM as `tls.ca_pem`",
                );
                continue;
            }
            "useSslClientCert" | "sslKeyFile" | "sslKeyPassword" | "sslTrustFile" => {
                problems.add(
                    from,
                    "the gateway cannot read files on your machine: send the PEM texts as \
                     `tls.client_cert_pem` and `tls.client_key_pem` (unencrypted), and a \
                     private CA as `tls.ca_pem`",
                );
                continue;
            }
            _ => {
                problems.add(
                    from,
                    "unknown field; `webHook` takes enabled, endpoint, key, \
                     connectionTimeout, secret, useSslTrustAll, useSslClientCert",
                );
                continue;
            }
        };
        let (field, value) = setting;
        set(map, field, value, &from, problems);
    }
}

#[cfg(test)]
mod tests {
    use super::super::webhook_body as translate;
    use serde_json::json;

    #[test]
    fn the_configuration_block_becomes_hookgate_settings() {
        let mut body = json!({"webHook": {"enabled": true, "key": "QueryParameterKey",
            "connectionTimeout": "PT60S", "secret": "HeaderSecret",
            "endpoint": "http://www.example.org/automation", "useSslTrustAll": false}});
        translate(&mut body).unwrap();
        assert_eq!(
            body,
            json!({"enabled": true, "query_key": "QueryParameterKey", "timeout": "PT60S",
                   "url": "http://www.example.org/automation",
                   "authentication": {"type": "hmac", "secret": "HeaderSecret", "header": "X-Signature"}})
        );
    }

    #[test]
    fn trusting_everything_and_key_files_are_refused_with_what_to_send() {
        let mut body = json!({"webHook": {"endpoint": "https://x.example", "useSslTrustAll": true,
            "useSslClientCert": false, "sslKeyFile": "<keyfile>", "sslKeyPassword": "<password>"}});
        let errors = translate(&mut body).unwrap_err();
        let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "webHook.sslKeyFile",
                "webHook.sslKeyPassword",
                "webHook.useSslTrustAll"
            ]
        );
        let trust_all = errors.iter().find(|e| e.field == "webHook.useSslTrustAll");
        assert!(trust_all.unwrap().message.contains("tls.ca_pem"));
        let mut body =
            json!({"webHook": {"endpoint": "https://x.example"}, "url": "https://y.example"});
        assert_eq!(
            translate(&mut body).unwrap_err()[0].field,
            "webHook.endpoint"
        );
    }
}
