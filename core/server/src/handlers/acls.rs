//! DescribeAcls (key 29), CreateAcls (key 30) and DeleteAcls (key 31), versions 1–3.
//!
//! This broker has no authorizer: every client may do everything, so there are no ACLs to list
//! and none can be stored. Kafka without `authorizer.class.name` answers exactly this way, with
//! SECURITY_DISABLED and these messages, and admin tools report it as "security is disabled".

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::ResponseError;

use super::str_bytes;

/// Kafka's ACL operation codes (`AclOperation`) that the resource types below support.
const READ: u8 = 3;
const WRITE: u8 = 4;
const CREATE: u8 = 5;
const DELETE: u8 = 6;
const ALTER: u8 = 7;
const DESCRIBE: u8 = 8;
const CLUSTER_ACTION: u8 = 9;
const DESCRIBE_CONFIGS: u8 = 10;
const ALTER_CONFIGS: u8 = 11;
const IDEMPOTENT_WRITE: u8 = 12;

/// Kafka's `Utils.to32BitField`: bit `code` set for every operation.
const fn bit_field(ops: &[u8]) -> i32 {
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
/// DescribeGroups, DescribeTopicPartitions). With no authorizer Kafka reports every operation
/// the resource type supports (`AclEntry.supportedOperations`), and so does this broker.
pub const TOPIC_OPERATIONS: i32 = bit_field(&[
    READ,
    WRITE,
    CREATE,
    DESCRIBE,
    DELETE,
    ALTER,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
]);
pub const GROUP_OPERATIONS: i32 = bit_field(&[READ, DESCRIBE, DELETE]);
pub const CLUSTER_OPERATIONS: i32 = bit_field(&[
    CREATE,
    CLUSTER_ACTION,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
    IDEMPOTENT_WRITE,
    ALTER,
    DESCRIBE,
]);
/// What a response carries when the client did not ask (Kafka's `Integer.MIN_VALUE`).
pub const NOT_REQUESTED: i32 = i32::MIN;

/// Kafka's messages (`AclApis`): Describe says "broker", Create and Delete do not.
const DESCRIBE_MESSAGE: &str = "No Authorizer is configured on the broker";
const CHANGE_MESSAGE: &str = "No Authorizer is configured.";

pub fn describe(_req: DescribeAclsRequest) -> DescribeAclsResponse {
    DescribeAclsResponse::default()
        .with_error_code(ResponseError::SecurityDisabled.code())
        .with_error_message(Some(str_bytes(DESCRIBE_MESSAGE)))
}

pub fn create(req: CreateAclsRequest) -> CreateAclsResponse {
    let results = req
        .creations
        .iter()
        .map(|_| {
            AclCreationResult::default()
                .with_error_code(ResponseError::SecurityDisabled.code())
                .with_error_message(Some(str_bytes(CHANGE_MESSAGE)))
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub fn delete(req: DeleteAclsRequest) -> DeleteAclsResponse {
    let filter_results = req
        .filters
        .iter()
        .map(|_| {
            DeleteAclsFilterResult::default()
                .with_error_code(ResponseError::SecurityDisabled.code())
                .with_error_message(Some(str_bytes(CHANGE_MESSAGE)))
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(filter_results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;

    #[test]
    fn every_creation_and_filter_gets_security_disabled() {
        let r = create(
            CreateAclsRequest::default()
                .with_creations(vec![AclCreation::default(), AclCreation::default()]),
        );
        assert_eq!(r.results.len(), 2);
        assert!(r.results.iter().all(|x| x.error_code == 54));
        let r =
            delete(DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()]));
        assert_eq!(r.filter_results.len(), 1);
        assert_eq!(r.filter_results[0].error_code, 54);
        let r = describe(DescribeAclsRequest::default());
        assert_eq!(r.error_code, 54);
        assert!(r.resources.is_empty());
    }

    #[test]
    fn operation_bit_fields_are_kafkas() {
        // Bits as Kafka's Utils.to32BitField sets them for AclEntry.supportedOperations.
        assert_eq!(TOPIC_OPERATIONS, 0b1101_1111_1000);
        assert_eq!(GROUP_OPERATIONS, 0b1_0100_1000);
        assert_eq!(CLUSTER_OPERATIONS, 0b1_1111_1010_0000);
        assert_eq!(bit_field(&[]), 0);
    }
}
