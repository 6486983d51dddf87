//! Per-call resource limits. The memory limit bounds a call's *total*: every linear
//! memory of every core instance of the component, plus its tables, counted together. (A
//! limit per memory would let a component with four memories use four times as much.)
//! Denials are remembered: a guest whose allocation fails usually aborts with a bare
//! `unreachable` trap, and this flag is how the call reports "memory limit" instead.

use wasmtime::ResourceLimiter;

use crate::engine::{CORE_INSTANCES_PER_COMPONENT, MEMORIES_PER_COMPONENT, TABLES_PER_COMPONENT};

/// Instances, tables and memories a component may create: the pool's bounds, so that the
/// store refuses first.
const MAX_INSTANCES: usize = CORE_INSTANCES_PER_COMPONENT as usize;
const MAX_TABLES: usize = TABLES_PER_COMPONENT as usize;
const MAX_MEMORIES: usize = MEMORIES_PER_COMPONENT as usize;
/// What one table element costs the host: a pointer (funcref or externref).
const TABLE_ELEMENT_BYTES: usize = 8;

pub(crate) struct CallLimits {
    /// Bytes all memories and tables together may reach.
    memory_bytes: usize,
    /// Elements all tables together may reach.
    table_elements: usize,
    /// Bytes granted so far: memories, and tables at [`TABLE_ELEMENT_BYTES`] each.
    granted_bytes: usize,
    granted_elements: usize,
    pub(crate) memory_denied: bool,
}

impl CallLimits {
    pub(crate) fn new(memory_bytes: usize, table_elements: usize) -> Self {
        CallLimits {
            memory_bytes,
            table_elements,
            granted_bytes: 0,
            granted_elements: 0,
            memory_denied: false,
        }
    }

    /// The bytes granted so far: memories never shrink, so this is the call's peak.
    pub(crate) fn peak_bytes(&self) -> usize {
        self.granted_bytes
    }

    /// Grants growing one memory or table from `current` to `desired` units of `unit`
    /// bytes if the call's total stays within the limit. wasmtime asks with `current` 0
    /// when it creates a memory or table, so instantiation is counted too.
    fn grant(&mut self, current: usize, desired: usize, unit: usize) -> bool {
        let more = desired.saturating_sub(current).saturating_mul(unit);
        let total = self.granted_bytes.saturating_add(more);
        if total > self.memory_bytes {
            return false;
        }
        self.granted_bytes = total;
        true
    }
}

impl ResourceLimiter for CallLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = maximum.is_none_or(|max| desired <= max) && self.grant(current, desired, 1);
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
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let elements = self
            .granted_elements
            .saturating_add(desired.saturating_sub(current));
        let allowed = elements <= self.table_elements
            && maximum.is_none_or(|max| desired <= max)
            && self.grant(current, desired, TABLE_ELEMENT_BYTES);
        if allowed {
            self.granted_elements = elements;
        } else {
            self.memory_denied = true;
        }
        Ok(allowed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_tables_share_one_budget() {
        let mut limits = CallLimits::new(64 << 20, 100_000);
        // Four memories of 32 MiB: the first two fit, the third does not.
        assert!(limits.memory_growing(0, 32 << 20, None).unwrap());
        assert!(limits.memory_growing(0, 16 << 20, None).unwrap());
        assert!(limits.memory_growing(16 << 20, 32 << 20, None).unwrap());
        assert!(!limits.memory_growing(0, 32 << 20, None).unwrap());
        assert!(limits.memory_denied);
        // No room left for a table either.
        assert!(!limits.table_growing(0, 1, None).unwrap());
    }

    #[test]
    fn table_elements_count_across_tables() {
        let mut limits = CallLimits::new(64 << 20, 1000);
        assert!(limits.table_growing(0, 600, None).unwrap());
        assert!(!limits.table_growing(0, 600, None).unwrap());
        assert!(limits.table_growing(0, 400, None).unwrap());
    }
}
