//! TxnOffsetCommit (KIP-98): offsets a transactional producer commits for a group are written
//! to `__consumer_offsets` in a transactional batch of that producer, held here as pending, and
//! only become the group's committed offsets when the transaction's commit marker reaches the
//! partition (an abort marker drops them). While any are pending, OffsetFetch with
//! `require_stable` answers UNSTABLE_OFFSET_COMMIT for those partitions (KIP-447).
//!
//! The broker drives it: `txn_offset_commit` → records to append in a transactional batch →
//! `apply_txn_record` for each committed record of such a batch (also on replay) →
//! `complete_txn` when a control batch of the producer is applied.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    OffsetFetchResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::coordinator::GroupCoordinator;
use super::records::{self, Decoded, LogRecord, OffsetValue, RecordError};
use super::{GroupState, MAX_ID_BYTES};

/// Bound on producers with pending transactional offsets per coordinator.
pub const MAX_PENDING_TXN_PRODUCERS: usize = 100_000;
/// Bound on pending offsets one producer may hold (later ones replace earlier ones per key).
pub const MAX_PENDING_OFFSETS_PER_PRODUCER: usize = 100_000;

type OffsetKey = (String, String, i32);

/// producer id → (group, topic, partition) → the offset record to apply on commit.
#[derive(Debug, Default, Clone)]
pub(crate) struct PendingTxnOffsets {
    by_producer: BTreeMap<i64, BTreeMap<OffsetKey, LogRecord>>,
}

impl GroupCoordinator {
    /// TxnOffsetCommit v0–v3: validates like Kafka (a member id, if given, must be a member; a
    /// generation, if given, must be the current one) and returns the records to append in a
    /// transactional batch of the request's producer, with the response to send once they are
    /// durable.
    pub fn txn_offset_commit(
        &mut self,
        req: &TxnOffsetCommitRequest,
        version: i16,
        now_ms: i64,
    ) -> (Vec<LogRecord>, TxnOffsetCommitResponse) {
        let group_id = req.group_id.0.as_str();
        let group_error = if group_id.is_empty() || group_id.len() > MAX_ID_BYTES {
            Some(ResponseError::InvalidGroupId)
        } else if self.pending_txn.by_producer.len() >= MAX_PENDING_TXN_PRODUCERS
            && !self
                .pending_txn
                .by_producer
                .contains_key(&req.producer_id.0)
        {
            Some(ResponseError::CoordinatorNotAvailable)
        } else {
            match self.groups.get(group_id) {
                None => None,
                Some(g) if g.state == GroupState::Dead => {
                    Some(ResponseError::CoordinatorNotAvailable)
                }
                Some(g) if g.consumer.is_some() && version >= 3 => {
                    let c = g.consumer.as_deref().expect("checked");
                    let member = req.member_id.as_str();
                    if member.is_empty() && req.generation_id < 0 {
                        None
                    } else {
                        super::consumer::validate_commit(c, member, req.generation_id, 9, true)
                    }
                }
                Some(g) => {
                    let member = req.member_id.as_str();
                    if version >= 3 && !member.is_empty() && !g.members.contains_key(member) {
                        Some(ResponseError::UnknownMemberId)
                    } else if version >= 3
                        && req.generation_id >= 0
                        && req.generation_id != g.generation_id
                    {
                        Some(ResponseError::IllegalGeneration)
                    } else {
                        None
                    }
                }
            }
        };
        let max_metadata = self.config().offset_metadata_max_bytes;
        let mut recs = Vec::new();
        let mut resp = TxnOffsetCommitResponse::default();
        for t in &req.topics {
            let mut rt = TxnOffsetCommitResponseTopic::default();
            rt.name = t.name.clone();
            for p in &t.partitions {
                let metadata = p.committed_metadata.as_ref().map_or("", |m| m.as_str());
                let error = if group_error.is_some() {
                    group_error
                } else if t.name.0.is_empty() || t.name.0.len() > MAX_ID_BYTES {
                    Some(ResponseError::UnknownTopicOrPartition)
                } else if metadata.len() > max_metadata {
                    Some(ResponseError::OffsetMetadataTooLarge)
                } else {
                    let v = OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 2 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: metadata.to_owned(),
                        commit_timestamp_ms: now_ms,
                        expire_timestamp_ms: -1,
                    };
                    recs.push(records::offset_commit_record(
                        group_id,
                        t.name.0.as_str(),
                        p.partition_index,
                        &v,
                    ));
                    None
                };
                let mut rp = TxnOffsetCommitResponsePartition::default();
                rp.partition_index = p.partition_index;
                rp.error_code = error.map_or(0, |e| e.code());
                rt.partitions.push(rp);
            }
            resp.topics.push(rt);
        }
        (recs, resp)
    }

    /// A committed record of a transactional batch of `producer_id`: held until its marker.
    pub fn apply_txn_record(
        &mut self,
        producer_id: i64,
        rec: &LogRecord,
    ) -> Result<(), RecordError> {
        let Decoded::Offset {
            group,
            topic,
            partition,
            value: Some(_),
        } = records::decode(rec)?
        else {
            return Ok(()); // only offset commits are written transactionally
        };
        let pending = &mut self.pending_txn.by_producer;
        if pending.len() >= MAX_PENDING_TXN_PRODUCERS && !pending.contains_key(&producer_id) {
            tracing::warn!(
                producer_id,
                "too many producers with pending offsets; dropped"
            );
            return Ok(());
        }
        let mine = pending.entry(producer_id).or_default();
        let key = (group, topic, partition);
        if mine.len() >= MAX_PENDING_OFFSETS_PER_PRODUCER && !mine.contains_key(&key) {
            tracing::warn!(
                producer_id,
                "too many pending offsets for one producer; dropped"
            );
            return Ok(());
        }
        mine.insert(key, rec.clone());
        Ok(())
    }

    /// A commit (`true`) or abort marker of `producer_id` reached this partition.
    pub fn complete_txn(&mut self, producer_id: i64, commit: bool, now_ms: i64) {
        let Some(mine) = self.pending_txn.by_producer.remove(&producer_id) else {
            return;
        };
        if commit {
            for rec in mine.values() {
                if let Err(e) = self.apply(rec, now_ms) {
                    tracing::warn!(producer_id, "pending offset record did not apply: {e}");
                }
            }
        }
    }

    /// Whether an open transaction holds an offset for this group partition.
    pub fn has_pending_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        let key = (group.to_owned(), topic.to_owned(), partition);
        self.pending_txn
            .by_producer
            .values()
            .any(|m| m.contains_key(&key))
    }

    /// OffsetFetch v7 with `require_stable`: partitions with pending transactional offsets get
    /// UNSTABLE_OFFSET_COMMIT (the client retries until the transaction ends).
    pub fn mark_unstable(&self, group_id: &str, resp: &mut OffsetFetchResponse) {
        for t in &mut resp.topics {
            for p in &mut t.partitions {
                if self.has_pending_offset(group_id, t.name.0.as_str(), p.partition_index) {
                    p.error_code = ResponseError::UnstableOffsetCommit.code();
                    p.committed_offset = -1;
                }
            }
        }
    }

    /// OffsetFetch v8+ with `require_stable`, for one group.
    pub fn mark_unstable_group(&self, g: &mut OffsetFetchResponseGroup) {
        let group_id = g.group_id.0.to_string();
        for t in &mut g.topics {
            for p in &mut t.partitions {
                if self.has_pending_offset(&group_id, t.name.0.as_str(), p.partition_index) {
                    p.error_code = ResponseError::UnstableOffsetCommit.code();
                    p.committed_offset = -1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GroupConfig;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, OffsetFetchRequest, ProducerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn req(pid: i64, offset: i64) -> TxnOffsetCommitRequest {
        let mut p = TxnOffsetCommitRequestPartition::default();
        p.partition_index = 0;
        p.committed_offset = offset;
        let mut t = TxnOffsetCommitRequestTopic::default();
        t.name = TopicName(StrBytes::from_static_str("t"));
        t.partitions = vec![p];
        let mut r = TxnOffsetCommitRequest::default();
        r.group_id = GroupId(StrBytes::from_static_str("g"));
        r.producer_id = ProducerId(pid);
        r.generation_id = -1;
        r.topics = vec![t];
        r
    }

    fn fetch(c: &GroupCoordinator) -> OffsetFetchResponse {
        let mut f = OffsetFetchRequest::default();
        f.group_id = GroupId(StrBytes::from_static_str("g"));
        f.require_stable = true;
        let mut r = c.offset_fetch(&f, 7);
        c.mark_unstable("g", &mut r);
        r
    }

    #[test]
    fn pending_until_commit_dropped_on_abort() {
        let mut c = GroupCoordinator::new(0, GroupConfig::default());
        let (recs, resp) = c.txn_offset_commit(&req(5, 42), 3, 1);
        assert_eq!(resp.topics[0].partitions[0].error_code, 0);
        c.apply_txn_record(5, &recs[0]).unwrap();
        assert!(c.has_pending_offset("g", "t", 0));
        assert_eq!(c.committed("g", "t", 0), None);
        // Abort: gone, nothing committed.
        c.complete_txn(5, false, 2);
        assert!(!c.has_pending_offset("g", "t", 0));
        assert_eq!(c.committed("g", "t", 0), None);
        // Commit: materialized.
        let (recs, _) = c.txn_offset_commit(&req(5, 43), 3, 3);
        c.apply_txn_record(5, &recs[0]).unwrap();
        c.complete_txn(6, true, 4); // another producer's marker changes nothing
        assert!(c.has_pending_offset("g", "t", 0));
        c.complete_txn(5, true, 4);
        assert_eq!(c.committed("g", "t", 0).map(|v| v.offset), Some(43));
        c.check_invariants();
    }

    #[test]
    fn require_stable_reports_unstable_offsets() {
        let mut c = GroupCoordinator::new(0, GroupConfig::default());
        let (recs, _) = c.txn_offset_commit(&req(9, 7), 3, 1);
        c.apply_txn_record(9, &recs[0]).unwrap();
        let r = fetch(&c);
        // Whole-group fetch lists only committed offsets; ask for the partition explicitly.
        assert!(r.topics.is_empty());
        let mut f = OffsetFetchRequest::default();
        f.group_id = GroupId(StrBytes::from_static_str("g"));
        let mut t =
            kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic::default();
        t.name = TopicName(StrBytes::from_static_str("t"));
        t.partition_indexes = vec![0];
        f.topics = Some(vec![t]);
        let mut r = c.offset_fetch(&f, 7);
        c.mark_unstable("g", &mut r);
        assert_eq!(r.topics[0].partitions[0].error_code, 88);
        c.complete_txn(9, true, 2);
        let mut r = c.offset_fetch(&f, 7);
        c.mark_unstable("g", &mut r);
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        assert_eq!(r.topics[0].partitions[0].committed_offset, 7);
    }
}
