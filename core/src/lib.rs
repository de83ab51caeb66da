//! Chronik core: what every other crate shares, and the broker's pure state machines.
//!
//! Module map (what goes where; this crate depends on no other workspace crate and does no I/O):
//! - `acl`: access control lists, their filters and the authorizer's decision.
//! - `config`: `chronik.toml` + `CHRONIK_*` environment + defaults, validation.
//! - `meta`: the cluster metadata state machine replicated by the `__meta` Raft group.
//! - `topic_config`: topic-level configs, their broker defaults and validation.
//! - `group`: the consumer-group coordinator state machine (`__consumer_offsets`).
//! - `producer_state`: idempotent-producer sequence tracking per partition.
//! - `txn`: the transaction coordinator state machine (`__transaction_state`, KIP-98) and the
//!   per-partition transaction index (ongoing transactions, LSO, aborted transactions).
//!
//! Time is always passed in (`now_ms`) so these state machines are deterministic under test.

pub mod acl;
pub mod config;
pub mod group;
pub mod meta;
pub mod producer_state;
pub mod quota;
pub mod topic_config;
pub mod txn;
