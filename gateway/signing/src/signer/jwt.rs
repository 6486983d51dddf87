//! `jwt`: `Authorization: Bearer <JWT>`, HS256 or RS256 (CloudBlue, Sterling).
//!
//! Claims: `iss`, `sub`, `aud` (each when configured), `iat` (the attempt's time), `exp`
//! (`iat + ttl`), `jti` (the event id) and `body_sha256`, the lowercase hex SHA-256 of the
//! exact body bytes, which binds the token to this payload: a receiver recomputes it and
//! compares, so a token cannot be replayed with another body. The fields of
//! `OutgoingRequest::claims` are added too, CloudBlue style (the event for a GET, the
//! webhook's facts for a POST); the claims above are written last, so those fields can
//! never override them.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{OutgoingRequest, SignError, SignedHeaders};

/// Name of the body-hash claim; receivers compare it with `sha256(body).hexdigest()`.
pub const BODY_HASH_CLAIM: &str = "body_sha256";

pub(super) struct JwtSigner {
    /// Parsed once: for RS256, the PEM is decoded and checked when the signer is built.
    key: EncodingKey,
    header: Header,
    iss: Option<String>,
    sub: Option<String>,
    audience: Option<String>,
    ttl_seconds: i64,
}

pub(super) struct JwtSettings {
    pub algorithm: Algorithm,
    pub key: EncodingKey,
    pub key_id: Option<String>,
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub audience: Option<String>,
    pub ttl_seconds: i64,
}

impl JwtSigner {
    pub(super) fn new(settings: JwtSettings) -> Self {
        let mut header = Header::new(settings.algorithm);
        header.kid = settings.key_id;
        Self {
            key: settings.key,
            header,
            iss: settings.iss,
            sub: settings.sub,
            audience: settings.audience,
            ttl_seconds: settings.ttl_seconds,
        }
    }

    pub(super) fn sign(&self, request: &OutgoingRequest<'_>) -> Result<SignedHeaders, SignError> {
        let claims = self.claims(request);
        let token = jsonwebtoken::encode(&self.header, &claims, &self.key)?;
        let mut value =
            HeaderValue::from_str(&format!("Bearer {token}")).expect("a JWT is base64url and dots");
        value.set_sensitive(true);
        Ok(vec![(AUTHORIZATION, value)])
    }

    fn claims(&self, request: &OutgoingRequest<'_>) -> Map<String, Value> {
        let mut claims = match request.claims {
            Some(Value::Object(fields)) => fields.clone(),
            // A non-object event still rides along, under one claim.
            Some(other) => Map::from_iter([("event".to_owned(), other.clone())]),
            None => Map::new(),
        };
        let issued_at = request.now.as_second();
        // Registered claims are the gateway's alone: an unset one is removed, never
        // taken from the event.
        for (name, value) in [
            ("iss", &self.iss),
            ("sub", &self.sub),
            ("aud", &self.audience),
        ] {
            match value {
                Some(value) => claims.insert(name.into(), value.clone().into()),
                None => claims.remove(name),
            };
        }
        claims.insert("iat".into(), issued_at.into());
        claims.insert("exp".into(), (issued_at + self.ttl_seconds).into());
        claims.insert("jti".into(), request.event_id.into());
        claims.insert(
            BODY_HASH_CLAIM.into(),
            hex::encode(Sha256::digest(request.body)).into(),
        );
        claims
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use reqwest::Method;
    use serde_json::json;

    fn hs256_signer() -> JwtSigner {
        JwtSigner::new(JwtSettings {
            algorithm: Algorithm::HS256,
            key: EncodingKey::from_secret(b"shared"),
            key_id: Some("k1".into()),
            iss: Some("hookgate".into()),
            sub: Some("acme".into()),
            audience: Some("erp".into()),
            ttl_seconds: 300,
        })
    }

    #[test]
    fn event_fields_cannot_override_registered_claims() {
        let url = url::Url::parse("https://example.com/").unwrap();
        let event = json!({"webhook_id": "WH-1", "iss": "attacker", "exp": 9999999999u64,
                           "body_sha256": "forged", "aud": "other"});
        let request = OutgoingRequest {
            event_id: "evt_1",
            method: &Method::GET,
            url: &url,
            body: b"",
            now: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
            claims: Some(&event),
        };
        let claims = hs256_signer().claims(&request);
        assert_eq!(claims["webhook_id"], "WH-1");
        assert_eq!(claims["iss"], "hookgate");
        assert_eq!(claims["aud"], "erp");
        assert_eq!(claims["exp"], 1_800_000_300);
        assert_eq!(
            claims[BODY_HASH_CLAIM],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn unset_registered_claims_are_left_out_even_when_the_event_has_them() {
        let url = url::Url::parse("https://example.com/").unwrap();
        let signer = JwtSigner::new(JwtSettings {
            algorithm: Algorithm::HS256,
            key: EncodingKey::from_secret(b"shared"),
            key_id: None,
            iss: None,
            sub: None,
            audience: None,
            ttl_seconds: 300,
        });
        let event = json!({"webhook_id": "WH-1", "iss": "attacker", "sub": "someone"});
        let request = OutgoingRequest {
            event_id: "evt_1",
            method: &Method::POST,
            url: &url,
            body: b"{}",
            now: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
            claims: Some(&event),
        };
        let claims = signer.claims(&request);
        assert_eq!(claims["webhook_id"], "WH-1");
        for name in ["iss", "sub", "aud"] {
            assert!(!claims.contains_key(name), "{name} in {claims:?}");
        }
    }

    #[test]
    fn token_round_trips_through_jsonwebtoken() {
        let url = url::Url::parse("https://example.com/").unwrap();
        let now = jiff::Timestamp::now();
        let request = OutgoingRequest {
            event_id: "evt_1",
            method: &Method::POST,
            url: &url,
            body: b"{\"a\":1}",
            now,
            claims: None,
        };
        let headers = hs256_signer().sign(&request).unwrap();
        let token = headers[0]
            .1
            .to_str()
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k1"));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&["erp"]);
        let data =
            jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(b"shared"), &validation)
                .unwrap();
        assert_eq!(data.claims["jti"], "evt_1");
        assert!(headers[0].1.is_sensitive());
    }
}
