//! Client quotas: what AlterClientQuotas stores, how DescribeClientQuotas filters match it, which
//! quota applies to a request, and the windowed rate a quota is measured against.
//!
//! Entities and keys follow Kafka (KIP-546, `ClientQuotaControlManager`, `ClientQuotaManager`):
//! an entity is a set of (type, name) pairs over `user`, `client-id` and `ip` (ip alone); a
//! missing name is the *default* entity of that type. Byte-rate quotas resolve, for a request of
//! user `u` with client id `c`, by Kafka's precedence:
//!
//! 1. user=u, client-id=c  2. user=u, client-id=default  3. user=u
//! 4. user=default, client-id=c  5. user=default, client-id=default  6. user=default
//! 7. client-id=c  8. client-id=default
//!
//! and the rate is measured per the *matched* entity with its defaults filled in by the request
//! (a default quota limits each user or client id separately, not all of them together).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// Quota keys a user / client-id entity may carry, and whether they are integral (Kafka LONG).
const CLIENT_KEYS: [(&str, bool); 4] = [
    (PRODUCER_BYTE_RATE, true),
    (CONSUMER_BYTE_RATE, true),
    (REQUEST_PERCENTAGE, false),
    (CONTROLLER_MUTATION_RATE, false),
];
/// Quota keys an ip entity may carry (Kafka INT).
const IP_KEYS: [(&str, bool); 1] = [(CONNECTION_CREATION_RATE, true)];

/// Bound on stored quota entities (each AlterClientQuotas entry may add one).
pub const MAX_ENTITIES: usize = 100_000;
/// Bound on entity names (user names, client ids, addresses).
pub const MAX_NAME_BYTES: usize = 4096;

/// (type, name) pairs sorted by type; `None` names the default entity of that type.
pub type QuotaEntity = Vec<(String, Option<String>)>;

/// A quota value. Stored as its bits so metadata stays `Eq`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}

/// One change: set a key (`Some`) or remove it (`None`).
pub type QuotaOp = (String, Option<QuotaValue>);

/// Every stored quota: entity → key → value.
pub type Quotas = BTreeMap<QuotaEntity, BTreeMap<String, QuotaValue>>;

/// Serde for [`Quotas`] as a list of (entity, values): JSON map keys must be strings.
pub mod as_entries {
    use super::{QuotaEntity, QuotaValue, Quotas};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    type Entry = (QuotaEntity, BTreeMap<String, QuotaValue>);

    pub fn serialize<S: Serializer>(q: &Quotas, s: S) -> Result<S::Ok, S::Error> {
        let entries: Vec<(&QuotaEntity, &BTreeMap<String, QuotaValue>)> = q.iter().collect();
        entries.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Quotas, D::Error> {
        Ok(Vec::<Entry>::deserialize(d)?.into_iter().collect())
    }
}

/// Checks one AlterClientQuotas entry the way Kafka does and returns its entity in stored form.
/// `ops` are (key, Some(value) to set | None to remove). Errors are INVALID_REQUEST messages.
pub fn validate_alteration(
    entity: &[(String, Option<String>)],
    ops: &[QuotaOp],
) -> Result<QuotaEntity, String> {
    if entity.is_empty() {
        return Err("Invalid empty client quota entity".into());
    }
    let mut sorted: QuotaEntity = Vec::with_capacity(entity.len());
    for (ty, name) in entity {
        if ![USER, CLIENT_ID, IP].contains(&ty.as_str()) {
            return Err(format!("Unhandled client quota entity type: {ty}"));
        }
        if sorted.iter().any(|(t, _)| t == ty) {
            return Err(format!("Duplicate {ty} entity type in client quota entity"));
        }
        if name.as_ref().is_some_and(|n| n.len() > MAX_NAME_BYTES) {
            return Err(format!("The {ty} entity name is too long"));
        }
        if ty == IP {
            if let Some(n) = name {
                if n.parse::<std::net::IpAddr>().is_err() {
                    return Err(format!("{n} is not a valid IP or resolvable host."));
                }
            }
        }
        sorted.push((ty.clone(), name.clone()));
    }
    sorted.sort();
    let is_ip = sorted.iter().any(|(t, _)| t == IP);
    if is_ip && sorted.len() > 1 {
        return Err(
            "Invalid quota entity combination, IP entity should not be combined with \
                    User or ClientId"
                .into(),
        );
    }
    let keys: &[(&str, bool)] = if is_ip { &IP_KEYS } else { &CLIENT_KEYS };
    for (key, value) in ops {
        let Some(&(_, integral)) = keys.iter().find(|(k, _)| k == key) else {
            return Err(format!("Invalid configuration key {key}"));
        };
        if let Some(QuotaValue(v)) = value {
            if !v.is_finite() || *v < 0.0 {
                return Err(format!("Invalid value {v} for configuration key {key}"));
            }
            if integral && (v.fract() != 0.0 || *v > i64::MAX as f64) {
                return Err(format!(
                    "Integer value must be a whole number for configuration key {key}: {v}"
                ));
            }
        }
    }
    Ok(sorted)
}

/// Applies a validated alteration: sets and removes keys; an entity left without keys goes.
pub fn apply_alteration(quotas: &mut Quotas, entity: &QuotaEntity, ops: &[QuotaOp]) {
    let values = quotas.entry(entity.clone()).or_default();
    for (key, value) in ops {
        match value {
            Some(v) => {
                values.insert(key.clone(), *v);
            }
            None => {
                values.remove(key);
            }
        }
    }
    if values.is_empty() {
        quotas.remove(entity);
    }
}

/// A DescribeClientQuotas filter component: entity type and what its name must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameMatch {
    /// This exact name.
    Exact(String),
    /// The default entity of the type.
    Default,
    /// Any non-default name.
    Specified,
}

/// Whether `entity` matches the filter: every component is present and matches; with `strict`,
/// the entity has no other types.
pub fn matches(entity: &QuotaEntity, filter: &[(String, NameMatch)], strict: bool) -> bool {
    if strict && entity.len() != filter.len() {
        return false;
    }
    filter.iter().all(|(ty, m)| {
        entity.iter().any(|(t, name)| {
            t == ty
                && match (m, name) {
                    (NameMatch::Exact(want), Some(n)) => want == n,
                    (NameMatch::Default, None) => true,
                    (NameMatch::Specified, Some(_)) => true,
                    _ => false,
                }
        })
    })
}

/// The quota that applies to (user, client id) for `key`, by Kafka's precedence: the bound and
/// the identity its rate is measured under, `(user tag, client-id tag)` (empty when the
/// matched entity does not name that type).
pub fn resolve(quotas: &Quotas, key: &str, user: &str, client_id: &str) -> Option<Resolved> {
    if quotas.is_empty() {
        return None;
    }
    let u = |n: Option<&str>| (USER.to_owned(), n.map(str::to_owned));
    let c = |n: Option<&str>| (CLIENT_ID.to_owned(), n.map(str::to_owned));
    let levels: [(QuotaEntity, bool, bool); 8] = [
        (vec![c(Some(client_id)), u(Some(user))], true, true),
        (vec![c(None), u(Some(user))], true, true),
        (vec![u(Some(user))], true, false),
        (vec![c(Some(client_id)), u(None)], true, true),
        (vec![c(None), u(None)], true, true),
        (vec![u(None)], true, false),
        (vec![c(Some(client_id))], false, true),
        (vec![c(None)], false, true),
    ];
    for (entity, by_user, by_client) in levels {
        if let Some(v) = quotas.get(&entity).and_then(|vals| vals.get(key)) {
            return Some(Resolved {
                bound: v.0,
                user: if by_user {
                    user.to_owned()
                } else {
                    String::new()
                },
                client_id: if by_client {
                    client_id.to_owned()
                } else {
                    String::new()
                },
            });
        }
    }
    None
}

/// The `connection_creation_rate` of an address: its own entity, else the ip default.
pub fn resolve_ip(quotas: &Quotas, ip: &str) -> Option<f64> {
    if quotas.is_empty() {
        return None;
    }
    let own = vec![(IP.to_owned(), Some(ip.to_owned()))];
    let default = vec![(IP.to_owned(), None)];
    [own, default]
        .iter()
        .find_map(|e| quotas.get(e)?.get(CONNECTION_CREATION_RATE))
        .map(|v| v.0)
}

/// A resolved quota (see [`resolve`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub bound: f64,
    pub user: String,
    pub client_id: String,
}

/// Kafka's `quota.window.num` and `quota.window.size.seconds`.
pub const SAMPLES: usize = 11;
pub const SAMPLE_MS: i64 = 1000;

/// A rate over the last [`SAMPLES`] windows of [`SAMPLE_MS`] (Kafka's `Rate` with a
/// `SampledStat`): total recorded in live samples divided by the time they span, counted as at
/// least `SAMPLES - 1` windows so a fresh sensor does not read a burst as a huge rate.
#[derive(Clone, Debug, Default)]
pub struct Rate {
    /// (window start, total) per sample slot.
    samples: [(i64, f64); SAMPLES],
    current: usize,
    started: bool,
    last_ms: i64,
}

impl Rate {
    pub fn record(&mut self, value: f64, now_ms: i64) {
        self.last_ms = now_ms;
        if !self.started {
            self.started = true;
            self.samples[0] = (now_ms, 0.0);
            self.current = 0;
        }
        if now_ms >= self.samples[self.current].0 + SAMPLE_MS {
            self.current = (self.current + 1) % SAMPLES;
            self.samples[self.current] = (now_ms, 0.0);
        }
        self.samples[self.current].1 += value;
    }

    /// Rate per second at `now_ms`.
    pub fn measure(&self, now_ms: i64) -> f64 {
        if !self.started {
            return 0.0;
        }
        let horizon = SAMPLES as i64 * SAMPLE_MS;
        let live = self
            .samples
            .iter()
            .filter(|(start, _)| now_ms - start < horizon && *start <= now_ms);
        let (oldest, total) = live.fold((now_ms, 0.0), |(o, t), (s, v)| (o.min(*s), t + v));
        let elapsed = self.window_ms(now_ms, oldest);
        total * 1000.0 / elapsed as f64
    }

    fn window_ms(&self, now_ms: i64, oldest: i64) -> i64 {
        (now_ms - oldest).max((SAMPLES as i64 - 1) * SAMPLE_MS)
    }

    /// Kafka `ClientQuotaManager.throttleTime`: how long the client must pause for the rate to
    /// come back to `bound`, capped at the whole quota window.
    pub fn throttle_ms(&self, bound: f64, now_ms: i64) -> i64 {
        let rate = self.measure(now_ms);
        if rate <= bound {
            return 0;
        }
        let horizon = SAMPLES as i64 * SAMPLE_MS;
        if bound <= 0.0 {
            return horizon;
        }
        let oldest = self
            .samples
            .iter()
            .filter(|(start, _)| now_ms - start < horizon && *start <= now_ms)
            .map(|(s, _)| *s)
            .min()
            .unwrap_or(now_ms);
        let window = self.window_ms(now_ms, oldest) as f64;
        (((rate - bound) / bound * window).round() as i64).clamp(0, horizon)
    }

    /// When this rate last recorded anything.
    pub fn last_ms(&self) -> i64 {
        self.last_ms
    }
}

/// Kafka's controller-mutation quota measure (KIP-599): a token bucket holding at most the
/// quota's worth of the whole window (`rate × SAMPLES × SAMPLE_MS`), refilled at `rate` per
/// second. Mutations take tokens and may drive it negative; a client is over its quota while it
/// is negative, for `-tokens / rate` seconds.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f64,
    last_ms: i64,
}

impl TokenBucket {
    pub fn new(rate: f64, now_ms: i64) -> Self {
        TokenBucket {
            tokens: Self::burst(rate),
            last_ms: now_ms,
        }
    }

    fn burst(rate: f64) -> f64 {
        rate * (SAMPLES as i64 * SAMPLE_MS) as f64 / 1000.0
    }

    fn refill(&mut self, rate: f64, now_ms: i64) {
        let dt = (now_ms - self.last_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + rate * dt).min(Self::burst(rate));
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// Whether the client is over its quota now (a strict request's next mutation is refused).
    pub fn exceeded(&mut self, rate: f64, now_ms: i64) -> bool {
        self.refill(rate, now_ms);
        self.tokens < 0.0
    }

    pub fn record(&mut self, rate: f64, amount: f64, now_ms: i64) {
        self.refill(rate, now_ms);
        self.tokens -= amount;
    }

    /// How long until the bucket is back to zero.
    pub fn throttle_ms(&mut self, rate: f64, now_ms: i64) -> i64 {
        self.refill(rate, now_ms);
        if self.tokens >= 0.0 {
            return 0;
        }
        if rate <= 0.0 {
            return SAMPLES as i64 * SAMPLE_MS;
        }
        (-self.tokens / rate * 1000.0).ceil() as i64
    }

    pub fn last_ms(&self) -> i64 {
        self.last_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(parts: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        parts
            .iter()
            .map(|(t, n)| (t.to_string(), n.map(str::to_string)))
            .collect()
    }

    fn set(key: &str, v: f64) -> Vec<QuotaOp> {
        vec![(key.to_string(), Some(QuotaValue(v)))]
    }

    #[test]
    fn validation_follows_kafka() {
        let ok = validate_alteration(
            &e(&[(USER, Some("alice")), (CLIENT_ID, None)]),
            &set(PRODUCER_BYTE_RATE, 1024.0),
        )
        .unwrap();
        assert_eq!(ok, e(&[(CLIENT_ID, None), (USER, Some("alice"))]));
        let bad = |ent: &[(&str, Option<&str>)], ops: Vec<QuotaOp>| {
            validate_alteration(&e(ent), &ops).unwrap_err()
        };
        bad(&[], set(PRODUCER_BYTE_RATE, 1.0));
        bad(&[("group", Some("g"))], set(PRODUCER_BYTE_RATE, 1.0));
        bad(
            &[(USER, Some("a")), (USER, Some("b"))],
            set(PRODUCER_BYTE_RATE, 1.0),
        );
        bad(
            &[(IP, Some("1.2.3.4")), (USER, Some("a"))],
            set(CONNECTION_CREATION_RATE, 1.0),
        );
        bad(
            &[(IP, Some("not-an-ip"))],
            set(CONNECTION_CREATION_RATE, 1.0),
        );
        bad(&[(IP, None)], set(PRODUCER_BYTE_RATE, 1.0));
        bad(&[(USER, None)], set(CONNECTION_CREATION_RATE, 1.0));
        bad(&[(USER, None)], set("bogus", 1.0));
        bad(&[(USER, None)], set(PRODUCER_BYTE_RATE, 1.5));
        bad(&[(USER, None)], set(PRODUCER_BYTE_RATE, -1.0));
        bad(&[(USER, None)], set(REQUEST_PERCENTAGE, f64::NAN));
        validate_alteration(&e(&[(USER, None)]), &set(REQUEST_PERCENTAGE, 12.5)).unwrap();
        validate_alteration(
            &e(&[(IP, Some("::1"))]),
            &set(CONNECTION_CREATION_RATE, 3.0),
        )
        .unwrap();
        // Removing needs no value check.
        validate_alteration(&e(&[(USER, None)]), &[(PRODUCER_BYTE_RATE.into(), None)]).unwrap();
    }

    #[test]
    fn apply_and_match() {
        let mut q = Quotas::new();
        let alice = e(&[(USER, Some("alice"))]);
        let alice_any = e(&[(CLIENT_ID, None), (USER, Some("alice"))]);
        apply_alteration(&mut q, &alice, &set(PRODUCER_BYTE_RATE, 10.0));
        apply_alteration(&mut q, &alice_any, &set(CONSUMER_BYTE_RATE, 20.0));
        let user_exact = [(USER.to_string(), NameMatch::Exact("alice".into()))];
        assert!(matches(&alice, &user_exact, true));
        assert!(!matches(&alice_any, &user_exact, true));
        assert!(matches(&alice_any, &user_exact, false));
        let client_default = [(CLIENT_ID.to_string(), NameMatch::Default)];
        assert!(matches(&alice_any, &client_default, false));
        assert!(!matches(&alice, &client_default, false));
        let user_specified = [(USER.to_string(), NameMatch::Specified)];
        assert!(matches(&alice, &user_specified, false));
        apply_alteration(&mut q, &alice, &[(PRODUCER_BYTE_RATE.into(), None)]);
        assert!(!q.contains_key(&alice), "an entity without keys goes");
    }

    #[test]
    fn resolution_precedence() {
        let mut q = Quotas::new();
        let k = PRODUCER_BYTE_RATE;
        assert_eq!(resolve(&q, k, "alice", "app"), None);
        apply_alteration(&mut q, &e(&[(CLIENT_ID, None)]), &set(k, 8.0));
        let r = resolve(&q, k, "alice", "app").unwrap();
        assert_eq!(
            (r.bound, r.user.as_str(), r.client_id.as_str()),
            (8.0, "", "app")
        );
        apply_alteration(&mut q, &e(&[(USER, None)]), &set(k, 6.0));
        let r = resolve(&q, k, "alice", "app").unwrap();
        assert_eq!(
            (r.bound, r.user.as_str(), r.client_id.as_str()),
            (6.0, "alice", "")
        );
        apply_alteration(&mut q, &e(&[(USER, Some("alice"))]), &set(k, 3.0));
        assert_eq!(resolve(&q, k, "alice", "app").unwrap().bound, 3.0);
        assert_eq!(resolve(&q, k, "bob", "app").unwrap().bound, 6.0);
        apply_alteration(
            &mut q,
            &e(&[(CLIENT_ID, Some("app")), (USER, Some("alice"))]),
            &set(k, 1.0),
        );
        let r = resolve(&q, k, "alice", "app").unwrap();
        assert_eq!(
            (r.bound, r.user.as_str(), r.client_id.as_str()),
            (1.0, "alice", "app")
        );
        assert_eq!(resolve(&q, CONSUMER_BYTE_RATE, "alice", "app"), None);
        assert_eq!(resolve_ip(&q, "10.0.0.1"), None);
        let ip = |n: Option<&str>| vec![(IP.to_string(), n.map(str::to_string))];
        apply_alteration(&mut q, &ip(None), &set(CONNECTION_CREATION_RATE, 5.0));
        apply_alteration(
            &mut q,
            &ip(Some("10.0.0.1")),
            &set(CONNECTION_CREATION_RATE, 2.0),
        );
        assert_eq!(resolve_ip(&q, "10.0.0.1"), Some(2.0));
        assert_eq!(resolve_ip(&q, "10.0.0.2"), Some(5.0));
    }

    #[test]
    fn token_bucket_allows_a_burst_then_throttles() {
        // 2 mutations/s: a burst of 22 partitions, then the debt is paid back at 2/s.
        let mut b = TokenBucket::new(2.0, 0);
        assert!(!b.exceeded(2.0, 0));
        b.record(2.0, 20.0, 0);
        assert!(!b.exceeded(2.0, 0));
        b.record(2.0, 6.0, 0);
        assert!(b.exceeded(2.0, 0));
        assert_eq!(b.throttle_ms(2.0, 0), 2_000);
        assert_eq!(b.throttle_ms(2.0, 1_000), 1_000);
        assert!(!b.exceeded(2.0, 2_000));
        // It never holds more than the burst.
        assert!(!b.exceeded(2.0, 1_000_000));
        b.record(2.0, 23.0, 1_000_000);
        assert!(b.exceeded(2.0, 1_000_000));
    }

    #[test]
    fn rate_and_throttle() {
        let mut r = Rate::default();
        // 10 KB in the first instant: measured over the 10 s minimum window = 1 KB/s.
        r.record(10_000.0, 0);
        assert!((r.measure(0) - 1000.0).abs() < 1e-9);
        assert_eq!(r.throttle_ms(1000.0, 0), 0);
        // Twice the bound: throttled for as long as the window again (capped at 11 s).
        r.record(10_000.0, 500);
        assert_eq!(r.throttle_ms(1000.0, 500), 10_000);
        assert_eq!(r.throttle_ms(100.0, 500), 11_000);
        // Old samples age out of the window.
        assert_eq!(r.measure(60_000), 0.0);
        assert_eq!(r.throttle_ms(1000.0, 60_000), 0);
        // A steady 2.2 KB/s (measured) against 1 KB/s: throttled, capped at the 11 s window.
        let mut r = Rate::default();
        for s in 0..30 {
            r.record(2_000.0, s * 1000);
        }
        let t = r.throttle_ms(1000.0, 29_000);
        assert_eq!(t, 11_000);
        // Just over the bound: a short pause.
        let mut r = Rate::default();
        for s in 0..30 {
            r.record(1_000.0, s * 1000);
        }
        let t = r.throttle_ms(1_050.0, 29_000);
        assert!((0..=600).contains(&t), "{t}");
    }
}
