//! Errors of the multi-raft layer.

use thiserror::Error;

pub type Result<T> = std::result::Result<T, RaftError>;

#[derive(Debug, Error)]
pub enum RaftError {
    #[error("raft group {0} does not exist on this shard")]
    NoSuchGroup(u64),
    #[error("this node is not the leader of group {group} (leader: {leader})")]
    NotLeader { group: u64, leader: u64 },
    #[error("too many proposals in flight for group {0}")]
    Backpressure(u64),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("storage: {0}")]
    Storage(#[from] chronik_storage::StorageError),
}
