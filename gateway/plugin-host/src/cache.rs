//! The on-disk plugin cache: `{sha256}.wasm` (the bytes a tenant uploaded) and
//! `{sha256}.cwasm` (the machine code *we* compiled from them).
//!
//! Invariants: only this module writes the directory; files appear atomically (written to
//! a temporary name, synced, renamed), so a crash never leaves a truncated artifact and a
//! file that is memory-mapped is never modified in place. A `.cwasm` is only ever the
//! output of our own `Component::serialize`; bytes from a tenant are only ever compiled.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub(crate) struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
        })
    }

    pub(crate) fn source_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.wasm"))
    }

    pub(crate) fn compiled_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.cwasm"))
    }

    pub(crate) fn write_source(&self, sha256: &str, bytes: &[u8]) -> io::Result<()> {
        write_atomically(&self.source_path(sha256), bytes)
    }

    pub(crate) fn write_compiled(&self, sha256: &str, bytes: &[u8]) -> io::Result<()> {
        write_atomically(&self.compiled_path(sha256), bytes)
    }

    pub(crate) fn read_source(&self, sha256: &str) -> io::Result<Vec<u8>> {
        fs::read(self.source_path(sha256))
    }

    /// Deletes both files; missing files are not an error.
    pub(crate) fn remove(&self, sha256: &str) -> io::Result<()> {
        for path in [self.source_path(sha256), self.compiled_path(sha256)] {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // Unique per writer so that two uploads of the same component cannot interleave.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Whether `s` looks like a lower-case sha256 hex digest, which also makes it safe as a
/// file name.
pub(crate) fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_check_refuses_paths() {
        assert!(is_digest(&"a".repeat(64)));
        assert!(!is_digest("../../etc/passwd"));
        assert!(!is_digest(&"A".repeat(64)));
        assert!(!is_digest(&"a".repeat(63)));
    }

    #[test]
    fn writes_replace_atomically_and_remove_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path()).unwrap();
        let sha = "0".repeat(64);
        cache.write_source(&sha, b"one").unwrap();
        cache.write_source(&sha, b"two").unwrap();
        assert_eq!(cache.read_source(&sha).unwrap(), b"two");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary files left"
        );
        cache.remove(&sha).unwrap();
        cache.remove(&sha).unwrap();
    }
}
