//! DescribeAcls (key 29), CreateAcls (key 30) and DeleteAcls (key 31), versions 1–3.
//!
//! ACLs live in `__meta` (`MetaCommand::CreateAcls`/`DeleteAcls`), so every node holds the same
//! set and it survives restarts. As on Redpanda, they can be stored and listed whether or not
//! `server.authorization_enabled` enforces them. Changing ACLs needs ALTER on the cluster and
//! listing them DESCRIBE, as on Kafka.

use chronik_core::acl::{self, AclBinding, AclFilter};
use chronik_core::meta::MetaCommand;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};

/// Kafka's `Utils.to32BitField`: bit `code` set for every operation.
const fn bit_field(ops: &[i8]) -> i32 {
    let mut bits = 0i32;
    let mut i = 0;
    // Bounded by the slice length.
    while i < ops.len() {
        bits |= 1 << ops[i];
        i += 1;
    }
    bits
}

/// The `*_authorized_operations` a client gets when it asks (Metadata, DescribeCluster,
/// DescribeGroups, DescribeTopicPartitions) while authorization is off: like Kafka without an
/// authorizer, every operation the resource type supports (`AclEntry.supportedOperations`).
pub const TOPIC_OPERATIONS: i32 = bit_field(acl::supported_operations(acl::resource::TOPIC));
pub const GROUP_OPERATIONS: i32 = bit_field(acl::supported_operations(acl::resource::GROUP));
pub const CLUSTER_OPERATIONS: i32 = bit_field(acl::supported_operations(acl::resource::CLUSTER));
/// What a response carries when the client did not ask (Kafka's `Integer.MIN_VALUE`).
pub const NOT_REQUESTED: i32 = i32::MIN;

/// The `*_authorized_operations` bit field for a resource: with authorization off every
/// operation the type supports (`all`), else those this client is allowed.
pub fn authorized_operations(ctx: &Ctx<'_>, resource_type: i8, name: &str, all: i32) -> i32 {
    if !ctx.authorizing() {
        return all;
    }
    acl::supported_operations(resource_type)
        .iter()
        .filter(|&&o| ctx.allowed(o, resource_type, name))
        .fold(0, |bits, &o| bits | (1 << o))
}

fn denied() -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    (
        ResponseError::ClusterAuthorizationFailed.code(),
        Some(str_bytes("Cluster authorization failed.")),
    )
}

fn invalid(msg: String) -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    (ResponseError::InvalidRequest.code(), Some(str_bytes(msg)))
}

/// The filter of a DescribeAcls request or a DeleteAcls filter (the same fields in both).
macro_rules! filter_of {
    ($f:expr) => {
        filter(
            $f.resource_type_filter,
            $f.resource_name_filter.as_ref(),
            $f.pattern_type_filter,
            $f.principal_filter.as_ref(),
            $f.host_filter.as_ref(),
            $f.operation,
            $f.permission_type,
        )
    };
}

fn filter(
    resource_type: i8,
    name: Option<&kafka_protocol::protocol::StrBytes>,
    pattern_type: i8,
    principal: Option<&kafka_protocol::protocol::StrBytes>,
    host: Option<&kafka_protocol::protocol::StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    let f = AclFilter {
        resource_type,
        resource_name: name.map(|s| s.as_str().to_string()),
        pattern_type,
        principal: principal.map(|s| s.as_str().to_string()),
        host: host.map(|s| s.as_str().to_string()),
        operation,
        permission,
    };
    f.validate().map(|()| f)
}

pub fn describe(ctx: &Ctx<'_>, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let resp = DescribeAclsResponse::default().with_error_message(None);
    if !ctx.cluster_allowed(acl::op::DESCRIBE) {
        let (code, msg) = denied();
        return resp.with_error_code(code).with_error_message(msg);
    }
    let f = match filter_of!(req) {
        Ok(f) => f,
        Err(msg) => {
            let (code, msg) = invalid(msg);
            return resp.with_error_code(code).with_error_message(msg);
        }
    };
    let meta = ctx.broker.meta();
    // The set is ordered by resource first, so each resource's ACLs are adjacent.
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for b in meta.acls.iter().filter(|b| f.matches(b)) {
        let same = resources.last().is_some_and(|r| {
            r.resource_type == b.resource_type
                && r.resource_name.as_str() == b.resource_name
                && r.pattern_type == b.pattern_type
        });
        if !same {
            resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(b.resource_type)
                    .with_resource_name(str_bytes(&b.resource_name))
                    .with_pattern_type(b.pattern_type),
            );
        }
        if let Some(r) = resources.last_mut() {
            r.acls.push(
                AclDescription::default()
                    .with_principal(str_bytes(&b.principal))
                    .with_host(str_bytes(&b.host))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission),
            );
        }
    }
    resp.with_resources(resources)
}

pub async fn create(ctx: &Ctx<'_>, req: CreateAclsRequest) -> CreateAclsResponse {
    let allowed = ctx.cluster_allowed(acl::op::ALTER);
    let mut results = Vec::with_capacity(req.creations.len());
    let mut valid = Vec::new();
    for c in &req.creations {
        let b = AclBinding {
            resource_type: c.resource_type,
            resource_name: c.resource_name.as_str().to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.as_str().to_string(),
            host: c.host.as_str().to_string(),
            operation: c.operation,
            permission: c.permission_type,
        };
        let (code, msg) = if !allowed {
            denied()
        } else {
            match b.validate() {
                Ok(()) => {
                    valid.push((results.len(), b));
                    (0, None)
                }
                Err(msg) => invalid(msg),
            }
        };
        results.push(
            AclCreationResult::default()
                .with_error_code(code)
                .with_error_message(msg),
        );
    }
    if !valid.is_empty() {
        let bindings = valid.iter().map(|(_, b)| b.clone()).collect();
        if let Err(e) = ctx
            .broker
            .propose_meta(MetaCommand::CreateAcls { bindings })
            .await
        {
            for (i, _) in &valid {
                results[*i] = AclCreationResult::default()
                    .with_error_code(e.kafka_code())
                    .with_error_message(Some(str_bytes(e.to_string())));
            }
        }
    }
    CreateAclsResponse::default().with_results(results)
}

pub async fn delete(ctx: &Ctx<'_>, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let allowed = ctx.cluster_allowed(acl::op::ALTER);
    let meta = ctx.broker.meta();
    let mut results = Vec::with_capacity(req.filters.len());
    let mut doomed: Vec<AclBinding> = Vec::new();
    for f in &req.filters {
        let parsed = filter_of!(f);
        let result = DeleteAclsFilterResult::default().with_error_message(None);
        results.push(match (allowed, parsed) {
            (false, _) => {
                let (code, msg) = denied();
                result.with_error_code(code).with_error_message(msg)
            }
            (true, Err(msg)) => {
                let (code, msg) = invalid(msg);
                result.with_error_code(code).with_error_message(msg)
            }
            (true, Ok(f)) => {
                let matching: Vec<DeleteAclsMatchingAcl> = meta
                    .acls
                    .iter()
                    .filter(|b| f.matches(b))
                    .map(|b| {
                        doomed.push(b.clone());
                        DeleteAclsMatchingAcl::default()
                            .with_error_message(None)
                            .with_resource_type(b.resource_type)
                            .with_resource_name(str_bytes(&b.resource_name))
                            .with_pattern_type(b.pattern_type)
                            .with_principal(str_bytes(&b.principal))
                            .with_host(str_bytes(&b.host))
                            .with_operation(b.operation)
                            .with_permission_type(b.permission)
                    })
                    .collect();
                result.with_matching_acls(matching)
            }
        });
    }
    if !doomed.is_empty() {
        doomed.sort();
        doomed.dedup();
        let cmd = MetaCommand::DeleteAcls { bindings: doomed };
        if let Err(e) = ctx.broker.propose_meta(cmd).await {
            for r in results.iter_mut().filter(|r| r.error_code == 0) {
                *r = DeleteAclsFilterResult::default()
                    .with_error_code(e.kafka_code())
                    .with_error_message(Some(str_bytes(e.to_string())));
            }
        }
    }
    DeleteAclsResponse::default().with_filter_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_bit_fields_are_kafkas() {
        // Bits as Kafka's Utils.to32BitField sets them for AclEntry.supportedOperations.
        assert_eq!(TOPIC_OPERATIONS, 0b1101_1111_1000);
        assert_eq!(GROUP_OPERATIONS, 0b1_0100_1000);
        assert_eq!(CLUSTER_OPERATIONS, 0b1_1111_1010_0000);
        assert_eq!(bit_field(&[]), 0);
    }
}
