//! A plugin ready to run: its linked `InstancePre` and where its hooks are.

use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker};

use crate::Hook;
use crate::bindings::HOOKS_INTERFACE;
use crate::host::CallState;

/// One compiled plugin version, shared by all calls (`Arc<LoadedPlugin>`). Cheap to call
/// many times: the imports are resolved once here, each call only instantiates.
pub struct LoadedPlugin {
    sha256: String,
    pub(crate) pre: InstancePre<CallState>,
    /// Export index per hook (by `Hook::index`), `None` when the hook is not exported.
    pub(crate) hooks: [Option<ComponentExportIndex>; 3],
    /// Per hook: a call showed it to be a neutral default (see `call::run`), so it is not
    /// called again; its neutral result is returned instead.
    neutral: [AtomicBool; 3],
}

impl LoadedPlugin {
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
        Ok(LoadedPlugin {
            sha256: sha256.to_owned(),
            pre,
            hooks,
            neutral: Default::default(),
        })
    }

    /// The sha256 (hex) of the uploaded component: its identity in the cache.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The hooks this plugin exports, in `filter, transform, authenticate` order.
    pub fn exports(&self) -> Vec<Hook> {
        Hook::ALL
            .into_iter()
            .filter(|h| self.exports_hook(*h))
            .collect()
    }

    pub fn exports_hook(&self, hook: Hook) -> bool {
        self.hooks[hook.index()].is_some()
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
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("sha256", &self.sha256)
            .field("exports", &self.exports())
            .finish()
    }
}
