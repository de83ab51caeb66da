//! DeleteTopics (key 20), versions 1–6: by name, and from v6 by topic id (Java's
//! `Admin.deleteTopics(TopicCollection.ofTopicIds(..))`).

use chronik_core::acl;
use chronik_core::meta::MetaCommand;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{meta_error, str_bytes, Ctx};

pub async fn handle(ctx: &Ctx<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut names: Vec<TopicName> = req.topic_names.clone();
    let mut responses = Vec::with_capacity(names.len() + req.topics.len());
    // v6: each topic by name or by id (not both), as Kafka's controller checks.
    let (_, ids) = ctx.broker.meta_and_ids();
    for t in &req.topics {
        match (&t.name, t.topic_id.is_nil()) {
            (Some(n), true) => names.push(n.clone()),
            (None, false) => match ids.get(&t.topic_id.as_u128()) {
                Some(n) => names.push(TopicName(str_bytes(n.clone()))),
                None => responses.push(
                    DeletableTopicResult::default()
                        .with_name(None)
                        .with_topic_id(t.topic_id)
                        .with_error_code(ResponseError::UnknownTopicId.code())
                        .with_error_message(Some(str_bytes(
                            "This server does not host this topic ID.",
                        ))),
                ),
            },
            _ => responses.push(
                DeletableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(
                        "Each topic must have exactly one of name or topic id.",
                    ))),
            ),
        }
    }
    let enabled = ctx.broker.shared.config.broker.delete_topic_enable;
    let quota = super::mutation_quota(ctx, 5);
    for name in names {
        let n = name.0.as_str().to_string();
        let mut r = DeletableTopicResult::default().with_name(Some(name.clone()));
        let topic = ctx.broker.topic(&n);
        if let Some(t) = &topic {
            r = r.with_topic_id(uuid::Uuid::from_u128(t.id));
        }
        let err = if !ctx.allowed(acl::op::DELETE, acl::resource::TOPIC, &n) {
            Some((
                ResponseError::TopicAuthorizationFailed.code(),
                "Authorization failed.".to_string(),
            ))
        } else if !enabled {
            Some((
                ResponseError::TopicDeletionDisabled.code(),
                "topic deletion is disabled (delete_topic_enable = false)".to_string(),
            ))
        } else if n == chronik_core::meta::CONSUMER_OFFSETS_TOPIC {
            Some((
                ResponseError::InvalidTopicException.code(),
                "internal topics cannot be deleted".to_string(),
            ))
        } else if let Some(refused) = super::mutation_refused(&quota) {
            Some(refused)
        } else {
            let err = ctx
                .broker
                .propose_meta(MetaCommand::DeleteTopic { name: n })
                .await
                .err()
                .map(|e| meta_error(&e));
            if let (None, Some((q, _)), Some(t)) = (&err, &quota, &topic) {
                q.record(t.partitions.len(), crate::partition::now_ms());
            }
            err
        };
        if let Some((code, msg)) = err {
            r = r
                .with_error_code(code)
                .with_error_message(Some(str_bytes(msg)));
        }
        responses.push(r);
    }
    let throttle = super::mutation_throttle(ctx, &quota);
    DeleteTopicsResponse::default()
        .with_responses(responses)
        .with_throttle_time_ms(throttle)
}
