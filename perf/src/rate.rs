//! Open-loop send schedule.
//!
//! Message `i` of a producer is *due* at `start + offset + i * 1e9 / rate` ns, whatever happened
//! to message `i - 1`. If the client or broker stalls, the producer falls behind and then sends
//! every overdue message at once; each one's latency is still measured from its due time. A closed
//! loop ("send the next when the last returns") would instead quietly send fewer messages during a
//! stall and report only the fast ones: coordinated omission.
//!
//! Due times are computed from the index (not by adding an interval repeatedly), so there is no
//! drift: with 3 msg/s, message 3 is due at exactly 1 s, message 3_000_000 at exactly 1_000_000 s.

/// Schedule of due times for one producer, in ns on the run's monotonic clock.
#[derive(Debug, Clone)]
pub struct Schedule {
    start_ns: u64,
    /// Messages per second for this producer. Invariant: > 0.
    rate_per_s: u64,
    /// Index of the next message to hand out.
    next: u64,
}

impl Schedule {
    /// A schedule of `rate_per_s` messages per second starting at `start_ns`.
    ///
    /// `rate_per_s` must be positive (a zero rate means "max throughput", which has no schedule).
    pub fn new(start_ns: u64, rate_per_s: u64) -> Schedule {
        assert!(rate_per_s > 0, "open-loop schedule needs a positive rate");
        Schedule {
            start_ns,
            rate_per_s,
            next: 0,
        }
    }

    /// Splits a total rate over `producers`, staggering their start so sends interleave evenly:
    /// with 2 producers at 1000 msg/s total, producer 0 sends at 0, 2, 4 ms … and producer 1 at
    /// 1, 3, 5 ms ….
    pub fn for_producer(
        start_ns: u64,
        total_rate_per_s: u64,
        producers: u32,
        index: u32,
    ) -> Schedule {
        assert!(producers > 0 && index < producers);
        let producers = u64::from(producers);
        let index = u64::from(index);
        // Give the remainder to the first producers so the rates sum exactly to the total.
        let base = total_rate_per_s / producers;
        let extra = u64::from(index < total_rate_per_s % producers);
        let rate = (base + extra).max(1);
        let offset =
            (u128::from(index) * 1_000_000_000 / u128::from(total_rate_per_s.max(1))) as u64;
        Schedule::new(start_ns + offset, rate)
    }

    /// Due time of message `i`.
    pub fn due_ns(&self, i: u64) -> u64 {
        let delta = u128::from(i) * 1_000_000_000 / u128::from(self.rate_per_s);
        self.start_ns
            .saturating_add(u64::try_from(delta).unwrap_or(u64::MAX))
    }

    /// Due time of the next message, without consuming it.
    pub fn peek_ns(&self) -> u64 {
        self.due_ns(self.next)
    }

    /// Returns the due time of the next message if it is due at `now_ns`, and consumes it.
    pub fn take_due(&mut self, now_ns: u64) -> Option<u64> {
        let due = self.peek_ns();
        if due <= now_ns {
            self.next += 1;
            Some(due)
        } else {
            None
        }
    }

    /// How many messages are due at or before `now_ns` but not yet taken (the backlog).
    pub fn backlog(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        let elapsed = u128::from(now_ns - self.start_ns);
        let due_count = elapsed * u128::from(self.rate_per_s) / 1_000_000_000 + 1;
        u64::try_from(due_count)
            .unwrap_or(u64::MAX)
            .saturating_sub(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_are_exact_and_do_not_drift() {
        let s = Schedule::new(1_000, 3);
        assert_eq!(s.due_ns(0), 1_000);
        assert_eq!(s.due_ns(1), 1_000 + 333_333_333);
        assert_eq!(s.due_ns(3), 1_000 + 1_000_000_000);
        assert_eq!(s.due_ns(3_000_000), 1_000 + 1_000_000 * 1_000_000_000);
    }

    #[test]
    fn nothing_is_due_early() {
        let mut s = Schedule::new(10_000, 1_000);
        assert_eq!(s.take_due(9_999), None);
        assert_eq!(s.take_due(10_000), Some(10_000));
        assert_eq!(s.take_due(10_000), None);
        assert_eq!(s.take_due(1_009_999), None);
        assert_eq!(s.take_due(1_010_000), Some(1_010_000));
    }

    #[test]
    fn a_stall_yields_every_missed_message_with_its_original_due_time() {
        // 1000 msg/s; the sender stalls for 50 ms after message 0.
        let mut s = Schedule::new(0, 1_000);
        assert_eq!(s.take_due(0), Some(0));
        let now = 50_000_000;
        assert_eq!(s.backlog(now), 50);
        let mut dues = Vec::new();
        while let Some(d) = s.take_due(now) {
            dues.push(d);
        }
        let expect: Vec<u64> = (1..=50).map(|i| i * 1_000_000).collect();
        assert_eq!(dues, expect, "open loop must not skip or re-time messages");
        assert_eq!(s.backlog(now), 0);
        // Latency from the due time: the first overdue message waited 49 ms, not 0.
        assert_eq!(now - dues[0], 49_000_000);
    }

    #[test]
    fn producers_share_the_rate_and_interleave() {
        let total = 1_001;
        let schedules: Vec<Schedule> = (0..2)
            .map(|i| Schedule::for_producer(0, total, 2, i))
            .collect();
        // Count messages due within the first 10 seconds over both producers.
        let horizon = 10_000_000_000;
        let sent: u64 = schedules
            .iter()
            .map(|s| s.clone().backlog(horizon - 1))
            .sum();
        assert!((10_009..=10_011).contains(&sent), "sent = {sent}");
        assert!(schedules[1].due_ns(0) > schedules[0].due_ns(0));
        assert!(schedules[1].due_ns(0) < schedules[0].due_ns(1));
    }
}
