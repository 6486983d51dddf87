//! IBM Sterling Store Engagement: `credentials` + `authenticationType` (OAUTH or JWT, with
//! `HMAC256`/`RSA256`) on create; `startDate`, `endDate`, `failedToSend` on the message
//! queries (declared beside Hookgate's names on the query structs, resolved by
//! [`super::either`]).

use serde_json::{Map, Value, json};

use super::{renamed, set, take_object};
use crate::model::problems::Problems;

const OAUTH_FIELDS: &[(&str, &str)] = &[
    ("clientId", "client_id"),
    ("clientSecret", "client_secret"),
    ("oauthURL", "token_url"),
];

const JWT_FIELDS: &[(&str, &str)] = &[
    ("iss", "iss"),
    ("sub", "sub"),
    ("privateKey", "private_key"),
    ("privateKeyId", "private_key_id"),
    ("algorithm", "algorithm"),
    ("secret", "secret"),
    ("audience", "audience"),
];

pub(super) fn webhook_body(map: &mut Map<String, Value>, problems: &mut Problems) {
    let kind = map.remove("authenticationType");
    let credentials = take_object(map, "credentials", problems);
    if kind.is_none() && credentials.is_none() {
        return;
    }
    let kind = match kind {
        Some(Value::String(kind)) => kind,
        None | Some(Value::Null) => {
            problems.add(
                "authenticationType",
                "is required with `credentials`: OAUTH or JWT",
            );
            return;
        }
        Some(_) => {
            problems.add("authenticationType", "must be OAUTH or JWT");
            return;
        }
    };
    let credentials = credentials.unwrap_or_default();
    let authentication = match kind.to_ascii_uppercase().as_str() {
        "OAUTH" => {
            let mut auth = renamed("credentials", credentials, OAUTH_FIELDS, problems);
            auth.insert("type".into(), json!("oauth2"));
            auth
        }
        "JWT" => {
            let mut auth = renamed("credentials", credentials, JWT_FIELDS, problems);
            // Sterling names the algorithms by their hash: the JOSE names are the same ones.
            if let Some(Value::String(algorithm)) = auth.get_mut("algorithm") {
                match algorithm.as_str() {
                    "HMAC256" => *algorithm = "HS256".into(),
                    "RSA256" => *algorithm = "RS256".into(),
                    _ => {}
                }
            }
            auth.insert("type".into(), json!("jwt"));
            auth
        }
        _ => {
            problems.add(
                "authenticationType",
                format!("`{kind}` is not OAUTH or JWT"),
            );
            return;
        }
    };
    set(
        map,
        "authentication",
        Value::Object(authentication),
        "credentials",
        problems,
    );
}

#[cfg(test)]
mod tests {
    use super::super::webhook_body as translate;
    use serde_json::json;

    #[test]
    fn the_oauth_example_becomes_an_oauth2_client_credentials_setting() {
        let mut body = json!({
            "url": "http://host:11500/example",
            "credentials": {"clientId": "cid", "clientSecret": "cs", "oauthURL": "http://host:11500/oauthToken"},
            "authenticationType": "OAUTH"
        });
        translate(&mut body).unwrap();
        assert_eq!(
            body,
            json!({"url": "http://host:11500/example", "authentication": {
                "type": "oauth2", "client_id": "cid", "client_secret": "cs",
                "token_url": "http://host:11500/oauthToken"}})
        );
    }

    #[test]
    fn the_jwt_example_names_its_algorithm_the_jose_way() {
        for (theirs, ours) in [
            ("HMAC256", "HS256"),
            ("RSA256", "RS256"),
            ("HS256", "HS256"),
        ] {
            let mut body = json!({"url": "http://h/x", "authenticationType": "JWT", "credentials": {
                "iss": "i", "sub": "s", "privateKeyId": "k1", "algorithm": theirs, "secret": "x", "audience": "a"}});
            translate(&mut body).unwrap();
            assert_eq!(
                body["authentication"],
                json!({"type": "jwt", "iss": "i", "sub": "s", "private_key_id": "k1",
                       "algorithm": ours, "secret": "x", "audience": "a"})
            );
        }
    }

    #[test]
    fn unknown_or_missing_pieces_are_refused_by_name() {
        let mut body =
            json!({"authenticationType": "OAUTH", "credentials": {"clientId": "c", "scopes": "x"}});
        let errors = translate(&mut body).unwrap_err();
        assert_eq!(errors[0].field, "credentials.scopes");
        let mut body = json!({"credentials": {"clientId": "c"}});
        assert_eq!(
            translate(&mut body).unwrap_err()[0].field,
            "authenticationType"
        );
        let mut body = json!({"authenticationType": "BASIC", "credentials": {}});
        assert_eq!(
            translate(&mut body).unwrap_err()[0].field,
            "authenticationType"
        );
        let mut body = json!({"authenticationType": "JWT", "credentials": {"iss": "i"},
            "authentication": {"type": "none"}});
        assert_eq!(translate(&mut body).unwrap_err()[0].field, "credentials");
    }
}
