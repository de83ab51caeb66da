//! ApiVersions (key 18), versions 0–4. The advertised ranges come from
//! `chronik_protocol::api::SUPPORTED`; finalized features are not sent (like Apache Kafka, a
//! tagged field is never sent at its default: librdkafka < 2.2 mis-skips them).

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::Ctx;

pub fn handle(_ctx: &Ctx<'_>, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    chronik_protocol::api::api_versions_response(0)
}
