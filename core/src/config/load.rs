//! Reading configuration sources into a [`Config`].
//!
//! Both file formats go through one walk: the canonical `chronik.toml`
//! (`[server]`, `[broker]`, `[cluster]`, `[cluster.raft]`, ...) and the
//! deployment guide's flat cluster file (top-level `enabled`, `node_id`,
//! `replication_factor`, `min_insync_replicas`, `[raft]`, `[isr]`,
//! `[[peers]]`). Flat names are aliases that map onto canonical keys, so a
//! file may even mix the two. Unknown keys and type errors are collected,
//! never stop the walk: one run reports every problem.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::keys::{self, KeyDef, KEYS};
use super::value::toml_type_name;
use super::{
    Config, ConfigErrors, ConfigIssue, Origin, CONFIG_FILE_BYTES_MAX, DEFAULT_CONFIG_FILE,
    ENV_CLUSTER_CONFIG_FILE, ENV_CONFIG_FILE,
};

/// Canonical sections a file may contain.
const SECTIONS: &[&str] = &[
    "server",
    "broker",
    "cluster",
    "cluster.raft",
    "cluster.network",
    "cluster.storage",
    "cluster.isr",
];

/// Deepest table nesting walked. Canonical files nest two levels; the bound
/// keeps a hostile file from driving deep recursion.
const TABLE_DEPTH_MAX: usize = 4;

/// Canonical section of a written section path (flat-file aliases applied).
fn canonical_section(written: &str) -> Option<&'static str> {
    let mapped = match written {
        "raft" => "cluster.raft",
        "isr" => "cluster.isr",
        other => other,
    };
    SECTIONS.iter().copied().find(|s| *s == mapped)
}

/// Canonical key for leaf `leaf` written in canonical section `section`
/// ("" = top level), or None if unknown.
fn canonical_key(section: &str, leaf: &str) -> Option<&'static KeyDef> {
    let alias = match (section, leaf) {
        ("" | "cluster", "replication_factor") => Some("broker.default_replication_factor"),
        ("" | "cluster", "min_insync_replicas") => Some("broker.min_insync_replicas"),
        ("cluster.raft", "snapshot_threshold") => Some("cluster.raft.snapshot_log_size_threshold"),
        _ => None,
    };
    if let Some(a) = alias {
        return keys::find(a);
    }
    if section.is_empty() {
        // Flat cluster file: top-level keys are `[cluster]` keys.
        return keys::find(&format!("cluster.{leaf}"));
    }
    keys::find(&format!("{section}.{leaf}"))
}

/// Resolve a key as a user might name it on the command line: dotted key,
/// written path of either file format, or env var name.
pub(crate) fn resolve_any(name: &str) -> Option<&'static KeyDef> {
    if let Some(k) = keys::find(name).or_else(|| keys::find_env(name)) {
        return Some(k);
    }
    match name.rsplit_once('.') {
        Some((section, leaf)) => canonical_key(canonical_section(section)?, leaf),
        None => canonical_key("", name),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// ", did you mean `x`?" for a likely typo of a known key, else "".
pub(crate) fn suggest(written: &str) -> String {
    let leaf = written.rsplit('.').next().unwrap_or(written);
    let best = KEYS
        .iter()
        .map(|k| {
            let kleaf = k.key.rsplit('.').next().unwrap_or(k.key);
            (edit_distance(leaf, kleaf), k.key)
        })
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, key)) if d <= (leaf.len() / 4).max(2) => format!(", did you mean `{key}`?"),
        _ => String::new(),
    }
}

/// State of one file walk.
struct FileWalk<'a> {
    cfg: &'a mut Config,
    issues: &'a mut Vec<ConfigIssue>,
    path: &'a Path,
    /// Canonical key -> key as first written, to catch a key set twice
    /// through aliases (`node_id` and `[cluster] node_id`).
    seen: HashMap<&'static str, String>,
}

impl FileWalk<'_> {
    fn issue(&mut self, key: &str, message: String) {
        self.issues.push(ConfigIssue::new(key, message));
    }

    fn walk(&mut self, table: &toml::Table, written_prefix: &str, section: &str, depth: usize) {
        for (k, v) in table {
            let written = if written_prefix.is_empty() {
                k.clone()
            } else {
                format!("{written_prefix}.{k}")
            };
            if let toml::Value::Table(t) = v {
                let child = if section.is_empty() {
                    k.clone()
                } else {
                    format!("{section}.{k}")
                };
                match canonical_section(&child) {
                    Some(c) if depth < TABLE_DEPTH_MAX => self.walk(t, &written, c, depth + 1),
                    _ => {
                        if let Some(def) = canonical_key(section, k) {
                            let msg = format!(
                                "expected {}, found table (key `{}`)",
                                def.expected(),
                                def.key
                            );
                            self.issue(&written, msg);
                        } else {
                            let msg = format!("unknown section{}", suggest(&written));
                            self.issue(&written, msg);
                        }
                    }
                }
                continue;
            }
            let Some(def) = canonical_key(section, k) else {
                let msg = format!("unknown key ({}){}", toml_type_name(v), suggest(&written));
                self.issue(&written, msg);
                continue;
            };
            if let Some(first) = self.seen.get(def.key) {
                let msg = format!("sets `{}` again (already set as `{first}`)", def.key);
                self.issue(&written, msg);
                continue;
            }
            self.seen.insert(def.key, written.clone());
            match (def.set_toml)(self.cfg, v) {
                Ok(()) => self.cfg.set_origin(
                    def.key,
                    Origin::File {
                        path: self.path.to_path_buf(),
                        written,
                    },
                ),
                Err(e) => self.issue(&written, e),
            }
        }
    }
}

/// Apply one file's text on top of `cfg`.
pub(crate) fn apply_file_text(
    cfg: &mut Config,
    path: &Path,
    text: &str,
    issues: &mut Vec<ConfigIssue>,
) {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            issues.push(ConfigIssue::new(
                path.display().to_string(),
                format!("invalid TOML: {}", e.to_string().trim_end()),
            ));
            return;
        }
    };
    let first_issue = issues.len();
    FileWalk {
        cfg,
        issues,
        path,
        seen: HashMap::new(),
    }
    .walk(&table, "", "", 0);
    // Name the file on its issues when more than one file may be in play.
    for i in &mut issues[first_issue..] {
        i.message = format!("{} (in {})", i.message, path.display());
    }
}

/// Read a config file, bounded by [`CONFIG_FILE_BYTES_MAX`].
pub(crate) fn read_file(path: &Path) -> Result<String, ConfigIssue> {
    let key = path.display().to_string();
    let f = std::fs::File::open(path)
        .map_err(|e| ConfigIssue::new(&key, format!("cannot open config file: {e}")))?;
    let mut text = String::new();
    f.take(CONFIG_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| ConfigIssue::new(&key, format!("cannot read config file: {e}")))?;
    if text.len() as u64 > CONFIG_FILE_BYTES_MAX {
        return Err(ConfigIssue::new(
            key,
            format!("config file is larger than {CONFIG_FILE_BYTES_MAX} bytes"),
        ));
    }
    Ok(text)
}

/// Apply `CHRONIK_*` variables. Empty values count as unset.
pub(crate) fn apply_env(
    cfg: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) {
    for def in KEYS {
        let Some(raw) = env(def.env) else { continue };
        let v = raw.trim();
        if v.is_empty() {
            continue;
        }
        match (def.set_text)(cfg, v) {
            Ok(()) => cfg.set_origin(def.key, Origin::Env(def.env)),
            Err(e) => issues.push(ConfigIssue::new(def.key, format!("{}={v:?}: {e}", def.env))),
        }
    }
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The main config file to read, if any: explicit, else `CHRONIK_CONFIG`,
/// else `./chronik.toml` when it exists.
pub(crate) fn main_file(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<PathBuf> {
    if let Some(p) = file {
        return Some(p.to_path_buf());
    }
    if let Some(p) = nonempty(env(ENV_CONFIG_FILE)) {
        return Some(PathBuf::from(p));
    }
    let default = Path::new(DEFAULT_CONFIG_FILE);
    default.exists().then(|| default.to_path_buf())
}

/// Load every layer; returns the config and the load-time issues (syntax,
/// unreadable files, unknown keys, type errors).
pub(crate) fn load_layers(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Config, Vec<ConfigIssue>) {
    let mut cfg = Config::default();
    let mut issues = Vec::new();
    let mut files = Vec::new();
    if let Some(p) = main_file(file, env) {
        files.push(p);
    }
    if let Some(p) = nonempty(env(ENV_CLUSTER_CONFIG_FILE)) {
        files.push(PathBuf::from(p));
    }
    for path in &files {
        match read_file(path) {
            Ok(text) => apply_file_text(&mut cfg, path, &text, &mut issues),
            Err(i) => issues.push(i),
        }
    }
    apply_env(&mut cfg, env, &mut issues);
    super::profiles::apply_profiles(&mut cfg);
    (cfg, issues)
}

/// Load-time issues plus the validation issues of the partially loaded
/// config whose keys were not already reported, so one run shows all.
pub(crate) fn all_issues(cfg: &Config, mut issues: Vec<ConfigIssue>) -> Vec<ConfigIssue> {
    let reported: Vec<String> = issues.iter().map(|i| i.key.clone()).collect();
    let written = |key: &str| -> Option<String> {
        match cfg.origin(key) {
            Origin::File { written, .. } => Some(written),
            _ => None,
        }
    };
    for v in cfg.validate() {
        let dup = reported
            .iter()
            .any(|r| *r == v.key || written(&v.key).as_deref() == Some(r.as_str()));
        if !dup {
            issues.push(v);
        }
    }
    issues
}

impl Config {
    /// Load defaults < main file < cluster file < env (see the module docs).
    /// `file` None means `CHRONIK_CONFIG`, else `./chronik.toml` if present,
    /// else defaults only. On any load problem (unreadable file, bad TOML,
    /// unknown key, type error) returns every problem found, including the
    /// validation problems of the rest of the config. A successful load is
    /// not yet validated: call [`Config::validate`] after CLI overrides.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let (cfg, issues) = load_layers(file, env);
        if issues.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors {
                issues: all_issues(&cfg, issues),
            })
        }
    }

    /// Load from in-memory TOML text (tests, embedded configs) plus env; the
    /// cluster-file variable is honoured as in [`Config::load`].
    pub fn load_str(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut cfg = Config::default();
        let mut issues = Vec::new();
        apply_file_text(&mut cfg, Path::new("<string>"), text, &mut issues);
        if let Some(p) = nonempty(env(ENV_CLUSTER_CONFIG_FILE)) {
            let p = PathBuf::from(p);
            match read_file(&p) {
                Ok(t) => apply_file_text(&mut cfg, &p, &t, &mut issues),
                Err(i) => issues.push(i),
            }
        }
        apply_env(&mut cfg, env, &mut issues);
        super::profiles::apply_profiles(&mut cfg);
        if issues.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors {
                issues: all_issues(&cfg, issues),
            })
        }
    }

    /// The process environment, for [`Config::load`]'s `env` argument.
    pub fn process_env(name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}
