//! A proptest state-machine test: random operations on a breaker, checked step by step against
//! a simple reference model of its states, counts, probe slots (with their maximum probe
//! duration) and open durations.

use std::time::Duration;

use proptest::prelude::*;
use seawall_circuit_breaker::{CircuitBreaker, Permit, State};

const THRESHOLD: u32 = 3;
const PROBES: u32 = 2;
const SUCCESSES_TO_CLOSE: u32 = 2;
const SLOW_MS: u64 = 500;
const OPEN_MS: [u64; 3] = [1_000, 2_000, 4_000];
const MAX_PROBE_MS: u64 = 5_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Success,
    Failure,
    Ignore,
    Drop,
}

#[derive(Debug, Clone)]
enum Op {
    /// Acquire a permit and report at once.
    Call(Verdict),
    /// Acquire a permit, let 600 ms pass (slower than the threshold), report success.
    SlowCall,
    /// Acquire a permit and hold it.
    Hold,
    /// Report on the i-th held permit (modulo the number held). Held probes outlive
    /// transitions and keep their slot until they are resolved.
    Resolve(usize, Verdict),
    Advance(u64),
    ForceOpen,
    Disable,
    Reset,
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
    prop_oneof![
        8 => verdict().prop_map(Op::Call),
        1 => Just(Op::SlowCall),
        3 => Just(Op::Hold),
        3 => (any::<usize>(), verdict()).prop_map(|(i, v)| Op::Resolve(i, v)),
        4 => (0u64..3_000).prop_map(Op::Advance),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::Disable),
        1 => Just(Op::Reset),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Closed,
    Probe,
    Disabled,
}

#[derive(Debug, Clone, Copy)]
struct HeldModel {
    kind: Kind,
    generation: u64,
    start: u64,
    /// A probe's id in `Model::probes`.
    id: u64,
}

/// A live probe: id, generation, deadline.
type ProbeModel = (u64, u64, u64);

/// The reference: a direct transcription of the documented behaviour, in milliseconds.
#[derive(Debug)]
struct Model {
    state: State,
    generation: u64,
    fails: u32,
    now: u64,
    open_until: u64,
    open_for: u64,
    trips: usize,
    /// Live probes, of this half-open period or an earlier one.
    probes: Vec<ProbeModel>,
    next_id: u64,
    successes: u32,
    transitions: Vec<(State, State)>,
}

impl Model {
    fn new() -> Self {
        Model {
            state: State::Closed,
            generation: 0,
            fails: 0,
            now: 0,
            open_until: 0,
            open_for: OPEN_MS[0],
            trips: 0,
            probes: vec![],
            next_id: 0,
            successes: 0,
            transitions: vec![],
        }
    }

    fn go(&mut self, to: State) {
        self.go_at(to, self.now);
    }

    /// Transitions as of `at` (an open period starts then).
    fn go_at(&mut self, to: State, at: u64) {
        self.transitions.push((self.state, to));
        self.generation += 1;
        self.fails = 0;
        self.successes = 0;
        match to {
            State::Open => {
                self.open_for = OPEN_MS[self.trips.min(OPEN_MS.len() - 1)];
                self.trips += 1;
                self.open_until = at + self.open_for;
            }
            State::Closed => self.trips = 0,
            _ => {}
        }
        self.state = to;
    }

    /// The time-driven changes: probes past their deadline are freed, and one of the current
    /// half-open period reopens the breaker as of its deadline; then an elapsed open period
    /// turns half-open.
    fn tick(&mut self) {
        let now = self.now;
        let current = (self.state == State::HalfOpen).then_some(self.generation);
        let hung = self
            .probes
            .iter()
            .filter(|p| p.2 <= now && Some(p.1) == current)
            .map(|p| p.2)
            .min();
        self.probes.retain(|p| p.2 > now);
        if let Some(deadline) = hung {
            self.go_at(State::Open, deadline);
        }
        if self.state == State::Open && self.now >= self.open_until {
            self.go(State::HalfOpen);
        }
    }

    fn state(&mut self) -> State {
        self.tick();
        self.state
    }

    /// `Ok(kind)` or `Err((state, retry_after_ms))`.
    fn acquire(&mut self) -> Result<HeldModel, (State, u64)> {
        self.tick();
        let held = |kind, m: &Model| HeldModel {
            kind,
            generation: m.generation,
            start: m.now,
            id: m.next_id,
        };
        match self.state {
            State::Closed => Ok(held(Kind::Closed, self)),
            State::Disabled => Ok(held(Kind::Disabled, self)),
            State::Open => Err((State::Open, self.open_until - self.now)),
            State::ForcedOpen => Err((State::ForcedOpen, OPEN_MS[0])),
            State::HalfOpen => {
                if self.probes.len() < PROBES as usize {
                    let h = held(Kind::Probe, self);
                    self.probes
                        .push((h.id, h.generation, self.now + MAX_PROBE_MS));
                    self.next_id += 1;
                    Ok(h)
                } else {
                    Err((State::HalfOpen, self.open_for))
                }
            }
        }
    }

    fn resolve(&mut self, held: HeldModel, verdict: Verdict) {
        let slow = self.now - held.start >= SLOW_MS;
        let verdict = match verdict {
            Verdict::Success if slow => Verdict::Failure,
            v => v,
        };
        if held.kind == Kind::Probe {
            // A verdict after the deadline is too late: the probe counted as hung.
            self.tick();
            let Some(i) = self.probes.iter().position(|p| p.0 == held.id) else {
                return;
            };
            // A probe's slot is freed whatever happened since it was granted.
            self.probes.remove(i);
        }
        if held.generation != self.generation {
            return;
        }
        match (held.kind, self.state) {
            (Kind::Closed, State::Closed) => match verdict {
                Verdict::Success => self.fails = 0,
                Verdict::Failure => {
                    self.fails += 1;
                    if self.fails >= THRESHOLD {
                        self.go(State::Open);
                    }
                }
                Verdict::Ignore | Verdict::Drop => {}
            },
            (Kind::Probe, State::HalfOpen) => match verdict {
                Verdict::Success => {
                    self.successes += 1;
                    if self.successes >= SUCCESSES_TO_CLOSE {
                        self.go(State::Closed);
                    }
                }
                Verdict::Failure => self.go(State::Open),
                Verdict::Ignore | Verdict::Drop => {}
            },
            _ => {}
        }
    }

    fn manual(&mut self, to: State) {
        if self.state == to {
            if to == State::Closed {
                self.generation += 1;
                self.fails = 0;
                self.trips = 0;
            }
        } else {
            self.go(to);
        }
    }
}

fn report(permit: Permit, verdict: Verdict) {
    match verdict {
        Verdict::Success => permit.success(),
        Verdict::Failure => permit.failure(),
        Verdict::Ignore => permit.ignore(),
        Verdict::Drop => drop(permit),
    }
}

fn kind_of(p: &Permit) -> Kind {
    match p.state() {
        State::Closed => Kind::Closed,
        State::HalfOpen => Kind::Probe,
        State::Disabled => Kind::Disabled,
        s => panic!("permit granted in state {s:?}"),
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(THRESHOLD)
        .open_durations(OPEN_MS.map(Duration::from_millis))
        .probes(PROBES)
        .successes_to_close(SUCCESSES_TO_CLOSE)
        .slow_calls_as_failures(Duration::from_millis(SLOW_MS))
        .max_probe_duration(Duration::from_millis(MAX_PROBE_MS))
        .build()
        .unwrap();
    let mut events = breaker.subscribe();
    let mut model = Model::new();
    let mut held: Vec<(Permit, HeldModel)> = vec![];
    let mut seen = vec![];

    for op in ops {
        let acquire = |model: &mut Model| -> Result<Option<(Permit, HeldModel)>, TestCaseError> {
            match (breaker.try_acquire(), model.acquire()) {
                (Ok(p), Ok(m)) => {
                    prop_assert_eq!(kind_of(&p), m.kind);
                    prop_assert_eq!(p.is_probe(), m.kind == Kind::Probe);
                    Ok(Some((p, m)))
                }
                (Err(r), Err((state, retry_ms))) => {
                    prop_assert_eq!(r.state, state);
                    prop_assert_eq!(r.retry_after, Duration::from_millis(retry_ms));
                    Ok(None)
                }
                (got, want) => Err(TestCaseError::fail(format!(
                    "acquire: got {got:?}, model {want:?}"
                ))),
            }
        };
        match op {
            Op::Call(v) => {
                if let Some((p, m)) = acquire(&mut model)? {
                    report(p, v);
                    model.resolve(m, v);
                }
            }
            Op::SlowCall => {
                if let Some((p, m)) = acquire(&mut model)? {
                    tokio::time::advance(Duration::from_millis(600)).await;
                    model.now += 600;
                    report(p, Verdict::Success);
                    model.resolve(m, Verdict::Success);
                }
            }
            Op::Hold => {
                if let Some(pm) = acquire(&mut model)? {
                    held.push(pm);
                }
            }
            Op::Resolve(i, v) => {
                if !held.is_empty() {
                    let (p, m) = held.remove(i % held.len());
                    report(p, v);
                    model.resolve(m, v);
                }
            }
            Op::Advance(ms) => {
                tokio::time::advance(Duration::from_millis(ms)).await;
                model.now += ms;
            }
            Op::ForceOpen => {
                breaker.force_open();
                model.manual(State::ForcedOpen);
            }
            Op::Disable => {
                breaker.disable();
                model.manual(State::Disabled);
            }
            Op::Reset => {
                breaker.reset();
                model.manual(State::Closed);
            }
        }
        prop_assert_eq!(breaker.state(), model.state());
        while let Ok(t) = events.try_recv() {
            seen.push((t.from, t.to));
        }
        prop_assert_eq!(&seen, &model.transitions);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn breaker_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(run(ops))?;
    }
}
