use std::marker::PhantomData;

use crate::__private::bindings::exports::hookgate::plugin::hooks::Guest;
use crate::__private::bindings::hookgate::plugin::types as wit;
use crate::event::headers_to_wit;
use crate::{Config, Event, Header, OutgoingRequest, Result, log};

/// A Hookgate plugin. Implement the hooks you need; the others keep their neutral default.
/// Export the type with [`export!`](crate::export).
///
/// Every call runs in a fresh sandbox: statics start from their initial value each time,
/// so nothing carries over between events.
pub trait Plugin {
    /// Keep (`Ok(true)`) or drop (`Ok(false)`) the event for this webhook.
    /// Default: keep everything.
    fn filter(config: &Config, event: &Event) -> Result<bool> {
        let _ = (config, event);
        not_implemented();
        Ok(true)
    }

    /// Rewrite the event (body, headers, event type). Default: return it unchanged.
    fn transform(config: &Config, event: Event) -> Result<Event> {
        let _ = config;
        not_implemented();
        Ok(event)
    }

    /// Headers to add to one delivery attempt. Default: none.
    fn authenticate(config: &Config, request: &OutgoingRequest) -> Result<Vec<Header>> {
        let _ = (config, request);
        not_implemented();
        Ok(Vec::new())
    }
}

/// Tells Hookgate that the running hook is a default: it returns the neutral result
/// whatever its input, so the gateway stops calling it for this plugin (this saves a
/// sandbox per event for every hook an author did not write). The marker is part of the
/// contract (`wit/plugin.wit`, `log`); the gateway does not keep it as a log line.
fn not_implemented() {
    crate::__private::bindings::hookgate::plugin::host::log(
        crate::__private::bindings::hookgate::plugin::host::Level::Debug,
        NOT_IMPLEMENTED_MARKER,
    );
}

/// Must equal `hookgate_plugin_host::NOT_IMPLEMENTED_MARKER`.
const NOT_IMPLEMENTED_MARKER: &str = "hookgate:hook-not-implemented";

/// Adapts a [`Plugin`] to the generated `Guest` trait of the WIT `hooks` interface.
#[doc(hidden)]
pub struct Exports<P>(PhantomData<P>);

impl<P: Plugin> Guest for Exports<P> {
    fn filter(config: String, e: wit::Event) -> Result<bool, String> {
        route_panics_to_log();
        P::filter(&Config::new(config), &e.into()).map_err(String::from)
    }

    fn transform(config: String, e: wit::Event) -> Result<wit::Event, String> {
        route_panics_to_log();
        P::transform(&Config::new(config), e.into())
            .map(Into::into)
            .map_err(String::from)
    }

    fn authenticate(config: String, req: wit::OutgoingRequest) -> Result<Vec<wit::Header>, String> {
        route_panics_to_log();
        P::authenticate(&Config::new(config), &req.into())
            .map(|headers| headers_to_wit(headers.into()))
            .map_err(String::from)
    }
}

/// A panic aborts the call (plugins build with `panic = "abort"`); without this hook its
/// message would go to stderr, which the sandbox discards. Each call gets a fresh
/// instance, so the hook is installed once per call.
fn route_panics_to_log() {
    std::panic::set_hook(Box::new(|info| {
        log::error(&format!("plugin panicked: {info}"))
    }));
}
