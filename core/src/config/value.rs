//! Typed values of configuration keys and their two textual sources.
//!
//! Every key's type implements [`ConfValue`], which converts from a TOML
//! value (the config files) and from plain text (environment variables and
//! CLI overrides) and renders the effective value back to text. A conversion
//! failure is a message without a key; the caller attaches the key, so every
//! error names where it happened.

use std::fmt;
use std::path::PathBuf;

/// Most entries a list-valued key (seed nodes, peers, core list) may hold.
/// Why: a list parsed from an env var or file must be bounded before it
/// allocates; 4096 is far above any real cluster or core count.
pub const LIST_ENTRIES_MAX: usize = 4096;

/// Longest string value accepted for any key (host names, paths).
pub const STRING_BYTES_MAX: usize = 4096;

/// Conversion of one key's value from and to its external forms.
pub(crate) trait ConfValue: Sized {
    /// What the key expects, shown in type errors ("integer 0..=65535").
    fn expected() -> String;
    /// From a TOML value in a config file.
    fn from_toml(v: &toml::Value) -> Result<Self, String>;
    /// From text (environment variable, CLI flag). Surrounding whitespace is
    /// already trimmed by the caller.
    fn from_text(s: &str) -> Result<Self, String>;
    /// The value as an operator would write it in an env var.
    fn render(&self) -> String;
}

/// Name of a TOML value's type for error messages.
pub(crate) fn toml_type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "string",
        toml::Value::Integer(_) => "integer",
        toml::Value::Float(_) => "float",
        toml::Value::Boolean(_) => "boolean",
        toml::Value::Datetime(_) => "datetime",
        toml::Value::Array(_) => "array",
        toml::Value::Table(_) => "table",
    }
}

fn mismatch<T: ConfValue>(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("expected {}, found string {:?}", T::expected(), s),
        other => format!(
            "expected {}, found {}",
            T::expected(),
            toml_type_name(other)
        ),
    }
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl ConfValue for $t {
            fn expected() -> String {
                format!("integer {}..={}", <$t>::MIN, <$t>::MAX)
            }
            fn from_toml(v: &toml::Value) -> Result<Self, String> {
                match v {
                    toml::Value::Integer(i) => <$t>::try_from(*i).map_err(|_| {
                        format!("{} is out of range: expected {}", i, Self::expected())
                    }),
                    other => Err(mismatch::<Self>(other)),
                }
            }
            fn from_text(s: &str) -> Result<Self, String> {
                // Underscores are allowed as in TOML (`1_048_576`).
                let digits: String = s.chars().filter(|c| *c != '_').collect();
                digits.parse::<$t>().map_err(|_| {
                    format!("expected {}, found {:?}", Self::expected(), s)
                })
            }
            fn render(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
int_value!(u16, u32, u64, i64, usize);

impl ConfValue for bool {
    fn expected() -> String {
        "boolean (true or false)".to_string()
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::Boolean(b) => Ok(*b),
            other => Err(mismatch::<Self>(other)),
        }
    }
    fn from_text(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(format!("expected {}, found {:?}", Self::expected(), s)),
        }
    }
    fn render(&self) -> String {
        self.to_string()
    }
}

fn bounded_string(s: &str) -> Result<String, String> {
    if s.len() > STRING_BYTES_MAX {
        return Err(format!(
            "string of {} bytes is longer than the {} byte limit",
            s.len(),
            STRING_BYTES_MAX
        ));
    }
    Ok(s.to_string())
}

impl ConfValue for String {
    fn expected() -> String {
        "string".to_string()
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::String(s) => bounded_string(s),
            other => Err(mismatch::<Self>(other)),
        }
    }
    fn from_text(s: &str) -> Result<Self, String> {
        bounded_string(s)
    }
    fn render(&self) -> String {
        self.clone()
    }
}

/// A string holding secrets (passwords): read like any string, rendered redacted so the
/// effective-config dump never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"<redacted>\""
        })
    }
}

impl ConfValue for Secret {
    fn expected() -> String {
        "string".to_string()
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        String::from_toml(v).map(Secret)
    }
    fn from_text(s: &str) -> Result<Self, String> {
        bounded_string(s).map(Secret)
    }
    fn render(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            "<redacted>".to_string()
        }
    }
}

impl ConfValue for PathBuf {
    fn expected() -> String {
        "path string".to_string()
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::String(s) => bounded_string(s).map(PathBuf::from),
            other => Err(mismatch::<Self>(other)),
        }
    }
    fn from_text(s: &str) -> Result<Self, String> {
        bounded_string(s).map(PathBuf::from)
    }
    fn render(&self) -> String {
        self.display().to_string()
    }
}

/// Optional keys: absent means "derive from other keys" (documented per key).
/// An empty string in a file or env var also means unset.
impl<T: ConfValue> ConfValue for Option<T> {
    fn expected() -> String {
        T::expected()
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        if let toml::Value::String(s) = v {
            if s.is_empty() {
                return Ok(None);
            }
        }
        T::from_toml(v).map(Some)
    }
    fn from_text(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Ok(None);
        }
        T::from_text(s).map(Some)
    }
    fn render(&self) -> String {
        match self {
            Some(v) => v.render(),
            None => String::new(),
        }
    }
}

/// Enumerations spelled as lower-case strings in files and env vars.
macro_rules! string_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant,)+
        }

        impl $name {
            /// Every accepted spelling, in documentation order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The spelling used in config files.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "unknown value {:?}: expected one of {}",
                        s,
                        Self::NAMES.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
                    )),
                }
            }
        }

        impl ConfValue for $name {
            fn expected() -> String {
                format!("one of {}", Self::NAMES.join(", "))
            }
            fn from_toml(v: &toml::Value) -> Result<Self, String> {
                match v {
                    toml::Value::String(s) => s.parse(),
                    other => Err(mismatch::<Self>(other)),
                }
            }
            fn from_text(s: &str) -> Result<Self, String> {
                s.parse()
            }
            fn render(&self) -> String {
                self.as_str().to_string()
            }
        }
    };
}

string_enum! {
    /// How a node finds its peers (`cluster.discovery_mode`).
    pub enum DiscoveryMode {
        /// Peers come from `seed_nodes` / `[[peers]]`.
        Static => "static",
        /// Planned in the reference guide; rejected by validation for now.
        Dns => "dns",
        /// Planned in the reference guide; rejected by validation for now.
        Consul => "consul",
        /// Planned in the reference guide; rejected by validation for now.
        Etcd => "etcd",
    }
}

string_enum! {
    /// When Raft snapshots are taken (`cluster.raft.snapshot_policy`).
    pub enum SnapshotPolicy {
        /// Every `snapshot_interval_secs`.
        Periodic => "periodic",
        /// When the log exceeds `snapshot_log_size_threshold` entries.
        LogSize => "log_size",
        /// Only on `POST /admin/snapshot`.
        Disabled => "disabled",
    }
}

string_enum! {
    /// WAL durability mode (`cluster.storage.wal_sync_mode`).
    pub enum WalSyncMode {
        /// fdatasync before every acknowledgement.
        Always => "always",
        /// Group commit every `wal_sync_interval_ms`.
        Periodic => "periodic",
    }
}

string_enum! {
    /// Compression of snapshot chunks (`cluster.storage.snapshot_compression`).
    pub enum SnapshotCompression {
        /// Raw bytes.
        None => "none",
        /// Named in the reference guide; not built in (validation says so).
        Gzip => "gzip",
        /// zstd at `snapshot_compression_level`.
        Zstd => "zstd",
    }
}

string_enum! {
    /// Preset for the WAL durability keys (`cluster.storage.wal_profile`,
    /// `CHRONIK_WAL_PROFILE`); explicit keys win over the preset.
    pub enum WalProfile {
        /// `wal_sync_mode = "always"`: fsync before every acknowledgement.
        Durable => "durable",
        /// The defaults: group commit every 10 ms.
        Balanced => "balanced",
        /// Group commit every 50 ms (the reference's high-throughput profile).
        HighThroughput => "high-throughput",
        /// Group commit every 100 ms and 512 MiB segments.
        Ultra => "ultra",
    }
}

string_enum! {
    /// Preset for Raft append batching (`broker.produce_profile`,
    /// `CHRONIK_PRODUCE_PROFILE`); explicit keys win over the preset.
    pub enum ProduceProfile {
        /// Small appends: `max_payload_entries = 100`.
        LowLatency => "low-latency",
        /// The defaults.
        Balanced => "balanced",
        /// Large appends and a deep pipeline: `max_payload_entries = 5000`,
        /// `max_in_flight = 5000` (the reference's high-throughput profile).
        HighThroughput => "high-throughput",
    }
}

string_enum! {
    /// Kafka `log.message.timestamp.type`.
    pub enum TimestampType {
        /// Keep the producer's timestamps.
        CreateTime => "CreateTime",
        /// Overwrite with the broker's append time.
        LogAppendTime => "LogAppendTime",
    }
}

/// Which CPU cores get a shard (`server.cores`).
///
/// File forms: `cores = "all"`, `cores = 4` (the first 4 usable cores),
/// `cores = [0, 2, 3]`, `cores = "0-1,4"`. Text form (env/CLI): `all`, a bare
/// number is a count, anything with `,` or `-` is a list (`3-3` is core 3 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cores {
    /// One shard per core the process may run on.
    All,
    /// The first N usable cores.
    Count(usize),
    /// Exactly these core ids, sorted and without duplicates.
    List(Vec<usize>),
}

impl Cores {
    /// Resolve against the cores the process may use (sorted ids).
    /// Returns the core ids to pin shards to, or an error naming the problem.
    pub fn resolve(&self, usable: &[usize]) -> Result<Vec<usize>, String> {
        match self {
            Cores::All => Ok(usable.to_vec()),
            Cores::Count(n) => {
                if *n == 0 || *n > usable.len() {
                    Err(format!(
                        "cores = {n} but {} core(s) are usable ({:?})",
                        usable.len(),
                        usable
                    ))
                } else {
                    Ok(usable[..*n].to_vec())
                }
            }
            Cores::List(ids) => {
                let missing: Vec<usize> = ids
                    .iter()
                    .copied()
                    .filter(|c| !usable.contains(c))
                    .collect();
                if missing.is_empty() {
                    Ok(ids.clone())
                } else {
                    Err(format!(
                        "core(s) {missing:?} are not usable by this process (usable: {usable:?})"
                    ))
                }
            }
        }
    }

    fn parse_list(s: &str) -> Result<Vec<usize>, String> {
        let mut ids = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo: usize = lo
                .parse()
                .map_err(|_| format!("bad core id {lo:?} in {s:?}"))?;
            let hi: usize = hi
                .parse()
                .map_err(|_| format!("bad core id {hi:?} in {s:?}"))?;
            if lo > hi {
                return Err(format!("descending core range {part:?} in {s:?}"));
            }
            if hi - lo >= LIST_ENTRIES_MAX || ids.len() + (hi - lo) >= LIST_ENTRIES_MAX {
                return Err(format!("more than {LIST_ENTRIES_MAX} cores in {s:?}"));
            }
            ids.extend(lo..=hi);
        }
        Self::normalize(ids)
    }

    fn normalize(mut ids: Vec<usize>) -> Result<Vec<usize>, String> {
        if ids.is_empty() {
            return Err("empty core list".to_string());
        }
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        if ids.len() != before {
            return Err("core list names a core twice".to_string());
        }
        Ok(ids)
    }
}

impl ConfValue for Cores {
    fn expected() -> String {
        "\"all\", a core count, a list [0, 1] or a range string \"0-3,6\"".to_string()
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::Integer(n) => usize::try_from(*n)
                .ok()
                .filter(|n| *n > 0 && *n <= LIST_ENTRIES_MAX)
                .map(Cores::Count)
                .ok_or_else(|| format!("core count {n} is not in 1..={LIST_ENTRIES_MAX}")),
            toml::Value::String(s) if s.trim() == "all" => Ok(Cores::All),
            toml::Value::String(s) => Self::parse_list(s).map(Cores::List),
            toml::Value::Array(items) => {
                if items.len() > LIST_ENTRIES_MAX {
                    return Err(format!("more than {LIST_ENTRIES_MAX} cores"));
                }
                let mut ids = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        toml::Value::Integer(i) if *i >= 0 => ids.push(*i as usize),
                        other => {
                            return Err(format!(
                                "core list entries must be non-negative integers, found {}",
                                toml_type_name(other)
                            ))
                        }
                    }
                }
                Self::normalize(ids).map(Cores::List)
            }
            other => Err(mismatch::<Self>(other)),
        }
    }
    fn from_text(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(Cores::All);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return Self::from_toml(&toml::Value::Integer(
                s.parse::<i64>()
                    .map_err(|_| format!("bad core count {s:?}"))?,
            ));
        }
        Self::parse_list(s).map(Cores::List)
    }
    fn render(&self) -> String {
        match self {
            Cores::All => "all".to_string(),
            Cores::Count(n) => n.to_string(),
            Cores::List(ids) => ids
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// Split `host:port`, accepting `[v6]:port`. The host must be non-empty.
pub fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| format!("expected \"[ipv6]:port\", found {s:?}"))?;
        (h, p)
    } else {
        s.rsplit_once(':')
            .ok_or_else(|| format!("expected \"host:port\", found {s:?}"))?
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("bad host in {s:?}"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("bad port {port:?} in {s:?} (expected 1..=65535)"))?;
    if port == 0 {
        return Err(format!("port 0 in {s:?} (expected 1..=65535)"));
    }
    Ok((host.to_string(), port))
}

/// One `cluster.seed_nodes` entry: `"node_id@host:port"` (port = Raft port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedNode {
    /// The seed's node id.
    pub node_id: u64,
    /// Host name or IP of its Raft endpoint.
    pub host: String,
    /// Its Raft port.
    pub port: u16,
}

impl SeedNode {
    /// `host:port` of the seed's Raft endpoint.
    pub fn raft_addr(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

/// Inverse of [`split_host_port`]: brackets IPv6 literals.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl std::str::FromStr for SeedNode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (id, addr) = s
            .split_once('@')
            .ok_or_else(|| format!("expected \"node_id@host:port\", found {s:?}"))?;
        let node_id: u64 = id
            .parse()
            .map_err(|_| format!("bad node id {id:?} in {s:?} (expected \"node_id@host:port\")"))?;
        let (host, port) = split_host_port(addr)?;
        Ok(SeedNode {
            node_id,
            host,
            port,
        })
    }
}

impl fmt::Display for SeedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node_id, self.raft_addr())
    }
}

impl ConfValue for Vec<SeedNode> {
    fn expected() -> String {
        "array of \"node_id@host:port\" strings".to_string()
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        let toml::Value::Array(items) = v else {
            return Err(mismatch::<Self>(v));
        };
        if items.len() > LIST_ENTRIES_MAX {
            return Err(format!("more than {LIST_ENTRIES_MAX} seed nodes"));
        }
        let mut out = Vec::with_capacity(items.len());
        let mut errors = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                toml::Value::String(s) => match s.parse::<SeedNode>() {
                    Ok(n) => out.push(n),
                    Err(e) => errors.push(format!("[{i}]: {e}")),
                },
                other => errors.push(format!(
                    "[{i}]: expected \"node_id@host:port\" string, found {}",
                    toml_type_name(other)
                )),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors.join("; "))
        }
    }
    fn from_text(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.len() > LIST_ENTRIES_MAX {
            return Err(format!("more than {LIST_ENTRIES_MAX} seed nodes"));
        }
        parts.iter().map(|p| p.parse()).collect()
    }
    fn render(&self) -> String {
        self.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One `[[peers]]` entry of the flat cluster file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's node id.
    pub id: u64,
    /// Its Kafka endpoint `host:port` (advertised to clients).
    pub addr: String,
    /// Its Raft port, on the same host as `addr`.
    pub raft_port: u16,
}

impl Peer {
    /// `host:raft_port`, or an error if `addr` is not `host:port`.
    pub fn raft_addr(&self) -> Result<String, String> {
        let (host, _) = split_host_port(&self.addr)?;
        Ok(join_host_port(&host, self.raft_port))
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}/{}", self.id, self.addr, self.raft_port)
    }
}

impl std::str::FromStr for Peer {
    type Err = String;
    /// Text form `id@host:kafka_port/raft_port`, e.g. `2@node2:9092/9093`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let err = || format!("expected \"id@host:kafka_port/raft_port\", found {s:?}");
        let (id, rest) = s.split_once('@').ok_or_else(err)?;
        let (addr, raft_port) = rest.rsplit_once('/').ok_or_else(err)?;
        let id: u64 = id.parse().map_err(|_| err())?;
        let raft_port: u16 = raft_port.parse().map_err(|_| err())?;
        split_host_port(addr)?;
        Ok(Peer {
            id,
            addr: addr.to_string(),
            raft_port,
        })
    }
}

impl ConfValue for Vec<Peer> {
    fn expected() -> String {
        "array of tables {id, addr, raft_port}".to_string()
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        let toml::Value::Array(items) = v else {
            return Err(mismatch::<Self>(v));
        };
        if items.len() > LIST_ENTRIES_MAX {
            return Err(format!("more than {LIST_ENTRIES_MAX} peers"));
        }
        let mut out = Vec::with_capacity(items.len());
        let mut errors = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let toml::Value::Table(t) = item else {
                errors.push(format!(
                    "[{i}]: expected table {{id, addr, raft_port}}, found {}",
                    toml_type_name(item)
                ));
                continue;
            };
            let mut field_err = |field: &str, msg: String| {
                errors.push(format!("[{i}].{field}: {msg}"));
            };
            for k in t.keys() {
                if !matches!(k.as_str(), "id" | "addr" | "raft_port") {
                    field_err(k, "unknown key (expected id, addr, raft_port)".to_string());
                }
            }
            let id = match t.get("id") {
                Some(v) => u64::from_toml(v).map_err(|e| field_err("id", e)).ok(),
                None => {
                    field_err("id", "missing (required)".to_string());
                    None
                }
            };
            let addr = match t.get("addr") {
                Some(v) => String::from_toml(v)
                    .and_then(|a| split_host_port(&a).map(|_| a))
                    .map_err(|e| field_err("addr", e))
                    .ok(),
                None => {
                    field_err("addr", "missing (required)".to_string());
                    None
                }
            };
            let raft_port = match t.get("raft_port") {
                Some(v) => u16::from_toml(v)
                    .map_err(|e| field_err("raft_port", e))
                    .ok(),
                None => {
                    field_err("raft_port", "missing (required)".to_string());
                    None
                }
            };
            if let (Some(id), Some(addr), Some(raft_port)) = (id, addr, raft_port) {
                out.push(Peer {
                    id,
                    addr,
                    raft_port,
                });
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors.join("; "))
        }
    }
    fn from_text(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.len() > LIST_ENTRIES_MAX {
            return Err(format!("more than {LIST_ENTRIES_MAX} peers"));
        }
        parts.iter().map(|p| p.parse()).collect()
    }
    fn render(&self) -> String {
        self.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}
