//! The integration test: a 5-second workload (1 s warm-up + 4 s measured) against a real
//! `chronik-server standalone` on loopback; every message sent must be received exactly once.
//!
//! The server binary comes from `CHRONIK_SERVER_BIN`, else `target/<profile>/chronik-server` next
//! to this test's own profile directory, else `../target/{debug,release}/chronik-server` relative
//! to this crate. Tests never build it. When it is absent the test is skipped with a loud message,
//! unless `CHRONIK_REQUIRE_SERVER` is set (CI sets it and builds the server first).

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for the server to accept connections.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);

fn server_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHRONIK_SERVER_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    // target/<profile>/deps/<this test> -> target/<profile>/chronik-server
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(|d| d.parent()) {
            candidates.push(profile_dir.join("chronik-server"));
        }
    }
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    candidates.push(target.join("debug/chronik-server"));
    candidates.push(target.join("release/chronik-server"));
    candidates.into_iter().find(|p| p.is_file())
}

/// A running `chronik-server`, killed (by its PID, via the Child handle) on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    _data: tempfile::TempDir,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(bin: &PathBuf) -> Server {
        // Reserve a free port, release it, and hand it to the server.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let data = tempfile::tempdir().expect("data dir");
        let log = data.path().join("server.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .arg("standalone")
            .env("CHRONIK_BIND_ADDR", "127.0.0.1")
            .env("CHRONIK_ADVERTISED_ADDR", "127.0.0.1")
            .env("CHRONIK_KAFKA_PORT", port.to_string())
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _data: data,
            log,
        };
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "chronik-server exited before listening ({status}); log:\n{}",
                    server.log_text()
                );
            }
            if TcpStream::connect_timeout(&server.addr, Duration::from_millis(200)).is_ok() {
                return server;
            }
            if Instant::now() >= deadline {
                panic!(
                    "chronik-server did not listen on {} within {SERVER_START_TIMEOUT:?}; log:\n{}",
                    server.addr,
                    server.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[test]
fn five_second_workload_against_chronik_server_receives_every_message_once() {
    let Some(bin) = server_binary() else {
        if std::env::var_os("CHRONIK_REQUIRE_SERVER").is_some() {
            panic!("CHRONIK_REQUIRE_SERVER is set but no chronik-server binary was found");
        }
        eprintln!(
            "\n**********************************************************************\n\
             SKIPPED: chronik-server binary not found (set CHRONIK_SERVER_BIN or run\n\
             `cargo build -p chronik-server`); set CHRONIK_REQUIRE_SERVER=1 to fail instead.\n\
             **********************************************************************\n"
        );
        return;
    };
    let server = Server::start(&bin);
    let dir = tempfile::tempdir().unwrap();
    let groups = 1;
    let wl = common::write(
        dir.path(),
        "it.toml",
        &common::workload("perf-it", 4, 2000, "assigned", groups, 1, 4),
    );
    let out = dir.path().join("it.json");
    let pid = server.child.id().to_string();
    let o = common::run_cli(&[
        "run",
        wl.to_str().unwrap(),
        "--bootstrap",
        &server.addr.to_string(),
        "--broker-pid",
        &pid,
        "--output",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    eprintln!("{stderr}{}", String::from_utf8_lossy(&o.stdout));
    assert!(
        o.status.success(),
        "chronik-perf failed:\n{stderr}\nserver log:\n{}",
        server.log_text()
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    common::check_exactly_once(&json, groups as usize);
    let broker = &json["broker"];
    assert_eq!(broker["pid"].as_u64(), Some(u64::from(server.child.id())));
    assert!(broker["rss_max_bytes"].as_u64().unwrap() > 0);
}
