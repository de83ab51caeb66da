//! ListConfigResources (key 74), versions 0–1 (KIP-1142; version 0 was KIP-1000's
//! ListClientMetricsResources).
//!
//! Version 0 lists client-metrics subscriptions only. Version 1 lists the resources of the
//! requested types, every supported type when the list is empty, and answers UNSUPPORTED_VERSION
//! for a type it does not support, as Kafka does. Supported here: TOPIC (every topic, internal
//! ones included, as Kafka's metadata cache lists them), BROKER (this node), GROUP (groups with
//! dynamic group configs) and CLIENT_METRICS (subscriptions). This broker keeps no group configs
//! and no client-metrics subscriptions, so those two types list nothing; BROKER_LOGGER is not
//! supported because DescribeConfigs does not serve logger configs.

use chronik_core::meta::MetaState;
use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};

pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;
pub const CLIENT_METRICS: i8 = 16;
pub const GROUP: i8 = 32;
const SUPPORTED: [i8; 4] = [GROUP, CLIENT_METRICS, BROKER, TOPIC];

pub fn handle(ctx: &Ctx<'_>, req: ListConfigResourcesRequest) -> ListConfigResourcesResponse {
    list(
        &ctx.broker.meta(),
        ctx.broker.shared.node_id,
        ctx.version,
        &req.resource_types,
    )
}

fn list(meta: &MetaState, node_id: i32, version: i16, types: &[i8]) -> ListConfigResourcesResponse {
    let types: Vec<i8> = if version == 0 {
        vec![CLIENT_METRICS]
    } else if types.is_empty() {
        SUPPORTED.to_vec()
    } else {
        types.to_vec()
    };
    if types.iter().any(|t| !SUPPORTED.contains(t)) {
        return ListConfigResourcesResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code());
    }
    let resource = |name: String, ty: i8| {
        ConfigResource::default()
            .with_resource_name(str_bytes(name))
            .with_resource_type(ty)
    };
    let mut out = Vec::new();
    // No group configs and no client-metrics subscriptions exist on this broker.
    if types.contains(&BROKER) {
        out.push(resource(node_id.to_string(), BROKER));
    }
    if types.contains(&TOPIC) {
        out.extend(meta.topics.keys().map(|t| resource(t.clone(), TOPIC)));
    }
    ListConfigResourcesResponse::default().with_config_resources(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronik_core::meta::MetaCommand;

    fn listed(meta: &MetaState, version: i16, types: &[i8]) -> (i16, Vec<(String, i8)>) {
        let r = list(meta, 7, version, types);
        let got = r
            .config_resources
            .iter()
            .map(|c| (c.resource_name.to_string(), c.resource_type))
            .collect();
        (r.error_code, got)
    }

    #[test]
    fn lists_topics_and_the_broker_by_type() {
        let mut meta = MetaState::default();
        meta.apply(&MetaCommand::Init { shards: 1 }).unwrap();
        for name in ["b", "a"] {
            meta.apply(&MetaCommand::CreateTopic {
                name: name.into(),
                id: 1,
                partitions: 1,
                configs: Default::default(),
            })
            .unwrap();
        }
        let all = vec![
            ("7".into(), BROKER),
            ("a".into(), TOPIC),
            ("b".into(), TOPIC),
        ];
        assert_eq!(listed(&meta, 1, &[]), (0, all));
        assert_eq!(listed(&meta, 1, &[TOPIC]).1.len(), 2);
        assert_eq!(listed(&meta, 1, &[BROKER]), (0, vec![("7".into(), BROKER)]));
        assert_eq!(listed(&meta, 1, &[GROUP, CLIENT_METRICS]), (0, vec![]));
        // Version 0 is ListClientMetricsResources: client metrics only, types ignored.
        assert_eq!(listed(&meta, 0, &[TOPIC]), (0, vec![]));
        // BROKER_LOGGER (8) and unknown types: UNSUPPORTED_VERSION, nothing listed.
        assert_eq!(listed(&meta, 1, &[TOPIC, 8]), (35, vec![]));
        assert_eq!(listed(&meta, 1, &[99]), (35, vec![]));
    }
}
