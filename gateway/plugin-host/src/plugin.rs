//! A plugin ready to run: its linked `InstancePre` and where its hooks are.

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
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("sha256", &self.sha256)
            .field("exports", &self.exports())
            .finish()
    }
}
