//! Shared test setup: builds the plugins workspace once per test process and makes
//! runtimes and events.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hookgate_plugin_host::{CallContext, Event, PluginRuntime, RuntimeConfig, SecretSource};

pub const CALL_TIMEOUT: Duration = Duration::from_millis(100);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Builds every plugin in `plugins/` for wasm32-wasip2 (release profile, target dir
/// `plugins/target`), once per test process, and returns the directory of the `.wasm`
/// files.
pub fn plugin_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = repo_root();
        let sysroot = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .args(["--print", "sysroot"])
            .output()
            .expect("run rustc --print sysroot");
        let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
        assert!(
            Path::new(&sysroot)
                .join("lib/rustlib/wasm32-wasip2")
                .exists(),
            "the wasm32-wasip2 target is not installed; run `rustup target add wasm32-wasip2`"
        );
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target_dir = root.join("plugins/target");
        let output = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(root.join("plugins/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            // Flags meant for the host build must not leak into the guest build.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .output()
            .expect("run cargo build for plugins/");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("target may not be installed"),
            "the wasm32-wasip2 target is not installed; run `rustup target add wasm32-wasip2`"
        );
        assert!(
            output.status.success(),
            "building plugins/ failed:\n{stderr}"
        );
        target_dir.join("wasm32-wasip2/release")
    })
}

/// The component built from the plugin crate `name` (e.g. `field-filter`).
pub fn wasm(name: &str) -> Vec<u8> {
    let path = plugin_dir().join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub fn test_config(cache_dir: &Path) -> RuntimeConfig {
    RuntimeConfig {
        call_timeout: CALL_TIMEOUT,
        max_concurrent_calls: 8,
        max_log_bytes: 4096,
        ..RuntimeConfig::new(cache_dir)
    }
}

pub fn runtime(cache_dir: &Path) -> PluginRuntime {
    PluginRuntime::new(test_config(cache_dir)).expect("start plugin runtime")
}

/// An event with the gateway's default envelope around `payload`.
pub fn envelope(event_type: &str, payload: serde_json::Value) -> Event {
    let body = serde_json::json!({
        "id": "evt_1", "tenant": "acme", "event_type": event_type,
        "published_at": "2026-11-22T10:00:00Z", "payload": payload, "data": {}
    });
    Event {
        id: "evt_1".into(),
        tenant: "acme".into(),
        event_type: event_type.into(),
        published_at_ms: 1_795_341_600_000,
        headers: vec![],
        body: serde_json::to_vec(&body).unwrap(),
    }
}

pub fn body_json(event: &Event) -> serde_json::Value {
    serde_json::from_slice(&event.body).expect("JSON body")
}

pub fn no_secrets() -> CallContext {
    CallContext::default()
}

pub fn secrets(pairs: &[(&str, &str)]) -> CallContext {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    CallContext::new(Arc::new(map) as Arc<dyn SecretSource>)
}

/// The tenant the tests' calls run as, unless a test is about tenants.
pub const TENANT: &str = "acme";
