//! Scenario tests of the transaction coordinator, and a seeded random-operation test that
//! drives it like the broker does (append → apply, or abandon) and checks its invariants.

use super::*;

const T: &str = "tx";

fn coord() -> TxnCoordinator {
    TxnCoordinator::new(0, TxnConfig::default())
}

/// InitProducerId as the broker runs it: allocate when asked, append, apply.
fn init(c: &mut TxnCoordinator, expected: (i64, i16), next_pid: &mut i64) -> (i64, i16) {
    let mut fresh = None;
    loop {
        match c.init_producer_id(T, 60_000, expected, 4, fresh, 0) {
            InitOutcome::NeedProducerId => {
                *next_pid += 1;
                fresh = Some(*next_pid);
            }
            InitOutcome::Persist {
                record,
                producer_id,
                producer_epoch,
            } => {
                c.apply(&record).unwrap();
                c.check_invariants();
                return (producer_id, producer_epoch);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn parts(names: &[(&str, i32)]) -> Vec<(String, i32)> {
    names.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

/// Writes the markers of every due transaction and completes it; returns the jobs.
fn write_markers(c: &mut TxnCoordinator) -> Vec<MarkerJob> {
    let jobs = c.markers_due();
    for j in &jobs {
        let rec = c.complete(&j.transactional_id, 1).expect("prepared");
        assert!(c
            .markers_due()
            .iter()
            .all(|k| k.transactional_id != j.transactional_id));
        c.apply(&rec).unwrap();
        c.check_invariants();
    }
    jobs
}

#[test]
fn commit_flow_and_replay_after_restart() {
    let mut c = coord();
    let mut pid = 99;
    let (p, e) = init(&mut c, (-1, -1), &mut pid);
    assert_eq!((p, e), (100, 0));
    let rec = c
        .add_partitions(
            T,
            p,
            e,
            &parts(&[("a", 0), ("a", 1)]),
            Api::AddPartitionsToTxn,
            3,
            10,
        )
        .unwrap()
        .unwrap();
    // While the record is being appended the id is busy.
    assert_eq!(
        c.end_txn(T, p, e, true, 3, 11),
        Err(ResponseError::ConcurrentTransactions)
    );
    c.apply(&rec).unwrap();
    assert_eq!(c.get(T).unwrap().state, TxnState::Ongoing);
    // Adding a partition already there needs no record.
    assert_eq!(
        c.add_partitions(T, p, e, &parts(&[("a", 1)]), Api::AddPartitionsToTxn, 3, 12),
        Ok(None)
    );
    let mut log = vec![rec];
    let rec = c.end_txn(T, p, e, true, 3, 13).unwrap().unwrap();
    c.apply(&rec).unwrap();
    log.push(rec);
    // Restart here: a new coordinator replays the log and owes the same markers.
    let mut again = coord();
    for r in &log {
        again.apply(r).unwrap();
    }
    assert_eq!(again.markers_due(), c.markers_due());
    let jobs = write_markers(&mut c);
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].commit);
    assert_eq!(jobs[0].partitions, parts(&[("a", 0), ("a", 1)]));
    assert_eq!(c.get(T).unwrap().state, TxnState::CompleteCommit);
    // A retried EndTxn after completion succeeds; the opposite outcome is refused.
    assert_eq!(c.end_txn(T, p, e, true, 3, 20), Ok(None));
    assert_eq!(
        c.end_txn(T, p, e, false, 3, 20),
        Err(ResponseError::InvalidTxnState)
    );
}

#[test]
fn init_with_an_ongoing_transaction_fences_and_aborts_it_first() {
    let mut c = coord();
    let mut pid = 0;
    let (p, e) = init(&mut c, (-1, -1), &mut pid);
    let rec = c
        .add_partitions(T, p, e, &parts(&[("t", 0)]), Api::AddPartitionsToTxn, 3, 0)
        .unwrap()
        .unwrap();
    c.apply(&rec).unwrap();
    let InitOutcome::AbortFirst { record } = c.init_producer_id(T, 60_000, (-1, -1), 4, None, 1)
    else {
        panic!("expected the ongoing transaction to be aborted first")
    };
    c.apply(&record).unwrap();
    // Markers pending: the new producer is told to retry.
    assert_eq!(
        c.init_producer_id(T, 60_000, (-1, -1), 4, None, 2),
        InitOutcome::Error(ResponseError::ConcurrentTransactions)
    );
    let jobs = write_markers(&mut c);
    assert_eq!(jobs.len(), 1);
    assert!(!jobs[0].commit);
    assert_eq!(
        jobs[0].producer_epoch,
        e + 1,
        "markers carry the fencing epoch"
    );
    let (p2, e2) = init(&mut c, (-1, -1), &mut pid);
    assert_eq!((p2, e2), (p, e + 2));
    // The old producer is fenced everywhere (PRODUCER_FENCED from v2, older versions 47).
    assert_eq!(
        c.add_partitions(T, p, e, &parts(&[("t", 0)]), Api::AddPartitionsToTxn, 3, 3),
        Err(ResponseError::ProducerFenced)
    );
    assert_eq!(
        c.end_txn(T, p, e, true, 1, 3),
        Err(ResponseError::InvalidProducerEpoch)
    );
    assert_eq!(
        c.end_txn(T, 12345, e2, true, 3, 3),
        Err(ResponseError::InvalidProducerIdMapping)
    );
}

#[test]
fn kip360_bump_retry_and_overflow_to_a_new_producer_id() {
    let mut c = coord();
    let mut pid = 0;
    let (p, e) = init(&mut c, (-1, -1), &mut pid);
    // The producer bumps its own epoch (KIP-360) …
    let (p1, e1) = init(&mut c, (p, e), &mut pid);
    assert_eq!((p1, e1), (p, e + 1));
    // … and retries with the old pair after losing the answer: same answer, no new record.
    assert_eq!(
        c.init_producer_id(T, 60_000, (p, e), 4, None, 0),
        InitOutcome::Retry {
            producer_id: p1,
            producer_epoch: e1
        }
    );
    // A stranger's pair is fenced.
    assert_eq!(
        c.init_producer_id(T, 60_000, (p, 77), 4, None, 0),
        InitOutcome::Error(ResponseError::ProducerFenced)
    );
    assert_eq!(
        c.init_producer_id(T, 60_000, (p, 77), 3, None, 0),
        InitOutcome::Error(ResponseError::InvalidProducerEpoch)
    );
    // Force the epoch to its maximum: the next bump needs a new producer id.
    let mut m = c.get(T).unwrap().clone();
    m.producer_epoch = MAX_PRODUCER_EPOCH;
    c.apply(&records::record(&m)).unwrap();
    let (p2, e2) = init(&mut c, (p, MAX_PRODUCER_EPOCH), &mut pid);
    assert_ne!(p2, p);
    assert_eq!(e2, 0);
    assert_eq!(c.get(T).unwrap().last_producer_id, p);
    // Retry with the exhausted pair gets the new one.
    assert_eq!(
        c.init_producer_id(T, 60_000, (p, MAX_PRODUCER_EPOCH), 4, None, 0),
        InitOutcome::Retry {
            producer_id: p2,
            producer_epoch: 0
        }
    );
}

#[test]
fn timeouts_abort_with_a_bumped_epoch_and_bad_timeouts_are_refused() {
    let mut c = TxnCoordinator::new(
        0,
        TxnConfig {
            max_timeout_ms: 1_000,
            ..TxnConfig::default()
        },
    );
    assert_eq!(
        c.init_producer_id(T, 1_001, (-1, -1), 4, Some(1), 0),
        InitOutcome::Error(ResponseError::InvalidTransactionTimeout)
    );
    assert_eq!(
        c.init_producer_id(T, 0, (-1, -1), 4, Some(1), 0),
        InitOutcome::Error(ResponseError::InvalidTransactionTimeout)
    );
    let InitOutcome::Persist { record, .. } = c.init_producer_id(T, 500, (-1, -1), 4, Some(1), 0)
    else {
        panic!()
    };
    c.apply(&record).unwrap();
    let rec = c
        .add_partitions(
            T,
            1,
            0,
            &parts(&[("t", 0)]),
            Api::AddPartitionsToTxn,
            3,
            1_000,
        )
        .unwrap()
        .unwrap();
    c.apply(&rec).unwrap();
    assert!(c.tick(1_499).is_empty());
    let recs = c.tick(1_500);
    assert_eq!(recs.len(), 1);
    assert!(c.tick(1_600).is_empty(), "pending: not aborted twice");
    c.apply(&recs[0]).unwrap();
    let m = c.get(T).unwrap();
    assert_eq!((m.state, m.producer_epoch), (TxnState::PrepareAbort, 1));
    let jobs = write_markers(&mut c);
    assert!(!jobs[0].commit);
    assert_eq!(
        c.end_txn(T, 1, 0, true, 3, 2_000),
        Err(ResponseError::ProducerFenced)
    );
}

#[test]
fn idle_ids_expire_with_a_tombstone_but_open_transactions_do_not() {
    let mut c = TxnCoordinator::new(
        0,
        TxnConfig {
            id_expiration_ms: 10_000,
            ..TxnConfig::default()
        },
    );
    for (id, pid) in [("idle", 1), ("busy", 2)] {
        let InitOutcome::Persist { record, .. } =
            c.init_producer_id(id, 60_000, (-1, -1), 4, Some(pid), 0)
        else {
            panic!()
        };
        c.apply(&record).unwrap();
    }
    let rec = c
        .add_partitions(
            "busy",
            2,
            0,
            &parts(&[("t", 0)]),
            Api::AddPartitionsToTxn,
            3,
            5_000,
        )
        .unwrap()
        .unwrap();
    c.apply(&rec).unwrap();
    assert!(c.tick(9_999).is_empty());
    let recs = c.tick(10_000);
    assert_eq!(recs.len(), 1);
    assert_eq!(
        records::decode(&recs[0]).unwrap(),
        ("idle".to_string(), None)
    );
    assert!(c.tick(10_001).is_empty(), "pending: not expired twice");
    c.apply(&recs[0]).unwrap();
    assert!(c.get("idle").is_none());
    assert!(c.get("busy").is_some(), "an open transaction keeps its id");
    c.check_invariants();
}

#[test]
fn list_filters_by_state_producer_and_duration() {
    let mut c = coord();
    for (id, pid) in [("x", 1), ("y", 2)] {
        let InitOutcome::Persist { record, .. } =
            c.init_producer_id(id, 60_000, (-1, -1), 4, Some(pid), 0)
        else {
            panic!()
        };
        c.apply(&record).unwrap();
    }
    let rec = c
        .add_partitions(
            "y",
            2,
            0,
            &parts(&[("t", 0)]),
            Api::AddPartitionsToTxn,
            3,
            1_000,
        )
        .unwrap()
        .unwrap();
    c.apply(&rec).unwrap();
    let all = c.list(&[], &[], -1, 5_000);
    assert_eq!(all.len(), 2);
    assert_eq!(
        c.list(&[TxnState::Ongoing], &[], -1, 5_000),
        vec![("y".to_string(), 2, TxnState::Ongoing)]
    );
    assert_eq!(c.list(&[], &[1], -1, 5_000)[0].0, "x");
    assert_eq!(c.list(&[], &[], 4_000, 5_000).len(), 1, "open 4 s");
    assert!(c.list(&[], &[], 4_001, 5_000).is_empty());
    assert_eq!(
        TxnState::from_name("PrepareAbort"),
        Some(TxnState::PrepareAbort)
    );
    assert_eq!(TxnState::from_name("Dead"), None);
}

/// Kafka keeps a completed transaction's start time (DescribeTransactions reports it, and
/// `TransactionMetadata` refuses a completion without one); only InitProducerId clears it.
/// ListTransactions' duration filter still lists only running transactions.
#[test]
fn a_completed_transaction_keeps_its_start_time_until_the_next_init() {
    let mut c = coord();
    let mut pid = 0;
    let (p, e) = init(&mut c, (-1, -1), &mut pid);
    assert_eq!(c.get(T).unwrap().start_ms, -1);
    let rec = c
        .add_partitions(
            T,
            p,
            e,
            &parts(&[("a", 0)]),
            Api::AddPartitionsToTxn,
            3,
            1_000,
        )
        .unwrap()
        .unwrap();
    c.apply(&rec).unwrap();
    let rec = c.end_txn(T, p, e, false, 3, 2_000).unwrap().unwrap();
    c.apply(&rec).unwrap();
    write_markers(&mut c);
    let m = c.get(T).unwrap();
    assert_eq!((m.state, m.start_ms), (TxnState::CompleteAbort, 1_000));
    assert!(m.partitions.is_empty());
    assert!(c.list(&[], &[], 0, 9_000).is_empty(), "not running");
    // The next transaction starts its own clock.
    let rec = c
        .add_partitions(
            T,
            p,
            e,
            &parts(&[("a", 1)]),
            Api::AddPartitionsToTxn,
            3,
            5_000,
        )
        .unwrap()
        .unwrap();
    c.apply(&rec).unwrap();
    assert_eq!(c.get(T).unwrap().start_ms, 5_000);
    assert_eq!(c.list(&[], &[], 4_000, 9_000).len(), 1);
    let rec = c.end_txn(T, p, e, true, 3, 6_000).unwrap().unwrap();
    c.apply(&rec).unwrap();
    write_markers(&mut c);
    assert_eq!(c.get(T).unwrap().start_ms, 5_000);
    // A new producer session: Empty, no start.
    init(&mut c, (p, e), &mut pid);
    let m = c.get(T).unwrap();
    assert_eq!((m.state, m.start_ms), (TxnState::Empty, -1));
    c.check_invariants();
}

#[test]
fn verify_accepts_only_added_partitions_of_the_current_epoch() {
    let mut c = coord();
    let mut pid = 0;
    let (p, e) = init(&mut c, (-1, -1), &mut pid);
    let t0 = parts(&[("t", 0)]);
    assert_eq!(c.verify(T, p, e, &t0), Err(ResponseError::InvalidTxnState));
    let rec = c
        .add_partitions(T, p, e, &t0, Api::AddPartitionsToTxn, 3, 0)
        .unwrap()
        .unwrap();
    c.apply(&rec).unwrap();
    assert_eq!(c.verify(T, p, e, &t0), Ok(()));
    assert_eq!(
        c.verify(T, p, e, &parts(&[("t", 0), ("t", 1)])),
        Err(ResponseError::InvalidTxnState)
    );
    assert_eq!(
        c.verify(T, p, e + 1, &t0),
        Err(ResponseError::InvalidProducerEpoch)
    );
    assert_eq!(
        c.verify(T, p + 1, e, &t0),
        Err(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        c.verify("other", p, e, &t0),
        Err(ResponseError::InvalidProducerIdMapping)
    );
    // After the transaction ends, a late batch for it is refused.
    let rec = c.end_txn(T, p, e, false, 3, 1).unwrap().unwrap();
    c.apply(&rec).unwrap();
    assert_eq!(c.verify(T, p, e, &t0), Err(ResponseError::InvalidTxnState));
}

#[test]
fn a_failed_append_leaves_no_trace() {
    let mut c = coord();
    let InitOutcome::Persist { .. } = c.init_producer_id(T, 1_000, (-1, -1), 4, Some(5), 0) else {
        panic!()
    };
    assert_eq!(
        c.init_producer_id(T, 1_000, (-1, -1), 4, Some(6), 0),
        InitOutcome::Error(ResponseError::ConcurrentTransactions)
    );
    c.abandon(T);
    assert!(c.get(T).is_none());
    c.check_invariants();
    let mut pid = 10;
    let (p, e) = init(&mut c, (-1, -1), &mut pid);
    let _ = c
        .add_partitions(T, p, e, &parts(&[("t", 0)]), Api::AddPartitionsToTxn, 3, 0)
        .unwrap()
        .unwrap();
    c.abandon(T);
    assert_eq!(c.get(T).unwrap().state, TxnState::Empty);
    c.check_invariants();
}

/// splitmix64: a tiny seeded generator (no unseeded randomness in tests).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random requests from several producers sharing a few transactional ids; appends succeed or
/// fail at random, ids expire, and the coordinator is sometimes rebuilt from its log. After every step the
/// invariants hold and a replay of the log equals the live state.
#[test]
fn seeded_random_operations_keep_the_invariants() {
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    for seed in 0..40u64 {
        match std::panic::catch_unwind(|| run_random(seed)) {
            Ok(stats) => {
                for (k, n) in stats {
                    *seen.entry(k).or_default() += n;
                }
            }
            Err(e) => {
                eprintln!("failing seed: {seed}");
                std::panic::resume_unwind(e);
            }
        }
    }
    // The run reached every kind of outcome it is meant to check.
    for kind in ["committed", "aborted", "timed out", "expired", "fenced"] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} in any seed: {seen:?}"
        );
    }
}

/// Applied record kinds of one run, for the coverage check above.
fn record_kind(rec: &LogRecord) -> &'static str {
    match records::decode(rec).unwrap().1 {
        None => "expired",
        Some(m) => match m.state {
            TxnState::CompleteCommit => "committed",
            TxnState::CompleteAbort => "aborted",
            _ => "other",
        },
    }
}

fn run_random(seed: u64) -> BTreeMap<&'static str, usize> {
    let mut stats: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut rng = Rng(seed);
    let ids = ["a", "b", "c"];
    // Short id expiry so tombstones happen within the run (~400 s of virtual time).
    let cfg = TxnConfig {
        id_expiration_ms: 60_000,
        ..TxnConfig::default()
    };
    let mut c = TxnCoordinator::new(0, cfg.clone());
    let mut log: Vec<LogRecord> = Vec::new();
    let mut next_pid = 0i64;
    // What each client believes it holds, per id.
    let mut held: BTreeMap<&str, (i64, i16)> = BTreeMap::new();
    let mut now = 0i64;
    for _ in 0..400 {
        now += rng.below(2_000) as i64;
        let id = ids[rng.below(ids.len() as u64) as usize];
        let (p, e) = held.get(id).copied().unwrap_or((-1, -1));
        let fail = rng.below(10) == 0;
        let settle = |c: &mut TxnCoordinator, rec: LogRecord, log: &mut Vec<LogRecord>| -> bool {
            let tid = records::decode(&rec).unwrap().0;
            if fail {
                c.abandon(&tid);
                false
            } else {
                c.apply(&rec).unwrap();
                log.push(rec);
                true
            }
        };
        match rng.below(6) {
            0 => {
                let expected = if rng.below(2) == 0 { (p, e) } else { (-1, -1) };
                match c.init_producer_id(id, 5_000, expected, 4, None, now) {
                    InitOutcome::NeedProducerId => {
                        next_pid += 1;
                        if let InitOutcome::Persist {
                            record,
                            producer_id,
                            producer_epoch,
                        } = c.init_producer_id(id, 5_000, expected, 4, Some(next_pid), now)
                        {
                            if settle(&mut c, record, &mut log) {
                                held.insert(id, (producer_id, producer_epoch));
                            }
                        }
                    }
                    InitOutcome::Persist {
                        record,
                        producer_id,
                        producer_epoch,
                    } => {
                        if settle(&mut c, record, &mut log) {
                            held.insert(id, (producer_id, producer_epoch));
                        }
                    }
                    InitOutcome::AbortFirst { record } => {
                        *stats.entry("fenced").or_default() += 1;
                        settle(&mut c, record, &mut log);
                    }
                    InitOutcome::Retry {
                        producer_id,
                        producer_epoch,
                    } => {
                        held.insert(id, (producer_id, producer_epoch));
                    }
                    InitOutcome::Error(_) => {}
                }
            }
            1 | 2 => {
                let ps = parts(&[("t", rng.below(3) as i32)]);
                if let Ok(Some(rec)) =
                    c.add_partitions(id, p, e, &ps, Api::AddPartitionsToTxn, 3, now)
                {
                    settle(&mut c, rec, &mut log);
                }
            }
            3 => {
                if let Ok(Some(rec)) = c.end_txn(id, p, e, rng.below(2) == 0, 3, now) {
                    settle(&mut c, rec, &mut log);
                }
            }
            4 => {
                for j in c.markers_due() {
                    if let Some(rec) = c.complete(&j.transactional_id, now) {
                        settle(&mut c, rec, &mut log);
                    }
                }
                for rec in c.tick(now) {
                    if records::decode(&rec).unwrap().1.is_some() {
                        *stats.entry("timed out").or_default() += 1;
                    }
                    settle(&mut c, rec, &mut log);
                }
            }
            _ => {
                // Restart: rebuild from the log; appends in flight are lost.
                let mut fresh = TxnCoordinator::new(0, cfg.clone());
                for r in &log {
                    fresh.apply(r).unwrap();
                }
                c.clear_pending();
                for id in ids {
                    assert_eq!(
                        fresh.get(id),
                        c.get(id),
                        "seed {seed}: replay differs for {id}"
                    );
                }
                c = fresh;
            }
        }
        c.check_invariants();
        // The epoch a client holds is never ahead of the coordinator's.
        for (id, (p, e)) in &held {
            if let Some(m) = c.get(id) {
                if m.producer_id == *p {
                    assert!(*e <= m.producer_epoch, "seed {seed}: {id} client ahead");
                }
            }
        }
    }
    for rec in &log {
        *stats.entry(record_kind(rec)).or_default() += 1;
    }
    stats
}
