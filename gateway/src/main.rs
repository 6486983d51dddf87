//! `hookgate`: the webhook gateway binary.

use clap::{Parser, Subcommand};
use hookgate::config::{ConfigArgs, LogFormat};
use tracing_subscriber::EnvFilter;

// Every request and delivery allocates many short-lived buffers across threads; glibc's
// allocator showed up as a fifth of the ingest profile (docs/PERFORMANCE.md). Built
// without transparent huge pages (`no_thp`): mimalloc asks for them on its arenas, and
// each touched 2 MiB page then stays resident, which made the 1,000,000-event backlog
// run peak at 284 MiB instead of 222 MiB (idle: 64 MiB instead of 20) at the same speed.
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
    /// Copy a stopped gateway's embedded data directory into a cluster (storage = nats).
    Migrate {
        /// The data directory of the embedded gateway (stopped) to copy.
        #[arg(long)]
        from: std::path::PathBuf,
        /// The cluster's configuration, as its nodes are given it.
        #[command(flatten)]
        config: ConfigArgs,
    },
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
            // The delivery engine runs on a runtime of its own (why: `hookgate::delivery`),
            // with twice as many threads as the API's: the OS shares the CPU per thread,
            // and a delivered event costs more than an ingested one (fan-out), so when
            // both are busy delivery gets the larger share and the backlog drains.
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            let delivery = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2 * cores)
                .thread_name("hookgate-delivery")
                .enable_all()
                .build()?;
            let served = tokio::runtime::Builder::new_multi_thread()
                .thread_name("hookgate-api")
                .enable_all()
                .build()?
                .block_on(hookgate::app::serve(config, delivery.handle().clone()));
            // Workers have stopped by now; what is left (idle client connections) goes.
            delivery.shutdown_timeout(std::time::Duration::from_secs(1));
            served
        }
        Command::Config(args) => {
            let mut config = args.load()?;
            config.admin_token = config.admin_token.map(|_| "(set)".into());
            config.master_key = config.master_key.map(|_| "(set)".into());
            println!("{config:#?}");
            Ok(())
        }
        Command::Migrate { from, config } => {
            let config = config.load()?;
            init_logging(config.log_format);
            let report = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(hookgate::migrate::run(&from, config))?;
            print!("{report}");
            Ok(())
        }
    }
}
