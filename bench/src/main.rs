//! `hookgate-bench`: the load drivers and reference servers behind the performance
//! figures of issues 2 (ingest) and 3 (delivery). See bench/README.md.
//!
//! Code map:
//! - `cli`: every subcommand and flag.
//! - `event`: generated event bodies and the wall clock they carry (`payload.sent_at_ns`).
//! - `client`: one keep-alive HTTP/1.1 connection per load worker.
//! - `load`: the workers, closed loop or fixed rate, and what they count.
//! - `report`: latency histograms and the printed figures (`RESULT` lines for scripts).
//! - `ingest`, `delivery`: the two drivers; `backlog`: RSS with a large pending backlog;
//!   `many_webhooks`: thousands of webhooks, created, fed and delivered (cluster mode).
//! - `control`: untimed setup calls (tenants, webhooks, receiver counters).
//! - `servers`: the ingest ceiling, the delivery ceiling (forwarder) and the receiver.

mod backlog;
mod cli;
mod client;
mod control;
mod delivery;
mod event;
mod ingest;
mod load;
mod many_webhooks;
mod report;
mod servers;

use anyhow::Result;
use clap::Parser;

use crate::cli::{Cli, Command};
use crate::control::Control;

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Ingest(args) => ingest::run(args).await,
        Command::Delivery(args) => delivery::run(args).await,
        Command::Backlog(args) => backlog::run(args).await,
        Command::ManyWebhooks(args) => many_webhooks::run(args).await,
        Command::CeilingServer(args) => {
            servers::serve("ceiling-server", &args.listen, servers::ceiling::router()).await
        }
        Command::Receiver(args) => {
            servers::serve("receiver", &args.listen, servers::receiver::router()).await
        }
        Command::Forwarder(args) => {
            let router = servers::forwarder::router(&args.to, args.fanout, args.timeout)?;
            servers::serve("forwarder", &args.listen.listen, router).await
        }
        Command::FreePort => {
            // The port is free when printed; the caller binds it right after. Good enough
            // on a machine where nothing else grabs loopback ports in that instant.
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", listener.local_addr()?.port());
            Ok(())
        }
        Command::WaitReady(args) => Control::new()?.wait_ready(&args.url, args.timeout).await,
        Command::CreateTenant(args) => {
            let key = Control::new()?
                .create_tenant(&args.url, &args.admin_token, &args.id)
                .await?;
            println!("{key}");
            Ok(())
        }
    }
}
