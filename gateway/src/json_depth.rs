//! How deeply a JSON text nests arrays and objects, found by one linear scan of its bytes:
//! no parsing, no recursion, no allocation.
//!
//! Why: payloads are kept as `RawValue`, whose validation walks any depth, but whatever
//! later parses them into `serde_json::Value` (filters, plugins, receivers) stops at 128
//! levels. Ingest uses this scan to refuse payloads too deep to be read back, and it runs
//! on every ingested event, so it must cost about as much as reading the bytes once.
//!
//! The text is expected to be valid JSON (ingest has already parsed it); on anything else
//! the answer is still a number and the scan never panics.

/// Whether `json` nests arrays and objects more than `limit` levels deep. Stops at the
/// first bracket past the limit, so a 100,000-level payload costs no more than a
/// `limit`-level one.
pub fn exceeds(json: &[u8], limit: usize) -> bool {
    deepest(json, limit) > limit
}

/// The deepest nesting of arrays and objects in `json`: `1` and `"[["` are 0, `[]` and
/// `{"a": 1}` are 1, `{"a": [1]}` is 2.
pub fn depth(json: &[u8]) -> usize {
    deepest(json, usize::MAX)
}

/// The deepest nesting, or the first depth past `stop_above` (the scan ends there).
fn deepest(json: &[u8], stop_above: usize) -> usize {
    let mut bytes = json.iter();
    let (mut depth, mut deepest) = (0usize, 0usize);
    while let Some(&byte) = bytes.next() {
        match byte {
            b'"' => skip_string(&mut bytes),
            b'[' | b'{' => {
                depth += 1;
                if depth > deepest {
                    deepest = depth;
                    if deepest > stop_above {
                        break;
                    }
                }
            }
            // Saturating: a stray closing bracket (invalid JSON) must not wrap around.
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Moves past the closing quote of a string whose opening quote was just read. Brackets
/// inside strings do not nest; `\"` does not close the string, and `\\` is one escaped
/// backslash (so the quote after it does). Every other escape (`\n`, `\u00e9`) is
/// followed by bytes that are neither quotes nor backslashes, so skipping the one byte
/// after a backslash is enough. UTF-8 continuation bytes are all >= 0x80 and cannot be
/// mistaken for either.
fn skip_string(bytes: &mut std::slice::Iter<'_, u8>) {
    while let Some(&byte) = bytes.next() {
        match byte {
            b'"' => return,
            b'\\' => {
                bytes.next();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn scalars_and_containers() {
        for (json, expected) in [
            ("1", 0),
            ("\"text\"", 0),
            ("null", 0),
            ("", 0),
            ("[]", 1),
            ("{}", 1),
            (r#"{"a": 1}"#, 1),
            (r#"{"a": [1]}"#, 2),
            (r#"[[], [[]], {"a": {"b": {}}}]"#, 4),
            (r#"[{"a": [1, {"b": null}]}, 2]"#, 4),
        ] {
            assert_eq!(depth(json.as_bytes()), expected, "{json}");
        }
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        for (json, expected) in [
            (r#""[[[{{{""#, 0),
            (r#"{"[[[": "]]]{{{"}"#, 1),
            // An escaped quote does not end the string...
            (r#"["a \" [[[ still inside"]"#, 1),
            // ...but a quote after an escaped backslash does.
            (r#"["a \\", [[1]]]"#, 3),
            (r#"["\\\"[[", [1]]"#, 2),
            (r#"["\u005b\u007b [", {"é ü [": ["ß"]}]"#, 3),
            (r#"["\n\t\/\b\f\r\"\\"]"#, 1),
        ] {
            assert_eq!(depth(json.as_bytes()), expected, "{json}");
        }
    }

    #[test]
    fn exceeds_agrees_with_depth_at_the_limit() {
        for d in [0, 1, 63, 64, 65, 128] {
            let json = nested(d);
            assert_eq!(depth(json.as_bytes()), d);
            assert_eq!(exceeds(json.as_bytes(), 64), d > 64, "{d}");
        }
        // Depth is the deepest point, not the number of containers.
        let wide = format!("[{}]", vec![nested(64); 1000].join(","));
        assert!(!exceeds(wide.as_bytes(), 65));
        assert!(exceeds(wide.as_bytes(), 64));
    }

    /// The scan itself has no recursion: the attacker's 100,000 levels are just bytes.
    #[test]
    fn very_deep_text_is_scanned_without_recursion() {
        let json = nested(100_000);
        assert_eq!(depth(json.as_bytes()), 100_000);
        assert!(exceeds(json.as_bytes(), 64));
    }

    /// Malformed text gets an answer, never a panic.
    #[test]
    fn malformed_text_does_not_panic() {
        for json in ["]]]]", "[[[", "\"unterminated [[", "\"\\", "}{", "[\"\\"] {
            let _ = depth(json.as_bytes());
            let _ = exceeds(json.as_bytes(), 1);
        }
        assert_eq!(depth(b"]]][["), 2);
    }

    /// serde_json's `Value` holds 127 levels and no more: the margin the ingest limit
    /// leaves for the envelope around a payload is measured against this.
    #[test]
    fn serde_json_values_stop_at_128_levels() {
        let fits = nested(127);
        assert_eq!(depth(fits.as_bytes()), 127);
        assert!(serde_json::from_str::<serde_json::Value>(&fits).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&nested(128)).is_err());
    }
}
