//! The calls one shard makes on another (and on itself, without the mesh).
//!
//! Everything here is `Send`: record bytes travel as `Bytes` (reference-counted, not copied).

use bytes::Bytes;
use chronik_core::meta::{MetaCommand, MetaError};

/// A partition-level produce outcome.
#[derive(Clone, Debug, Default)]
pub struct ProduceOutcome {
    pub error: i16,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub error_message: Option<String>,
}

impl ProduceOutcome {
    /// A produce that failed before reaching the log.
    pub fn failed(error: i16) -> Self {
        Self {
            error,
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
            error_message: None,
        }
    }
}

/// One partition of a fetch.
#[derive(Clone, Debug)]
pub struct FetchPart {
    pub group: u64,
    pub offset: i64,
    pub max_bytes: usize,
    /// READ_COMMITTED (1) or READ_UNCOMMITTED (0).
    pub isolation: i8,
}

#[derive(Clone, Debug, Default)]
pub struct FetchOutcome {
    pub error: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub batches: Vec<Bytes>,
    pub bytes: usize,
    /// read_committed: `(producer id, first offset)` of aborted transactions overlapping the
    /// batches; `None` for read_uncommitted.
    pub aborted: Option<Vec<(i64, i64)>>,
}

/// Offsets of a partition as its owner sees them.
#[derive(Clone, Copy, Debug, Default)]
pub struct PartitionOffsets {
    pub error: i16,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub leader_epoch: i32,
}

impl PartitionOffsets {
    /// The answer for a partition this shard cannot speak for.
    pub fn failed(error: i16) -> Self {
        Self {
            error,
            log_start_offset: -1,
            high_watermark: -1,
            leader_epoch: -1,
        }
    }
}

/// Result of ListOffsets for one partition.
#[derive(Clone, Copy, Debug, Default)]
pub struct OffsetLookup {
    pub error: i16,
    pub offset: i64,
    pub timestamp: i64,
    pub leader_epoch: i32,
}

impl OffsetLookup {
    pub fn failed(error: i16) -> Self {
        Self {
            error,
            offset: -1,
            timestamp: -1,
            leader_epoch: -1,
        }
    }
}

/// One idempotent producer as a partition's producer table remembers it (DescribeProducers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerReport {
    pub producer_id: i64,
    pub epoch: i16,
    /// Last sequence of its last appended batch (-1 if none is remembered).
    pub last_sequence: i32,
    /// Max timestamp of its last appended batch (-1 if none is remembered).
    pub last_timestamp_ms: i64,
    /// First offset of its open transaction in this partition (-1 if none).
    pub current_txn_start_offset: i64,
}

/// What the admin APIs DescribeLogDirs and DescribeProducers read from a partition's owner.
#[derive(Clone, Debug, Default)]
pub struct PartitionReport {
    pub error: i16,
    /// Payload bytes of the partition's live entries in this shard's WAL.
    pub size_bytes: u64,
    /// Tracked idempotent producers (only when asked for; empty otherwise).
    pub producers: Vec<ProducerReport>,
}

/// The Raft state of the metadata group as shard 0 sees it (DescribeQuorum).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumStatus {
    pub term: u64,
    pub commit: u64,
    pub last_index: u64,
    /// Whether this node leads the metadata group.
    pub leader: bool,
    /// Raft ids of the voters (this node's id among them).
    pub voters: Vec<u64>,
}

pub enum Call {
    /// Produce to several partitions owned by one shard (one call per shard per request).
    Produce {
        parts: Vec<(u64, Bytes)>,
        acks: i16,
        timeout_ms: i32,
    },
    Fetch(Vec<FetchPart>),
    /// Wait until any listed partition has data past its `seen` offset (the high watermark, or
    /// for read_committed the last stable offset, the caller last read), or `timeout_ms`; then
    /// read them all as `Fetch` does. If `wanted` was cleared meanwhile (the caller answered
    /// from another shard), the read is skipped and the reply is empty.
    FetchWhenData {
        parts: Vec<FetchPart>,
        seen: Vec<i64>,
        timeout_ms: u64,
        wanted: std::sync::Arc<std::sync::atomic::AtomicBool>,
    },
    Offsets(u64),
    ListOffsets {
        group: u64,
        timestamp: i64,
        /// 1 = read_committed: latest is the last stable offset.
        isolation: i8,
    },
    /// Append a transaction marker to each listed partition (raft groups owned by the shard).
    WriteMarkers {
        groups: Vec<u64>,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    },
    DeleteRecords {
        group: u64,
        offset: i64,
    },
    /// The end offset of `epoch` (OffsetForLeaderEpoch).
    EpochEnd {
        group: u64,
        epoch: i32,
    },
    /// To shard 0: propose a metadata change and wait until every shard has applied it.
    Meta(MetaCommand),
    /// Open/close this shard's partitions to match the published metadata.
    Reconcile,
    /// A consumer-group call for the coordinator that owns the group's offsets partition.
    Group(crate::handlers::groups::GroupCall),
    /// A transaction-coordinator call for the owner of the id's `__transaction_state` partition.
    Txn(crate::handlers::txn::TxnCall),
    /// Allocate a block of producer ids (shard 0).
    AllocateProducerIds,
    /// Size (and, if `producers`, idempotent-producer state) of partitions owned by this shard.
    Report {
        groups: Vec<u64>,
        producers: bool,
    },
    /// To shard 0: the metadata group's Raft state.
    QuorumStatus,
}

/// What a [`Call`] is, for the cross-shard call counters.
#[derive(Clone, Copy)]
pub enum CallKind {
    Produce,
    Fetch,
    FetchWhenData,
    Group,
    Txn,
    Other,
}

impl CallKind {
    pub const COUNT: usize = 6;
    pub const ALL: [CallKind; CallKind::COUNT] = [
        CallKind::Produce,
        CallKind::Fetch,
        CallKind::FetchWhenData,
        CallKind::Group,
        CallKind::Txn,
        CallKind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CallKind::Produce => "produce",
            CallKind::Fetch => "fetch",
            CallKind::FetchWhenData => "fetch_when_data",
            CallKind::Group => "group",
            CallKind::Txn => "txn",
            CallKind::Other => "other",
        }
    }
}

impl Call {
    pub fn kind(&self) -> CallKind {
        match self {
            Call::Produce { .. } => CallKind::Produce,
            Call::Fetch(_) => CallKind::Fetch,
            Call::FetchWhenData { .. } => CallKind::FetchWhenData,
            Call::Group(_) => CallKind::Group,
            Call::Txn(_) => CallKind::Txn,
            _ => CallKind::Other,
        }
    }
}

pub enum Reply {
    Produce(Vec<ProduceOutcome>),
    Fetch(Vec<FetchOutcome>),
    Offsets(PartitionOffsets),
    ListOffsets(OffsetLookup),
    DeleteRecords(PartitionOffsets),
    EpochEnd {
        error: i16,
        epoch: i32,
        end_offset: i64,
    },
    Meta(Result<(), MetaError>),
    Reconciled,
    Group(crate::handlers::groups::GroupReply),
    Txn(crate::handlers::txn::TxnReply),
    /// One error code per partition of a `WriteMarkers` call.
    Markers(Vec<i16>),
    ProducerIds(Result<i64, MetaError>),
    Report(Vec<PartitionReport>),
    QuorumStatus(Option<QuorumStatus>),
}
