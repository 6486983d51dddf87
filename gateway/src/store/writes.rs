//! Several writes to one tree applied as single-key operations, in an order that makes
//! every prefix of them a safe state, instead of as one atomic `sled::Batch`.
//!
//! Why not a batch: sled's `apply_batch` (and its transactions) pin the log, which seals
//! the current IO buffer twice; each seal hands a small write to sled's thread pool, and
//! every hand-off wakes all of the pool's idle threads (`notify_all` over 7). On the hot
//! paths that was about a quarter of the gateway's CPU, nearly all context switches.
//!
//! What replaces atomicity: after a crash sled recovers a prefix of the writes made
//! before it, so [`Writes::apply`] puts every insert (in the order given) before every
//! remove. A crash in between leaves the new state written and some old keys still
//! present: for delivery records that means an old retry entry can fire once more (a
//! duplicate, which at-least-once delivery allows) but never a lost retry.

use std::collections::HashMap;

use super::StoreError;

/// Writes to apply: like a `sled::Batch`, the last write of a key wins.
#[derive(Default)]
pub struct Writes {
    /// In the order given; `None` removes the key.
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Writes {
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The last write of each key: inserts in order, then removes. Stops at the first
    /// error.
    pub fn apply(self, tree: &sled::Tree) -> Result<(), StoreError> {
        let mut last: HashMap<&[u8], usize> = HashMap::with_capacity(self.ops.len());
        for (i, (key, _)) in self.ops.iter().enumerate() {
            last.insert(key, i);
        }
        let is_last = |i: usize, key: &[u8]| last.get(key) == Some(&i);
        for (i, (key, value)) in self.ops.iter().enumerate() {
            if let Some(value) = value
                && is_last(i, key)
            {
                tree.insert(key.as_slice(), value.as_slice())?;
            }
        }
        for (i, (key, value)) in self.ops.iter().enumerate() {
            if value.is_none() && is_last(i, key) {
                tree.remove(key)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_write_of_a_key_wins() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        tree.insert("old", "1").unwrap();
        let mut writes = Writes::default();
        writes.remove("old");
        writes.insert("new", "2");
        // As in a sled batch, the last write of a key wins.
        writes.insert("gone", "3");
        writes.remove("gone");
        writes.remove("back");
        writes.insert("back", "4");
        writes.apply(&tree).unwrap();
        assert_eq!(tree.get("old").unwrap(), None);
        assert_eq!(tree.get("new").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(tree.get("gone").unwrap(), None);
        assert_eq!(tree.get("back").unwrap().as_deref(), Some(&b"4"[..]));
    }
}
