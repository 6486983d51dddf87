//! `jwt`: `Authorization: Bearer <JWT>`, HS256 or RS256 (CloudBlue, Sterling).
//!
//! Claims: `iss`, `sub`, `aud` (when configured), `iat` (the attempt's time), `exp`
//! (`iat + ttl`), `jti` (the event id) and `body_sha256`, the lowercase hex SHA-256 of the
//! exact body bytes, which binds the token to this payload: a receiver recomputes it and
//! compares, so a token cannot be replayed with another body. For GET webhooks the event
//! fields (`OutgoingRequest::get_claims`) are added as claims too, CloudBlue style; the
//! claims above are written last, so event fields can never override them.

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
    iss: String,
    sub: String,
    audience: Option<String>,
    ttl_seconds: i64,
}

pub(super) struct JwtSettings {
    pub algorithm: Algorithm,
    pub key: EncodingKey,
    pub key_id: Option<String>,
    pub iss: String,
    pub sub: String,
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
        let mut claims = match request.get_claims {
            Some(Value::Object(fields)) => fields.clone(),
            // A non-object event still rides along, under one claim.
            Some(other) => Map::from_iter([("event".to_owned(), other.clone())]),
            None => Map::new(),
        };
        let issued_at = request.now.as_second();
        claims.insert("iss".into(), self.iss.clone().into());
        claims.insert("sub".into(), self.sub.clone().into());
        match &self.audience {
            Some(audience) => claims.insert("aud".into(), audience.clone().into()),
            None => claims.remove("aud"),
        };
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
            iss: "hookgate".into(),
            sub: "acme".into(),
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
            get_claims: Some(&event),
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
    fn token_round_trips_through_jsonwebtoken() {
        let url = url::Url::parse("https://example.com/").unwrap();
        let now = jiff::Timestamp::now();
        let request = OutgoingRequest {
            event_id: "evt_1",
            method: &Method::POST,
            url: &url,
            body: b"{\"a\":1}",
            now,
            get_claims: None,
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
