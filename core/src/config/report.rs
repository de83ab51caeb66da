//! `chronik-server validate-config`: load, validate, print one line per
//! problem (`key: message`) and a summary; exit code 0 when valid, 1 if not.

use std::path::Path;

use super::load::{all_issues, load_layers, main_file};
use super::{Config, Origin, ENV_CLUSTER_CONFIG_FILE};

/// Exit code of `validate-config` for a valid configuration.
pub const EXIT_VALID: i32 = 0;
/// Exit code of `validate-config` when any problem was found.
pub const EXIT_INVALID: i32 = 1;

/// Build the `validate-config` report for `path` (None: the usual lookup)
/// and `env`. Returns the text to print and the exit code.
pub fn validate_config_report(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> (String, i32) {
    let (cfg, load_issues) = load_layers(path, env);
    let issues = all_issues(&cfg, load_issues);
    let mut files: Vec<String> = main_file(path, env)
        .map(|p| p.display().to_string())
        .into_iter()
        .collect();
    if let Some(c) = env(ENV_CLUSTER_CONFIG_FILE).filter(|c| !c.trim().is_empty()) {
        files.push(c.trim().to_string());
    }
    let source = if files.is_empty() {
        "built-in defaults".to_string()
    } else {
        files.join(" + ")
    };
    let mut out = String::new();
    for i in &issues {
        out.push_str(&format!("{i}\n"));
    }
    if issues.is_empty() {
        let from_files = cfg
            .effective()
            .iter()
            .filter(|(_, _, o)| matches!(o, Origin::File { .. }))
            .count();
        let from_env = cfg
            .effective()
            .iter()
            .filter(|(_, _, o)| matches!(o, Origin::Env(_)))
            .count();
        out.push_str(&format!(
            "{source}: configuration is valid ({from_files} key(s) from files, {from_env} from environment, the rest defaults)\n"
        ));
        out.push_str(&summary(&cfg));
        (out, EXIT_VALID)
    } else {
        out.push_str(&format!(
            "{source}: {} problem(s) found; the broker will refuse to start with this configuration\n",
            issues.len()
        ));
        (out, EXIT_INVALID)
    }
}

fn summary(cfg: &Config) -> String {
    let mut s = format!(
        "  kafka: listen {} advertise {}:{}\n",
        cfg.kafka_listen_addr(),
        cfg.advertised_host(),
        cfg.advertised_port()
    );
    match cfg.http_listen_addr() {
        Some(a) => s.push_str(&format!("  http: {a}\n")),
        None => s.push_str("  http: dedicated port disabled\n"),
    }
    s.push_str(&format!(
        "  data: {} (wal {}, snapshots {})\n",
        cfg.server.data_dir.display(),
        cfg.wal_dir().display(),
        cfg.snapshot_dir().display()
    ));
    if cfg.cluster.enabled {
        s.push_str(&format!(
            "  cluster: node {} raft listen {} advertise {}, {} peer(s)\n",
            cfg.cluster.node_id,
            cfg.raft_listen_addr(),
            cfg.raft_advertised_addr(),
            cfg.raft_peers().len()
        ));
    } else {
        s.push_str("  cluster: disabled (standalone)\n");
    }
    s
}

/// The `validate-config [--config FILE]` subcommand: prints the report to
/// stdout using the process environment and returns the exit code.
pub fn validate_config_main(path: Option<&Path>) -> i32 {
    let (text, code) = validate_config_report(path, &Config::process_env);
    print!("{text}");
    code
}
