//! `group list|describe|reset-offsets|delete`, plus the OffsetFetch/OffsetCommit helpers they
//! share. Group requests go to the coordinator; log end offsets come from each partition's
//! leader.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::assignment::{decode_assignment, describe as describe_assignment, Assignment};
use crate::cli::ResetSpec;
use crate::client::{
    check_opt, group_id, topic_name, Client, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
};
use crate::error::{check, CtlError, Result};
use crate::output::{opt, Outcome, Render, Table};

/// Most brokers `group list` asks (each broker lists the groups it coordinates).
pub const MAX_BROKERS_LISTED: usize = 1024;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct GroupRow {
    pub group: String,
    pub protocol_type: String,
    pub state: Option<String>,
    pub coordinator: i32,
}

#[derive(Debug, Serialize)]
pub struct GroupList {
    pub groups: Vec<GroupRow>,
}

pub fn list_groups(client: &mut Client) -> Result<GroupList> {
    let md = client.metadata(Some(&[]))?;
    let mut ids: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
    ids.sort_unstable();
    ids.truncate(MAX_BROKERS_LISTED);
    let mut groups = Vec::new();
    for id in ids {
        let (resp, _) = client.broker(id)?.send(&ListGroupsRequest::default())?;
        check(resp.error_code, || format!("ListGroups on broker {id}"))?;
        groups.extend(resp.groups.iter().map(|g| GroupRow {
            group: g.group_id.to_string(),
            protocol_type: g.protocol_type.to_string(),
            // v4 added the state; older brokers leave it empty.
            state: (!g.group_state.is_empty()).then(|| g.group_state.to_string()),
            coordinator: id,
        }));
    }
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(GroupList { groups })
}

impl Render for GroupList {
    fn render_table(&self) -> String {
        let mut t = Table::new(&["GROUP", "PROTOCOL-TYPE", "STATE", "COORDINATOR"]);
        for g in &self.groups {
            t.row(vec![
                g.group.clone(),
                g.protocol_type.clone(),
                opt(g.state.as_deref()),
                g.coordinator.to_string(),
            ]);
        }
        t.render()
    }
}

/// One member as DescribeGroups reports it.
#[derive(Debug, Serialize)]
pub struct MemberRow {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Decoded when the group speaks the "consumer" protocol and the bytes parse.
    pub assignment: Option<Assignment>,
    /// Why the assignment could not be decoded, if it could not.
    pub assignment_error: Option<String>,
}

/// One partition's committed offset, log end and lag.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct OffsetRow {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: Option<i64>,
    pub log_end_offset: Option<i64>,
    pub lag: Option<i64>,
    /// The member the partition is assigned to, if any.
    pub member_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct GroupDescription {
    pub group: String,
    pub coordinator: i32,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberRow>,
    pub offsets: Vec<OffsetRow>,
}

/// Lag of a partition: how far the committed offset trails the log end. Unknown when either is
/// unknown; never negative (a commit can briefly run ahead of a stale log-end read, and a
/// negative lag would only confuse).
pub fn lag(committed: Option<i64>, log_end: Option<i64>) -> Option<i64> {
    Some(log_end?.saturating_sub(committed?).max(0))
}

/// Committed offsets of `group` (every topic), as `(topic, partition) -> offset`. Partitions
/// without a commit (offset -1) are left out.
pub fn fetch_offsets(client: &mut Client, group: &str) -> Result<BTreeMap<(String, i32), i64>> {
    let node = client.coordinator(group)?;
    let conn = client.broker(node)?;
    let version = conn.version_for(ApiKey::OffsetFetch)?;
    let mut out = BTreeMap::new();
    let ctx = || format!("OffsetFetch for group '{group}'");
    // v8 batched groups into `groups`; before that the request names one group. Null topics (all
    // topics) exists from v2 on, which is why our minimum is 2.
    if version >= 8 {
        let req =
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(group_id(group))
                .with_topics(None)]);
        let resp = conn.send_at(&req, version)?;
        for g in &resp.groups {
            check(g.error_code, ctx)?;
            for t in &g.topics {
                for p in &t.partitions {
                    check(p.error_code, || {
                        format!(
                            "OffsetFetch {group} {}-{}",
                            t.name.as_str(),
                            p.partition_index
                        )
                    })?;
                    if p.committed_offset >= 0 {
                        out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
                    }
                }
            }
        }
    } else {
        let req = OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(None);
        let resp = conn.send_at(&req, version)?;
        check(resp.error_code, ctx)?;
        for t in &resp.topics {
            for p in &t.partitions {
                check(p.error_code, || {
                    format!(
                        "OffsetFetch {group} {}-{}",
                        t.name.as_str(),
                        p.partition_index
                    )
                })?;
                if p.committed_offset >= 0 {
                    out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
                }
            }
        }
    }
    Ok(out)
}

/// Commits `offsets` (`partition -> offset`) of `topic` for `group` as a non-member: generation
/// -1 and an empty member id, which brokers accept only while the group has no members. This is
/// also how a "simple" (assign-only) consumer group comes to exist.
pub fn commit_offsets(
    client: &mut Client,
    group: &str,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
) -> Result<()> {
    let req = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_retention_time_ms(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                offsets
                    .iter()
                    .map(|(&p, &o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(o)
                            .with_committed_leader_epoch(-1)
                            .with_committed_metadata(Some(StrBytes::from_static_str("")))
                    })
                    .collect(),
            )]);
    let (resp, _) = client.send_group(group, &req)?;
    let mut answered = BTreeSet::new();
    for t in &resp.topics {
        for p in &t.partitions {
            check(p.error_code, || {
                format!(
                    "OffsetCommit {group} {}-{}",
                    t.name.as_str(),
                    p.partition_index
                )
            })?;
            answered.insert(p.partition_index);
        }
    }
    if let Some(missing) = offsets.keys().find(|p| !answered.contains(p)) {
        return Err(CtlError::Malformed(format!(
            "OffsetCommit answer lacks {topic}-{missing}"
        )));
    }
    Ok(())
}

/// DescribeGroups for one group, with the coordinator's id.
fn describe_raw(
    client: &mut Client,
    group: &str,
) -> Result<(
    i32,
    kafka_protocol::messages::describe_groups_response::DescribedGroup,
)> {
    let node = client.coordinator(group)?;
    let req = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let (resp, _) = client.broker(node)?.send(&req)?;
    let g = resp
        .groups
        .into_iter()
        .find(|g| g.group_id.as_str() == group)
        .ok_or_else(|| CtlError::Malformed(format!("DescribeGroups answer lacks '{group}'")))?;
    check_opt(g.error_code, g.error_message.as_ref(), || {
        format!("describe group '{group}'")
    })?;
    Ok((node, g))
}

pub fn describe(client: &mut Client, group: &str) -> Result<GroupDescription> {
    let (coordinator, g) = describe_raw(client, group)?;
    let consumer = g.protocol_type.as_str() == "consumer";
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    let members: Vec<MemberRow> = g
        .members
        .iter()
        .map(|m| {
            let (assignment, assignment_error) = if consumer {
                match decode_assignment(&m.member_assignment) {
                    Ok(a) => (a, None),
                    Err(e) => (None, Some(e.to_string())),
                }
            } else {
                (None, None)
            };
            if let Some(a) = &assignment {
                for (t, ps) in &a.topics {
                    for &p in ps {
                        owner.insert((t.clone(), p), m.member_id.to_string());
                    }
                }
            }
            MemberRow {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment,
                assignment_error,
            }
        })
        .collect();
    let committed = fetch_offsets(client, group)?;
    if g.group_state.as_str() == "Dead" && committed.is_empty() && members.is_empty() {
        return Err(CtlError::NotFound(format!("consumer group '{group}'")));
    }
    // Every partition that is committed or assigned gets a row.
    let mut keys: BTreeSet<(String, i32)> = committed.keys().cloned().collect();
    keys.extend(owner.keys().cloned());
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in &keys {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (topic, ps) in &by_topic {
        // A topic deleted since the commit has no leaders; its rows keep an unknown log end.
        let Ok(parts) = client.partitions(topic) else {
            continue;
        };
        let wanted: Vec<_> = parts
            .into_iter()
            .filter(|p| ps.contains(&p.partition) && p.leader >= 0)
            .collect();
        for (p, o) in client.list_offsets(topic, &wanted, LATEST_TIMESTAMP)? {
            ends.insert((topic.clone(), p), o);
        }
    }
    let offsets = keys
        .into_iter()
        .map(|k| {
            let c = committed.get(&k).copied();
            let e = ends.get(&k).copied();
            OffsetRow {
                committed_offset: c,
                log_end_offset: e,
                lag: lag(c, e),
                member_id: owner.get(&k).cloned(),
                topic: k.0,
                partition: k.1,
            }
        })
        .collect();
    Ok(GroupDescription {
        group: group.to_string(),
        coordinator,
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        protocol: g.protocol_data.to_string(),
        members,
        offsets,
    })
}

impl Render for GroupDescription {
    fn render_table(&self) -> String {
        let mut s = format!(
            "group: {}  state: {}  protocol: {}/{}  coordinator: {}  members: {}\n",
            self.group,
            self.state,
            if self.protocol_type.is_empty() {
                "-"
            } else {
                &self.protocol_type
            },
            if self.protocol.is_empty() {
                "-"
            } else {
                &self.protocol
            },
            self.coordinator,
            self.members.len()
        );
        if !self.members.is_empty() {
            s.push('\n');
            let mut t = Table::new(&["MEMBER", "CLIENT-ID", "HOST", "ASSIGNMENT"]);
            for m in &self.members {
                let a = match (&m.assignment, &m.assignment_error) {
                    (Some(a), _) => describe_assignment(a),
                    (None, Some(e)) => format!("(undecodable: {e})"),
                    (None, None) => "-".into(),
                };
                t.row(vec![
                    m.member_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    a,
                ]);
            }
            s.push_str(&t.render());
        }
        s.push('\n');
        let mut t = Table::new(&[
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "MEMBER",
        ]);
        for o in &self.offsets {
            t.row(vec![
                o.topic.clone(),
                o.partition.to_string(),
                opt(o.committed_offset),
                opt(o.log_end_offset),
                opt(o.lag),
                opt(o.member_id.as_deref()),
            ]);
        }
        s.push_str(&t.render());
        s
    }
}

/// One line of a reset plan.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ResetRow {
    pub topic: String,
    pub partition: i32,
    pub current_offset: Option<i64>,
    pub new_offset: i64,
}

#[derive(Debug, Serialize)]
pub struct ResetPlan {
    pub group: String,
    pub executed: bool,
    pub partitions: Vec<ResetRow>,
}

/// The new offset of one partition. Targets outside `[earliest, latest]` are clamped into it,
/// as Kafka's tool does, so a reset never points a consumer at an offset that cannot be fetched.
pub fn target_offset(
    spec: ResetSpec,
    committed: Option<i64>,
    earliest: i64,
    latest: i64,
) -> Result<i64> {
    let raw = match spec {
        ResetSpec::Earliest => earliest,
        ResetSpec::Latest => latest,
        ResetSpec::Offset(n) => n,
        ResetSpec::ShiftBy(n) => committed
            .ok_or_else(|| {
                CtlError::Invalid(
                    "cannot shift a partition that has no committed offset".to_string(),
                )
            })?
            .saturating_add(n),
    };
    Ok(raw.clamp(earliest, latest.max(earliest)))
}

/// Group states in which offsets may be reset.
pub fn resettable(state: &str) -> bool {
    matches!(state, "Empty" | "Dead")
}

pub fn reset_offsets(
    client: &mut Client,
    group: &str,
    topic: &str,
    spec: ResetSpec,
    execute: bool,
) -> Result<ResetPlan> {
    let (_, g) = describe_raw(client, group)?;
    if !resettable(g.group_state.as_str()) {
        return Err(CtlError::GroupActive {
            group: group.to_string(),
            state: g.group_state.to_string(),
        });
    }
    let parts = client.partitions(topic)?;
    let earliest = client.list_offsets(topic, &parts, EARLIEST_TIMESTAMP)?;
    let latest = client.list_offsets(topic, &parts, LATEST_TIMESTAMP)?;
    let committed = fetch_offsets(client, group)?;
    let mut rows = Vec::with_capacity(parts.len());
    for p in &parts {
        let i = p.partition;
        let c = committed.get(&(topic.to_string(), i)).copied();
        let (Some(&lo), Some(&hi)) = (earliest.get(&i), latest.get(&i)) else {
            return Err(CtlError::Malformed(format!(
                "no log offsets for {topic}-{i}"
            )));
        };
        let new_offset = target_offset(spec, c, lo, hi).map_err(|e| match e {
            CtlError::Invalid(m) => CtlError::Invalid(format!("{topic}-{i}: {m}")),
            e => e,
        })?;
        rows.push(ResetRow {
            topic: topic.to_string(),
            partition: i,
            current_offset: c,
            new_offset,
        });
    }
    if execute {
        let offsets: BTreeMap<i32, i64> =
            rows.iter().map(|r| (r.partition, r.new_offset)).collect();
        commit_offsets(client, group, topic, &offsets)?;
    }
    Ok(ResetPlan {
        group: group.to_string(),
        executed: execute,
        partitions: rows,
    })
}

impl Render for ResetPlan {
    fn render_table(&self) -> String {
        let mut t = Table::new(&["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"]);
        for r in &self.partitions {
            t.row(vec![
                r.topic.clone(),
                r.partition.to_string(),
                opt(r.current_offset),
                r.new_offset.to_string(),
            ]);
        }
        let mut s = t.render();
        if self.executed {
            s.push_str(&format!("committed for group '{}'\n", self.group));
        } else {
            s.push_str("dry run: nothing committed (add --execute to commit)\n");
        }
        s
    }
}

pub fn delete(client: &mut Client, group: &str) -> Result<Outcome> {
    let req = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
    let (resp, _) = client.send_group(group, &req)?;
    let r = resp
        .results
        .iter()
        .find(|r| r.group_id.as_str() == group)
        .ok_or_else(|| CtlError::Malformed(format!("DeleteGroups answer lacks '{group}'")))?;
    if r.error_code != 0 {
        return Err(CtlError::Kafka {
            context: format!("delete group '{group}'"),
            code: r.error_code,
            message: None,
        });
    }
    Ok(Outcome {
        ok: true,
        message: format!("deleted group '{group}'"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_end_minus_committed_and_never_negative() {
        assert_eq!(lag(Some(5), Some(12)), Some(7));
        assert_eq!(lag(Some(12), Some(12)), Some(0));
        assert_eq!(lag(Some(15), Some(12)), Some(0));
        assert_eq!(lag(None, Some(12)), None);
        assert_eq!(lag(Some(3), None), None);
        assert_eq!(lag(Some(i64::MIN), Some(i64::MAX)), Some(i64::MAX));
    }

    #[test]
    fn reset_targets_are_clamped_to_the_log() {
        let t = |s, c| target_offset(s, c, 10, 100);
        assert_eq!(t(ResetSpec::Earliest, None).unwrap(), 10);
        assert_eq!(t(ResetSpec::Latest, Some(50)).unwrap(), 100);
        assert_eq!(t(ResetSpec::Offset(42), None).unwrap(), 42);
        assert_eq!(t(ResetSpec::Offset(5), None).unwrap(), 10);
        assert_eq!(t(ResetSpec::Offset(500), None).unwrap(), 100);
        assert_eq!(t(ResetSpec::ShiftBy(-5), Some(50)).unwrap(), 45);
        assert_eq!(t(ResetSpec::ShiftBy(-500), Some(50)).unwrap(), 10);
        assert_eq!(t(ResetSpec::ShiftBy(i64::MAX), Some(50)).unwrap(), 100);
        assert!(t(ResetSpec::ShiftBy(1), None).is_err());
        // An empty log: start = end.
        assert_eq!(target_offset(ResetSpec::Offset(3), None, 0, 0).unwrap(), 0);
    }

    #[test]
    fn only_inactive_groups_are_resettable() {
        assert!(resettable("Empty"));
        assert!(resettable("Dead"));
        for s in ["Stable", "PreparingRebalance", "CompletingRebalance", ""] {
            assert!(!resettable(s), "{s}");
        }
    }

    #[test]
    fn describe_table_shows_members_and_lag() {
        let d = GroupDescription {
            group: "g".into(),
            coordinator: 1,
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members: vec![MemberRow {
                member_id: "m-1".into(),
                group_instance_id: None,
                client_id: "app".into(),
                client_host: "/127.0.0.1".into(),
                assignment: Some(Assignment {
                    version: 0,
                    topics: vec![("t".into(), vec![0, 1])],
                    user_data_bytes: None,
                }),
                assignment_error: None,
            }],
            offsets: vec![
                OffsetRow {
                    topic: "t".into(),
                    partition: 0,
                    committed_offset: Some(3),
                    log_end_offset: Some(10),
                    lag: lag(Some(3), Some(10)),
                    member_id: Some("m-1".into()),
                },
                OffsetRow {
                    topic: "t".into(),
                    partition: 1,
                    committed_offset: None,
                    log_end_offset: Some(4),
                    lag: None,
                    member_id: Some("m-1".into()),
                },
            ],
        };
        assert_eq!(
            d.render_table(),
            "group: g  state: Stable  protocol: consumer/range  coordinator: 1  members: 1\n\n\
             MEMBER  CLIENT-ID  HOST        ASSIGNMENT\n\
             m-1     app        /127.0.0.1  t:0,1\n\n\
             TOPIC  PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG  MEMBER\n\
             t      0          3               10              7    m-1\n\
             t      1          -               4               -    m-1\n"
        );
    }
}
