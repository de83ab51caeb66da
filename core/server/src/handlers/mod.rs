//! Kafka API handlers, one file per API (or per family for the group coordinator and configs).
//! Each handler takes the decoded request and its version and returns the response body; the
//! versions served are those of `chronik_protocol::api::SUPPORTED`.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use chronik_protocol::frame::{self, Request};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use chronik_core::acl;
use chronik_core::meta::MetaState;

use crate::broker::Broker;

pub mod acls;
pub mod admin;
pub mod alter_replica_log_dirs;
pub mod api_versions;
pub mod client_quotas;
pub mod configs;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod elect_leaders;
pub mod fetch;
pub mod fetch_session;
pub mod groups;
pub mod init_producer_id;
pub mod list_config_resources;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod partition_reassignments;
pub mod produce;
pub mod scram_credentials;
pub mod txn;
pub mod update_features;

/// What handlers keep about one client connection between its requests; it dies with the
/// connection.
#[derive(Debug)]
pub struct ConnState {
    /// Incremental fetch sessions (KIP-227) opened on this connection.
    pub fetch_sessions: fetch_session::FetchSessions,
    /// Who the client is: `User:<name>` once SASL authenticated it, `User:ANONYMOUS` before.
    principal: RefCell<Rc<str>>,
    /// The client's address without the port, as ACL hosts name it.
    pub host: String,
    /// Quota throttling: the connection is not read again before this instant (ms since the
    /// epoch), as Kafka mutes a throttled channel (KIP-219).
    throttled_until_ms: std::cell::Cell<i64>,
}

impl ConnState {
    pub fn new(broker: &Broker, peer: &str) -> Self {
        let slots = broker
            .shared
            .config
            .broker
            .max_incremental_fetch_session_cache_slots;
        let host = peer
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|_| peer.to_string());
        ConnState {
            fetch_sessions: fetch_session::FetchSessions::new(slots as usize),
            principal: RefCell::new(Rc::from(acl::ANONYMOUS)),
            host,
            throttled_until_ms: std::cell::Cell::new(0),
        }
    }

    /// Mutes the connection for `ms` from now (a quota throttle).
    pub fn throttle(&self, ms: i32, now_ms: i64) {
        if ms > 0 {
            let until = now_ms + i64::from(ms);
            self.throttled_until_ms
                .set(self.throttled_until_ms.get().max(until));
        }
    }

    /// How long the connection must stay muted, from `now_ms`.
    pub fn muted_for_ms(&self, now_ms: i64) -> i64 {
        (self.throttled_until_ms.get() - now_ms).max(0)
    }

    pub fn principal(&self) -> Rc<str> {
        self.principal.borrow().clone()
    }

    /// Records the SASL-authenticated user.
    pub fn authenticated(&self, user: &str) {
        self.set_principal(format!("User:{user}"));
    }

    /// Sets the principal (`Type:name`), e.g. from a client certificate.
    pub fn set_principal(&self, principal: String) {
        *self.principal.borrow_mut() = Rc::from(principal);
    }
}

/// Context of one request.
pub struct Ctx<'a> {
    pub broker: &'a Rc<Broker>,
    pub version: i16,
    pub client_id: &'a str,
    pub peer: &'a str,
    /// The state of the connection the request came on.
    pub conn: &'a ConnState,
}

impl Ctx<'_> {
    /// Runs an authorizer decision for this client; true without one (authorization off).
    fn decide(
        &self,
        decision: impl FnOnce(&acl::Policy, acl::Requester<'_>, &MetaState) -> bool,
    ) -> bool {
        let Some(policy) = &self.broker.authz else {
            return true;
        };
        let principal = self.conn.principal();
        let who = acl::Requester {
            principal: &principal,
            host: &self.conn.host,
        };
        decision(policy, who, &self.broker.meta())
    }

    /// Whether the client may do `operation` (an `acl::op` code) on the resource; always true
    /// while `server.authorization_enabled` is off.
    pub fn allowed(&self, operation: i8, resource_type: i8, name: &str) -> bool {
        self.decide(|policy, who, meta| {
            acl::authorize(&meta.acls, policy, who, operation, resource_type, name)
        })
    }

    /// Whether the client may do `operation` on some resource of the type (always true while
    /// authorization is off).
    pub fn allowed_on_any(&self, operation: i8, resource_type: i8) -> bool {
        self.decide(|policy, who, meta| {
            acl::authorize_any(&meta.acls, policy, who, operation, resource_type)
        })
    }

    /// [`Ctx::allowed`] on the cluster resource.
    pub fn cluster_allowed(&self, operation: i8) -> bool {
        self.allowed(operation, acl::resource::CLUSTER, acl::CLUSTER_NAME)
    }

    /// A topic's metadata if the client may do `operation` on it, with the error code for its
    /// partitions when there is none: TOPIC_AUTHORIZATION_FAILED when refused (whether or not the
    /// topic exists, so names do not leak), else UNKNOWN_TOPIC_OR_PARTITION.
    pub fn authorized_topic(
        &self,
        operation: i8,
        name: &str,
    ) -> (Option<chronik_core::meta::TopicMeta>, i16) {
        if self.allowed(operation, acl::resource::TOPIC, name) {
            (
                self.broker.topic(name),
                kafka_protocol::ResponseError::UnknownTopicOrPartition.code(),
            )
        } else {
            (
                None,
                kafka_protocol::ResponseError::TopicAuthorizationFailed.code(),
            )
        }
    }

    /// Whether authorization is on (so per-resource checks are worth preparing).
    pub fn authorizing(&self) -> bool {
        self.broker.authz.is_some()
    }
}

/// What to do after a request.
pub enum Outcome {
    /// Send this response frame.
    Respond(Bytes),
    /// Send this response frame, given as parts to write in order (a Fetch response whose
    /// stored batches are passed through uncopied).
    RespondParts(Vec<Bytes>),
    /// Send nothing (produce with acks=0).
    Silent,
    /// Close the connection without answering (fault injection only).
    Close,
}

/// Handles one request.
/// `clock`, when quotas are configured, measures the thread time spent on the request so far
/// (for the request quota, recorded just before the response is encoded).
pub async fn dispatch(
    broker: Rc<Broker>,
    req: Request,
    peer: &str,
    conn: &ConnState,
    clock: Option<Rc<crate::quotas::RequestClock>>,
) -> Outcome {
    let _inflight = broker.track();
    let version = req.version;
    let correlation_id = req.header.correlation_id;
    let client_id = req
        .header
        .client_id
        .as_ref()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    let ctx = Ctx {
        broker: &broker,
        version,
        client_id: &client_id,
        peer,
        conn,
    };
    let key = req.api_key;
    let body: ResponseKind = match req.body {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(&ctx, r)),
        body if admin::routes(&body) => match admin::dispatch(&ctx, body).await {
            Ok(body) => body,
            Err(_) => return unsupported(key, version, correlation_id),
        },
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(&ctx, r).await),
        RequestKind::Produce(r) => {
            let acks = r.acks;
            let bytes: u64 = r
                .topic_data
                .iter()
                .flat_map(|t| &t.partition_data)
                .map(|p| p.records.as_ref().map_or(0, |b| b.len() as u64))
                .sum();
            let mut resp = produce::handle(&ctx, r).await;
            let throttle = throttle_for(&ctx, crate::quotas::Kind::Produce, bytes);
            resp.throttle_time_ms = resp.throttle_time_ms.max(throttle);
            if acks == 0 {
                // No response to carry the throttle time, but the mute applies.
                request_throttle(&ctx, key, clock.as_deref());
                return Outcome::Silent;
            }
            if broker.fault_drop_produce_response() {
                return Outcome::Close;
            }
            ResponseKind::Produce(resp)
        }
        RequestKind::Fetch(mut r) => {
            let follower = r.replica_id.0 >= 0 || r.replica_state.replica_id.0 >= 0;
            if !follower && broker.shared.has_quotas() {
                let principal = conn.principal();
                let meta = broker.meta();
                if let Some(cap) = broker
                    .shared
                    .quotas
                    .fetch_cap(&meta, &principal, &client_id)
                {
                    // Partition limits too: a partition's read is bounded by its own limit.
                    r.max_bytes = r.max_bytes.min(cap);
                    for p in r.topics.iter_mut().flat_map(|t| &mut t.partitions) {
                        p.partition_max_bytes = p.partition_max_bytes.min(cap);
                    }
                }
            }
            let (mut resp, mut batches) = fetch::handle(&ctx, r).await;
            if !follower {
                let inline: u64 = resp
                    .responses
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64))
                    .sum();
                let bytes = inline
                    + batches
                        .iter()
                        .flatten()
                        .map(|b| b.len() as u64)
                        .sum::<u64>();
                let throttle = throttle_for(&ctx, crate::quotas::Kind::Fetch, bytes);
                if throttle > 0 {
                    // Like Kafka, a throttled fetch is answered without records (and was not
                    // counted): the client fetches the same offsets once the throttle ends.
                    batches.iter_mut().for_each(Vec::clear);
                    for p in resp.responses.iter_mut().flat_map(|t| &mut t.partitions) {
                        p.records = Some(bytes::Bytes::new());
                    }
                }
                resp.throttle_time_ms = resp.throttle_time_ms.max(throttle);
            }
            let throttle = request_throttle(&ctx, key, clock.as_deref());
            resp.throttle_time_ms = resp.throttle_time_ms.max(throttle);
            let mut parts = Vec::new();
            return match chronik_protocol::fetch_frame::encode_fetch_response_batches(
                &mut parts,
                correlation_id,
                version,
                resp,
                batches,
                splice_nonce(),
            ) {
                Ok(()) => Outcome::RespondParts(parts),
                Err(e) => {
                    tracing::error!(api = ?key, version, "encoding response failed: {e}");
                    unsupported(key, version, correlation_id)
                }
            };
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(&ctx, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(&ctx, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(&ctx, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(&ctx, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe(&ctx, r))
        }
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(&ctx, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(&ctx, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(&ctx, r))
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(&ctx, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(&ctx, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(&ctx, r).await)
        }
        body @ (RequestKind::AddPartitionsToTxn(_)
        | RequestKind::AddOffsetsToTxn(_)
        | RequestKind::EndTxn(_)
        | RequestKind::WriteTxnMarkers(_)
        | RequestKind::DescribeTransactions(_)
        | RequestKind::ListTransactions(_)) => match txn::dispatch(&ctx, body).await {
            Some(body) => body,
            None => return unsupported(key, version, correlation_id),
        },
        other => match groups::dispatch(&ctx, other).await {
            Some(body) => body,
            None => {
                tracing::warn!(api = ?key, "request kind without a handler");
                return unsupported(key, version, correlation_id);
            }
        },
    };
    let mut body = body;
    let throttle = request_throttle(&ctx, key, clock.as_deref());
    let before = match throttle_field(&mut body) {
        Some(field) if throttle > *field => Some(std::mem::replace(field, throttle)),
        _ => None,
    };
    let mut out = BytesMut::with_capacity(256);
    let mut encoded = frame::encode_response(&mut out, correlation_id, key, version, &body);
    if let (Err(_), Some(before)) = (&encoded, before) {
        // A version without the field refuses a non-default value: the mute still applies.
        if let Some(field) = throttle_field(&mut body) {
            *field = before;
        }
        out.clear();
        encoded = frame::encode_response(&mut out, correlation_id, key, version, &body);
    }
    match encoded {
        Ok(()) => Outcome::Respond(out.freeze()),
        Err(e) => {
            // Answer something the client can tie to its request rather than nothing at all.
            tracing::error!(api = ?key, version, "encoding response failed: {e}");
            unsupported(key, version, correlation_id)
        }
    }
}

/// The client's controller-mutation quota (KIP-599), if one is set, and whether the request
/// version lets the broker refuse a mutation over it (THROTTLING_QUOTA_EXCEEDED) rather than
/// only throttle.
pub fn mutation_quota<'a>(
    ctx: &'a Ctx<'_>,
    strict_from_version: i16,
) -> Option<(crate::quotas::MutationQuota<'a>, bool)> {
    if !ctx.broker.shared.has_quotas() {
        return None;
    }
    let meta = ctx.broker.meta();
    if meta.quotas.is_empty() {
        return None;
    }
    let principal = ctx.conn.principal();
    let q = ctx
        .broker
        .shared
        .quotas
        .mutation_quota(&meta, &principal, ctx.client_id)?;
    Some((q, ctx.version >= strict_from_version))
}

/// Before one topic's mutation: the error to answer it with when the client is over its
/// controller-mutation quota and the request version allows refusing.
pub fn mutation_refused(
    q: &Option<(crate::quotas::MutationQuota<'_>, bool)>,
) -> Option<(i16, String)> {
    let (q, strict) = q.as_ref()?;
    (*strict && q.exceeded(crate::partition::now_ms())).then(|| {
        (
            kafka_protocol::ResponseError::ThrottlingQuotaExceeded.code(),
            "The throttling quota has been exceeded.".to_string(),
        )
    })
}

/// After a request's mutations: the throttle time to answer with (the connection is muted).
pub fn mutation_throttle(
    ctx: &Ctx<'_>,
    q: &Option<(crate::quotas::MutationQuota<'_>, bool)>,
) -> i32 {
    let Some((q, _)) = q else { return 0 };
    let now = crate::partition::now_ms();
    let ms = q.throttle_ms(now);
    ctx.conn.throttle(ms, now);
    ms
}

/// Records the thread time of a request against the client's request quota
/// (`request_percentage`); mutes the connection and returns the throttle time when the client
/// is over it. 0 without a clock (no quotas) or for exempt requests.
fn request_throttle(
    ctx: &Ctx<'_>,
    key: kafka_protocol::messages::ApiKey,
    clock: Option<&crate::quotas::RequestClock>,
) -> i32 {
    let Some(clock) = clock else { return 0 };
    if crate::quotas::request_quota_exempt(key as i16) {
        return 0;
    }
    throttle_with(ctx, |q, meta, principal, now| {
        q.record_request(meta, principal, ctx.client_id, clock.busy(), now)
    })
}

/// With some quota configured: runs `record` (which records the request against the client's
/// quota and returns its throttle time) with the metadata, principal and time, then mutes the
/// connection for the throttle. 0 without quotas.
fn throttle_with(
    ctx: &Ctx<'_>,
    record: impl FnOnce(&crate::quotas::QuotaSensors, &MetaState, &str, i64) -> i32,
) -> i32 {
    if !ctx.broker.shared.has_quotas() {
        return 0;
    }
    let meta = ctx.broker.meta();
    if meta.quotas.is_empty() {
        return 0;
    }
    let now = crate::partition::now_ms();
    let ms = record(&ctx.broker.shared.quotas, &meta, &ctx.conn.principal(), now);
    ctx.conn.throttle(ms, now);
    ms
}

/// The `throttle_time_ms` field of a response, for the response types that have one.
fn throttle_field(body: &mut ResponseKind) -> Option<&mut i32> {
    macro_rules! field {
        ($($v:ident)*) => {
            match body {
                $(ResponseKind::$v(r) => Some(&mut r.throttle_time_ms),)*
                _ => None,
            }
        };
    }
    field!(
        AddOffsetsToTxn AddPartitionsToTxn AlterClientQuotas AlterConfigs
        AlterPartitionReassignments AlterReplicaLogDirs AlterUserScramCredentials ApiVersions
        ConsumerGroupDescribe ConsumerGroupHeartbeat CreateAcls CreateDelegationToken
        CreatePartitions CreateTopics DeleteAcls DeleteGroups DeleteRecords DeleteTopics
        DescribeAcls DescribeClientQuotas DescribeCluster DescribeConfigs DescribeDelegationToken
        DescribeGroups DescribeLogDirs DescribeProducers DescribeTopicPartitions
        DescribeTransactions DescribeUserScramCredentials ElectLeaders EndTxn
        ExpireDelegationToken Fetch FindCoordinator GetTelemetrySubscriptions Heartbeat
        IncrementalAlterConfigs InitProducerId JoinGroup LeaveGroup ListConfigResources
        ListGroups ListOffsets ListPartitionReassignments ListTransactions Metadata OffsetCommit
        OffsetDelete OffsetFetch OffsetForLeaderEpoch Produce PushTelemetry
        RenewDelegationToken ShareAcknowledge ShareFetch ShareGroupDescribe ShareGroupHeartbeat
        SyncGroup TxnOffsetCommit UpdateFeatures
    )
}

/// Records a produce/fetch against the client's quota; mutes the connection and returns the
/// throttle time when the client is over it.
fn throttle_for(ctx: &Ctx<'_>, kind: crate::quotas::Kind, bytes: u64) -> i32 {
    throttle_with(ctx, |q, meta, principal, now| {
        q.record(meta, kind, principal, ctx.client_id, bytes, now)
    })
}

/// A fresh nonce for splicing one Fetch response: a per-thread random start, then a counter
/// (uniqueness between responses is what matters; see `chronik_protocol::fetch_frame`).
fn splice_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static NEXT: std::cell::Cell<u64> = std::cell::Cell::new(
            std::collections::hash_map::RandomState::new().build_hasher().finish(),
        );
    }
    NEXT.with(|n| {
        let v = n.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        n.set(v);
        v
    })
}

/// The UNSUPPORTED_VERSION answer for a request (see `frame::encode_unsupported`).
fn unsupported(key: ApiKey, version: i16, correlation_id: i32) -> Outcome {
    let mut out = BytesMut::new();
    frame::encode_unsupported(
        &mut out,
        frame::RequestHead {
            api_key: key as i16,
            api_version: version,
            correlation_id,
        },
    );
    Outcome::Respond(out.freeze())
}

/// Kafka's error code for a metadata error, with its message.
pub fn meta_error(e: &chronik_core::meta::MetaError) -> (i16, String) {
    (e.kafka_code(), e.to_string())
}

pub fn str_bytes(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}

/// The key of the API a request kind belongs to (for logs).
pub fn api_name(key: ApiKey) -> &'static str {
    chronik_protocol::api::name(key)
}
