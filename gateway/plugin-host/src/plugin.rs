//! A plugin ready to run: compiled code (linked `InstancePre`, where its hooks are),
//! shared by every tenant that uploaded the same bytes, and each tenant's own handle on
//! it with the state calls learn (hooks that proved neutral, inline bans).
//!
//! **Invariant:** nothing a call of one tenant learns is kept where another tenant's
//! calls read it. Code is shared by content hash; state never is (a tenant could
//! otherwise upload another tenant's bytes and, with its own inputs, switch off that
//! tenant's hooks).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker};

use crate::Hook;
use crate::bindings::HOOKS_INTERFACE;
use crate::host::CallState;

/// One compiled component, shared by every tenant that uploaded these bytes. Holds no
/// state that calls change.
pub(crate) struct CompiledPlugin {
    sha256: String,
    pub(crate) pre: InstancePre<CallState>,
    /// Export index per hook (by `Hook::index`), `None` when the hook is not exported.
    pub(crate) hooks: [Option<ComponentExportIndex>; 3],
}

/// One tenant's handle on a compiled plugin version, shared by that tenant's calls
/// (`Arc<LoadedPlugin>`). Cheap to call many times: the imports are resolved once, each
/// call only instantiates.
pub struct LoadedPlugin {
    code: Arc<CompiledPlugin>,
    tenant: Arc<str>,
    /// Per hook: a call of this tenant showed it to be a neutral default (see
    /// `call::run`), so it is not called again; its neutral result is returned instead.
    neutral: [AtomicBool; 3],
    /// Until when (ms on [`clock_ms`]) calls of this plugin do not run inline: see
    /// [`inline_allowed`](Self::inline_allowed).
    suspect_until: AtomicU64,
    banned_until: AtomicU64,
}

/// How long a plugin whose calls proved slow (or timed out) runs only on blocking threads.
const INLINE_BAN: Duration = Duration::from_secs(10);

/// Milliseconds since the first use, on a monotonic clock (0 never occurs).
fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl CompiledPlugin {
    /// Links `component` against the sandbox's imports and finds its hooks. Fails when an
    /// import cannot be satisfied (wrong name or type) or no hook is exported; the types
    /// of the hooks themselves are checked at upload by instantiating once.
    pub(crate) fn link(
        sha256: &str,
        linker: &Linker<CallState>,
        component: &Component,
    ) -> Result<Self, String> {
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| format!("{e:#}"))?;
        let interface = component
            .get_export_index(None, HOOKS_INTERFACE)
            .ok_or_else(|| format!("it does not export {HOOKS_INTERFACE}"))?;
        let hooks = Hook::ALL.map(|hook| component.get_export_index(Some(&interface), hook.name()));
        if hooks.iter().all(Option::is_none) {
            return Err(format!(
                "{HOOKS_INTERFACE} exports none of filter, transform, authenticate"
            ));
        }
        Ok(CompiledPlugin {
            sha256: sha256.to_owned(),
            pre,
            hooks,
        })
    }

    pub(crate) fn exports(&self) -> Vec<Hook> {
        Hook::ALL
            .into_iter()
            .filter(|h| self.hooks[h.index()].is_some())
            .collect()
    }
}

impl LoadedPlugin {
    /// A fresh handle of `tenant` on `code`: it has learnt nothing yet.
    pub(crate) fn new(code: Arc<CompiledPlugin>, tenant: &str) -> Self {
        LoadedPlugin {
            code,
            tenant: tenant.into(),
            neutral: Default::default(),
            suspect_until: AtomicU64::new(0),
            banned_until: AtomicU64::new(0),
        }
    }

    pub(crate) fn code(&self) -> &CompiledPlugin {
        &self.code
    }

    /// The sha256 (hex) of the uploaded component: its identity in the cache.
    pub fn sha256(&self) -> &str {
        &self.code.sha256
    }

    /// The tenant whose handle this is: its calls share that tenant's sandbox slots.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The hooks this plugin exports, in `filter, transform, authenticate` order.
    pub fn exports(&self) -> Vec<Hook> {
        self.code.exports()
    }

    pub fn exports_hook(&self, hook: Hook) -> bool {
        self.code.hooks[hook.index()].is_some()
    }

    /// Whether calling `hook` can do anything: it is exported and has not shown itself to
    /// be a neutral default (an SDK plugin's hook its author did not write, which keeps,
    /// returns the event unchanged or adds no headers whatever the input). Calling a hook
    /// that does not run returns that neutral result at once, without a sandbox; callers
    /// that chain plugins may skip it altogether.
    pub fn runs_hook(&self, hook: Hook) -> bool {
        self.exports_hook(hook) && !self.is_neutral(hook)
    }

    pub(crate) fn is_neutral(&self, hook: Hook) -> bool {
        self.neutral[hook.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn set_neutral(&self, hook: Hook) {
        self.neutral[hook.index()].store(true, Ordering::Relaxed);
    }

    /// Whether a call may run inline on an async worker (`PluginRuntime::with_slot`) with
    /// the short inline deadline. Not while the plugin is suspect (an inline call of it was
    /// interrupted and is being run again on a blocking thread) or banned (a call on a
    /// blocking thread ran past the inline budget or timed out), so that a slow or looping
    /// plugin holds an async worker for at most the inline budget, about once per ban.
    pub(crate) fn inline_allowed(&self) -> bool {
        let now = clock_ms();
        now >= self.suspect_until.load(Ordering::Relaxed)
            && now >= self.banned_until.load(Ordering::Relaxed)
    }

    /// An inline call was interrupted at the inline deadline: until a call on a blocking
    /// thread shows how long the plugin really takes (at most `timeout`), none run inline.
    pub(crate) fn suspect_slow(&self, timeout: Duration) {
        let until = clock_ms() + timeout.as_millis() as u64;
        self.suspect_until.fetch_max(until, Ordering::Relaxed);
    }

    /// A call on a blocking thread ended: `slow` (it ran past the inline budget or timed
    /// out) bans inline calls for [`INLINE_BAN`]; otherwise a suspicion is lifted (an
    /// inline call was interrupted only because its thread was descheduled).
    pub(crate) fn observed(&self, slow: bool) {
        if slow {
            let until = clock_ms() + INLINE_BAN.as_millis() as u64;
            self.banned_until.fetch_max(until, Ordering::Relaxed);
        } else if self.suspect_until.load(Ordering::Relaxed) != 0 {
            self.suspect_until.store(0, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("sha256", &self.code.sha256)
            .field("tenant", &self.tenant)
            .field("exports", &self.exports())
            .finish()
    }
}
