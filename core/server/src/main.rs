//! `chronik-server`: the Chronik broker binary.
//!
//! ```text
//! chronik-server [--config FILE] [--data-dir DIR] [--advertised-addr HOST] ... standalone
//! chronik-server ... cluster
//! chronik-server validate-config --config FILE
//! ```

use std::path::PathBuf;

/// See `chronik_server::alloc`: a forged element count in a request must not abort the broker.
#[global_allocator]
static GLOBAL: chronik_server::alloc::GuardedAlloc = chronik_server::alloc::GuardedAlloc;

use chronik_core::config::Config;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "chronik-server",
    version,
    about = "Chronik: a Kafka-compatible streaming broker"
)]
struct Cli {
    /// Config file (default: $CHRONIK_CONFIG, else ./chronik.toml if present, else built-in defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (server.data_dir).
    #[arg(long, global = true)]
    data_dir: Option<String>,
    /// Host advertised to Kafka clients (server.advertised_addr).
    #[arg(long, global = true)]
    advertised_addr: Option<String>,
    /// Port advertised to Kafka clients (server.advertised_port).
    #[arg(long, global = true)]
    advertised_port: Option<String>,
    /// Kafka listener bind address (server.bind_addr).
    #[arg(long, global = true)]
    bind_addr: Option<String>,
    /// Kafka listener port (server.kafka_port).
    #[arg(long, global = true)]
    kafka_port: Option<String>,
    /// HTTP (metrics/health/admin) port (server.http_port).
    #[arg(long, global = true)]
    http_port: Option<String>,
    /// Cores to run shards on: "all", a count, or a list like "0-1,4" (server.cores).
    #[arg(long, global = true)]
    cores: Option<String>,
    /// Node id (cluster.node_id).
    #[arg(long, global = true)]
    node_id: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a single node (every partition a Raft group of one voter).
    Standalone,
    /// Run as a member of a Raft cluster (configured by [cluster] / CHRONIK_CLUSTER_CONFIG).
    Cluster,
    /// Check a configuration file and report every problem with its key.
    ValidateConfig,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Command::ValidateConfig = cli.command {
        std::process::exit(chronik_core::config::validate_config_main(
            cli.config.as_deref(),
        ));
    }
    let mut config = match Config::load(cli.config.as_deref(), &Config::process_env) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("chronik-server: invalid configuration:\n{errs}");
            std::process::exit(2);
        }
    };
    let overrides: Vec<(&str, &str)> = [
        ("server.data_dir", &cli.data_dir),
        ("server.advertised_addr", &cli.advertised_addr),
        ("server.advertised_port", &cli.advertised_port),
        ("server.bind_addr", &cli.bind_addr),
        ("server.kafka_port", &cli.kafka_port),
        ("server.http_port", &cli.http_port),
        ("server.cores", &cli.cores),
        ("cluster.node_id", &cli.node_id),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    .collect();
    if let Err(errs) = config.apply_overrides(overrides) {
        eprintln!("chronik-server: invalid command-line option:\n{errs}");
        std::process::exit(2);
    }
    if let Command::Cluster = cli.command {
        if !config.cluster.peers.is_empty() || !config.cluster.seed_nodes.is_empty() {
            eprintln!(
                "chronik-server: multi-node clusters are not available in this build yet \
                 (the Raft transport between nodes is not implemented); `cluster` with peers \
                 configured would run without replication, so it is refused. Use `standalone`."
            );
            std::process::exit(2);
        }
        config.cluster.enabled = true;
    }
    let issues = config.validate();
    if !issues.is_empty() {
        for i in &issues {
            eprintln!("{}: {}", i.key, i.message);
        }
        eprintln!("chronik-server: {} configuration problem(s)", issues.len());
        std::process::exit(2);
    }
    if let Err(e) = chronik_server::node::run(config) {
        eprintln!("chronik-server: {e:#}");
        std::process::exit(1);
    }
}
