//! DescribeUserScramCredentials (key 50), version 0.
//!
//! This broker authenticates no one with SCRAM and stores no SCRAM credentials
//! (AlterUserScramCredentials is not served), so no user has any: asking for every user lists
//! none, and each named user gets Kafka's RESOURCE_NOT_FOUND answer (DUPLICATE_RESOURCE for a
//! user named twice), with Kafka's messages.

use kafka_protocol::messages::describe_user_scram_credentials_response::DescribeUserScramCredentialsResult;
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;

use super::str_bytes;

pub fn handle(req: DescribeUserScramCredentialsRequest) -> DescribeUserScramCredentialsResponse {
    let users: Vec<&str> = req
        .users
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    let mut results: Vec<DescribeUserScramCredentialsResult> = Vec::new();
    for (i, &user) in users.iter().enumerate() {
        if users[..i].contains(&user) {
            continue; // answered once, as DUPLICATE_RESOURCE
        }
        let (error, message) = if users[i + 1..].contains(&user) {
            (
                ResponseError::DuplicateResource,
                format!(
                    "Cannot describe SCRAM credentials for the same user twice in a single \
                     request: {user}"
                ),
            )
        } else {
            (
                ResponseError::ResourceNotFound,
                format!("Attempt to describe a user credential that does not exist: {user}"),
            )
        };
        results.push(
            DescribeUserScramCredentialsResult::default()
                .with_user(str_bytes(user))
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(message))),
        );
    }
    DescribeUserScramCredentialsResponse::default()
        .with_error_message(None)
        .with_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;

    fn user(n: &str) -> UserName {
        UserName::default().with_name(str_bytes(n))
    }

    #[test]
    fn nobody_has_credentials() {
        let all = handle(DescribeUserScramCredentialsRequest::default().with_users(None));
        assert_eq!(all.error_code, 0);
        assert!(all.results.is_empty());
        let r = handle(
            DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
                user("alice"),
                user("bob"),
                user("alice"),
            ])),
        );
        let got: Vec<(&str, i16)> = r
            .results
            .iter()
            .map(|x| (x.user.as_str(), x.error_code))
            .collect();
        assert_eq!(got, vec![("alice", 92), ("bob", 91)]);
    }
}
