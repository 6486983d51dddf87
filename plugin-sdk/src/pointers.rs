//! Reading only some fields of a JSON body: one pass over the text that builds values only
//! at the requested JSON pointers and skips everything else without allocating.
//!
//! A plugin that looks at two fields of a 1 KiB event does not need the whole body as a
//! `serde_json::Value` (a map per object, a string per key): in the sandbox, where every
//! call starts from a fresh instance, building that tree was most of a filter's cost.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The values at `pointers` (RFC 6901, as [`Value::pointer`]) in the JSON document
/// `json`, in the same order; `None` where nothing is there. The whole document is still
/// checked to be valid JSON.
pub(crate) fn extract(json: &[u8], pointers: &[&str]) -> serde_json::Result<Vec<Option<Value>>> {
    let mut root = Node::default();
    for (index, pointer) in pointers.iter().enumerate() {
        // Like `Value::pointer`, a pointer that is neither empty nor starts with `/`
        // matches nothing.
        if pointer.is_empty() {
            root.targets.push(index);
        } else if let Some(rest) = pointer.strip_prefix('/') {
            let mut node = &mut root;
            for token in rest.split('/') {
                node = node.child(unescape(token));
            }
            node.targets.push(index);
        }
    }
    let mut found = vec![None; pointers.len()];
    let mut de = serde_json::Deserializer::from_slice(json);
    Walk {
        node: &root,
        found: &mut found,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// One step of the pointers: the pointers ending here (`targets`, indexes into the
/// result) and the tokens continuing from here.
#[derive(Default)]
struct Node {
    targets: Vec<usize>,
    children: Vec<(String, Node)>,
}

impl Node {
    fn child(&mut self, token: Cow<'_, str>) -> &mut Node {
        let at = match self.children.iter().position(|(t, _)| *t == token) {
            Some(at) => at,
            None => {
                self.children.push((token.into_owned(), Node::default()));
                self.children.len() - 1
            }
        };
        &mut self.children[at].1
    }

    fn find(&self, key: &str) -> Option<&Node> {
        self.children
            .iter()
            .find(|(token, _)| token == key)
            .map(|(_, node)| node)
    }

    fn clear(&self, found: &mut [Option<Value>]) {
        for &target in &self.targets {
            found[target] = None;
        }
        for (_, child) in &self.children {
            child.clear(found);
        }
    }

    /// Fills in the targets at and under this node from an already built value.
    fn fill_from(&self, value: &Value, found: &mut [Option<Value>]) {
        for &target in &self.targets {
            found[target] = Some(value.clone());
        }
        for (token, child) in &self.children {
            let next = match value {
                Value::Object(map) => map.get(token),
                Value::Array(items) => array_index(token).and_then(|i| items.get(i)),
                _ => None,
            };
            if let Some(next) = next {
                child.fill_from(next, found);
            }
        }
    }
}

fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

/// An array index token as `Value::pointer` reads it: digits, no leading zero, no sign.
fn array_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

/// Deserializes the value under `node`: builds it when a pointer ends here, descends into
/// objects and arrays when pointers continue, skips it otherwise.
struct Walk<'n, 'f> {
    node: &'n Node,
    found: &'f mut [Option<Value>],
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        // A repeated key replaces what an earlier occurrence left, as in `Value`.
        self.node.clear(self.found);
        if !self.node.targets.is_empty() {
            let value = Value::deserialize(deserializer)?;
            self.node.fill_from(&value, self.found);
            Ok(())
        } else if self.node.children.is_empty() {
            IgnoredAny::deserialize(deserializer).map(drop)
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match self.node.find(&key) {
                Some(node) => map.next_value_seed(Walk {
                    node,
                    found: &mut *self.found,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let node = self
                .node
                .children
                .iter()
                .find(|(token, _)| array_index(token) == Some(index))
                .map(|(_, node)| node);
            let more = match node {
                Some(node) => seq
                    .next_element_seed(Walk {
                        node,
                        found: &mut *self.found,
                    })?
                    .is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }

    // Scalars: nothing continues below them.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every pointer gives what `Value::pointer` gives on the fully parsed document.
    #[test]
    fn agrees_with_value_pointer() {
        let doc = json!({
            "id": "evt_1",
            "payload": {
                "total": 250.5, "status": "paid", "tags": ["a", "b", {"c": 1}],
                "a/b": 1, "m~n": 2, "": 3, "nested": {"deep": {"x": null}}
            },
            "list": [10, 20, 30],
            "dup": 1
        });
        let text = serde_json::to_vec(&doc).unwrap();
        let pointers = [
            "",
            "/id",
            "/payload/total",
            "/payload/status",
            "/payload/tags/1",
            "/payload/tags/2/c",
            "/payload/tags/01",
            "/payload/tags/+1",
            "/payload/tags/-",
            "/payload/a~1b",
            "/payload/m~0n",
            "/payload/",
            "/payload/nested",
            "/payload/nested/deep/x",
            "/payload/missing",
            "/list/2",
            "/list/3",
            "/id/0",
            "no-slash",
            "/payload",
            "/payload/total",
        ];
        let found = extract(&text, &pointers).unwrap();
        for (pointer, got) in pointers.iter().zip(&found) {
            assert_eq!(got.as_ref(), doc.pointer(pointer), "pointer {pointer:?}");
        }
    }

    #[test]
    fn later_duplicate_keys_win_as_in_value() {
        for text in [
            &br#"{"a": 1, "a": {"b": 2}}"#[..],
            br#"{"a": {"b": 2}, "a": 1}"#,
        ] {
            let full: Value = serde_json::from_slice(text).unwrap();
            let found = extract(text, &["/a", "/a/b"]).unwrap();
            assert_eq!(found[0].as_ref(), full.pointer("/a"));
            assert_eq!(found[1].as_ref(), full.pointer("/a/b"));
        }
    }

    #[test]
    fn invalid_json_is_an_error_even_where_skipped() {
        assert!(extract(br#"{"a": 1, "b": [1, }"#, &["/a"]).is_err());
        assert!(extract(br#"{"a": 1} trailing"#, &["/a"]).is_err());
        assert!(extract(b"", &[]).is_err());
    }

    #[test]
    fn escaped_keys_match() {
        let text = br#"{"p\u0061yload": {"t\"q": 5}}"#;
        let found = extract(text, &["/payload/t\"q"]).unwrap();
        assert_eq!(found[0], Some(json!(5)));
    }
}
