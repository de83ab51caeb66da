//! CreatePartitions (key 37), versions 0–3.

use chronik_core::acl;
use chronik_core::meta::MetaCommand;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;

use super::{meta_error, str_bytes, Ctx};

pub async fn handle(ctx: &Ctx<'_>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let quota = super::mutation_quota(ctx, 3);
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.as_str().to_string();
        let err = match ctx.broker.topic(&name) {
            _ if !ctx.allowed(acl::op::ALTER, acl::resource::TOPIC, &name) => Some((
                ResponseError::TopicAuthorizationFailed.code(),
                "Authorization failed.".to_string(),
            )),
            None => Some((
                ResponseError::UnknownTopicOrPartition.code(),
                format!("topic '{name}' does not exist"),
            )),
            Some(meta) if t.count <= meta.partitions.len() as i32 => Some((
                ResponseError::InvalidPartitions.code(),
                format!(
                    "topic currently has {} partitions, {} would not be an increase",
                    meta.partitions.len(),
                    t.count
                ),
            )),
            Some(_) if req.validate_only => None,
            Some(meta) => match super::mutation_refused(&quota) {
                Some(refused) => Some(refused),
                None => {
                    let added = (t.count as usize).saturating_sub(meta.partitions.len());
                    let r = ctx
                        .broker
                        .propose_meta(MetaCommand::CreatePartitions {
                            name: name.clone(),
                            total: t.count,
                        })
                        .await
                        .err()
                        .map(|e| meta_error(&e));
                    if let (None, Some((q, _))) = (&r, &quota) {
                        q.record(added, crate::partition::now_ms());
                    }
                    r
                }
            },
        };
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name);
        if let Some((code, msg)) = err {
            r = r
                .with_error_code(code)
                .with_error_message(Some(str_bytes(msg)));
        }
        results.push(r);
    }
    let throttle = super::mutation_throttle(ctx, &quota);
    CreatePartitionsResponse::default()
        .with_results(results)
        .with_throttle_time_ms(throttle)
}
