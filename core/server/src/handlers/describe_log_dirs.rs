//! DescribeLogDirs (key 35), versions 1–4: the broker's one log directory (the data directory,
//! where every shard's WAL lives) with each partition's size in the WAL.
//!
//! A single node holds every replica itself, so no replica lags (`offset_lag` 0) and none is a
//! "future" replica being moved between directories. Requested partitions this broker does not
//! have are left out, as Kafka does.

use std::collections::BTreeMap;
use std::path::Path;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::admin::report_partitions;
use super::{str_bytes, Ctx};

pub async fn handle(ctx: &Ctx<'_>, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let meta = ctx.broker.meta();
    // (topic, partition index) -> owner, in name order so the answer is stable.
    let mut wanted: BTreeMap<(String, i32), chronik_core::meta::PartitionMeta> = BTreeMap::new();
    match &req.topics {
        None => {
            for t in meta.topics.values() {
                for (i, p) in t.partitions.iter().enumerate() {
                    wanted.insert((t.name.clone(), i as i32), p.clone());
                }
            }
        }
        Some(list) => {
            for rt in list {
                let Some(t) = meta.topics.get(rt.topic.0.as_str()) else {
                    continue;
                };
                for &i in &rt.partitions {
                    if let Some(p) = usize::try_from(i).ok().and_then(|i| t.partitions.get(i)) {
                        wanted.insert((t.name.clone(), i), p.clone());
                    }
                }
            }
        }
    }
    let keys: Vec<(String, i32)> = wanted.keys().cloned().collect();
    let owners: Vec<_> = wanted.into_values().collect();
    let reports = report_partitions(ctx.broker, &owners, false).await;
    let mut topics: Vec<DescribeLogDirsTopic> = Vec::new();
    for ((name, index), r) in keys.into_iter().zip(reports) {
        // A partition not open on its shard (being created or deleted) is not in the directory.
        let Some(r) = r.filter(|r| r.error == 0) else {
            continue;
        };
        let part = DescribeLogDirsPartition::default()
            .with_partition_index(index)
            .with_partition_size(i64::try_from(r.size_bytes).unwrap_or(i64::MAX))
            .with_offset_lag(0)
            .with_is_future_key(false);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == name => t.partitions.push(part),
            _ => topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(str_bytes(name)))
                    .with_partitions(vec![part]),
            ),
        }
    }
    let path = log_dir(ctx);
    let (total, usable) = disk_space(&path).unwrap_or((-1, -1));
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(path.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable);
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// The broker's one log directory as it reports it: the data directory, canonicalised.
pub fn log_dir(ctx: &Ctx<'_>) -> std::path::PathBuf {
    let dir = &ctx.broker.shared.config.server.data_dir;
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone())
}

/// `(total, usable)` bytes of the filesystem holding `path` (statvfs), as Kafka reports them
/// from v4 on.
fn disk_space(path: &Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    let total = (st.f_blocks as u64).saturating_mul(frsize);
    let usable = (st.f_bavail as u64).saturating_mul(frsize);
    Some((
        i64::try_from(total).unwrap_or(i64::MAX),
        i64::try_from(usable).unwrap_or(i64::MAX),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_space_of_the_current_directory_is_sane() {
        let (total, usable) = disk_space(Path::new(".")).expect("statvfs");
        assert!(
            total > 0 && usable >= 0 && usable <= total,
            "{total} {usable}"
        );
        assert!(disk_space(Path::new("/no/such/dir/anywhere")).is_none());
    }
}
