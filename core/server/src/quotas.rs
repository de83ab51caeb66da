//! Enforcement of client byte-rate quotas (`producer_byte_rate`, `consumer_byte_rate`), the
//! request quota (`request_percentage`, KIP-124, see [`QuotaSensors::record_request`]), the
//! controller-mutation quota (`controller_mutation_rate`, KIP-599, see [`MutationQuota`]) and
//! the per-address `connection_creation_rate` (KIP-612, see
//! [`QuotaSensors::connection_throttle`]).
//!
//! Like Kafka's `ClientQuotaManager`, every Produce records its record bytes and every Fetch its
//! response record bytes against the quota that applies to the client's (user, client id)
//! (`chronik_core::quota::resolve`); when the measured rate is over the bound the response
//! carries `throttle_time_ms` and the broker stops reading the connection for that long
//! (KIP-219), which is what actually slows a client down.
//!
//! The sensors are shared by all shards (a client's connections may land on different cores),
//! behind one mutex that is only touched when some quota applies to the request: with no quotas
//! configured the hot path costs one emptiness check on the metadata image.
//!
//! As in Kafka, an over-quota fetch is answered without records, and those bytes do not count.

use std::collections::HashMap;
use std::sync::Mutex;

use chronik_core::meta::MetaState;
use chronik_core::quota::{self, Rate, TokenBucket};

/// Which quota a request counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Produce,
    Fetch,
    /// Shard thread time spent on a client's requests (`request_percentage`).
    Request,
    /// New connections from one address (`connection_creation_rate`).
    Connection,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Produce => quota::PRODUCER_BYTE_RATE,
            Kind::Fetch => quota::CONSUMER_BYTE_RATE,
            Kind::Request => quota::REQUEST_PERCENTAGE,
            Kind::Connection => quota::CONNECTION_CREATION_RATE,
        }
    }
}

/// Shard thread time spent polling one request's handler (for the request quota).
#[derive(Default)]
pub struct RequestClock {
    busy: std::cell::Cell<std::time::Duration>,
    poll_started: std::cell::Cell<Option<std::time::Instant>>,
}

impl RequestClock {
    /// Busy time so far, the poll in progress included.
    pub fn busy(&self) -> std::time::Duration {
        let current = self
            .poll_started
            .get()
            .map_or(std::time::Duration::ZERO, |t| t.elapsed());
        self.busy.get() + current
    }
}

/// Runs `fut`, adding the time spent inside each of its polls to `clock` (time waiting for the
/// WAL, a long poll or another shard is not counted: the thread was free meanwhile).
pub async fn timed<F: std::future::Future>(clock: std::rc::Rc<RequestClock>, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        clock.poll_started.set(Some(std::time::Instant::now()));
        let r = fut.as_mut().poll(cx);
        if let Some(t) = clock.poll_started.take() {
            clock.busy.set(clock.busy.get() + t.elapsed());
        }
        r
    })
    .await
}

/// Sensors idle this long are dropped (Kafka expires quota sensors after an hour).
const IDLE_MS: i64 = 3_600_000;
/// Sweep idle sensors when the map grows past this.
const SWEEP_AT: usize = 10_000;

type SensorKey = (Kind, String, String);

/// Per-(kind, user, client id) rates, and controller-mutation token buckets per (user, client
/// id).
#[derive(Default)]
pub struct QuotaSensors {
    sensors: Mutex<HashMap<SensorKey, Rate>>,
    buckets: Mutex<HashMap<(String, String), TokenBucket>>,
}

/// The controller-mutation quota (KIP-599) of one client: CreateTopics, CreatePartitions and
/// DeleteTopics count partitions created or deleted against it.
pub struct MutationQuota<'a> {
    sensors: &'a QuotaSensors,
    key: (String, String),
    rate: f64,
}

impl MutationQuota<'_> {
    fn with<R>(&self, now_ms: i64, f: impl FnOnce(&mut TokenBucket) -> R) -> R {
        let mut buckets = self
            .sensors
            .buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|_, b| now_ms - b.last_ms() < IDLE_MS);
        }
        let b = buckets
            .entry(self.key.clone())
            .or_insert_with(|| TokenBucket::new(self.rate, now_ms));
        f(b)
    }

    /// Whether the next mutation must be refused (THROTTLING_QUOTA_EXCEEDED, for request
    /// versions that allow it).
    pub fn exceeded(&self, now_ms: i64) -> bool {
        self.with(now_ms, |b| b.exceeded(self.rate, now_ms))
    }

    pub fn record(&self, partitions: usize, now_ms: i64) {
        self.with(now_ms, |b| b.record(self.rate, partitions as f64, now_ms));
    }

    /// The throttle time to answer with once the request's mutations are recorded.
    pub fn throttle_ms(&self, now_ms: i64) -> i32 {
        let ms = self.with(now_ms, |b| b.throttle_ms(self.rate, now_ms));
        if ms > 0 {
            metrics::counter!(THROTTLED, "kind" => "controller_mutation").increment(1);
        }
        ms.clamp(0, i32::MAX as i64) as i32
    }
}

impl QuotaSensors {
    /// Records `bytes` for the client and returns how long it must be throttled (0 when no quota
    /// applies or the client is within it). `principal` is `User:<name>`.
    pub fn record(
        &self,
        meta: &MetaState,
        kind: Kind,
        principal: &str,
        client_id: &str,
        bytes: u64,
        now_ms: i64,
    ) -> i32 {
        self.record_value(meta, kind, principal, client_id, bytes as f64, now_ms)
    }

    /// Records `busy` of shard thread time spent on one request of the client against its
    /// `request_percentage` (Kafka: the percentage of one request-handler thread a client may
    /// use, measured over the quota window; here the time the shard's thread spent polling the
    /// request's handler). Returns how long it must be throttled.
    pub fn record_request(
        &self,
        meta: &MetaState,
        principal: &str,
        client_id: &str,
        busy: std::time::Duration,
        now_ms: i64,
    ) -> i32 {
        // Percent-seconds: their rate per second is the percentage of one thread.
        let value = busy.as_secs_f64() * 100.0;
        self.record_value(meta, Kind::Request, principal, client_id, value, now_ms)
    }

    fn record_value(
        &self,
        meta: &MetaState,
        kind: Kind,
        principal: &str,
        client_id: &str,
        value: f64,
        now_ms: i64,
    ) -> i32 {
        if meta.quotas.is_empty() {
            return 0;
        }
        let user = principal.strip_prefix("User:").unwrap_or(principal);
        let Some(q) = quota::resolve(&meta.quotas, kind.key(), user, client_id) else {
            return 0;
        };
        let mut sensors = self.sensors.lock().unwrap_or_else(|e| e.into_inner());
        if sensors.len() >= SWEEP_AT {
            sensors.retain(|_, r| now_ms - r.last_ms() < IDLE_MS);
        }
        let rate = sensors.entry((kind, q.user, q.client_id)).or_default();
        rate.record(value, now_ms);
        let throttle = rate.throttle_ms(q.bound, now_ms);
        if throttle > 0 && kind == Kind::Fetch {
            // A throttled fetch is answered without its records: they do not count.
            rate.record(-value, now_ms);
        }
        if throttle > 0 {
            metrics::counter!(THROTTLED, "kind" => kind_name(kind)).increment(1);
        }
        throttle.clamp(0, i32::MAX as i64) as i32
    }

    /// A new connection from `ip`: how long to hold it before closing it when the address is
    /// over its `connection_creation_rate` (0: serve it). Like Kafka (KIP-612), a refused
    /// connection does not count towards the rate.
    pub fn connection_throttle(&self, meta: &MetaState, ip: &str, now_ms: i64) -> i32 {
        let Some(bound) = quota::resolve_ip(&meta.quotas, ip) else {
            return 0;
        };
        let mut sensors = self.sensors.lock().unwrap_or_else(|e| e.into_inner());
        if sensors.len() >= SWEEP_AT {
            sensors.retain(|_, r| now_ms - r.last_ms() < IDLE_MS);
        }
        let rate = sensors
            .entry((Kind::Connection, ip.to_owned(), String::new()))
            .or_default();
        rate.record(1.0, now_ms);
        let throttle = rate.throttle_ms(bound, now_ms);
        if throttle > 0 {
            rate.record(-1.0, now_ms);
            metrics::counter!(THROTTLED, "kind" => kind_name(Kind::Connection)).increment(1);
        }
        throttle.clamp(0, i32::MAX as i64) as i32
    }

    /// Kafka caps a consumer's Fetch at its quota's worth of the shortest measured window
    /// (`consumer_byte_rate × 10 s`, `getMaxValueInQuotaWindow`), so one response alone never
    /// exceeds the quota and a throttled consumer is not starved.
    pub fn fetch_cap(&self, meta: &MetaState, principal: &str, client_id: &str) -> Option<i32> {
        let user = principal.strip_prefix("User:").unwrap_or(principal);
        let q = quota::resolve(&meta.quotas, quota::CONSUMER_BYTE_RATE, user, client_id)?;
        let window_s = ((quota::SAMPLES as i64 - 1) * quota::SAMPLE_MS) as f64 / 1000.0;
        Some((q.bound * window_s).clamp(1.0, i32::MAX as f64) as i32)
    }

    /// The controller-mutation quota of a client, if one is set.
    pub fn mutation_quota(
        &self,
        meta: &MetaState,
        principal: &str,
        client_id: &str,
    ) -> Option<MutationQuota<'_>> {
        let user = principal.strip_prefix("User:").unwrap_or(principal);
        let q = quota::resolve(
            &meta.quotas,
            quota::CONTROLLER_MUTATION_RATE,
            user,
            client_id,
        )?;
        Some(MutationQuota {
            sensors: self,
            key: (q.user, q.client_id),
            rate: q.bound,
        })
    }
}

/// Whether a raw request frame is a Produce or Fetch of a client some byte-rate quota applies
/// to, or any request but the exempt ones of a client with a request quota (its client id read
/// from the request header).
pub fn applies_to_frame(meta: &MetaState, principal: &str, frame: &[u8]) -> bool {
    if meta.quotas.is_empty() || frame.len() < 10 {
        return false;
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let kind = match api_key {
        0 => Some(Kind::Produce),
        1 => Some(Kind::Fetch),
        _ => None,
    };
    // Request header v1+: api key, version, correlation id, then client id as a nullable
    // int16-length string (also in the flexible header v2).
    let len = i16::from_be_bytes([frame[8], frame[9]]);
    let client_id = match usize::try_from(len) {
        Ok(n) => frame
            .get(10..10 + n)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or(""),
        Err(_) => "",
    };
    let user = principal.strip_prefix("User:").unwrap_or(principal);
    kind.is_some_and(|k| quota::resolve(&meta.quotas, k.key(), user, client_id).is_some())
        || (!request_quota_exempt(api_key)
            && quota::resolve(&meta.quotas, quota::REQUEST_PERCENTAGE, user, client_id).is_some())
}

/// Requests the request quota neither counts nor throttles, as in Kafka: ApiVersions and the
/// SASL exchange (a client must be able to connect and authenticate).
pub fn request_quota_exempt(api_key: i16) -> bool {
    matches!(api_key, 17 | 18 | 36)
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Produce => "produce",
        Kind::Fetch => "fetch",
        Kind::Request => "request",
        Kind::Connection => "connection",
    }
}

/// Counter of throttled responses, by kind.
pub const THROTTLED: &str = "chronik_quota_throttled_total";

#[cfg(test)]
mod tests {
    use super::*;
    use chronik_core::quota::{apply_alteration, QuotaValue};

    #[test]
    fn throttles_only_clients_over_their_quota() {
        let sensors = QuotaSensors::default();
        let mut meta = MetaState::default();
        assert_eq!(
            sensors.record(&meta, Kind::Produce, "User:a", "c", 1 << 30, 0),
            0
        );
        apply_alteration(
            &mut meta.quotas,
            &vec![(quota::CLIENT_ID.to_string(), None)],
            &[(
                quota::PRODUCER_BYTE_RATE.to_string(),
                Some(QuotaValue(1000.0)),
            )],
        );
        // Each client id has its own default quota: 10 KB in the window is 1 KB/s.
        assert_eq!(
            sensors.record(&meta, Kind::Produce, "User:a", "c1", 10_000, 0),
            0
        );
        assert_eq!(
            sensors.record(&meta, Kind::Produce, "User:a", "c2", 10_000, 0),
            0
        );
        let t = sensors.record(&meta, Kind::Produce, "User:a", "c1", 10_000, 100);
        assert_eq!(t, 10_000);
        // Fetches are not limited by a produce quota.
        assert_eq!(
            sensors.record(&meta, Kind::Fetch, "User:a", "c1", 1 << 30, 100),
            0
        );
        // 2 connections/s from one address: 20 fit the 10 s minimum window, the 21st waits.
        apply_alteration(
            &mut meta.quotas,
            &vec![(quota::IP.to_string(), None)],
            &[(
                quota::CONNECTION_CREATION_RATE.to_string(),
                Some(QuotaValue(2.0)),
            )],
        );
        for _ in 0..20 {
            assert_eq!(sensors.connection_throttle(&meta, "10.1.1.1", 0), 0);
        }
        assert!(sensors.connection_throttle(&meta, "10.1.1.1", 0) > 0);
        // Refused connections do not count; other addresses have their own rate.
        assert!(sensors.connection_throttle(&meta, "10.1.1.1", 0) > 0);
        assert_eq!(sensors.connection_throttle(&meta, "10.1.1.2", 0), 0);
    }
}
