//! HTTP routes: `/metrics` (Prometheus), `/health`, `/api/v1/cluster/status`, and the admin
//! endpoints of the reference guides (`/admin/snapshot`, `/admin/compact`, ...). Served on the
//! dedicated HTTP port and, sniffed from the first bytes, on the Kafka port.

use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::OnceLock;

use chronik_shard::http::{serve_connection, HttpHandler, HttpResponse};
use glommio::net::TcpStream;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::broker::Broker;
use crate::partition::now_ms;

/// The process's Prometheus recorder handle (installed once by `node`).
pub static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

struct Routes {
    broker: Rc<Broker>,
}

impl Routes {
    fn status_json(&self) -> String {
        let s = &self.broker.shared;
        let meta = self.broker.meta();
        let partitions: usize = meta.topics.values().map(|t| t.partitions.len()).sum();
        format!(
            "{{\"node_id\":{},\"cluster_id\":\"{}\",\"mode\":\"{}\",\"ready\":{},\"leader\":true,\
             \"nodes\":[{{\"id\":{},\"kafka\":\"{}:{}\",\"state\":\"alive\"}}],\"shards\":{},\
             \"topics\":{},\"partitions\":{},\"storage_failed_shards\":{:?}}}",
            s.node_id,
            s.cluster_id,
            if s.config.cluster.enabled {
                "cluster"
            } else {
                "standalone"
            },
            s.is_ready(),
            s.node_id,
            s.advertised_host,
            s.advertised_port,
            s.shards,
            meta.topics.len(),
            partitions,
            s.storage_failed_shards()
        )
    }

    fn metrics(&self) -> String {
        let mut out = PROMETHEUS.get().map(|h| h.render()).unwrap_or_default();
        let s = &self.broker.shared;
        let meta = self.broker.meta();
        let partitions: usize = meta.topics.values().map(|t| t.partitions.len()).sum();
        let node = s.node_id;
        let _ = writeln!(out, "# TYPE chronik_cluster_nodes gauge");
        let _ = writeln!(out, "chronik_cluster_nodes{{node_id=\"{node}\"}} 1");
        let _ = writeln!(out, "# TYPE chronik_topics gauge");
        let _ = writeln!(
            out,
            "chronik_topics{{node_id=\"{node}\"}} {}",
            meta.topics.len()
        );
        let _ = writeln!(out, "# TYPE chronik_partitions gauge");
        let _ = writeln!(out, "chronik_partitions{{node_id=\"{node}\"}} {partitions}");
        let stats = s.stats();
        let mut names: Vec<(u64, String, usize)> = vec![(0, "__meta".to_string(), 0)];
        for t in meta.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                names.push((p.group, t.name.clone(), i));
            }
        }
        let min_isr = s.config.broker.min_insync_replicas.max(1);
        type Figure = fn(&crate::shared::PartitionStats) -> String;
        let gauges: [(&str, Figure); 6] = [
            ("raft_is_leader", |p| u8::from(p.leader).to_string()),
            ("raft_term", |p| p.term.to_string()),
            ("raft_commit_index", |p| p.commit.to_string()),
            ("raft_applied_index", |p| p.applied.to_string()),
            ("raft_log_entries", |p| p.last_index.to_string()),
            ("partition_high_watermark", |p| p.high_watermark.to_string()),
        ];
        for (name, f) in gauges {
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (g, topic, i) in &names {
                if let Some(p) = stats.get(g) {
                    let _ = writeln!(
                        out,
                        "{name}{{topic=\"{topic}\",partition=\"{i}\",node_id=\"{node}\"}} {}",
                        f(p)
                    );
                }
            }
        }
        // One voter per partition: the ISR is this node whenever it leads.
        let _ = writeln!(out, "# TYPE partition_isr_size gauge");
        let _ = writeln!(out, "# TYPE partition_has_min_isr gauge");
        for (g, topic, i) in names.iter().skip(1) {
            if let Some(p) = stats.get(g) {
                let isr = u32::from(p.leader);
                let _ = writeln!(
                    out,
                    "partition_isr_size{{topic=\"{topic}\",partition=\"{i}\"}} {isr}"
                );
                let _ = writeln!(
                    out,
                    "partition_has_min_isr{{topic=\"{topic}\",partition=\"{i}\"}} {}",
                    u8::from(isr >= min_isr)
                );
            }
        }
        out
    }
}

impl HttpHandler for Routes {
    fn handle(&self, method: &str, path: &str, _body: &[u8]) -> HttpResponse {
        let ready = self.broker.shared.is_ready();
        // A shard whose WAL failed refuses writes until the node restarts (after the operator
        // freed space or replaced the disk): not healthy, not ready.
        let failed = self.broker.shared.storage_failed_shards();
        match (method, path) {
            ("GET", "/metrics") => HttpResponse::prometheus(self.metrics()),
            ("GET", "/health") | ("GET", "/health/live") => {
                let (code, status) = match (ready, failed.is_empty()) {
                    (_, false) => (503, "storage_failed"),
                    (true, true) => (200, "healthy"),
                    (false, true) => (503, "starting"),
                };
                HttpResponse::json(
                    code,
                    format!(
                        "{{\"status\":\"{status}\",\"leader\":true,\"node_id\":{},\
                         \"storage_failed_shards\":{failed:?}}}",
                        self.broker.shared.node_id
                    ),
                )
            }
            ("GET", "/health/ready") | ("GET", "/ready") => {
                let ready = ready && failed.is_empty();
                HttpResponse::json(
                    if ready { 200 } else { 503 },
                    format!("{{\"ready\":{ready},\"storage_failed_shards\":{failed:?}}}"),
                )
            }
            ("GET", "/api/v1/cluster/status") | ("GET", "/api/v1/cluster") => {
                HttpResponse::json(200, self.status_json())
            }
            ("GET", "/api/v1/cluster/members") => HttpResponse::json(
                200,
                format!(
                    "[{{\"id\":{},\"kafka\":\"{}:{}\",\"role\":\"voter\",\"state\":\"alive\"}}]",
                    self.broker.shared.node_id,
                    self.broker.shared.advertised_host,
                    self.broker.shared.advertised_port
                ),
            ),
            ("POST", "/admin/compact")
            | ("POST", "/admin/snapshot")
            | ("POST", "/api/v1/cluster/snapshot") => {
                // Apply retention now on this shard's partitions (the other shards run it on
                // their own timers).
                let now = now_ms();
                let mut n = 0;
                for p in self.broker.local_partitions() {
                    p.enforce_retention(now);
                    n += 1;
                }
                HttpResponse::json(
                    202,
                    format!("{{\"accepted\":true,\"partitions_checked\":{n}}}"),
                )
            }
            ("POST", "/admin/transfer-leader")
            | ("POST", "/api/v1/cluster/transfer-leadership") => HttpResponse::json(
                409,
                "{\"error\":\"single-node: there is no other voter to transfer leadership to\"}",
            ),
            (_, "/metrics" | "/health" | "/api/v1/cluster/status") => {
                HttpResponse::text(405, "method not allowed\n")
            }
            _ => HttpResponse::text(404, "not found\n"),
        }
    }
}

/// Serves one HTTP connection (`prefix`: bytes already read by a sniffing listener).
pub async fn serve(broker: Rc<Broker>, stream: TcpStream, prefix: &[u8]) {
    let routes = Routes { broker };
    if let Err(e) = serve_connection(stream, prefix, &routes).await {
        tracing::debug!("http connection ended: {e}");
    }
}
