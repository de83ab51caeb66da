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
}
