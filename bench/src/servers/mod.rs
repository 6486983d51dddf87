//! The servers the benchmarks measure against: the two ceilings and the receiver.
//!
//! Each module exposes a `router()` so tests can serve it in-process; [`serve`] runs one
//! as a process that prints its address and stops on SIGINT/SIGTERM.

pub mod ceiling;
pub mod forwarder;
pub mod receiver;

use anyhow::{Context, Result};
use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

/// Binds, prints `<name> listening on <addr>` (the scripts and humans read it), and serves
/// until SIGINT or SIGTERM.
pub async fn serve(name: &str, listen: &str, router: Router) -> Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!("{name} listening on {}", listener.local_addr()?);
    let listener = listener.tap_io(|stream| {
        // Answers are small: send them now rather than wait for a delayed ACK.
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

/// `GET /readyz` answer, so `wait-ready` works the same on every server.
async fn ready() -> &'static str {
    "ok"
}

#[cfg(test)]
pub(crate) async fn spawn_for_test(router: Router) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}
