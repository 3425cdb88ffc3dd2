//! proptest: random sequences of check / check_critical / reserve / commit /
//! drop / advance / drain against a plain `HashMap` model of timestamps and
//! counts, on a paused clock.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use seawall_cooldown::{Cooldown, Decision, Digest, Fire, Reservation};
use tokio::time::Instant;

const WINDOW_MS: u64 = 100;
const KEYS: u8 = 4;

#[derive(Debug, Clone)]
enum Op {
    Check(u8, Option<u32>),
    Critical(u8),
    Reserve(u8, Option<u32>),
    Commit(usize),
    Drop(usize),
    Advance(u64),
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..KEYS, proptest::option::of(0..1000u32)).prop_map(|(k, p)| Op::Check(k, p)),
        1 => (0..KEYS).prop_map(Op::Critical),
        3 => (0..KEYS, proptest::option::of(0..1000u32)).prop_map(|(k, p)| Op::Reserve(k, p)),
        2 => any::<usize>().prop_map(Op::Commit),
        2 => any::<usize>().prop_map(Op::Drop),
        3 => (0..2 * WINDOW_MS).prop_map(Op::Advance),
        1 => Just(Op::Drain),
    ]
}

/// Unreported suppressed events: (count, first ms, last ms, last payload).
type Counts = (u64, u64, u64, Option<u32>);

#[derive(Debug, Default, Clone)]
struct ModelKey {
    fired_at: Option<u64>,
    counts: Option<Counts>,
    reserved: bool,
    /// Was at some point since its last fire free to be forgotten by the
    /// store (no window, no send in flight, nothing to report), so it may
    /// report `last_fired: None`.
    forgettable: bool,
}

#[derive(Debug, Default)]
struct Model {
    now: u64,
    keys: HashMap<u8, ModelKey>,
}

/// What the model expects a fire to report: (suppressed, last_fired, counts, bypassed).
type ExpectFire = (u64, Option<u64>, Option<Counts>, bool);
/// What it expects of a suppression: (remaining ms, suppressed).
type ExpectSuppressed = (u64, u64);

impl Model {
    fn mark_forgettable(&mut self) {
        let now = self.now;
        for k in self.keys.values_mut() {
            let blocked = k.reserved || k.fired_at.is_some_and(|at| now < at + WINDOW_MS);
            if !blocked && k.counts.is_none() {
                k.forgettable = true;
            }
        }
    }

    fn forgettable(&self, key: u8) -> bool {
        self.keys.get(&key).is_none_or(|k| k.forgettable)
    }

    fn blocked(&self, k: &ModelKey) -> bool {
        k.reserved || k.fired_at.is_some_and(|at| self.now < at + WINDOW_MS)
    }

    fn suppress(&mut self, key: u8, payload: Option<u32>) -> ExpectSuppressed {
        let now = self.now;
        let k = self.keys.entry(key).or_default();
        let c = k.counts.get_or_insert((0, now, now, None));
        c.0 += 1;
        c.2 = now;
        if payload.is_some() {
            c.3 = payload;
        }
        let remaining = match k.fired_at {
            Some(at) if at + WINDOW_MS > now => at + WINDOW_MS - now,
            _ => WINDOW_MS,
        };
        (remaining, c.0)
    }

    fn check(&mut self, key: u8, payload: Option<u32>) -> Result<ExpectFire, ExpectSuppressed> {
        let k = self.keys.get(&key).cloned().unwrap_or_default();
        if self.blocked(&k) {
            return Err(self.suppress(key, payload));
        }
        let k = self.keys.entry(key).or_default();
        let counts = k.counts.take();
        let last = k.fired_at.replace(self.now);
        k.forgettable = false;
        Ok((counts.map_or(0, |c| c.0), last, counts, false))
    }

    fn critical(&mut self, key: u8) -> ExpectFire {
        let blocked = self.blocked(&self.keys.get(&key).cloned().unwrap_or_default());
        let k = self.keys.entry(key).or_default();
        let counts = k.counts.take();
        let last = k.fired_at.replace(self.now);
        k.forgettable = false;
        (counts.map_or(0, |c| c.0), last, counts, blocked)
    }

    fn reserve(&mut self, key: u8, payload: Option<u32>) -> Result<ExpectFire, ExpectSuppressed> {
        let k = self.keys.get(&key).cloned().unwrap_or_default();
        if self.blocked(&k) {
            return Err(self.suppress(key, payload));
        }
        let k = self.keys.entry(key).or_default();
        k.reserved = true;
        let counts = k.counts.take();
        Ok((counts.map_or(0, |c| c.0), k.fired_at, counts, false))
    }

    fn commit(&mut self, key: u8) {
        let k = self.keys.get_mut(&key).unwrap();
        k.reserved = false;
        k.fired_at = Some(self.now);
        k.forgettable = false;
    }

    fn rollback(&mut self, key: u8, taken: Option<Counts>) {
        let k = self.keys.get_mut(&key).unwrap();
        k.reserved = false;
        if let Some(t) = taken {
            k.counts = Some(match k.counts {
                None => t,
                Some(c) => (c.0 + t.0, c.1.min(t.1), c.2.max(t.2), c.3.or(t.3)),
            });
        }
    }

    fn drain(&mut self) -> Vec<(u8, Counts)> {
        let now = self.now;
        let mut out = Vec::new();
        for (key, k) in &mut self.keys {
            let blocked = k.reserved || k.fired_at.is_some_and(|at| now < at + WINDOW_MS);
            if !blocked && let Some(c) = k.counts.take() {
                out.push((*key, c));
            }
        }
        out.sort();
        out
    }
}

fn ms(start: Instant, at: Instant) -> u64 {
    u64::try_from(at.duration_since(start).as_millis()).unwrap()
}

fn counts(start: Instant, d: &Digest<u32>) -> Counts {
    (
        d.count,
        ms(start, d.first_suppressed),
        ms(start, d.last_suppressed),
        d.last_payload,
    )
}

fn assert_fire(
    start: Instant,
    got: &Fire<u32>,
    want: ExpectFire,
    forgettable: bool,
) -> Result<(), TestCaseError> {
    let (suppressed, last_fired, want_counts, bypassed) = want;
    prop_assert_eq!(got.suppressed_since_last, suppressed);
    prop_assert_eq!(got.bypassed, bypassed);
    prop_assert_eq!(got.digest.as_ref().map(|d| counts(start, d)), want_counts);
    // A key the store may have forgotten may report no last_fired; a wrong
    // one never.
    match got.last_fired {
        Some(at) => prop_assert_eq!(Some(ms(start, at)), last_fired),
        None => prop_assert!(last_fired.is_none() || forgettable),
    }
    if let Some(d) = &got.digest {
        prop_assert_eq!(d.last_fired, got.last_fired);
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let cooldown: Cooldown<u8, u32> = Cooldown::builder()
            .window(Duration::from_millis(WINDOW_MS))
            .payload::<u32>()
            .build()
            .unwrap();
        let start = Instant::now();
        let mut model = Model::default();
        // Live reservations, with the counts the model says each took.
        let mut live: Vec<(Reservation<u8, u32>, Option<Counts>)> = Vec::new();
        for op in ops {
            model.mark_forgettable();
            match op {
                Op::Check(key, payload) => {
                    let got = match payload {
                        Some(p) => cooldown.check_with(&key, &p),
                        None => cooldown.check(&key),
                    };
                    let forgettable = model.forgettable(key);
                    match (got, model.check(key, payload)) {
                        (Decision::Fire(f), Ok(want)) => assert_fire(start, &f, want, forgettable)?,
                        (Decision::Suppressed(s), Err((remaining, n))) => {
                            prop_assert_eq!(s.remaining, Duration::from_millis(remaining));
                            prop_assert_eq!(s.suppressed, n);
                        }
                        (got, want) => {
                            prop_assert!(false, "check {key}: got {got:?}, model {want:?}")
                        }
                    }
                }
                Op::Critical(key) => {
                    let f = cooldown.check_critical(&key);
                    let forgettable = model.forgettable(key);
                    assert_fire(start, &f, model.critical(key), forgettable)?;
                }
                Op::Reserve(key, payload) => {
                    let got = match payload {
                        Some(p) => cooldown.reserve_with(&key, &p),
                        None => cooldown.reserve(&key),
                    };
                    let forgettable = model.forgettable(key);
                    match (got, model.reserve(key, payload)) {
                        (Ok(r), Ok(want)) => {
                            assert_fire(start, r.fire(), want, forgettable)?;
                            live.push((r, want.2));
                        }
                        (Err(s), Err((remaining, n))) => {
                            prop_assert_eq!(s.remaining, Duration::from_millis(remaining));
                            prop_assert_eq!(s.suppressed, n);
                        }
                        (got, want) => {
                            prop_assert!(false, "reserve {key}: got {got:?}, model {want:?}")
                        }
                    }
                }
                Op::Commit(i) if !live.is_empty() => {
                    let (r, _) = live.swap_remove(i % live.len());
                    model.commit(*r.key());
                    r.commit();
                }
                Op::Drop(i) if !live.is_empty() => {
                    let (r, taken) = live.swap_remove(i % live.len());
                    model.rollback(*r.key(), taken);
                    drop(r);
                }
                Op::Commit(_) | Op::Drop(_) => {}
                Op::Advance(d) => {
                    tokio::time::advance(Duration::from_millis(d)).await;
                    model.now += d;
                }
                Op::Drain => {
                    let mut got: Vec<(u8, Counts)> = cooldown
                        .drain_digests()
                        .iter()
                        .map(|(k, d)| (*k, counts(start, d)))
                        .collect();
                    got.sort();
                    prop_assert_eq!(got, model.drain());
                }
            }
            prop_assert!(cooldown.len() <= usize::from(KEYS));
        }
        Ok(())
    })
}

/// The proptest settings: 512 cases, and failing seeds persisted in (and replayed first from)
/// `proptest-regressions/model.txt`, relative to the crate root (where `cargo test` runs the
/// test binary).
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/model.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// The committed seeds are where the runner looks: the seed of a past failure
/// (`[Reserve(1), Reserve(1), Drop(0), Check(1)]`) is loaded, so it is replayed before any new
/// case. Before, the file sat at `tests/model.proptest-regressions`, where nothing read it
/// (this test failed: no seed loaded).
#[test]
fn committed_seeds_are_replayed() {
    let persistence = config().failure_persistence.expect("persistence is on");
    let seeds: Vec<String> = persistence
        .load_persisted_failures2(None)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        seeds.contains(
            &"cc 1e2cae2a5f4553609ab863adc9c8484077faec28142e207ce39515b7e29f8bea".to_owned()
        ),
        "{seeds:?}"
    );
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn cooldown_matches_reference_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
