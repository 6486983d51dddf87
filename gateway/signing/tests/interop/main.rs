//! Every scheme checked by an implementation that did not produce it, over real sockets.
//!
//! One test binary (instead of one per file) so the crate links its tests once.
//! The Python verifiers need `pip install -r gateway/signing/requirements-test.txt`;
//! a missing package fails the test with that instruction.

mod hmac;
mod jwt;
mod mtls;
mod oauth2;
mod ssrf;
mod standard_webhooks;
mod support;
