//! The shared state machine behind a `CircuitBreaker` and its permits.
//!
//! The state lives in one `AtomicU64` word: the state code, a generation that changes on every
//! transition, and (while closed) the consecutive-failure count. Closed-state permits and, for
//! the consecutive-failure policy, their verdicts only touch that word: a success is one load
//! (plus a store when the failure count was not zero). Every transition, every half-open probe
//! and the window policies go through a mutex, which also serializes the events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::metrics::BreakerMetrics;
use crate::open_duration::{OpenDurations, Schedule, apply_jitter};
use crate::policy::{RateWindow, SlowCalls, TripPolicy};
use crate::{Outcome, Reason, Rejected, State, Transition};

const STATE_MASK: u64 = 0b111;
const GEN_SHIFT: u32 = 3;
const GEN_MASK: u32 = (1 << 29) - 1;
const FAIL_SHIFT: u32 = 32;

const fn pack(state: State, generation: u32, fails: u32) -> u64 {
    state.code() | (((generation & GEN_MASK) as u64) << GEN_SHIFT) | ((fails as u64) << FAIL_SHIFT)
}

const fn state_of(word: u64) -> State {
    State::from_code(word & STATE_MASK)
}

const fn gen_of(word: u64) -> u32 {
    ((word >> GEN_SHIFT) as u32) & GEN_MASK
}

const fn fails_of(word: u64) -> u32 {
    (word >> FAIL_SHIFT) as u32
}

const fn with_fails(word: u64, fails: u32) -> u64 {
    (word & ((1 << FAIL_SHIFT) - 1)) | ((fails as u64) << FAIL_SHIFT)
}

/// What a permit remembers about its acquisition: the state word it was granted under (its
/// state and generation, failure count cleared) and, when slow calls are tracked, its start
/// in nanoseconds on the breaker's clock. Two plain words, so the hot path copies no niche-
/// encoded `Option<Instant>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    word: u64,
    start: u64,
}

const NO_START: u64 = u64::MAX;

impl Token {
    /// The token of a permit that already has its verdict.
    pub(crate) const SPENT: Token = Token {
        word: u64::MAX,
        start: NO_START,
    };

    #[inline]
    const fn new(word: u64, start: u64) -> Token {
        Token {
            word: word & ((1 << FAIL_SHIFT) - 1),
            start,
        }
    }

    /// The state the permit was granted in: `Closed`, `HalfOpen` (a probe) or `Disabled`.
    #[inline]
    pub(crate) const fn state(self) -> State {
        state_of(self.word)
    }

    #[inline]
    const fn generation(self) -> u32 {
        gen_of(self.word)
    }

    #[inline]
    pub(crate) const fn is_spent(self) -> bool {
        self.word == u64::MAX
    }
}

/// A verdict, including the one a permit gets when it is dropped without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Outcome(Outcome),
    Abandoned,
}

/// The immutable configuration.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) trip: TripPolicy,
    pub(crate) slow: Option<SlowCalls>,
    pub(crate) open: OpenDurations,
    pub(crate) first_open: Duration,
    pub(crate) jitter: f64,
    pub(crate) probes: u32,
    pub(crate) successes_to_close: u32,
}

#[derive(Debug)]
struct Core {
    failure_window: Option<RateWindow>,
    slow_window: Option<RateWindow>,
    schedule: Schedule,
    open_for: Duration,
    opened_at: Instant,
    /// Live probe permits, of this half-open period or an earlier one.
    in_flight: u32,
    successes: u32,
    rng: SmallRng,
}

/// What the closed-state hot path reads, alone on its cache line(s) so that writes elsewhere
/// (the `Arc`'s reference counts when permits are cloned, the mutex) do not evict it from the
/// other cores' caches.
#[derive(Debug)]
#[repr(align(128))]
struct Hot {
    word: AtomicU64,
    /// Closed-state verdicts need neither the clock nor the lock.
    fast: bool,
    /// Slow calls are tracked: permits record their start.
    timed: bool,
}

#[derive(Debug)]
pub(crate) struct Inner {
    hot: Hot,
    /// Nanoseconds since `base` at which an open breaker lets probes through.
    open_until: AtomicU64,
    base: Instant,
    /// Consecutive-failure threshold when that policy is lock-free, else 0.
    lock_free_threshold: u32,
    pub(crate) name: std::sync::Arc<str>,
    cfg: Config,
    core: Mutex<Core>,
    events: broadcast::Sender<Transition>,
    metrics: Option<BreakerMetrics>,
}

impl Inner {
    pub(crate) fn new(
        name: std::sync::Arc<str>,
        cfg: Config,
        seed: Option<u64>,
        metrics: Option<BreakerMetrics>,
    ) -> Inner {
        let now = Instant::now();
        let failure_window = match cfg.trip {
            TripPolicy::FailureRate { threshold, window } => {
                Some(RateWindow::new(window, threshold))
            }
            TripPolicy::ConsecutiveFailures(_) => None,
        };
        let slow_window = match cfg.slow {
            Some(SlowCalls::Rate { rate, window, .. }) => Some(RateWindow::new(window, rate)),
            _ => None,
        };
        let lock_free_threshold = match cfg.trip {
            TripPolicy::ConsecutiveFailures(n) if slow_window.is_none() => n,
            _ => 0,
        };
        let rng = match seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        let core = Core {
            failure_window,
            slow_window,
            schedule: cfg.open.start(),
            open_for: cfg.first_open,
            opened_at: now,
            in_flight: 0,
            successes: 0,
            rng,
        };
        let (events, _) = broadcast::channel(64);
        Inner {
            hot: Hot {
                word: AtomicU64::new(pack(State::Closed, 0, 0)),
                fast: lock_free_threshold != 0 && cfg.slow.is_none(),
                timed: cfg.slow.is_some(),
            },
            open_until: AtomicU64::new(0),
            base: now,
            lock_free_threshold,
            name,
            cfg,
            core: Mutex::new(core),
            events,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock cannot leave `Core` half-updated in a way that
        // matters more than refusing service would, so poisoning is ignored.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.events.subscribe()
    }

    /// The current state, moving an open breaker whose open duration has elapsed to half-open.
    #[inline]
    pub(crate) fn state(&self) -> State {
        let word = self.hot.word.load(Ordering::Acquire);
        let state = state_of(word);
        if state == State::Open {
            let now = Instant::now();
            if self.nanos(now) >= self.open_until.load(Ordering::Relaxed) {
                let mut core = self.lock();
                self.half_open_if_due(&mut core, now);
                return state_of(self.hot.word.load(Ordering::Acquire));
            }
        }
        state
    }

    #[inline]
    pub(crate) fn acquire(&self) -> Result<Token, Rejected> {
        let word = self.hot.word.load(Ordering::Acquire);
        if word & STATE_MASK == State::Closed.code() {
            Ok(Token::new(word, self.start()))
        } else {
            self.acquire_slow(word)
        }
    }

    #[inline]
    fn start(&self) -> u64 {
        if self.hot.timed {
            self.nanos(Instant::now())
        } else {
            NO_START
        }
    }

    #[cold]
    fn acquire_slow(&self, word: u64) -> Result<Token, Rejected> {
        let result = self.acquire_slow_inner(word);
        if result.is_err()
            && let Some(m) = &self.metrics
        {
            m.rejected.inc();
        }
        result
    }

    fn acquire_slow_inner(&self, word: u64) -> Result<Token, Rejected> {
        if state_of(word) == State::Disabled {
            return Ok(Token::new(word, NO_START));
        }
        if state_of(word) == State::ForcedOpen {
            return Err(Rejected {
                retry_after: self.cfg.first_open,
                state: State::ForcedOpen,
            });
        }
        let now = Instant::now();
        if state_of(word) == State::Open {
            let until = self.open_until.load(Ordering::Relaxed);
            let at = self.nanos(now);
            if at < until {
                return Err(Rejected {
                    retry_after: Duration::from_nanos(until - at),
                    state: State::Open,
                });
            }
        }
        let mut core = self.lock();
        self.half_open_if_due(&mut core, now);
        let word = self.hot.word.load(Ordering::Acquire);
        match state_of(word) {
            State::HalfOpen => {
                if core.in_flight < self.cfg.probes {
                    core.in_flight += 1;
                    Ok(Token::new(word, self.start()))
                } else {
                    Err(Rejected {
                        retry_after: core.open_for,
                        state: State::HalfOpen,
                    })
                }
            }
            State::Open => {
                let until = self.open_until.load(Ordering::Relaxed);
                Err(Rejected {
                    retry_after: Duration::from_nanos(until.saturating_sub(self.nanos(now))),
                    state: State::Open,
                })
            }
            State::ForcedOpen => Err(Rejected {
                retry_after: self.cfg.first_open,
                state: State::ForcedOpen,
            }),
            State::Closed => Ok(Token::new(word, self.start())),
            State::Disabled => Ok(Token::new(word, NO_START)),
        }
    }

    fn half_open_if_due(&self, core: &mut Core, now: Instant) {
        let word = self.hot.word.load(Ordering::Acquire);
        if state_of(word) == State::Open
            && self.nanos(now) >= self.open_until.load(Ordering::Relaxed)
        {
            let open_for = core.open_for;
            self.transition(core, State::HalfOpen, Reason::OpenElapsed { open_for }, now);
        }
    }

    /// Records the verdict on a permit.
    #[inline]
    pub(crate) fn finish(&self, token: Token, verdict: Verdict) {
        if self.hot.fast && token.state() == State::Closed {
            // The lock-free closed path: no clock, no lock; a success is one load.
            if let Some(m) = &self.metrics {
                m.count(verdict);
            }
            match verdict {
                Verdict::Outcome(Outcome::Success) => {
                    if fails_of(self.hot.word.load(Ordering::Relaxed)) != 0 {
                        self.clear_failures(token.generation());
                    }
                }
                Verdict::Outcome(Outcome::Failure) => self.add_failure(token.generation()),
                Verdict::Outcome(Outcome::Ignored) | Verdict::Abandoned => {}
            }
            return;
        }
        self.finish_general(token, verdict);
    }

    #[inline(never)]
    fn finish_general(&self, token: Token, verdict: Verdict) {
        let mut verdict = verdict;
        let mut slow = false;
        if let (Some(policy), Verdict::Outcome(outcome)) = (self.cfg.slow, verdict)
            && token.start != NO_START
            && outcome != Outcome::Ignored
        {
            let elapsed = self.nanos(Instant::now()).saturating_sub(token.start);
            slow = u128::from(elapsed) >= policy.threshold().as_nanos();
            if slow && outcome == Outcome::Success && matches!(policy, SlowCalls::AsFailures { .. })
            {
                verdict = Verdict::Outcome(Outcome::Failure);
            }
        }
        if let Some(m) = &self.metrics {
            m.count(verdict);
        }
        match token.state() {
            State::Closed => {
                let Verdict::Outcome(outcome) = verdict else {
                    return;
                };
                if self.lock_free_threshold != 0 {
                    match outcome {
                        Outcome::Success => self.clear_failures(token.generation()),
                        Outcome::Failure => self.add_failure(token.generation()),
                        Outcome::Ignored => {}
                    }
                } else if outcome != Outcome::Ignored {
                    self.finish_closed_locked(token.generation(), outcome, slow);
                }
            }
            State::HalfOpen => self.finish_probe(token.generation(), verdict, slow),
            _ => {}
        }
    }

    #[inline]
    fn clear_failures(&self, generation: u32) {
        let mut word = self.hot.word.load(Ordering::Relaxed);
        while fails_of(word) != 0 && state_of(word) == State::Closed && gen_of(word) == generation {
            match self.hot.word.compare_exchange_weak(
                word,
                with_fails(word, 0),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(current) => word = current,
            }
        }
    }

    /// Counts one more failure in a row; returns the new count, or `None` if the breaker
    /// left that closed generation.
    fn bump_failures(&self, generation: u32) -> Option<u32> {
        let mut word = self.hot.word.load(Ordering::Relaxed);
        loop {
            if state_of(word) != State::Closed || gen_of(word) != generation {
                return None;
            }
            let fails = fails_of(word).saturating_add(1);
            match self.hot.word.compare_exchange_weak(
                word,
                with_fails(word, fails),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(fails),
                Err(current) => word = current,
            }
        }
    }

    #[inline(never)]
    fn add_failure(&self, generation: u32) {
        let threshold = self.lock_free_threshold;
        if self
            .bump_failures(generation)
            .is_some_and(|n| n >= threshold)
        {
            let mut core = self.lock();
            let word = self.hot.word.load(Ordering::Acquire);
            if state_of(word) == State::Closed
                && gen_of(word) == generation
                && fails_of(word) >= threshold
            {
                let count = fails_of(word);
                self.transition(
                    &mut core,
                    State::Open,
                    Reason::ConsecutiveFailures { count },
                    Instant::now(),
                );
            }
        }
    }

    fn finish_closed_locked(&self, generation: u32, outcome: Outcome, slow: bool) {
        let mut core = self.lock();
        let word = self.hot.word.load(Ordering::Acquire);
        if state_of(word) != State::Closed || gen_of(word) != generation {
            return;
        }
        let now = Instant::now();
        let at = self.nanos(now);
        let failed = outcome == Outcome::Failure;
        let mut reason = None;
        match self.cfg.trip {
            TripPolicy::ConsecutiveFailures(threshold) => {
                if failed {
                    if let Some(count) = self.bump_failures(generation)
                        && count >= threshold
                    {
                        reason = Some(Reason::ConsecutiveFailures { count });
                    }
                } else {
                    self.clear_failures(generation);
                }
            }
            TripPolicy::FailureRate { .. } => {
                if let Some(w) = core.failure_window.as_mut()
                    && let Some((rate, calls)) = w.record(failed, at)
                {
                    reason = Some(Reason::FailureRate { rate, calls });
                }
            }
        }
        if let Some(w) = core.slow_window.as_mut()
            && let Some((rate, calls)) = w.record(slow, at)
            && reason.is_none()
        {
            reason = Some(Reason::SlowCallRate { rate, calls });
        }
        if let Some(reason) = reason {
            self.transition(&mut core, State::Open, reason, now);
        }
    }

    fn finish_probe(&self, generation: u32, verdict: Verdict, slow: bool) {
        let mut core = self.lock();
        // The slot is freed whatever happened since: `in_flight` counts every live probe,
        // including one granted before a reopen, so probes never overlap beyond the limit.
        core.in_flight = core.in_flight.saturating_sub(1);
        let word = self.hot.word.load(Ordering::Acquire);
        if state_of(word) != State::HalfOpen || gen_of(word) != generation {
            return;
        }
        match verdict {
            Verdict::Outcome(Outcome::Success) if !slow => {
                core.successes += 1;
                if core.successes >= self.cfg.successes_to_close {
                    let successes = core.successes;
                    self.transition(
                        &mut core,
                        State::Closed,
                        Reason::ProbesSucceeded { successes },
                        Instant::now(),
                    );
                }
            }
            Verdict::Outcome(Outcome::Success | Outcome::Failure) => {
                self.transition(&mut core, State::Open, Reason::ProbeFailed, Instant::now());
            }
            Verdict::Outcome(Outcome::Ignored) | Verdict::Abandoned => {}
        }
    }

    /// A manual transition: `reset`, `force_open`, `disable`.
    pub(crate) fn manual(&self, to: State, reason: Reason) {
        let mut core = self.lock();
        let word = self.hot.word.load(Ordering::Acquire);
        if state_of(word) == to {
            if to == State::Closed {
                // Already closed: reset still forgets the failures counted so far.
                self.clear_counts(&mut core);
                self.hot.word.store(
                    pack(State::Closed, gen_of(word).wrapping_add(1), 0),
                    Ordering::Release,
                );
            }
            return;
        }
        self.transition(&mut core, to, reason, Instant::now());
    }

    fn clear_counts(&self, core: &mut Core) {
        if let Some(w) = core.failure_window.as_mut() {
            w.clear();
        }
        if let Some(w) = core.slow_window.as_mut() {
            w.clear();
        }
        core.schedule = self.cfg.open.start();
    }

    /// Moves to `to`; the caller holds the lock.
    fn transition(&self, core: &mut Core, to: State, reason: Reason, now: Instant) {
        let word = self.hot.word.load(Ordering::Acquire);
        let from = state_of(word);
        let mut open_for = None;
        match to {
            State::Open => {
                let d = core.schedule.next_duration();
                let d = apply_jitter(d, self.cfg.jitter, core.rng.random::<f64>());
                core.open_for = d;
                core.opened_at = now;
                let until = self
                    .nanos(now)
                    .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                self.open_until.store(until, Ordering::Relaxed);
                open_for = Some(d);
            }
            State::Closed => self.clear_counts(core),
            State::HalfOpen | State::ForcedOpen | State::Disabled => {}
        }
        core.successes = 0;
        self.hot
            .word
            .store(pack(to, gen_of(word).wrapping_add(1), 0), Ordering::Release);
        if let Some(m) = &self.metrics {
            m.transition(from, to);
        }
        if to == State::Open || to == State::ForcedOpen {
            tracing::warn!(
                breaker = %self.name,
                from = from.as_str(),
                to = to.as_str(),
                reason = reason.as_str(),
                detail = %reason,
                open_for_ms = open_for.map(|d| d.as_millis() as u64),
                "circuit breaker opened"
            );
        } else {
            tracing::info!(
                breaker = %self.name,
                from = from.as_str(),
                to = to.as_str(),
                reason = reason.as_str(),
                detail = %reason,
                "circuit breaker state changed"
            );
        }
        // No receiver is not an error: subscribing is optional.
        let _ = self.events.send(Transition {
            breaker: self.name.clone(),
            from,
            to,
            reason,
            at: now,
            open_for,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_packing_round_trips() {
        for state in State::ALL {
            let w = pack(state, GEN_MASK, u32::MAX);
            assert_eq!(state_of(w), state);
            assert_eq!(gen_of(w), GEN_MASK);
            assert_eq!(fails_of(w), u32::MAX);
            let w = with_fails(w, 7);
            assert_eq!((state_of(w), gen_of(w), fails_of(w)), (state, GEN_MASK, 7));
        }
        // The generation wraps inside its bits without touching the others.
        let w = pack(State::HalfOpen, GEN_MASK.wrapping_add(1), 3);
        assert_eq!(
            (state_of(w), gen_of(w), fails_of(w)),
            (State::HalfOpen, 0, 3)
        );
    }
}
