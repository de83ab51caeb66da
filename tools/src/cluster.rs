//! `cluster status`: DescribeCluster when the broker serves it (cluster id, controller, fenced
//! flags), Metadata otherwise, plus Metadata for topic and partition counts.

use kafka_protocol::messages::{ApiKey, DescribeClusterRequest};
use serde::Serialize;

use crate::client::{check_opt, Client};
use crate::error::Result;
use crate::output::{opt, Render, Table};

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct BrokerRow {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Only DescribeCluster reports fencing; `None` when it came from Metadata.
    pub fenced: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerRow>,
    pub topics: usize,
    pub internal_topics: usize,
    pub partitions: usize,
    /// Partitions whose leader is unknown (-1) or that report an error.
    pub offline_partitions: usize,
}

pub fn status(client: &mut Client) -> Result<ClusterStatus> {
    let md = client.metadata(None)?;
    let mut out = ClusterStatus {
        cluster_id: md.cluster_id.as_ref().map(|s| s.to_string()),
        controller_id: md.controller_id.0,
        brokers: md
            .brokers
            .iter()
            .map(|b| BrokerRow {
                id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
                fenced: None,
            })
            .collect(),
        topics: 0,
        internal_topics: 0,
        partitions: 0,
        offline_partitions: 0,
    };
    for t in &md.topics {
        if t.is_internal {
            out.internal_topics += 1;
        } else {
            out.topics += 1;
        }
        out.partitions += t.partitions.len();
        out.offline_partitions += t
            .partitions
            .iter()
            .filter(|p| p.leader_id.0 < 0 || p.error_code != 0)
            .count();
    }
    let conn = client.any()?;
    if conn.broker_range(ApiKey::DescribeCluster).is_some() {
        let (dc, _) = conn.send(&DescribeClusterRequest::default())?;
        check_opt(dc.error_code, dc.error_message.as_ref(), || {
            "DescribeCluster".to_string()
        })?;
        out.cluster_id = Some(dc.cluster_id.to_string());
        out.controller_id = dc.controller_id.0;
        out.brokers = dc
            .brokers
            .iter()
            .map(|b| BrokerRow {
                id: b.broker_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
                fenced: Some(b.is_fenced),
            })
            .collect();
    }
    out.brokers.sort_by_key(|b| b.id);
    Ok(out)
}

impl Render for ClusterStatus {
    fn render_table(&self) -> String {
        let mut s = format!(
            "cluster id: {}\ncontroller: {}\ntopics: {} (+{} internal), partitions: {}, offline partitions: {}\n\n",
            opt(self.cluster_id.as_deref()),
            self.controller_id,
            self.topics,
            self.internal_topics,
            self.partitions,
            self.offline_partitions
        );
        let mut t = Table::new(&["BROKER", "HOST", "PORT", "RACK", "FENCED"]);
        for b in &self.brokers {
            t.row(vec![
                b.id.to_string(),
                b.host.clone(),
                b.port.to_string(),
                opt(b.rack.as_deref()),
                opt(b.fenced),
            ]);
        }
        s.push_str(&t.render());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_lists_brokers() {
        let s = ClusterStatus {
            cluster_id: Some("c1".into()),
            controller_id: 1,
            brokers: vec![BrokerRow {
                id: 1,
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
                fenced: Some(false),
            }],
            topics: 2,
            internal_topics: 1,
            partitions: 53,
            offline_partitions: 0,
        };
        assert_eq!(
            s.render_table(),
            "cluster id: c1\ncontroller: 1\ntopics: 2 (+1 internal), partitions: 53, offline partitions: 0\n\n\
             BROKER  HOST       PORT  RACK  FENCED\n\
             1       127.0.0.1  9092  -     false\n"
        );
    }
}
