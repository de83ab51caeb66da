//! DeleteTopics (key 20), versions 1–5 (by name).

use chronik_core::meta::MetaCommand;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{meta_error, str_bytes, Ctx};

pub async fn handle(ctx: &Ctx<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut names: Vec<TopicName> = req.topic_names.clone();
    names.extend(req.topics.iter().filter_map(|t| t.name.clone()));
    let enabled = ctx.broker.shared.config.broker.delete_topic_enable;
    let mut responses = Vec::with_capacity(names.len());
    for name in names {
        let n = name.0.as_str().to_string();
        let mut r = DeletableTopicResult::default().with_name(Some(name.clone()));
        if let Some(t) = ctx.broker.topic(&n) {
            r = r.with_topic_id(uuid::Uuid::from_u128(t.id));
        }
        let err = if !enabled {
            Some((
                ResponseError::TopicDeletionDisabled.code(),
                "topic deletion is disabled (delete_topic_enable = false)".to_string(),
            ))
        } else if n == chronik_core::meta::CONSUMER_OFFSETS_TOPIC {
            Some((
                ResponseError::InvalidTopicException.code(),
                "internal topics cannot be deleted".to_string(),
            ))
        } else {
            ctx.broker
                .propose_meta(MetaCommand::DeleteTopic { name: n })
                .await
                .err()
                .map(|e| meta_error(&e))
        };
        if let Some((code, msg)) = err {
            r = r
                .with_error_code(code)
                .with_error_message(Some(str_bytes(msg)));
        }
        responses.push(r);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
