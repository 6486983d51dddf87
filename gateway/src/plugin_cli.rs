//! `hookgate plugin check` and `hookgate plugin run`: a plugin author's loop without a
//! gateway. Both compile the file in the gateway's own sandbox, with its limits (the
//! `HOOKGATE_PLUGIN_*` settings, or their defaults), in a cache directory of their own
//! that is removed afterwards; `run` then calls one hook as a dry run does
//! (`plugin_trial`).

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Instant};

use anyhow::Context;
use hookgate_plugin_host::{Hook, PluginArtifact, PluginRuntime};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    config::Config,
    ids,
    iso::now_millis,
    plugin_trial::{self, TrialInput},
    storage::StoredEvent,
};

/// The tenant a local run is made for: plugins see it in the envelope.
const LOCAL_TENANT: &str = "local";

/// A sample event file: what the dry run route takes as `event`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleEvent {
    event_type: String,
    payload: Value,
    #[serde(default)]
    id: Option<String>,
}

/// What `plugin run` is asked to do besides the file.
pub struct RunArgs<'a> {
    pub hook: Hook,
    pub event: &'a Path,
    pub plugin_config: Option<&'a Path>,
    /// `key=value` pairs.
    pub secrets: &'a [String],
    pub url: Option<String>,
    /// Calls to make (at least 1): the report is the last call's, with the median and
    /// the slowest time over all of them.
    pub repeat: u32,
}

/// A runtime for one command, its cache in a temporary directory.
fn runtime(config: &Config) -> anyhow::Result<(PluginRuntime, tempfile::TempDir)> {
    let cache = tempfile::tempdir().context("cannot create a cache directory")?;
    let runtime = PluginRuntime::new(config.plugin_runtime(cache.path().to_path_buf()))
        .context("cannot start the plugin sandbox")?;
    Ok((runtime, cache))
}

fn compile(
    runtime: &PluginRuntime,
    file: &Path,
) -> anyhow::Result<(PluginArtifact, std::time::Duration)> {
    let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let started = Instant::now();
    let artifact = runtime
        .compile(&wasm)
        .with_context(|| format!("{} would be refused", file.display()))?;
    Ok((artifact, started.elapsed()))
}

/// `hookgate plugin check FILE`: whether FILE is a component of our world, which hooks it
/// exports and which of them do something (a hook the author did not write answers
/// neutrally: keep, identity, no headers); the reason it would be refused otherwise.
pub async fn check(file: &Path, config: &Config) -> anyhow::Result<String> {
    let (runtime, _cache) = runtime(config)?;
    let (artifact, compiled_in) = compile(&runtime, file)?;
    let plugin = runtime.load(LOCAL_TENANT, &artifact.sha256)?;
    // One call of each hook on a sample tells a neutral default from the author's code.
    for &hook in &artifact.exports {
        plugin_trial::run(&runtime, &plugin, LOCAL_TENANT, sample_input(hook)).await;
    }
    let mut out = format!(
        "{}: a component of the hookgate:plugin@0.1.0 world\n  size: {} bytes (limit {})\n  sha256: {}\n  compiled in {} ms\n  hooks:\n",
        file.display(),
        artifact.size,
        config.plugin_max_component_bytes,
        artifact.sha256,
        compiled_in.as_millis()
    );
    for hook in [Hook::Filter, Hook::Transform, Hook::Authenticate] {
        let state = if !artifact.exports.contains(&hook) {
            "not exported (attaching it for this hook fails)"
        } else if plugin.runs_hook(hook) {
            "implemented"
        } else {
            "neutral (the SDK's default: keeps the event, changes nothing, adds no headers)"
        };
        out.push_str(&format!("    {}: {state}\n", hook.name()));
    }
    Ok(out)
}

fn sample_input(hook: Hook) -> TrialInput {
    let now = now_millis();
    TrialInput {
        hook,
        event: StoredEvent {
            id: ids::generate("evt"),
            event_type: "sample.event".into(),
            published_at: now,
            received_at: now,
            payload: serde_json::value::RawValue::from_string("{}".into()).expect("valid JSON"),
        },
        config: json!({}),
        secrets: Arc::new(BTreeMap::<String, String>::new()),
        url: None,
    }
}

/// `hookgate plugin run FILE --hook H --event FILE`: one call of the hook on the event
/// in the same sandbox and limits as the gateway. Returns the report (JSON, as the dry run
/// route answers, with the limits beside what was used) and whether the plugin succeeded.
pub async fn run(file: &Path, config: &Config, args: RunArgs<'_>) -> anyhow::Result<(Value, bool)> {
    let event = read_json::<SampleEvent>(args.event, "the event")?;
    let plugin_config = match args.plugin_config {
        Some(path) => read_json::<Value>(path, "the plugin's config")?,
        None => json!({}),
    };
    let mut secrets = BTreeMap::new();
    for pair in args.secrets {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--secret {pair:?}: expected key=value"))?;
        secrets.insert(key.to_string(), value.to_string());
    }
    let (runtime, _cache) = runtime(config)?;
    let (artifact, compiled_in) = compile(&runtime, file)?;
    if !artifact.exports.contains(&args.hook) {
        anyhow::bail!("{} does not export {}", file.display(), args.hook.name());
    }
    let plugin = runtime.load(LOCAL_TENANT, &artifact.sha256)?;
    let now = now_millis();
    let payload = serde_json::value::RawValue::from_string(event.payload.to_string())?;
    let input = TrialInput {
        hook: args.hook,
        event: StoredEvent {
            id: event.id.unwrap_or_else(|| ids::generate("evt")),
            event_type: event.event_type,
            published_at: now,
            received_at: now,
            payload,
        },
        config: plugin_config,
        secrets: Arc::new(secrets),
        url: args.url,
    };
    let repeat = args.repeat.max(1);
    let mut elapsed = Vec::with_capacity(repeat as usize);
    let mut instantiate = Vec::with_capacity(repeat as usize);
    let mut trial = None;
    for _ in 0..repeat {
        let run = plugin_trial::run(&runtime, &plugin, LOCAL_TENANT, input.clone()).await;
        elapsed.push(run.elapsed_us);
        instantiate.push(run.instantiate_us);
        trial = Some(run);
    }
    let trial = trial.expect("at least one call");
    elapsed.sort_unstable();
    instantiate.sort_unstable();
    let succeeded = trial.result.is_ok();
    let (result, error) = match trial.result {
        Ok(value) => (value, Value::Null),
        Err(error) => (
            Value::Null,
            json!({"code": error.code(), "message": error.to_string()}),
        ),
    };
    let mut report = json!({
        "hook": trial.hook.name(),
        "result": result,
        "error": error,
        "logs": trial.logs,
        "compile_ms": compiled_in.as_millis() as u64,
        "elapsed_us": trial.elapsed_us,
        "instantiate_us": trial.instantiate_us,
        "peak_memory_bytes": trial.peak_memory_bytes,
        "output_bytes": trial.output_bytes,
        "limits": {
            "memory_limit_bytes": config.plugin_memory_limit_bytes,
            "call_timeout_ms": config.plugin_call_timeout.duration().as_millis() as u64,
            "max_output_bytes": runtime.config().max_output_bytes,
        },
    });
    if repeat > 1 {
        let median = |sorted: &[u64]| sorted[sorted.len() / 2];
        report["calls"] = json!({
            "count": repeat,
            "median_elapsed_us": median(&elapsed),
            "max_elapsed_us": elapsed.last(),
            "median_instantiate_us": median(&instantiate),
        });
    }
    Ok((report, succeeded))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} from {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{what} in {}", path.display()))
}
