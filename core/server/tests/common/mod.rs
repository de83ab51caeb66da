//! Test harness: real `chronik-server` processes on loopback, bounded in time, killed by PID.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A free loopback port (bind to 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub port: u16,
    pub http_port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    extra_env: Vec<(String, String)>,
    log: PathBuf,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    pub fn start_with(env: &[(&str, &str)]) -> Server {
        Self::start_in(Self::new_dir(), env)
    }

    /// A fresh directory for [`Server::start_in`] (the data dir will be its `data`).
    pub fn new_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("chronik-test-")
            .tempdir_in(test_tmp())
            .unwrap()
    }

    /// Starts a server whose data dir is `dir/data` (which may already exist, e.g. as a mount).
    pub fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut http_port = free_port();
        while http_port == port {
            http_port = free_port();
        }
        let mut s = Server {
            port,
            http_port,
            log: dir.path().join("server.log"),
            dir,
            child: None,
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.spawn();
        s
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chronik-server"));
        cmd.arg("--data-dir")
            .arg(self.data_dir())
            .arg("standalone")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("CHRONIK_BIND_ADDR", "127.0.0.1")
            .env("CHRONIK_ADVERTISED_ADDR", "127.0.0.1")
            .env("CHRONIK_KAFKA_PORT", self.port.to_string())
            .env("CHRONIK_HTTP_PORT", self.http_port.to_string())
            .env("CHRONIK_HTTP_BIND_ADDR", "127.0.0.1")
            .env("CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn chronik-server"));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        let addr: SocketAddr = self.bootstrap().parse().unwrap();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "chronik-server exited early ({status}):\n{}",
                    self.log_text()
                );
            }
            // A TLS Kafka listener cannot be probed in plaintext: ask the HTTP port whether
            // the broker is ready.
            let tls = self
                .extra_env
                .iter()
                .any(|(k, v)| k == "CHRONIK_KAFKA_TLS_ENABLED" && v == "true");
            if tls {
                // Probed without panicking: while the server starts, a connect may be refused
                // (or, in the ephemeral port range, connect the socket to itself).
                if self
                    .try_http(self.http_port, "GET", "/health/ready")
                    .is_some_and(|(status, _)| status.contains(" 200"))
                {
                    return;
                }
            } else if let Ok(mut probe) =
                TcpStream::connect_timeout(&addr, Duration::from_millis(200))
            {
                // A connect alone can succeed without a server (a loopback socket may connect
                // to itself when the port is in the ephemeral range): ask for ApiVersions.
                let _ = probe.set_read_timeout(Some(Duration::from_secs(2)));
                // ApiVersions v0, correlation id 1, null client id.
                let req: [u8; 14] = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
                let mut head = [0u8; 8];
                if probe.write_all(&req).is_ok()
                    && probe.read_exact(&mut head).is_ok()
                    && head[4..8] == [0, 0, 0, 1]
                {
                    return;
                }
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "server did not listen within {START_TIMEOUT:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        unsafe_sigterm(c.id());
        let start = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st.code();
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// A simple HTTP GET against the Kafka or HTTP port; returns (status line, body).
    pub fn http_get(&self, port: u16, path: &str) -> (String, String) {
        self.http(port, "GET", path)
    }

    /// A simple HTTP request without a body; returns (status line, body).
    pub fn http(&self, port: u16, method: &str, path: &str) -> (String, String) {
        self.try_http(port, method, path)
            .unwrap_or_else(|| panic!("HTTP {method} {path} on port {port}: no connection"))
    }

    /// [`Server::http`], or `None` if the connection or the request fails.
    pub fn try_http(&self, port: u16, method: &str, path: &str) -> Option<(String, String)> {
        let mut s = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(5),
        )
        .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        Some((
            head.lines().next().unwrap_or("").to_string(),
            body.to_string(),
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log_text());
        }
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

/// Where test data directories go: on the project's filesystem (O_DIRECT must work; /tmp may be
/// tmpfs on some hosts).
pub fn test_tmp() -> PathBuf {
    let p = Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf();
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// The Python interpreter with the client libraries, if configured (`CHRONIK_PYTHON`).
/// With `CHRONIK_REQUIRE_CLIENTS=1` (CI) a missing interpreter fails the test instead.
pub fn python() -> Option<PathBuf> {
    match std::env::var("CHRONIK_PYTHON") {
        Ok(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
            if venv.exists() {
                return Some(venv);
            }
            assert!(
                std::env::var("CHRONIK_REQUIRE_CLIENTS").is_err(),
                "CHRONIK_REQUIRE_CLIENTS is set but no Python with client libraries was found \
                 (set CHRONIK_PYTHON or create .venv)"
            );
            eprintln!("SKIPPED: no Python client environment (run .ci/run or create .venv)");
            None
        }
    }
}

/// Whether `kcat` is installed (required under `CHRONIK_REQUIRE_CLIENTS`).
pub fn kcat() -> bool {
    let ok = Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CHRONIK_REQUIRE_CLIENTS").is_err(),
            "CHRONIK_REQUIRE_CLIENTS is set but kcat is not installed"
        );
        eprintln!("SKIPPED: kcat not installed");
    }
    ok
}

/// Where kafkajs is installed (`CHRONIK_KAFKAJS`, else the repo's `.node/node_modules/kafkajs`
/// that `tools/scripts/setup-test-env.sh` creates), if `node` runs too. With
/// `CHRONIK_REQUIRE_CLIENTS=1` (CI) a missing node or kafkajs fails the test instead.
pub fn kafkajs() -> Option<PathBuf> {
    let path = match std::env::var("CHRONIK_KAFKAJS") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.node/node_modules/kafkajs"),
    };
    let node_ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if node_ok && path.join("package.json").exists() {
        return Some(path);
    }
    let why = if node_ok {
        format!("kafkajs is not installed at {}", path.display())
    } else {
        "node is not installed".to_string()
    };
    assert!(
        std::env::var("CHRONIK_REQUIRE_CLIENTS").is_err(),
        "CHRONIK_REQUIRE_CLIENTS is set but {why} (run tools/scripts/setup-test-env.sh)"
    );
    eprintln!("SKIPPED: {why} (run tools/scripts/setup-test-env.sh)");
    None
}

/// Runs a client script `tests/clients/NAME` with `args`, bounded in time; panics with its
/// output on failure.
pub fn run_client(py: &Path, script: &str, args: &[&str], timeout: Duration) -> String {
    run_script(Command::new(py), script, args, timeout)
}

/// Runs the kafkajs script `tests/clients/NAME` under node with `kafkajs` (see [`kafkajs`]).
pub fn run_node(kafkajs: &Path, script: &str, args: &[&str], timeout: Duration) -> String {
    let mut cmd = Command::new("node");
    cmd.env("KAFKAJS_PATH", kafkajs);
    run_script(cmd, script, args, timeout)
}

fn run_script(mut cmd: Command, script: &str, args: &[&str], timeout: Duration) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let child = cmd
        .arg(&path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let pid = child.id();
    // Drain the pipes on another thread (a full pipe would stall the client) and bound the wait.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "{script} {args:?} timed out after {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A raw Kafka protocol connection for wire-level tests.
/// A byte stream a [`Wire`] can talk over (TCP, or TLS over TCP).
pub trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

pub struct Wire {
    pub stream: Box<dyn Stream>,
    next_correlation: i32,
    /// The client id in request headers ("wire-test" unless changed).
    pub client_id: &'static str,
}

impl Wire {
    pub fn connect(port: u16) -> Wire {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // A frame goes out as two writes (size, then body): without this, Nagle holds the body
        // until the broker's delayed ACK of the size (about 40 ms a request), as no real
        // client would.
        stream.set_nodelay(true).unwrap();
        Wire::over(stream)
    }

    /// A connection over an already connected stream (a TLS session, say).
    pub fn over(stream: impl Stream + 'static) -> Wire {
        Wire {
            stream: Box::new(stream),
            next_correlation: 1,
            client_id: "wire-test",
        }
    }

    /// Sends `body` as API `key` version `version`; returns the correlation id used.
    pub fn send<T: kafka_protocol::protocol::Encodable>(
        &mut self,
        key: kafka_protocol::messages::ApiKey,
        version: i16,
        body: &T,
    ) -> i32 {
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let corr = self.next_correlation;
        self.next_correlation += 1;
        let mut b = bytes::BytesMut::new();
        kafka_protocol::messages::RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(corr)
            .with_client_id(Some(StrBytes::from_static_str(self.client_id)))
            .encode(&mut b, key.request_header_version(version))
            .unwrap();
        body.encode(&mut b, version).unwrap();
        self.send_raw(&(b.len() as i32).to_be_bytes());
        self.send_raw(&b);
        corr
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one response frame: (correlation id, body after the header bytes `header_len`).
    pub fn recv_frame(&mut self) -> Option<Vec<u8>> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let len = i32::from_be_bytes(len) as usize;
        assert!(len < 64 << 20, "response frame of {len} bytes");
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf).ok()?;
        Some(buf)
    }

    /// Sends a request and decodes its response.
    pub fn call<Req, Resp>(
        &mut self,
        key: kafka_protocol::messages::ApiKey,
        version: i16,
        body: &Req,
    ) -> Resp
    where
        Req: kafka_protocol::protocol::Encodable,
        Resp: kafka_protocol::protocol::Decodable,
    {
        let corr = self.send(key, version, body);
        let frame = self.recv_frame().expect("response");
        let mut buf = bytes::Bytes::from(frame);
        let header_version = key.response_header_version(version);
        let header = <kafka_protocol::messages::ResponseHeader as kafka_protocol::protocol::Decodable>::decode(
            &mut buf,
            header_version,
        )
        .unwrap();
        assert_eq!(header.correlation_id, corr);
        Resp::decode(&mut buf, version).unwrap()
    }

    /// True once the server closed the connection (read returns EOF or reset).
    pub fn closed_by_server(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}
