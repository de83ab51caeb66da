//! DescribeClientQuotas (key 48), versions 0–1.
//!
//! This broker enforces no client quotas and stores none (AlterClientQuotas is not served), so
//! every valid filter matches nothing. The filter is still validated with Kafka's rules and
//! messages (`ClientQuotasImage.describe`), so a malformed one fails here as it would on Kafka.

use std::collections::BTreeSet;

use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;

const USER: &str = "user";
const CLIENT_ID: &str = "client-id";
const IP: &str = "ip";

/// Kafka's `ClientQuotaFilterComponent` match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

pub fn handle(req: DescribeClientQuotasRequest) -> DescribeClientQuotasResponse {
    match validate(&req) {
        Ok(()) => DescribeClientQuotasResponse::default().with_entries(Some(Vec::new())),
        Err((e, msg)) => DescribeClientQuotasResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(str_bytes(msg)))
            .with_entries(None),
    }
}

fn validate(req: &DescribeClientQuotasRequest) -> Result<(), (ResponseError, String)> {
    let invalid = |msg: String| Err((ResponseError::InvalidRequest, msg));
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for c in &req.components {
        let ty = c.entity_type.as_str();
        if ty.is_empty() {
            return invalid("Invalid empty entity type.".into());
        }
        if !seen.insert(ty) {
            return invalid(format!(
                "Entity type {ty} cannot appear more than once in the filter."
            ));
        }
        if ![IP, USER, CLIENT_ID].contains(&ty) {
            return Err((
                ResponseError::UnsupportedVersion,
                format!("Unsupported entity type {ty}"),
            ));
        }
        match c.match_type {
            MATCH_EXACT if c._match.is_none() => {
                return invalid(
                    "Request specified MATCH_TYPE_EXACT, but set match string to null.".into(),
                )
            }
            MATCH_DEFAULT if c._match.is_some() => {
                return invalid(
                    "Request specified MATCH_TYPE_DEFAULT, but also specified a match string."
                        .into(),
                )
            }
            MATCH_SPECIFIED if c._match.is_some() => {
                return invalid(
                    "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string."
                        .into(),
                )
            }
            MATCH_EXACT | MATCH_DEFAULT | MATCH_SPECIFIED => {}
            other => {
                return Err((
                    ResponseError::UnsupportedVersion,
                    format!("Unknown match type {other}"),
                ))
            }
        }
    }
    if seen.contains(IP) && (seen.contains(USER) || seen.contains(CLIENT_ID)) {
        return invalid(
            "Invalid entity filter component combination. IP filter component should not be \
             used with user or clientId filter component."
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;

    fn comp(ty: &str, match_type: i8, m: Option<&str>) -> ComponentData {
        ComponentData::default()
            .with_entity_type(str_bytes(ty))
            .with_match_type(match_type)
            .with_match(m.map(str_bytes))
    }

    fn code(components: Vec<ComponentData>) -> i16 {
        handle(DescribeClientQuotasRequest::default().with_components(components)).error_code
    }

    #[test]
    fn valid_filters_match_nothing_and_invalid_ones_fail() {
        let ok = handle(DescribeClientQuotasRequest::default());
        assert_eq!(ok.error_code, 0);
        assert_eq!(ok.entries, Some(Vec::new()));
        assert_eq!(code(vec![comp("user", 0, Some("alice"))]), 0);
        assert_eq!(
            code(vec![comp("user", 1, None), comp("client-id", 2, None)]),
            0
        );
        assert_eq!(code(vec![comp("user", 0, None)]), 42);
        assert_eq!(code(vec![comp("user", 1, Some("x"))]), 42);
        assert_eq!(code(vec![comp("user", 2, None), comp("user", 2, None)]), 42);
        assert_eq!(code(vec![comp("ip", 2, None), comp("user", 2, None)]), 42);
        assert_eq!(code(vec![comp("", 2, None)]), 42);
        assert_eq!(code(vec![comp("group", 2, None)]), 35);
        assert_eq!(code(vec![comp("user", 7, None)]), 35);
        assert_eq!(
            handle(
                DescribeClientQuotasRequest::default().with_components(vec![comp("x", 2, None)])
            )
            .entries,
            None
        );
    }
}
