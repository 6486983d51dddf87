//! `hookgate`: the webhook gateway binary.

use clap::{Parser, Subcommand};
use hookgate::config::{ConfigArgs, LogFormat};
use tracing_subscriber::EnvFilter;

// Every request and delivery allocates many short-lived buffers across threads; glibc's
// allocator showed up as a fifth of the ingest profile (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "hookgate", version, about = "Self-hosted webhook gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (embedded storage, no configuration needed).
    Serve(ConfigArgs),
    /// Print the resolved configuration and exit.
    Config(ConfigArgs),
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => {
            let config = args.load()?;
            init_logging(config.log_format);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(hookgate::app::serve(config))
        }
        Command::Config(args) => {
            let mut config = args.load()?;
            config.admin_token = config.admin_token.map(|_| "(set)".into());
            config.master_key = config.master_key.map(|_| "(set)".into());
            println!("{config:#?}");
            Ok(())
        }
    }
}
