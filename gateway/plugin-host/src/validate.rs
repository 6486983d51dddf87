//! Upload checks that need no instance: size, binary kind, imports.
//! (Exports are checked by instantiating once under the call limits, see `runtime.rs`.)

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::bindings::OWN_IMPORTS;
use crate::{UploadError, wasi};

/// The first eight bytes of a component: magic, then version 0x0d in layer 1.
const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
const MAGIC: [u8; 4] = [0x00, 0x61, 0x73, 0x6d];

pub(crate) fn check_size(bytes: &[u8], limit: usize) -> Result<(), UploadError> {
    if bytes.len() > limit {
        return Err(UploadError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    Ok(())
}

/// Tells core modules and other files apart from components before handing anything to
/// the compiler, so the uploader gets a reason they can act on.
pub(crate) fn check_is_component(bytes: &[u8]) -> Result<(), UploadError> {
    if bytes.len() < 8 || bytes[..4] != MAGIC {
        return Err(UploadError::NotAComponent(
            "the file is not WebAssembly".into(),
        ));
    }
    if bytes[..8] != COMPONENT_HEADER {
        return Err(UploadError::NotAComponent(
            "this is a core WebAssembly module; build the plugin with \
             `cargo build --release --target wasm32-wasip2` (or wrap the module with \
             `wasm-tools component new`)"
                .into(),
        ));
    }
    Ok(())
}

/// Refuses any import other than our `host`/`types` interfaces and the allowed WASI
/// ones, naming every offender.
pub(crate) fn check_imports(engine: &Engine, component: &Component) -> Result<(), UploadError> {
    let forbidden: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| !OWN_IMPORTS.contains(name) && !wasi::is_allowed_import(name))
        .map(str::to_owned)
        .collect();
    if forbidden.is_empty() {
        Ok(())
    } else {
        Err(UploadError::ForbiddenImports(forbidden.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_modules_components_and_junk_apart() {
        assert!(check_is_component(&COMPONENT_HEADER).is_ok());
        let module = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        assert!(
            matches!(check_is_component(&module), Err(UploadError::NotAComponent(m)) if m.contains("core"))
        );
        assert!(matches!(
            check_is_component(b"PK\x03\x04zip!"),
            Err(UploadError::NotAComponent(_))
        ));
        assert!(matches!(
            check_is_component(b""),
            Err(UploadError::NotAComponent(_))
        ));
    }

    #[test]
    fn size_cap() {
        assert!(check_size(&[0; 10], 10).is_ok());
        assert!(matches!(
            check_size(&[0; 11], 10),
            Err(UploadError::TooLarge {
                size: 11,
                limit: 10
            })
        ));
    }
}
