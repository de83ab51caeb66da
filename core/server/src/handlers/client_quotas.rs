//! DescribeClientQuotas (key 48, v0–1) and AlterClientQuotas (key 49, v0–1).
//!
//! Quotas live in the replicated metadata (`MetaState::quotas`, changed by
//! `MetaCommand::AlterClientQuotas`); `chronik_core::quota` holds the entity rules, filter
//! matching and resolution, and `crate::quotas` enforces byte rates on produce and fetch.
//! Validation and messages follow Kafka (`ClientQuotaControlManager`, `ClientQuotasImage`).

use std::collections::BTreeSet;

use chronik_core::meta::MetaCommand;
use chronik_core::quota::{self, NameMatch, QuotaEntity, QuotaOp, QuotaValue};
use kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasRequest,
    AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};

const USER: &str = quota::USER;
const CLIENT_ID: &str = quota::CLIENT_ID;
const IP: &str = quota::IP;

/// Kafka's `ClientQuotaFilterComponent` match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

pub fn describe(ctx: &Ctx<'_>, req: DescribeClientQuotasRequest) -> DescribeClientQuotasResponse {
    if let Err((e, msg)) = validate(&req) {
        return DescribeClientQuotasResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(str_bytes(msg)))
            .with_entries(None);
    }
    let filter: Vec<(String, NameMatch)> = req
        .components
        .iter()
        .map(|c| {
            let m = match (c.match_type, &c._match) {
                (MATCH_EXACT, Some(n)) => NameMatch::Exact(n.to_string()),
                (MATCH_DEFAULT, _) => NameMatch::Default,
                _ => NameMatch::Specified,
            };
            (c.entity_type.to_string(), m)
        })
        .collect();
    let meta = ctx.broker.meta();
    let entries = meta
        .quotas
        .iter()
        .filter(|(entity, _)| quota::matches(entity, &filter, req.strict))
        .map(|(entity, values)| {
            use describe_client_quotas_response::{EntityData, EntryData, ValueData};
            EntryData::default()
                .with_entity(
                    entity
                        .iter()
                        .map(|(t, n)| {
                            EntityData::default()
                                .with_entity_type(str_bytes(t.as_str()))
                                .with_entity_name(n.as_deref().map(str_bytes))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(k, v)| {
                            ValueData::default()
                                .with_key(str_bytes(k.as_str()))
                                .with_value(v.0)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

/// AlterClientQuotas: each entry is checked on its own (INVALID_REQUEST with Kafka's message);
/// the valid ones are applied in one metadata command unless `validate_only`.
pub async fn alter(ctx: &Ctx<'_>, req: AlterClientQuotasRequest) -> AlterClientQuotasResponse {
    use alter_client_quotas_response::{EntityData, EntryData};
    let meta = ctx.broker.meta();
    let mut results = Vec::with_capacity(req.entries.len());
    let mut alterations: Vec<(QuotaEntity, Vec<QuotaOp>)> = Vec::new();
    let mut new_entities = 0usize;
    for entry in &req.entries {
        let entity: Vec<(String, Option<String>)> = entry
            .entity
            .iter()
            .map(|e| {
                (
                    e.entity_type.to_string(),
                    e.entity_name.as_ref().map(|n| n.to_string()),
                )
            })
            .collect();
        let mut keys = BTreeSet::new();
        let ops: Vec<QuotaOp> = entry
            .ops
            .iter()
            .map(|o| {
                let value = (!o.remove).then_some(QuotaValue(o.value));
                (o.key.to_string(), value)
            })
            .collect();
        let checked = match ops.iter().find(|(k, _)| !keys.insert(k.as_str())) {
            Some((k, _)) => Err(format!("Duplicate quota key {k} in the request")),
            None => quota::validate_alteration(&entity, &ops),
        };
        let checked = checked.and_then(|e| {
            let adds = !meta.quotas.contains_key(&e) && ops.iter().any(|(_, v)| v.is_some());
            if adds && meta.quotas.len() + new_entities >= quota::MAX_ENTITIES {
                return Err(format!(
                    "Too many client quota entities (at most {})",
                    quota::MAX_ENTITIES
                ));
            }
            new_entities += usize::from(adds);
            Ok(e)
        });
        let (code, message) = match checked {
            Ok(e) => {
                alterations.push((e, ops));
                (0, None)
            }
            Err(msg) => (ResponseError::InvalidRequest.code(), Some(str_bytes(msg))),
        };
        results.push(
            EntryData::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_entity(
                    entry
                        .entity
                        .iter()
                        .map(|e| {
                            EntityData::default()
                                .with_entity_type(e.entity_type.clone())
                                .with_entity_name(e.entity_name.clone())
                        })
                        .collect(),
                ),
        );
    }
    if !req.validate_only && !alterations.is_empty() {
        if let Err(e) = ctx
            .broker
            .propose_meta(MetaCommand::AlterClientQuotas { alterations })
            .await
        {
            let code = e.kafka_code();
            for r in results.iter_mut().filter(|r| r.error_code == 0) {
                r.error_code = code;
                r.error_message = Some(str_bytes(e.to_string()));
            }
        }
    }
    AlterClientQuotasResponse::default().with_entries(results)
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
        match validate(&DescribeClientQuotasRequest::default().with_components(components)) {
            Ok(()) => 0,
            Err((e, _)) => e.code(),
        }
    }

    #[test]
    fn filters_are_validated_like_kafka() {
        assert_eq!(code(vec![]), 0);
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
        assert_eq!(code(vec![comp("x", 2, None)]), 35);
    }
}
