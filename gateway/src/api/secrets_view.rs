//! Secrets in webhook views: masked on the way out, and restored when a client sends a
//! masked value back (GET-modify-PUT must not overwrite a secret with its mask).

use serde_json::Value;

/// Field names that hold secrets, wherever they appear in a webhook's configuration.
const SECRET_FIELDS: &[&str] = &[
    "secret",
    "api_key",
    "private_key",
    "signing_key",
    "client_secret",
    "client_key_pem",
    "secret_access_key",
    "query_key",
];

/// A hint that identifies a secret without revealing it: `whsec_…a1b2`, `…a1b2`.
pub fn mask(secret: &str) -> String {
    let visible = if secret.chars().count() >= 16 { 4 } else { 0 };
    let tail: String = secret
        .chars()
        .rev()
        .take(visible)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let prefix = if secret.starts_with("whsec_") {
        "whsec_"
    } else {
        ""
    };
    format!("{prefix}…{tail}")
}

fn is_mask(text: &str) -> bool {
    text.contains('…')
}

/// Replaces every secret field (recursively) by its mask.
pub fn mask_all(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                match field {
                    Value::String(s) if SECRET_FIELDS.contains(&key.as_str()) => *s = mask(s),
                    other => mask_all(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_all),
        _ => {}
    }
}

/// Where `incoming` holds a mask at a secret field, puts back the value from `current`.
pub fn restore_masked(incoming: &mut Value, current: &Value) {
    match (incoming, current) {
        (Value::Object(new), Value::Object(old)) => {
            for (key, field) in new.iter_mut() {
                let Some(previous) = old.get(key) else {
                    continue;
                };
                match field {
                    Value::String(s) if SECRET_FIELDS.contains(&key.as_str()) && is_mask(s) => {
                        if let Value::String(p) = previous
                            && mask(p) == *s
                        {
                            *s = p.clone();
                        }
                    }
                    other => restore_masked(other, previous),
                }
            }
        }
        (Value::Array(new), Value::Array(old)) => {
            for (n, o) in new.iter_mut().zip(old) {
                restore_masked(n, o);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_never_contain_the_secret_and_round_trip() {
        let original = json!({"url": "https://x", "query_key": "abcdefghijklmnopqrst",
            "authentication": {"type": "hmac", "secret": "s3cr3t-s3cr3t-s3cr3t"},
            "destination": {"type": "s3", "secret_access_key": "short"}});
        let mut shown = original.clone();
        mask_all(&mut shown);
        let text = shown.to_string();
        assert!(!text.contains("s3cr3t-s3cr3t-s3cr3t"));
        assert!(!text.contains("abcdefghijklmnopqrst"));
        assert!(!text.contains("short"));
        assert_eq!(shown["authentication"]["secret"], "…cr3t");
        restore_masked(&mut shown, &original);
        assert_eq!(shown, original);
    }

    #[test]
    fn a_new_secret_is_kept() {
        let original = json!({"authentication": {"secret": "old-old-old-old-old"}});
        let mut incoming = json!({"authentication": {"secret": "brand-new"}});
        restore_masked(&mut incoming, &original);
        assert_eq!(incoming["authentication"]["secret"], "brand-new");
    }
}
