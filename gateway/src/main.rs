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
    /// Check or try a plugin component without a gateway.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
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

#[derive(Subcommand)]
enum PluginCommand {
    /// Whether FILE is a component of the hookgate:plugin world, which hooks it exports
    /// and implements, or why an upload would refuse it.
    Check { file: std::path::PathBuf },
    /// Runs one hook of FILE on a sample event in the gateway's sandbox and limits, and
    /// prints the result, the plugin's log lines and what the call used (JSON).
    Run {
        file: std::path::PathBuf,
        #[arg(long, value_enum)]
        hook: HookArg,
        /// A JSON file: `{"event_type": "...", "payload": {...}, "id": "..."}` (id optional).
        #[arg(long)]
        event: std::path::PathBuf,
        /// A JSON file with the attachment's config (default `{}`).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// A secret the plugin may read, `key=value` (repeat for more).
        #[arg(long = "secret")]
        secrets: Vec<String>,
        /// For authenticate: the URL of the request the plugin signs.
        #[arg(long)]
        url: Option<String>,
        /// Calls to make: the report adds their median and slowest time (a loop that
        /// shows a plugin's steady cost, not only its first call's).
        #[arg(long, default_value_t = 1)]
        repeat: u32,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum HookArg {
    Filter,
    Transform,
    Authenticate,
}

/// The gateway's settings from the environment alone (`HOOKGATE_*`): what the plugin
/// commands take their sandbox limits from, their own flags being about the plugin.
#[derive(Parser)]
struct EnvironmentOnly {
    #[command(flatten)]
    config: ConfigArgs,
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
        Command::Plugin { command } => {
            let config = EnvironmentOnly::parse_from(["hookgate"]).config.load()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            match command {
                PluginCommand::Check { file } => {
                    print!(
                        "{}",
                        runtime.block_on(hookgate::plugin_cli::check(&file, &config))?
                    );
                    Ok(())
                }
                PluginCommand::Run {
                    file,
                    hook,
                    event,
                    config: plugin_config,
                    secrets,
                    url,
                    repeat,
                } => {
                    let hook = match hook {
                        HookArg::Filter => hookgate_plugin_host::Hook::Filter,
                        HookArg::Transform => hookgate_plugin_host::Hook::Transform,
                        HookArg::Authenticate => hookgate_plugin_host::Hook::Authenticate,
                    };
                    let args = hookgate::plugin_cli::RunArgs {
                        hook,
                        event: &event,
                        plugin_config: plugin_config.as_deref(),
                        secrets: &secrets,
                        url,
                        repeat,
                    };
                    let (report, succeeded) =
                        runtime.block_on(hookgate::plugin_cli::run(&file, &config, args))?;
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    // The report is printed either way; a failed plugin fails the command.
                    if !succeeded {
                        std::process::exit(1);
                    }
                    Ok(())
                }
            }
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
