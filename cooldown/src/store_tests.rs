//! The hot cells (`crate::hot`) change no answer: random sequences of every
//! operation run on two stores on one paused clock, one that installs a cell
//! on every eligible suppression and one that never does (a single thread
//! never contends), and every result must be equal. `tests/model.rs` checks
//! the store without cells against a reference model; this closes the loop.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

const WINDOW_MS: u64 = 100;
const KEYS: u8 = 4;

#[derive(Debug, Clone)]
enum Op {
    Check(u8),
    CheckWith(u8, u32),
    Critical(u8),
    Reserve(u8),
    Commit(usize),
    Rollback(usize),
    Advance(u64),
    Drain,
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..KEYS).prop_map(Op::Check),
        2 => (0..KEYS, 0..1000u32).prop_map(|(k, p)| Op::CheckWith(k, p)),
        1 => (0..KEYS).prop_map(Op::Critical),
        2 => (0..KEYS).prop_map(Op::Reserve),
        1 => any::<usize>().prop_map(Op::Commit),
        1 => any::<usize>().prop_map(Op::Rollback),
        3 => (0..WINDOW_MS * 3 / 2).prop_map(Op::Advance),
        1 => Just(Op::Drain),
        1 => Just(Op::Sweep),
    ]
}

type Store = Inner<u8, u32>;
type Held = Vec<(u8, u64, u32, Fire<u32>)>;

fn store(max_keys: usize, always_hot: bool) -> Store {
    let mut s = Inner::new(
        "hot".into(),
        Duration::from_millis(WINDOW_MS),
        max_keys,
        None,
    );
    s.always_hot = always_hot;
    s
}

/// One operation on one store; the outcome as text, so both stores' can be compared.
fn apply(s: &Store, held: &mut Held, op: &Op) -> String {
    match *op {
        Op::Check(k) => format!("{:?}", s.check::<_, true>(&k, || None)),
        Op::CheckWith(k, p) => format!("{:?}", s.check::<_, false>(&k, || Some(p))),
        Op::Critical(k) => format!("{:?}", s.check_critical(&k)),
        Op::Reserve(k) => match s.reserve(&k, || None) {
            Ok((key, hash, token, fire)) => {
                let out = format!("won {fire:?}");
                held.push((key, hash, token, fire));
                out
            }
            Err(suppressed) => format!("lost {suppressed:?}"),
        },
        Op::Commit(i) if !held.is_empty() => {
            let (key, hash, token, _) = held.remove(i % held.len());
            s.commit(&key, hash, token);
            "committed".into()
        }
        Op::Rollback(i) if !held.is_empty() => {
            let (key, hash, token, fire) = held.remove(i % held.len());
            s.rollback(&key, hash, token, fire.digest);
            "rolled back".into()
        }
        Op::Drain => {
            let mut d = s.drain_digests();
            d.sort_by_key(|(k, _)| *k);
            format!("{d:?}")
        }
        Op::Sweep => format!("swept {}", s.sweep()),
        Op::Commit(_) | Op::Rollback(_) | Op::Advance(_) => String::new(),
    }
}

fn run(max_keys: usize, ops: &[Op]) -> Result<u64, TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let locked = store(max_keys, false);
        let mut hot = store(max_keys, true);
        // One hash seed for both, so ties in eviction break the same way.
        hot.hasher = locked.hasher.clone();
        let (mut held_hot, mut held_locked) = (Held::new(), Held::new());
        for (i, op) in ops.iter().enumerate() {
            if let Op::Advance(ms) = *op {
                tokio::time::advance(Duration::from_millis(ms)).await;
                continue;
            }
            let a = apply(&hot, &mut held_hot, op);
            let b = apply(&locked, &mut held_locked, op);
            prop_assert_eq!(a, b, "op {} ({:?})", i, op);
            prop_assert_eq!(hot.len(), locked.len(), "len after op {}", i);
        }
        // Whatever the cells still hold comes out in the last digests.
        // Reservations still held are rolled back (in both, in one order),
        // then time moves past every window.
        for ((ka, ha, ta, fa), (kb, hb, tb, fb)) in held_hot.drain(..).zip(held_locked.drain(..)) {
            prop_assert_eq!((ka, ha, ta), (kb, hb, tb));
            hot.rollback(&ka, ha, ta, fa.digest);
            locked.rollback(&kb, hb, tb, fb.digest);
        }
        tokio::time::advance(Duration::from_millis(WINDOW_MS)).await;
        let mut a = hot.drain_digests();
        let mut b = locked.drain_digests();
        a.sort_by_key(|(k, _)| *k);
        b.sort_by_key(|(k, _)| *k);
        prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
        prop_assert_eq!(locked.hot_counted.load(Ordering::Relaxed), 0);
        Ok(hot.hot_counted.load(Ordering::Relaxed))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn hot_cells_change_no_answer(
        // 1 to 100 keys make one shard, 1024 make sixteen.
        max_keys in prop_oneof![Just(1usize), Just(2), Just(3), Just(100), Just(1024)],
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run(max_keys, &ops)?;
    }
}

/// The differential test above is only worth something if cells do count:
/// a storm on one key goes through its cell, and the digest still adds up.
#[test]
fn a_storm_is_counted_in_the_cell_and_folded_back() {
    let ops: Vec<Op> = std::iter::once(Op::Check(1))
        .chain((0..50).flat_map(|_| [Op::Check(1), Op::Advance(1)]))
        .chain([Op::CheckWith(1, 7), Op::Check(1), Op::Check(2)])
        .collect();
    let counted = run(100, &ops).expect("stores agree");
    // The first suppression installs the cell; the other 49 count in it,
    // then the payload check folds it, and the next plain check reinstalls.
    assert_eq!(counted, 49);
}

/// A check that finds its key's cell does not touch the shard's lock.
#[tokio::test(start_paused = true)]
async fn a_cell_counts_while_the_shard_is_locked() {
    let s = store(100, true);
    assert!(s.check::<_, true>(&1, || None).is_fire());
    assert!(s.check::<_, true>(&1, || None).is_suppressed());
    let hash = s.hasher.hash_one(1u8);
    let shard = s.shard(hash);
    let guard = shard.table.lock();
    let now = s.now_ticks();
    let raw = s
        .hot_suppress(shard, &1u8, hash, now)
        .expect("counted in the cell");
    assert_eq!(raw.suppressed, 2);
    assert_eq!(
        raw.remaining,
        duration_ticks(Duration::from_millis(WINDOW_MS))
    );
    drop(guard);
    match s.check::<_, true>(&1, || None) {
        Decision::Suppressed(sup) => assert_eq!(sup.suppressed, 3),
        Decision::Fire(f) => panic!("fired inside the window: {f:?}"),
    }
    // A reservation's locked visit folds the cell: the record has all three.
    match s.reserve(&1u8, || None) {
        Err(sup) => assert_eq!(sup.suppressed, 4),
        Ok(_) => panic!("won inside the window"),
    }
    assert!(!shard.has_hot.load(Ordering::Relaxed));
}

/// Four threads storm one key while a fifth keeps folding its cell (payload
/// checks, failed reservations, sweeps): every suppression gets its own
/// number, the numbers have no gap, and the digest adds up to all of them.
/// Run once with cells installed on every suppression and once only on
/// contention, as in production.
#[test]
fn a_storm_on_one_key_from_many_threads_counts_every_event_once() {
    for always_hot in [true, false] {
        let mut s = store(100, always_hot);
        s.window = Duration::from_secs(3600);
        s.window_ticks = duration_ticks(s.window);
        let s = std::sync::Arc::new(s);
        assert!(s.check::<_, true>(&9, || None).is_fire());
        const PER_THREAD: usize = 100_000;
        let start = std::sync::Barrier::new(5);
        let numbers: Vec<u64> = std::thread::scope(|scope| {
            let mut storms: Vec<_> = (0..4)
                .map(|_| {
                    let (s, start) = (&s, &start);
                    scope.spawn(move || {
                        start.wait();
                        (0..PER_THREAD)
                            .map(|_| match s.check::<_, true>(&9, || None) {
                                Decision::Suppressed(sup) => sup.suppressed,
                                Decision::Fire(f) => panic!("fired inside the window: {f:?}"),
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let folder = scope.spawn(|| {
                start.wait();
                let mut out = Vec::new();
                for i in 0..2_000u32 {
                    let n = match i % 3 {
                        0 => match s.check::<_, false>(&9, || Some(i)) {
                            Decision::Suppressed(sup) => sup.suppressed,
                            Decision::Fire(f) => panic!("fired inside the window: {f:?}"),
                        },
                        1 => match s.reserve(&9u8, || None) {
                            Err(sup) => sup.suppressed,
                            Ok(_) => panic!("won inside the window"),
                        },
                        _ => {
                            s.sweep();
                            continue;
                        }
                    };
                    out.push(n);
                }
                out
            });
            storms.push(folder);
            storms.into_iter().flat_map(|t| t.join().unwrap()).collect()
        });
        let mut numbers = numbers;
        numbers.sort_unstable();
        let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
        assert!(
            numbers == expected,
            "numbers repeat or skip (always_hot {always_hot})"
        );
        let fire = s.check_critical(&9);
        assert_eq!(fire.suppressed_since_last, numbers.len() as u64);
        if always_hot {
            assert!(s.hot_counted.load(Ordering::Relaxed) > 0);
        }
    }
}

/// Threads storm one key across hundreds of short windows while another
/// drains digests: every suppressed event is reported exactly once, by the
/// fire that ends its window or by a drain, and the `suppressed` numbers are
/// exactly 1..=n once per reported period. This runs on real time (the TSC
/// clock, no runtime): a hot cell exists only under real concurrency, which a
/// paused clock (a `current_thread` runtime) cannot give; the windows are
/// 50 µs, so the test spins through them instead of sleeping.
#[test]
fn storms_across_many_windows_report_every_event_once() {
    for always_hot in [true, false] {
        let mut s = store(100, always_hot);
        s.window = Duration::from_micros(50);
        s.window_ticks = duration_ticks(s.window);
        let s = std::sync::Arc::new(s);
        let start = std::sync::Barrier::new(4);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (numbers, reported) = std::thread::scope(|scope| {
            let storms: Vec<_> = (0..3)
                .map(|_| {
                    let (s, start) = (&s, &start);
                    scope.spawn(move || {
                        start.wait();
                        let (mut numbers, mut reported) = (Vec::new(), Vec::new());
                        for _ in 0..60_000 {
                            match s.check::<_, true>(&5, || None) {
                                Decision::Suppressed(sup) => numbers.push(sup.suppressed),
                                Decision::Fire(f) => reported.push(f.suppressed_since_last),
                            }
                        }
                        (numbers, reported)
                    })
                })
                .collect();
            let drainer = scope.spawn(|| {
                start.wait();
                let mut reported = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    reported.extend(s.drain_digests().into_iter().map(|(_, d)| d.count));
                    std::thread::yield_now();
                }
                reported
            });
            let (mut numbers, mut reported) = (Vec::new(), Vec::new());
            for t in storms {
                let (n, r) = t.join().unwrap();
                numbers.extend(n);
                reported.extend(r);
            }
            stop.store(true, Ordering::Relaxed);
            reported.extend(drainer.join().unwrap());
            // Past the last window, what is left comes out in one drain.
            let end = std::time::Instant::now() + Duration::from_micros(200);
            while std::time::Instant::now() < end {
                std::hint::spin_loop();
            }
            reported.extend(s.drain_digests().into_iter().map(|(_, d)| d.count));
            (numbers, reported)
        });
        let reported: Vec<u64> = reported.into_iter().filter(|&n| n > 0).collect();
        assert_eq!(
            reported.iter().sum::<u64>(),
            numbers.len() as u64,
            "every suppressed event reported once (always_hot {always_hot})"
        );
        // Number k was handed out once per reported period of k or more.
        let mut handed = std::collections::BTreeMap::<u64, u64>::new();
        for n in &numbers {
            *handed.entry(*n).or_default() += 1;
        }
        for (&k, &times) in &handed {
            let periods = reported.iter().filter(|&&n| n >= k).count() as u64;
            assert_eq!(times, periods, "number {k} (always_hot {always_hot})");
        }
        assert!(reported.len() > 10, "too few windows: {}", reported.len());
    }
}
