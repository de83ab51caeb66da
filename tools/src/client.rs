//! Routing: which broker each request goes to.
//!
//! Cluster-wide requests (Metadata, CreateTopics, ...) go to any bootstrap broker that answers.
//! Partition requests (ListOffsets, Produce, Fetch) go to the partition's leader from Metadata,
//! grouped so that each leader gets one request. Group requests go to the group's coordinator from
//! FindCoordinator. Connections are opened lazily and kept per `host:port` for the life of the
//! command, so a single-node cluster uses exactly one socket.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, FindCoordinatorRequest, GroupId, ListOffsetsRequest, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};

use crate::conn::Connection;
use crate::error::{check, CtlError, Result};

/// ListOffsets timestamp meaning "log start offset".
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets timestamp meaning "log end offset" (next offset to be written).
pub const LATEST_TIMESTAMP: i64 = -1;
/// Most bytes one Fetch asks for across all partitions.
pub const FETCH_MAX_BYTES: i32 = 16 * 1024 * 1024;
/// FindCoordinator attempts while the coordinator is loading or not available.
pub const MAX_COORDINATOR_ATTEMPTS: usize = 5;
/// Back-off between those attempts (times the attempt number).
pub const COORDINATOR_BACKOFF: Duration = Duration::from_millis(200);
/// Most broker addresses tried from `--bootstrap` (comma-separated) before giving up.
pub const MAX_BOOTSTRAP_ADDRS: usize = 16;

/// One partition as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

/// A lazily connected view of a cluster.
pub struct Client {
    bootstrap: Vec<String>,
    timeout: Duration,
    /// Open connections by `host:port`.
    conns: HashMap<String, Connection>,
    /// Broker id -> `host:port`, refreshed by every Metadata response.
    brokers: HashMap<i32, String>,
}

impl Client {
    /// `bootstrap` is `host:port[,host:port...]`; nothing is connected until the first request.
    pub fn new(bootstrap: &str, timeout: Duration) -> Result<Client> {
        let bootstrap: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if bootstrap.is_empty() || bootstrap.len() > MAX_BOOTSTRAP_ADDRS {
            return Err(CtlError::Invalid(format!(
                "--bootstrap needs 1..={MAX_BOOTSTRAP_ADDRS} host:port addresses"
            )));
        }
        Ok(Client {
            bootstrap,
            timeout,
            conns: HashMap::new(),
            brokers: HashMap::new(),
        })
    }

    /// The per-socket timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How long a broker may take for server-side waits (acks=all, topic creation, fetch long
    /// polls), capped at `cap_ms`: four fifths of the socket timeout, so the broker's answer
    /// (even a timeout error) arrives before our read gives up on the socket.
    pub fn broker_wait_ms(&self, cap_ms: i32) -> i32 {
        broker_wait_ms(self.timeout, cap_ms)
    }

    fn conn(&mut self, addr: &str) -> Result<&mut Connection> {
        if !self.conns.contains_key(addr) {
            let c = Connection::connect(addr, self.timeout)?;
            self.conns.insert(addr.to_string(), c);
        }
        Ok(self.conns.get_mut(addr).expect("inserted above"))
    }

    /// A connection to any bootstrap broker (the first that answers).
    pub fn any(&mut self) -> Result<&mut Connection> {
        let mut last = None;
        let mut found = None;
        for addr in self.bootstrap.clone() {
            match self.conn(&addr) {
                Ok(_) => {
                    found = Some(addr);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        match found {
            Some(addr) => self.conn(&addr),
            None => Err(last.expect("bootstrap is never empty")),
        }
    }

    /// A connection to broker `node`, as Metadata last described it.
    pub fn broker(&mut self, node: i32) -> Result<&mut Connection> {
        if !self.brokers.contains_key(&node) {
            self.metadata(Some(&[]))?;
        }
        let addr =
            self.brokers.get(&node).cloned().ok_or_else(|| {
                CtlError::NotFound(format!("broker {node} is not in the metadata"))
            })?;
        self.conn(&addr)
    }

    /// Sends a cluster-wide request to any broker.
    pub fn send_any<R: Request>(&mut self, req: &R) -> Result<(R::Response, i16)> {
        self.any()?.send(req)
    }

    /// Metadata for `topics` (`None` = every topic; `Some(&[])` = brokers only).
    pub fn metadata(&mut self, topics: Option<&[String]>) -> Result<MetadataResponse> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let (resp, _) = self.send_any(&req)?;
        for b in &resp.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        Ok(resp)
    }

    /// The partitions of `topic`, sorted by index, never empty. Errors if the topic does not
    /// exist.
    pub fn partitions(&mut self, topic: &str) -> Result<Vec<PartitionInfo>> {
        let md = self.metadata(Some(&[topic.to_string()]))?;
        let t = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))
            .ok_or_else(|| CtlError::NotFound(format!("topic '{topic}'")))?;
        check(t.error_code, || format!("metadata for topic '{topic}'"))?;
        let mut out: Vec<PartitionInfo> = t
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                partition: p.partition_index,
                leader: p.leader_id.0,
                leader_epoch: p.leader_epoch,
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                error_code: p.error_code,
            })
            .collect();
        out.sort_by_key(|p| p.partition);
        // Callers index and take remainders by the partition count; a topic the broker lists
        // without partitions is unusable rather than a division by zero.
        if out.is_empty() {
            return Err(CtlError::Malformed(format!(
                "metadata lists topic '{topic}' without partitions"
            )));
        }
        Ok(out)
    }

    /// The coordinator of `group` (FindCoordinator, key type 0). A coordinator that is still
    /// loading or not yet elected (a broker that just started) is asked again, up to
    /// [`MAX_COORDINATOR_ATTEMPTS`] times.
    pub fn coordinator(&mut self, group: &str) -> Result<i32> {
        let mut attempt = 1;
        loop {
            match self.find_coordinator_once(group) {
                Err(CtlError::Kafka { code, .. })
                    if coordinator_retriable(code) && attempt < MAX_COORDINATOR_ATTEMPTS =>
                {
                    std::thread::sleep(COORDINATOR_BACKOFF * attempt as u32);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn find_coordinator_once(&mut self, group: &str) -> Result<i32> {
        let conn = self.any()?;
        let version = conn.version_for(ApiKey::FindCoordinator)?;
        // v4 batched the request into `coordinator_keys`; before that it is one `key`.
        let req = if version >= 4 {
            FindCoordinatorRequest::default()
                .with_coordinator_keys(vec![StrBytes::from_string(group.to_string())])
        } else {
            FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()))
        };
        let resp = conn.send_at(&req, version)?;
        let ctx = || format!("FindCoordinator for group '{group}'");
        let (node, host, port) = if version >= 4 {
            let c = resp
                .coordinators
                .first()
                .ok_or_else(|| CtlError::Malformed("FindCoordinator: no coordinator".into()))?;
            check_opt(c.error_code, c.error_message.as_ref(), ctx)?;
            (c.node_id.0, c.host.to_string(), c.port)
        } else {
            check_opt(resp.error_code, resp.error_message.as_ref(), ctx)?;
            (resp.node_id.0, resp.host.to_string(), resp.port)
        };
        self.brokers.insert(node, format!("{host}:{port}"));
        Ok(node)
    }

    /// Sends a group request to the group's coordinator.
    pub fn send_group<R: Request>(&mut self, group: &str, req: &R) -> Result<(R::Response, i16)> {
        let node = self.coordinator(group)?;
        self.broker(node)?.send(req)
    }

    /// Offsets at `timestamp` ([`EARLIEST_TIMESTAMP`], [`LATEST_TIMESTAMP`] or a time in ms) for
    /// each of `parts`, asking each leader once for all of its partitions.
    pub fn list_offsets(
        &mut self,
        topic: &str,
        parts: &[PartitionInfo],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, i64>> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in parts {
            by_leader.entry(p.leader).or_default().push(p.partition);
        }
        let mut out = BTreeMap::new();
        for (leader, ids) in by_leader {
            if leader < 0 {
                return Err(CtlError::Kafka {
                    context: format!("topic '{topic}' partitions {ids:?}"),
                    code: 5, // LEADER_NOT_AVAILABLE
                    message: None,
                });
            }
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        ids.iter()
                            .map(|&i| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(i)
                                    .with_current_leader_epoch(-1)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    )]);
            let (resp, _) = self.broker(leader)?.send(&req)?;
            for t in resp.topics.iter().filter(|t| t.name.as_str() == topic) {
                for p in &t.partitions {
                    check(p.error_code, || {
                        format!("ListOffsets {topic}-{}", p.partition_index)
                    })?;
                    out.insert(p.partition_index, p.offset);
                }
            }
            if let Some(missing) = ids.iter().find(|i| !out.contains_key(i)) {
                return Err(CtlError::Malformed(format!(
                    "ListOffsets answer from broker {leader} lacks {topic}-{missing}"
                )));
            }
        }
        Ok(out)
    }
}

/// COORDINATOR_LOAD_IN_PROGRESS (14) and COORDINATOR_NOT_AVAILABLE (15): transient while a
/// broker starts or a coordinator moves.
pub fn coordinator_retriable(code: i16) -> bool {
    matches!(code, 14 | 15)
}

/// See [`Client::broker_wait_ms`].
pub fn broker_wait_ms(socket_timeout: Duration, cap_ms: i32) -> i32 {
    let ms = socket_timeout.as_millis().saturating_mul(4) / 5;
    i32::try_from(ms).unwrap_or(i32::MAX).min(cap_ms)
}

/// `check` for responses whose message is a `StrBytes`.
pub fn check_opt(code: i16, msg: Option<&StrBytes>, ctx: impl FnOnce() -> String) -> Result<()> {
    crate::error::check_msg(code, msg.map(|m| m.as_str()), ctx)
}

/// A topic name for a request.
pub fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// A group id for a request.
pub fn group_id(g: &str) -> GroupId {
    GroupId(StrBytes::from_string(g.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_waits_end_before_the_socket_timeout() {
        assert_eq!(broker_wait_ms(Duration::from_secs(10), 30_000), 8_000);
        assert_eq!(broker_wait_ms(Duration::from_secs(60), 30_000), 30_000);
        assert_eq!(broker_wait_ms(Duration::from_millis(100), 500), 80);
        assert_eq!(broker_wait_ms(Duration::from_secs(u64::MAX / 2), 7), 7);
    }

    #[test]
    fn only_transient_coordinator_errors_are_retried() {
        assert!(coordinator_retriable(14));
        assert!(coordinator_retriable(15));
        assert!(!coordinator_retriable(16)); // NOT_COORDINATOR: the answer names another broker
        assert!(!coordinator_retriable(0));
        assert!(!coordinator_retriable(3));
    }

    #[test]
    fn bootstrap_lists_are_parsed_and_bounded() {
        let c = Client::new(" a:1, b:2 ,", Duration::from_secs(1)).unwrap();
        assert_eq!(c.bootstrap, vec!["a:1", "b:2"]);
        assert!(Client::new(" , ", Duration::from_secs(1)).is_err());
        let many = vec!["h:1"; MAX_BOOTSTRAP_ADDRS + 1].join(",");
        assert!(Client::new(&many, Duration::from_secs(1)).is_err());
    }
}
