//! A proptest model of the keyed breaker: many keys, random outcomes, held permits (probes
//! among them), paused time and a small `max_keys`. The model is one independent
//! `CircuitBreaker` per key, built from the same configuration and never forgotten (the
//! single breaker is checked against its own model in `model.rs`).
//!
//! After every operation: every key's state equals its independent breaker's; the keys tracked
//! never exceed `max_keys`; no breaker that is not closed is untracked (so none was
//! forgotten); `open_keys()` lists exactly the non-closed ones. Because the independent
//! breakers are never forgotten, a keyed breaker that forgot a key with failures counted
//! would trip later than its model and fail the state check then.
//!
//! A call the keyed breaker passes through untracked (full of breakers it cannot forget) is
//! not fed to the model either; the model's breaker for that key must then be closed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;
use seawall_circuit_breaker::{CircuitBreaker, KeyedCircuitBreaker, Permit, State};

const KEYS: u32 = 8;
const OPEN_MS: u64 = 1_000;
const MAX_PROBE_MS: u64 = 3_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Success,
    Failure,
    Ignore,
    Drop,
}

#[derive(Debug, Clone)]
enum Op {
    Call(u32, Verdict),
    Hold(u32),
    Resolve(usize, Verdict),
    Advance(u64),
    ForgetIdle,
}

#[derive(Debug, Clone, Copy)]
struct Cfg {
    threshold: u32,
    probes: u32,
    successes: u32,
    max_keys: usize,
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        3 => Just(Verdict::Success),
        4 => Just(Verdict::Failure),
        1 => Just(Verdict::Ignore),
        1 => Just(Verdict::Drop),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    // Keys skewed: a few hot ones, the rest rare.
    let key = prop_oneof![3 => 0u32..3, 1 => 0u32..KEYS];
    prop_oneof![
        8 => (key.clone(), verdict()).prop_map(|(k, v)| Op::Call(k, v)),
        2 => key.prop_map(Op::Hold),
        3 => (any::<usize>(), verdict()).prop_map(|(i, v)| Op::Resolve(i, v)),
        3 => (0u64..2_500).prop_map(Op::Advance),
        1 => Just(Op::ForgetIdle),
    ]
}

fn builder(cfg: Cfg) -> seawall_circuit_breaker::CircuitBreakerBuilder {
    CircuitBreaker::builder()
        .name("model")
        .consecutive_failures(cfg.threshold)
        .open_duration(Duration::from_millis(OPEN_MS))
        .probes(cfg.probes)
        .successes_to_close(cfg.successes)
        .max_probe_duration(Duration::from_millis(MAX_PROBE_MS))
}

fn report(permit: Permit, v: Verdict) {
    match v {
        Verdict::Success => permit.success(),
        Verdict::Failure => permit.failure(),
        Verdict::Ignore => permit.ignore(),
        Verdict::Drop => drop(permit),
    }
}

struct Held {
    keyed: Permit,
    model: Option<Permit>,
}

struct World {
    cfg: Cfg,
    keyed: KeyedCircuitBreaker<u32>,
    model: HashMap<u32, CircuitBreaker>,
    held: Vec<Held>,
    untracked: u64,
}

impl World {
    fn model(&mut self, key: u32) -> &CircuitBreaker {
        let cfg = self.cfg;
        self.model
            .entry(key)
            .or_insert_with(|| builder(cfg).build().unwrap())
    }

    /// Acquires on both; `None` when both rejected (checked equal).
    fn acquire(&mut self, key: u32) -> Result<Option<Held>, TestCaseError> {
        let keyed = self.keyed.try_acquire(&key);
        if let Ok(p) = &keyed
            && p.state() == State::Disabled
        {
            // Untracked: the keyed breaker is full of breakers it cannot forget.
            self.untracked += 1;
            prop_assert_eq!(self.keyed.len(), self.cfg.max_keys);
            prop_assert_eq!(
                self.model(key).state(),
                State::Closed,
                "key {} untracked",
                key
            );
            return Ok(keyed.ok().map(|keyed| Held { keyed, model: None }));
        }
        let model = self.model(key).try_acquire();
        match (keyed, model) {
            (Ok(k), Ok(m)) => {
                prop_assert_eq!(k.state(), m.state(), "key {}", key);
                prop_assert_eq!(k.is_probe(), m.is_probe());
                Ok(Some(Held {
                    keyed: k,
                    model: Some(m),
                }))
            }
            (Err(k), Err(m)) => {
                prop_assert_eq!(k, m, "key {}", key);
                Ok(None)
            }
            (k, m) => Err(TestCaseError::fail(format!(
                "key {key}: keyed {k:?}, model {m:?}"
            ))),
        }
    }

    fn check(&mut self) -> Result<(), TestCaseError> {
        prop_assert!(self.keyed.len() <= self.cfg.max_keys);
        let mut non_closed = HashSet::new();
        for key in 0..KEYS {
            let model = self
                .model
                .get(&key)
                .map_or(State::Closed, CircuitBreaker::state);
            prop_assert_eq!(self.keyed.state(&key), model, "key {}", key);
            if model != State::Closed {
                prop_assert!(
                    self.keyed.get(&key).is_some(),
                    "key {} forgotten while {}",
                    key,
                    model
                );
                non_closed.insert((key, model));
            }
        }
        let open: HashSet<(u32, State)> = self.keyed.open_keys().into_iter().collect();
        prop_assert_eq!(open, non_closed);
        Ok(())
    }
}

async fn run(cfg: Cfg, ops: Vec<Op>) -> Result<(u64, usize), TestCaseError> {
    let mut w = World {
        cfg,
        keyed: builder(cfg).keyed().max_keys(cfg.max_keys).build().unwrap(),
        model: HashMap::new(),
        held: Vec::new(),
        untracked: 0,
    };
    let mut forgotten = 0;
    for op in ops {
        match op {
            Op::Call(key, v) => {
                if let Some(h) = w.acquire(key)? {
                    report(h.keyed, v);
                    if let Some(m) = h.model {
                        report(m, v);
                    }
                }
            }
            Op::Hold(key) => {
                if let Some(h) = w.acquire(key)? {
                    w.held.push(h);
                }
            }
            Op::Resolve(i, v) => {
                if !w.held.is_empty() {
                    let h = w.held.swap_remove(i % w.held.len());
                    report(h.keyed, v);
                    if let Some(m) = h.model {
                        report(m, v);
                    }
                }
            }
            Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
            Op::ForgetIdle => forgotten += w.keyed.forget_idle(),
        }
        w.check()?;
    }
    prop_assert_eq!(w.keyed.untracked_calls(), w.untracked);
    Ok((w.untracked, forgotten))
}

fn cfg() -> impl Strategy<Value = Cfg> {
    (1u32..4, 1u32..3, 1u32..3, 1usize..7).prop_map(|(threshold, probes, successes, max_keys)| {
        Cfg {
            threshold,
            probes,
            successes,
            max_keys,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn keyed_breaker_matches_independent_breakers(
        cfg in cfg(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(run(cfg, ops))?;
    }
}

/// The generator reaches the interesting corners: untracked calls and forgotten keys.
#[test]
fn the_model_reaches_untracked_calls_and_forgetting() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let cfg = Cfg {
        threshold: 1,
        probes: 1,
        successes: 1,
        max_keys: 2,
    };
    let ops = vec![
        Op::Call(0, Verdict::Failure),
        Op::Call(1, Verdict::Failure),
        Op::Call(2, Verdict::Success), // full of open breakers: untracked
        Op::Advance(OPEN_MS),
        Op::Call(0, Verdict::Success), // probe closes key 0: idle
        Op::Call(2, Verdict::Failure), // key 0 forgotten to make room; key 2 trips
        Op::ForgetIdle,
    ];
    let (untracked, _) = rt.block_on(run(cfg, ops)).unwrap();
    assert_eq!(untracked, 1);
}
