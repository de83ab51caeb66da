//! Access control lists as Kafka defines them (KIP-11, KIP-290): bindings, the filters that
//! DescribeAcls and DeleteAcls match them with, and the authorizer's decision.
//!
//! Codes are Kafka's wire codes (`ResourceType`, `PatternType`, `AclOperation`,
//! `AclPermissionType`), so bindings pass between the protocol and the `__meta` store unchanged.
//! The decision follows Kafka's `StandardAuthorizer`: super users may do everything; a matching
//! DENY wins over any ALLOW; an ALLOW for READ, WRITE, DELETE or ALTER also allows DESCRIBE, and
//! one for ALTER_CONFIGS also allows DESCRIBE_CONFIGS; a resource with no ACL at all is allowed
//! only when `allow_everyone_if_no_acl_found` is set.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// `ResourceType` codes.
pub mod resource {
    pub const UNKNOWN: i8 = 0;
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const DELEGATION_TOKEN: i8 = 6;
    pub const USER: i8 = 7;
}

/// `PatternType` codes.
pub mod pattern {
    pub const UNKNOWN: i8 = 0;
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
}

/// `AclOperation` codes.
pub mod op {
    pub const UNKNOWN: i8 = 0;
    pub const ANY: i8 = 1;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
    pub const CREATE_TOKENS: i8 = 13;
    pub const DESCRIBE_TOKENS: i8 = 14;
}

/// `AclPermissionType` codes.
pub mod permission {
    pub const UNKNOWN: i8 = 0;
    pub const ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// The name every cluster resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal resource name, principal or host that stands for every one.
pub const WILDCARD: &str = "*";
/// The principal of a connection that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// One ACL: who (principal, host) may or may not (permission) do what (operation) to which
/// resources (type, name, pattern type).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

/// The operations a resource type supports (`AclEntry.supportedOperations`).
pub const fn supported_operations(resource_type: i8) -> &'static [i8] {
    use op::*;
    match resource_type {
        resource::TOPIC => &[
            READ,
            WRITE,
            CREATE,
            DESCRIBE,
            DELETE,
            ALTER,
            DESCRIBE_CONFIGS,
            ALTER_CONFIGS,
        ],
        resource::GROUP => &[READ, DESCRIBE, DELETE],
        resource::CLUSTER => &[
            CREATE,
            CLUSTER_ACTION,
            DESCRIBE_CONFIGS,
            ALTER_CONFIGS,
            IDEMPOTENT_WRITE,
            ALTER,
            DESCRIBE,
        ],
        resource::TRANSACTIONAL_ID => &[DESCRIBE, WRITE],
        resource::DELEGATION_TOKEN => &[DESCRIBE],
        resource::USER => &[CREATE_TOKENS, DESCRIBE_TOKENS],
        _ => &[],
    }
}

impl AclBinding {
    /// Checks a binding to be created as Kafka's controller does; the message is Kafka's.
    pub fn validate(&self) -> Result<(), String> {
        if !(resource::TOPIC..=resource::USER).contains(&self.resource_type) {
            return Err("Invalid resourceType".into());
        }
        if !matches!(self.pattern_type, pattern::LITERAL | pattern::PREFIXED) {
            return Err("Invalid patternType".into());
        }
        if self.operation != op::ALL
            && !supported_operations(self.resource_type).contains(&self.operation)
        {
            return Err(
                if (op::ALL..=op::DESCRIBE_TOKENS).contains(&self.operation) {
                    format!(
                        "ACL operation {} is not supported for resource type {}",
                        op_name(self.operation),
                        resource_name(self.resource_type)
                    )
                } else {
                    "Invalid operation".into()
                },
            );
        }
        if !matches!(self.permission, permission::ALLOW | permission::DENY) {
            return Err("Invalid permissionType".into());
        }
        if self.resource_name.is_empty() {
            return Err("Resource name should not be empty".into());
        }
        if self.resource_type == resource::CLUSTER && self.resource_name != CLUSTER_NAME {
            return Err(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        parse_principal(&self.principal)?;
        Ok(())
    }
}

/// Splits `Type:name` (Kafka's `SecurityUtils.parseKafkaPrincipal`).
pub fn parse_principal(principal: &str) -> Result<(&str, &str), String> {
    match principal.split_once(':') {
        Some((kind, name)) if !kind.is_empty() => Ok((kind, name)),
        _ => Err(format!(
            "Could not parse principal from `{principal}` (no colon is present separating the \
             principal type from the principal name)"
        )),
    }
}

/// A filter over bindings (`AclBindingFilter`): `None` and the ANY codes match everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

impl AclFilter {
    /// A filter with an UNKNOWN code can match nothing meaningful; Kafka rejects it.
    pub fn validate(&self) -> Result<(), String> {
        if self.resource_type == resource::UNKNOWN
            || !(resource::UNKNOWN..=resource::USER).contains(&self.resource_type)
        {
            return Err("Invalid resourceType".into());
        }
        if !(pattern::ANY..=pattern::PREFIXED).contains(&self.pattern_type) {
            return Err("Invalid patternType".into());
        }
        if !(op::ANY..=op::DESCRIBE_TOKENS).contains(&self.operation) {
            return Err("Invalid operation".into());
        }
        if !(permission::ANY..=permission::ALLOW).contains(&self.permission) {
            return Err("Invalid permissionType".into());
        }
        Ok(())
    }

    /// Kafka's `ResourcePatternFilter.matches` and `AccessControlEntryFilter.matches`.
    pub fn matches(&self, b: &AclBinding) -> bool {
        if self.resource_type != resource::ANY && self.resource_type != b.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, pattern::ANY | pattern::MATCH)
            && self.pattern_type != b.pattern_type
        {
            return false;
        }
        let name_ok = match &self.resource_name {
            None => true,
            Some(name)
                if self.pattern_type == pattern::ANY || self.pattern_type == b.pattern_type =>
            {
                *name == b.resource_name
            }
            // MATCH: the bindings that would apply to a resource of this name.
            Some(name) => match b.pattern_type {
                pattern::LITERAL => *name == b.resource_name || b.resource_name == WILDCARD,
                pattern::PREFIXED => name.starts_with(&b.resource_name),
                _ => false,
            },
        };
        name_ok
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && (self.operation == op::ANY || self.operation == b.operation)
            && (self.permission == permission::ANY || self.permission == b.permission)
    }
}

/// Who is asking: the connection's principal (`User:name`) and client address.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// The authorizer's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Principals (`User:name`) allowed everything.
    pub super_users: Vec<String>,
    /// Allow an operation on a resource that no ACL names at all.
    pub allow_everyone_if_no_acl_found: bool,
}

/// Whether `who` may do `operation` on the resource (`resource_type`, `name`).
pub fn authorize(
    acls: &BTreeSet<AclBinding>,
    policy: &Policy,
    who: Requester<'_>,
    operation: i8,
    resource_type: i8,
    name: &str,
) -> bool {
    if policy.super_users.iter().any(|s| s == who.principal) {
        return true;
    }
    let mut any_acl = false;
    let mut allowed = false;
    for b in acls.iter().filter(|b| b.resource_type == resource_type) {
        let applies = match b.pattern_type {
            pattern::LITERAL => b.resource_name == name || b.resource_name == WILDCARD,
            pattern::PREFIXED => name.starts_with(b.resource_name.as_str()),
            _ => false,
        };
        if !applies {
            continue;
        }
        any_acl = true;
        if !(b.principal == who.principal || b.principal == "User:*")
            || !(b.host == who.host || b.host == WILDCARD)
        {
            continue;
        }
        if b.permission == permission::DENY {
            if b.operation == operation || b.operation == op::ALL {
                return false;
            }
        } else if b.operation == operation
            || b.operation == op::ALL
            || implies(b.operation, operation)
        {
            allowed = true;
        }
    }
    allowed || (!any_acl && policy.allow_everyone_if_no_acl_found)
}

/// Whether `who` may do `operation` on some resource of the type (Kafka's
/// `authorizeByResourceType`, used for idempotent producers: WRITE on any topic). Simplified
/// from Kafka's: some ALLOW for the operation applies to this client and no DENY for it
/// covers every name (a literal `*` or an empty prefix).
pub fn authorize_any(
    acls: &BTreeSet<AclBinding>,
    policy: &Policy,
    who: Requester<'_>,
    operation: i8,
    resource_type: i8,
) -> bool {
    if policy.super_users.iter().any(|s| s == who.principal) {
        return true;
    }
    let mine = |b: &&AclBinding| {
        b.resource_type == resource_type
            && (b.principal == who.principal || b.principal == "User:*")
            && (b.host == who.host || b.host == WILDCARD)
            && (b.operation == operation || b.operation == op::ALL)
    };
    let denied_everywhere = acls.iter().filter(mine).any(|b| {
        b.permission == permission::DENY
            && ((b.pattern_type == pattern::LITERAL && b.resource_name == WILDCARD)
                || (b.pattern_type == pattern::PREFIXED && b.resource_name.is_empty()))
    });
    if denied_everywhere {
        return false;
    }
    let any_of_type = acls.iter().any(|b| b.resource_type == resource_type);
    acls.iter()
        .filter(mine)
        .any(|b| b.permission == permission::ALLOW)
        || (!any_of_type && policy.allow_everyone_if_no_acl_found)
}

/// An ALLOW for `granted` also allows `wanted` (Kafka's implicit DESCRIBE permissions).
fn implies(granted: i8, wanted: i8) -> bool {
    match wanted {
        op::DESCRIBE => matches!(granted, op::READ | op::WRITE | op::DELETE | op::ALTER),
        op::DESCRIBE_CONFIGS => granted == op::ALTER_CONFIGS,
        _ => false,
    }
}

fn op_name(code: i8) -> &'static str {
    const NAMES: [&str; 15] = [
        "UNKNOWN",
        "ANY",
        "ALL",
        "READ",
        "WRITE",
        "CREATE",
        "DELETE",
        "ALTER",
        "DESCRIBE",
        "CLUSTER_ACTION",
        "DESCRIBE_CONFIGS",
        "ALTER_CONFIGS",
        "IDEMPOTENT_WRITE",
        "CREATE_TOKENS",
        "DESCRIBE_TOKENS",
    ];
    NAMES.get(code as usize).copied().unwrap_or("UNKNOWN")
}

fn resource_name(code: i8) -> &'static str {
    const NAMES: [&str; 8] = [
        "UNKNOWN",
        "ANY",
        "TOPIC",
        "GROUP",
        "CLUSTER",
        "TRANSACTIONAL_ID",
        "DELEGATION_TOKEN",
        "USER",
    ];
    NAMES.get(code as usize).copied().unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(rt: i8, name: &str, pt: i8, who: &str, operation: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: who.into(),
            host: "*".into(),
            operation,
            permission: perm,
        }
    }

    fn any_filter() -> AclFilter {
        AclFilter {
            resource_type: resource::ANY,
            resource_name: None,
            pattern_type: pattern::ANY,
            principal: None,
            host: None,
            operation: op::ANY,
            permission: permission::ANY,
        }
    }

    const ALICE: Requester = Requester {
        principal: "User:alice",
        host: "127.0.0.1",
    };

    #[test]
    fn validation_rejects_what_kafka_rejects() {
        let ok = acl(
            resource::TOPIC,
            "t",
            pattern::LITERAL,
            "User:a",
            op::READ,
            permission::ALLOW,
        );
        assert_eq!(ok.validate(), Ok(()));
        let bad = |f: fn(&mut AclBinding)| {
            let mut b = ok.clone();
            f(&mut b);
            b.validate().unwrap_err()
        };
        assert_eq!(
            bad(|b| b.resource_type = resource::ANY),
            "Invalid resourceType"
        );
        assert_eq!(
            bad(|b| b.pattern_type = pattern::MATCH),
            "Invalid patternType"
        );
        assert_eq!(bad(|b| b.operation = op::ANY), "Invalid operation");
        assert!(bad(|b| b.operation = op::CLUSTER_ACTION).contains("not supported"));
        assert_eq!(
            bad(|b| b.permission = permission::ANY),
            "Invalid permissionType"
        );
        assert!(bad(|b| b.principal = "alice".into()).contains("no colon"));
        assert!(bad(|b| b.resource_name.clear()).contains("empty"));
        assert!(bad(|b| {
            b.resource_type = resource::CLUSTER;
            b.operation = op::ALTER;
        })
        .contains(CLUSTER_NAME));
    }

    #[test]
    fn filters_match_as_kafka_does() {
        let lit = acl(
            resource::TOPIC,
            "orders",
            pattern::LITERAL,
            "User:a",
            op::READ,
            permission::ALLOW,
        );
        let star = acl(
            resource::TOPIC,
            "*",
            pattern::LITERAL,
            "User:a",
            op::READ,
            permission::ALLOW,
        );
        let pre = acl(
            resource::TOPIC,
            "ord",
            pattern::PREFIXED,
            "User:b",
            op::WRITE,
            permission::DENY,
        );
        let f = any_filter();
        assert!([&lit, &star, &pre].iter().all(|b| f.matches(b)));
        // MATCH: every binding that applies to "orders".
        let m = AclFilter {
            resource_name: Some("orders".into()),
            pattern_type: pattern::MATCH,
            ..any_filter()
        };
        assert!(m.matches(&lit) && m.matches(&star) && m.matches(&pre));
        // ANY with a name: exact names only, whatever the pattern type.
        let a = AclFilter {
            resource_name: Some("ord".into()),
            ..any_filter()
        };
        assert!(!a.matches(&lit) && !a.matches(&star) && a.matches(&pre));
        let l = AclFilter {
            resource_name: Some("orders".into()),
            pattern_type: pattern::LITERAL,
            ..any_filter()
        };
        assert!(l.matches(&lit) && !l.matches(&star) && !l.matches(&pre));
        let by_entry = AclFilter {
            principal: Some("User:b".into()),
            permission: permission::DENY,
            ..any_filter()
        };
        assert!(!by_entry.matches(&lit) && by_entry.matches(&pre));
        let wrong_type = AclFilter {
            resource_type: resource::GROUP,
            ..any_filter()
        };
        assert!(!wrong_type.matches(&lit));
        assert!(AclFilter {
            resource_type: resource::UNKNOWN,
            ..any_filter()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn authorizer_decides_as_kafkas_standard_authorizer() {
        let policy = Policy::default();
        let mut acls = BTreeSet::new();
        let can = |acls: &BTreeSet<AclBinding>, policy: &Policy, o: i8, name: &str| {
            authorize(acls, policy, ALICE, o, resource::TOPIC, name)
        };
        // No ACL at all: denied unless the policy says otherwise.
        assert!(!can(&acls, &policy, op::READ, "orders"));
        let open = Policy {
            allow_everyone_if_no_acl_found: true,
            ..Policy::default()
        };
        assert!(can(&acls, &open, op::READ, "orders"));
        acls.insert(acl(
            resource::TOPIC,
            "ord",
            pattern::PREFIXED,
            "User:alice",
            op::READ,
            permission::ALLOW,
        ));
        assert!(can(&acls, &policy, op::READ, "orders"));
        assert!(
            can(&acls, &policy, op::DESCRIBE, "orders"),
            "READ implies DESCRIBE"
        );
        assert!(!can(&acls, &policy, op::WRITE, "orders"));
        assert!(!can(&acls, &policy, op::READ, "other"));
        // An ACL for someone else still makes the resource "named": no fallback to open.
        acls.insert(acl(
            resource::TOPIC,
            "other",
            pattern::LITERAL,
            "User:bob",
            op::READ,
            permission::ALLOW,
        ));
        assert!(!can(&acls, &open, op::READ, "other"));
        // DENY wins, for its operation and for ALL; a DENY of DESCRIBE does not stop READ.
        acls.insert(acl(
            resource::TOPIC,
            "orders",
            pattern::LITERAL,
            "User:*",
            op::DESCRIBE,
            permission::DENY,
        ));
        assert!(can(&acls, &policy, op::READ, "orders"));
        assert!(!can(&acls, &policy, op::DESCRIBE, "orders"));
        acls.insert(acl(
            resource::TOPIC,
            "*",
            pattern::LITERAL,
            "User:alice",
            op::ALL,
            permission::DENY,
        ));
        assert!(!can(&acls, &policy, op::READ, "orders"));
        // Hosts: an ACL for another host does not apply.
        let mut hosts = BTreeSet::new();
        let mut b = acl(
            resource::TOPIC,
            "t",
            pattern::LITERAL,
            "User:alice",
            op::WRITE,
            permission::ALLOW,
        );
        b.host = "10.0.0.1".into();
        hosts.insert(b);
        assert!(!can(&hosts, &policy, op::WRITE, "t"));
        // Super users skip every check.
        let sup = Policy {
            super_users: vec!["User:alice".into()],
            ..Policy::default()
        };
        assert!(can(&acls, &sup, op::READ, "orders"));
        // ALTER_CONFIGS implies DESCRIBE_CONFIGS.
        let mut cfg = BTreeSet::new();
        cfg.insert(acl(
            resource::TOPIC,
            "t",
            pattern::LITERAL,
            "User:alice",
            op::ALTER_CONFIGS,
            permission::ALLOW,
        ));
        assert!(can(&cfg, &policy, op::DESCRIBE_CONFIGS, "t"));
        assert!(!can(&cfg, &policy, op::DESCRIBE, "t"));
    }

    #[test]
    fn write_on_any_topic_is_found_by_resource_type() {
        let policy = Policy::default();
        let mut acls = BTreeSet::new();
        let any = |acls: &BTreeSet<AclBinding>| {
            authorize_any(acls, &policy, ALICE, op::WRITE, resource::TOPIC)
        };
        assert!(!any(&acls));
        acls.insert(acl(
            resource::TOPIC,
            "logs-",
            pattern::PREFIXED,
            "User:alice",
            op::WRITE,
            permission::ALLOW,
        ));
        assert!(any(&acls));
        let mut read_only = BTreeSet::new();
        read_only.insert(acl(
            resource::TOPIC,
            "t",
            pattern::LITERAL,
            "User:alice",
            op::READ,
            permission::ALLOW,
        ));
        assert!(!any(&read_only));
        acls.insert(acl(
            resource::TOPIC,
            "*",
            pattern::LITERAL,
            "User:alice",
            op::ALL,
            permission::DENY,
        ));
        assert!(!any(&acls));
    }
}
