//! Per-call resource limits. Wraps memory/table growth decisions so that a denial is
//! remembered: a guest whose allocation fails usually aborts with a bare `unreachable`
//! trap, and this flag is how the call reports "memory limit" instead of that.

use wasmtime::ResourceLimiter;

pub(crate) struct CallLimits {
    memory_bytes: usize,
    table_elements: usize,
    pub(crate) memory_denied: bool,
}

use crate::engine::{CORE_INSTANCES_PER_COMPONENT, MEMORIES_PER_COMPONENT, TABLES_PER_COMPONENT};

/// Instances, tables and memories a component may create: the pool's bounds, so that the
/// store refuses first.
const MAX_INSTANCES: usize = CORE_INSTANCES_PER_COMPONENT as usize;
const MAX_TABLES: usize = TABLES_PER_COMPONENT as usize;
const MAX_MEMORIES: usize = MEMORIES_PER_COMPONENT as usize;

impl CallLimits {
    pub(crate) fn new(memory_bytes: usize, table_elements: usize) -> Self {
        CallLimits {
            memory_bytes,
            table_elements,
            memory_denied: false,
        }
    }
}

impl ResourceLimiter for CallLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_bytes && maximum.is_none_or(|max| desired <= max);
        if !allowed {
            self.memory_denied = true;
        }
        Ok(allowed)
    }

    /// Growth refused before the limiter was asked (e.g. past the memory type's maximum).
    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_denied = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements && maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}
