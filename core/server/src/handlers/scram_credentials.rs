//! SCRAM credentials: DescribeUserScramCredentials (key 50) and AlterUserScramCredentials
//! (key 51), version 0 each.
//!
//! Credentials live in the replicated metadata (`MetaState::scram`), so they survive restarts
//! and, in a cluster, reach every node. The client sends the salt and the salted password, never
//! the password. Validation follows Kafka's controller: one alteration per user per request
//! (DUPLICATE_RESOURCE otherwise), SCRAM-SHA-256 (1) and SCRAM-SHA-512 (2) only
//! (UNSUPPORTED_SASL_MECHANISM), 4096..=16384 iterations (UNACCEPTABLE_CREDENTIAL), and deleting a
//! credential that does not exist is RESOURCE_NOT_FOUND. A user whose alteration fails is left
//! unchanged; the other users' alterations in the request still apply.

use std::collections::BTreeMap;

use chronik_core::meta::{MetaCommand, MetaState, ScramCredential};
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};

/// Kafka's SCRAM mechanism codes.
pub const SCRAM_SHA_256: i8 = 1;
pub const SCRAM_SHA_512: i8 = 2;
/// Kafka's iteration bounds for both mechanisms (`ScramMechanism.minIterations/maxIterations`).
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

fn known_mechanism(m: i8) -> bool {
    m == SCRAM_SHA_256 || m == SCRAM_SHA_512
}

pub fn describe(
    ctx: &Ctx<'_>,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let meta = ctx.broker.meta();
    describe_in(&meta, req)
}

fn describe_in(
    meta: &MetaState,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let infos = |creds: &BTreeMap<i8, ScramCredential>| -> Vec<CredentialInfo> {
        creds
            .iter()
            .map(|(&m, c)| {
                CredentialInfo::default()
                    .with_mechanism(m)
                    .with_iterations(c.iterations)
            })
            .collect()
    };
    let named: Vec<&str> = req
        .users
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    let mut results: Vec<DescribeUserScramCredentialsResult> = Vec::new();
    if named.is_empty() {
        // Null or empty: every user that has a credential.
        for (user, creds) in &meta.scram {
            results.push(
                DescribeUserScramCredentialsResult::default()
                    .with_user(str_bytes(user.as_str()))
                    .with_credential_infos(infos(creds)),
            );
        }
    }
    for (i, &user) in named.iter().enumerate() {
        if named[..i].contains(&user) {
            continue; // answered once, as DUPLICATE_RESOURCE
        }
        let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user));
        let result = if named[i + 1..].contains(&user) {
            result
                .with_error_code(ResponseError::DuplicateResource.code())
                .with_error_message(Some(str_bytes(format!(
                    "Cannot describe SCRAM credentials for the same user twice in a single \
                     request: {user}"
                ))))
        } else if let Some(creds) = meta.scram.get(user) {
            result.with_credential_infos(infos(creds))
        } else {
            result
                .with_error_code(ResponseError::ResourceNotFound.code())
                .with_error_message(Some(str_bytes(format!(
                    "Attempt to describe a user credential that does not exist: {user}"
                ))))
        };
        results.push(result);
    }
    DescribeUserScramCredentialsResponse::default()
        .with_error_message(None)
        .with_results(results)
}

pub async fn alter(
    ctx: &Ctx<'_>,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let meta = ctx.broker.meta();
    let (cmd, mut results) = plan(&meta, &req);
    if let Some(cmd) = cmd {
        if let Err(e) = ctx.broker.propose_meta(cmd).await {
            // Nothing was applied: every user that was going to succeed fails with the reason.
            for r in results.iter_mut().filter(|r| r.error_code == 0) {
                r.error_code = e.kafka_code();
                r.error_message = Some(str_bytes(e.to_string()));
            }
        }
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

/// Validates `req` against `meta`: the command applying every valid user's alteration (`None`
/// when there is none) and one result per user, in order of first mention.
fn plan(
    meta: &MetaState,
    req: &AlterUserScramCredentialsRequest,
) -> (Option<MetaCommand>, Vec<AlterUserScramCredentialsResult>) {
    // Users in order of first mention, and how many alterations name each.
    let mut order: Vec<&str> = Vec::new();
    let mut mentions: BTreeMap<&str, usize> = BTreeMap::new();
    let names = req
        .deletions
        .iter()
        .map(|d| d.name.as_str())
        .chain(req.upsertions.iter().map(|u| u.name.as_str()));
    for name in names {
        let n = mentions.entry(name).or_insert(0);
        if *n == 0 {
            order.push(name);
        }
        *n += 1;
    }
    let mut errors: BTreeMap<&str, (ResponseError, String)> = BTreeMap::new();
    let mut fail = |user: &str, e: ResponseError, msg: &str| {
        let owned = order.iter().find(|&&u| u == user).copied();
        if let Some(u) = owned {
            errors.entry(u).or_insert((e, msg.to_string()));
        }
    };
    for (&user, &n) in &mentions {
        if n > 1 {
            fail(
                user,
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request",
            );
        } else if user.is_empty() {
            fail(
                user,
                ResponseError::UnacceptableCredential,
                "Username must not be empty",
            );
        }
    }
    for d in &req.deletions {
        let user = d.name.as_str();
        if !known_mechanism(d.mechanism) {
            fail(
                user,
                ResponseError::UnsupportedSaslMechanism,
                "Unknown SCRAM mechanism",
            );
        } else if !meta
            .scram
            .get(user)
            .is_some_and(|c| c.contains_key(&d.mechanism))
        {
            fail(
                user,
                ResponseError::ResourceNotFound,
                "Attempt to delete a user credential that does not exist",
            );
        }
    }
    for u in &req.upsertions {
        let user = u.name.as_str();
        if !known_mechanism(u.mechanism) {
            fail(
                user,
                ResponseError::UnsupportedSaslMechanism,
                "Unknown SCRAM mechanism",
            );
        } else if u.iterations < MIN_ITERATIONS {
            fail(
                user,
                ResponseError::UnacceptableCredential,
                "Too few iterations",
            );
        } else if u.iterations > MAX_ITERATIONS {
            fail(
                user,
                ResponseError::UnacceptableCredential,
                "Too many iterations",
            );
        } else if u.salt.is_empty() || u.salted_password.is_empty() {
            fail(
                user,
                ResponseError::UnacceptableCredential,
                "Salt and salted password must not be empty",
            );
        }
    }
    let deletions: Vec<(String, i8)> = req
        .deletions
        .iter()
        .filter(|d| !errors.contains_key(d.name.as_str()))
        .map(|d| (d.name.to_string(), d.mechanism))
        .collect();
    let upsertions: Vec<(String, i8, ScramCredential)> = req
        .upsertions
        .iter()
        .filter(|u| !errors.contains_key(u.name.as_str()))
        .map(|u| {
            let cred = ScramCredential {
                salt: u.salt.to_vec(),
                salted_password: u.salted_password.to_vec(),
                iterations: u.iterations,
            };
            (u.name.to_string(), u.mechanism, cred)
        })
        .collect();
    let results = order
        .iter()
        .map(|&user| {
            let r = AlterUserScramCredentialsResult::default().with_user(str_bytes(user));
            match errors.get(user) {
                Some((e, msg)) => r
                    .with_error_code(e.code())
                    .with_error_message(Some(str_bytes(msg.as_str()))),
                None => r,
            }
        })
        .collect();
    let cmd = (!deletions.is_empty() || !upsertions.is_empty()).then_some(
        MetaCommand::AlterScramCredentials {
            deletions,
            upsertions,
        },
    );
    (cmd, results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::alter_user_scram_credentials_request::{
        ScramCredentialDeletion, ScramCredentialUpsertion,
    };
    use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;

    fn user(n: &str) -> UserName {
        UserName::default().with_name(str_bytes(n))
    }

    fn upsert(n: &str, mechanism: i8, iterations: i32) -> ScramCredentialUpsertion {
        ScramCredentialUpsertion::default()
            .with_name(str_bytes(n))
            .with_mechanism(mechanism)
            .with_iterations(iterations)
            .with_salt(vec![7u8; 16].into())
            .with_salted_password(vec![9u8; 32].into())
    }

    fn delete(n: &str, mechanism: i8) -> ScramCredentialDeletion {
        ScramCredentialDeletion::default()
            .with_name(str_bytes(n))
            .with_mechanism(mechanism)
    }

    /// Plans `req` and applies the command, as the metadata group would.
    fn run(meta: &mut MetaState, req: AlterUserScramCredentialsRequest) -> Vec<(String, i16)> {
        let (cmd, results) = plan(meta, &req);
        if let Some(cmd) = cmd {
            meta.apply(&cmd).unwrap();
        }
        results
            .into_iter()
            .map(|r| (r.user.to_string(), r.error_code))
            .collect()
    }

    /// (user, error code, [(mechanism, iterations)]) per result.
    type Described = Vec<(String, i16, Vec<(i8, i32)>)>;

    fn described(meta: &MetaState, users: Option<Vec<UserName>>) -> Described {
        describe_in(
            meta,
            DescribeUserScramCredentialsRequest::default().with_users(users),
        )
        .results
        .into_iter()
        .map(|r| {
            let infos = r
                .credential_infos
                .iter()
                .map(|c| (c.mechanism, c.iterations))
                .collect();
            (r.user.to_string(), r.error_code, infos)
        })
        .collect()
    }

    #[test]
    fn nobody_has_credentials_at_first() {
        let meta = MetaState::default();
        assert!(described(&meta, None).is_empty());
        assert!(described(&meta, Some(vec![])).is_empty());
        let got = described(&meta, Some(vec![user("alice"), user("bob"), user("alice")]));
        let codes: Vec<(&str, i16)> = got.iter().map(|(u, c, _)| (u.as_str(), *c)).collect();
        assert_eq!(codes, vec![("alice", 92), ("bob", 91)]);
    }

    #[test]
    fn upserts_are_described_and_deletes_remove_them() {
        let mut meta = MetaState::default();
        let r = run(
            &mut meta,
            AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                upsert("alice", SCRAM_SHA_256, 4096),
                upsert("bob", SCRAM_SHA_512, 8192),
            ]),
        );
        assert_eq!(r, vec![("alice".into(), 0), ("bob".into(), 0)]);
        // A second mechanism for alice in a later request.
        let r = run(
            &mut meta,
            AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsert(
                "alice",
                SCRAM_SHA_512,
                10000,
            )]),
        );
        assert_eq!(r, vec![("alice".into(), 0)]);
        assert_eq!(
            described(&meta, None),
            vec![
                ("alice".into(), 0, vec![(1, 4096), (2, 10000)]),
                ("bob".into(), 0, vec![(2, 8192)]),
            ]
        );
        let r = run(
            &mut meta,
            AlterUserScramCredentialsRequest::default().with_deletions(vec![
                delete("bob", SCRAM_SHA_512),
                delete("carol", SCRAM_SHA_256),
            ]),
        );
        assert_eq!(r, vec![("bob".into(), 0), ("carol".into(), 91)]);
        assert_eq!(
            described(&meta, Some(vec![user("bob"), user("alice")])),
            vec![
                ("bob".into(), 91, vec![]),
                ("alice".into(), 0, vec![(1, 4096), (2, 10000)]),
            ]
        );
    }

    #[test]
    fn invalid_alterations_fail_per_user_and_leave_others_applied() {
        let mut meta = MetaState::default();
        let r = run(
            &mut meta,
            AlterUserScramCredentialsRequest::default()
                .with_deletions(vec![
                    delete("dup", SCRAM_SHA_256),
                    delete("gone", SCRAM_SHA_256),
                ])
                .with_upsertions(vec![
                    upsert("dup", SCRAM_SHA_256, 4096),
                    upsert("few", SCRAM_SHA_256, 4095),
                    upsert("many", SCRAM_SHA_512, 16385),
                    upsert("mech", 3, 4096),
                    upsert("", SCRAM_SHA_256, 4096),
                    upsert("twice", SCRAM_SHA_256, 4096),
                    upsert("twice", SCRAM_SHA_512, 4096),
                    upsert("ok", SCRAM_SHA_256, 16384),
                ]),
        );
        assert_eq!(
            r,
            vec![
                ("dup".into(), 92),
                ("gone".into(), 91),
                ("few".into(), 93),
                ("many".into(), 93),
                ("mech".into(), 33),
                ("".into(), 93),
                ("twice".into(), 92),
                ("ok".into(), 0),
            ]
        );
        assert_eq!(
            described(&meta, None),
            vec![("ok".into(), 0, vec![(1, 16384)])]
        );
    }
}
