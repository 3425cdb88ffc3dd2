//! The shared state machine behind a `CircuitBreaker` and its permits.
//!
//! The state lives in one atomic word (see `word.rs`): the state code, a generation that
//! changes on every transition, and (while closed) the consecutive-failure count. Closed-state
//! permits and, for the consecutive-failure policy, their verdicts only touch that word: a
//! success is one load (plus a store when the failure count was not zero). Every transition,
//! every half-open probe and the window policies go through a mutex, which also serializes
//! the events.
//!
//! Time-driven changes (open → half-open once the open duration has passed, a probe counted
//! as failed once it outlives the maximum probe duration) happen lazily, on the first call,
//! `state()` or metrics scrape that sees them due: no timer task runs. A change is dated to
//! when it became due, not to when it was seen, so the state is a function of time.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::metrics::{BreakerMetrics, Refresh};
use crate::open_duration::{OpenDurations, Schedule, apply_jitter};
use crate::outcome::Verdict;
use crate::policy::{RateWindow, SlowCalls, TripPolicy};
use crate::probes::ProbeSlots;
use crate::sync::{AtomicU64, Mutex, MutexGuard, Ordering};
use crate::word::{
    FAST_MASK, GENERAL, NO_START, STATE_MASK, Token, fails_of, gen_of, pack, state_of, with_fails,
};
use crate::{Outcome, Reason, Rejected, State, Transition};

/// The immutable configuration, validated by the builder.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) trip: TripPolicy,
    pub(crate) slow: Option<SlowCalls>,
    pub(crate) open: OpenDurations,
    pub(crate) first_open: Duration,
    pub(crate) jitter: f64,
    pub(crate) probes: u32,
    pub(crate) successes_to_close: u32,
    pub(crate) max_probe: Duration,
}

#[derive(Debug)]
struct Core {
    failure_window: Option<RateWindow>,
    slow_window: Option<RateWindow>,
    schedule: Schedule,
    open_for: Duration,
    probes: ProbeSlots,
    successes: u32,
    rng: SmallRng,
}

/// What the closed-state hot path reads, alone on its cache line(s) so that writes elsewhere
/// (the `Arc`'s reference counts when permits are cloned, the mutex) do not evict it from the
/// other cores' caches.
#[derive(Debug)]
#[repr(align(128))]
struct Hot {
    /// The state word; its `GENERAL` bit is set for the breaker's life unless closed-state
    /// verdicts need neither the clock nor the lock (see `word.rs`).
    word: AtomicU64,
    /// Slow calls are tracked: permits record their start.
    timed: bool,
}

#[derive(Debug)]
pub(crate) struct Inner {
    hot: Hot,
    /// Nanoseconds since `base` at which an open breaker lets probes through.
    open_until: AtomicU64,
    /// Nanoseconds since `base` at which the oldest live probe counts as hung; `u64::MAX`
    /// when no probe is alive.
    probe_deadline: AtomicU64,
    base: Instant,
    /// Consecutive-failure threshold when that policy is lock-free, else 0.
    lock_free_threshold: u32,
    max_probe_nanos: u64,
    pub(crate) name: Arc<str>,
    cfg: Config,
    core: Mutex<Core>,
    /// Created by the first `subscribe`: a broadcast channel allocates its 64 slots up front,
    /// which a keyed breaker's thousands of per-key breakers must not pay for.
    events: std::sync::OnceLock<broadcast::Sender<Transition>>,
    metrics: Option<BreakerMetrics>,
    /// Told of every transition; set once by the keyed breaker (keyed.rs) to tag it with its key.
    observer: std::sync::OnceLock<Box<dyn Observe>>,
}

/// Told of every transition of one breaker (the keyed breaker's hook, keyed.rs).
pub(crate) trait Observe: Send + Sync + std::fmt::Debug {
    fn observe(&self, t: &Transition);
}

fn nanos_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Inner {
    pub(crate) fn new(
        name: Arc<str>,
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
            probes: ProbeSlots::default(),
            successes: 0,
            rng,
        };
        Inner {
            hot: Hot {
                word: AtomicU64::new(pack(
                    State::Closed,
                    0,
                    0,
                    if lock_free_threshold != 0 && cfg.slow.is_none() {
                        0
                    } else {
                        GENERAL
                    },
                )),
                timed: cfg.slow.is_some(),
            },
            open_until: AtomicU64::new(0),
            probe_deadline: AtomicU64::new(u64::MAX),
            base: now,
            lock_free_threshold,
            max_probe_nanos: nanos_of(cfg.max_probe),
            name,
            cfg,
            core: Mutex::new(core),
            events: std::sync::OnceLock::new(),
            metrics,
            observer: std::sync::OnceLock::new(),
        }
    }

    /// Sets the observer told of every later transition; a second call is ignored.
    pub(crate) fn set_observer(&self, observer: Box<dyn Observe>) {
        let _ = self.observer.set(observer);
    }

    /// Closed, with no failure counted and no bad call in its windows: a fresh breaker would
    /// decide every later call the same way, so the keyed breaker may forget it (keyed.rs).
    pub(crate) fn is_idle(&self) -> bool {
        let word = self.hot.word.load(Ordering::Acquire);
        if state_of(word) != State::Closed || fails_of(word) != 0 {
            return false;
        }
        let windowed = !matches!(self.cfg.trip, TripPolicy::ConsecutiveFailures(_))
            || matches!(self.cfg.slow, Some(SlowCalls::Rate { .. }));
        if !windowed {
            return true;
        }
        let core = self.lock();
        let at = self.nanos(Instant::now());
        let clean = |w: &Option<RateWindow>| w.as_ref().is_none_or(|w| w.totals(at).1 == 0);
        state_of(self.hot.word.load(Ordering::Acquire)) == State::Closed
            && clean(&core.failure_window)
            && clean(&core.slow_window)
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock cannot leave `Core` half-updated in a way that
        // matters more than refusing service would, so poisoning is ignored.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn nanos(&self, now: Instant) -> u64 {
        nanos_of(now.saturating_duration_since(self.base))
    }

    /// The instant `nanos` after `base`, or `fallback` if it cannot be represented.
    fn instant_at(&self, nanos: u64, fallback: Instant) -> Instant {
        self.base
            .checked_add(Duration::from_nanos(nanos))
            .unwrap_or(fallback)
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.events
            .get_or_init(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Whether a time-driven change is due in `state` at `at`.
    fn due(&self, state: State, at: u64) -> bool {
        match state {
            State::Open => at >= self.open_until.load(Ordering::Acquire),
            State::HalfOpen => at >= self.probe_deadline.load(Ordering::Acquire),
            State::Closed | State::ForcedOpen | State::Disabled => false,
        }
    }

    /// The state the next call would see: an open breaker whose open duration has passed is
    /// half-open, a half-open one whose probe outlived the maximum probe duration is open.
    /// The transition is made (and emitted) now.
    #[inline]
    pub(crate) fn state(&self) -> State {
        let state = state_of(self.hot.word.load(Ordering::Acquire));
        if matches!(state, State::Open | State::HalfOpen) {
            let now = Instant::now();
            if self.due(state, self.nanos(now)) {
                let mut core = self.lock();
                self.advance(&mut core, now);
                return state_of(self.hot.word.load(Ordering::Acquire));
            }
        }
        state
    }

    /// Makes the time-driven changes that are due at `now`; the caller holds the lock.
    fn advance(&self, core: &mut Core, now: Instant) {
        let at = self.nanos(now);
        if at >= self.probe_deadline.load(Ordering::Acquire) {
            let word = self.hot.word.load(Ordering::Acquire);
            // Generations have 28 bits: `u32::MAX` matches no probe.
            let current = if state_of(word) == State::HalfOpen {
                gen_of(word)
            } else {
                u32::MAX
            };
            if let Some(hung) = core.probes.expire(at, current) {
                let since = self.instant_at(hung.deadline, now);
                let after = self.cfg.max_probe;
                self.transition(core, State::Open, Reason::ProbeTimedOut { after }, since);
            }
            self.probe_deadline
                .store(core.probes.next_deadline(), Ordering::Release);
        }
        let word = self.hot.word.load(Ordering::Acquire);
        let until = self.open_until.load(Ordering::Acquire);
        if state_of(word) == State::Open && at >= until {
            let open_for = core.open_for;
            let since = self.instant_at(until, now);
            self.transition(
                core,
                State::HalfOpen,
                Reason::OpenElapsed { open_for },
                since,
            );
        }
    }

    /// A permit's token, or the rejection. The lock-free closed path is one load and one
    /// test: no clock, no lock, no write.
    #[inline]
    pub(crate) fn acquire(&self) -> Result<Token, Rejected> {
        let word = self.hot.word.load(Ordering::Acquire);
        if word & FAST_MASK == 0 {
            Ok(Token::new(word, NO_START))
        } else {
            self.acquire_general(word)
        }
    }

    /// `acquire` when the word is not on the lock-free closed path.
    #[inline(never)]
    fn acquire_general(&self, word: u64) -> Result<Token, Rejected> {
        if word & STATE_MASK == State::Closed.code() {
            Ok(Token::new(word, self.start()))
        } else {
            self.acquire_slow(word, true)
        }
    }

    /// Whether a call made now would be let through, without taking a permit (the tower
    /// layer's readiness). Counts nothing.
    #[cfg(feature = "tower")]
    pub(crate) fn admits(&self) -> Result<(), Rejected> {
        let word = self.hot.word.load(Ordering::Acquire);
        if word & STATE_MASK == State::Closed.code() {
            return Ok(());
        }
        self.decide(word, false).map(|_| ())
    }

    /// Counts a rejection decided earlier by [`admits`](Inner::admits).
    pub(crate) fn count_rejected(&self) {
        if let Some(m) = &self.metrics {
            m.rejected.inc();
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
    fn acquire_slow(&self, word: u64, grant: bool) -> Result<Token, Rejected> {
        let result = self.decide(word, grant);
        if result.is_err() {
            self.count_rejected();
        }
        result
    }

    /// The slow path of a permit request (`grant`) or a readiness check (not `grant`).
    fn decide(&self, word: u64, grant: bool) -> Result<Token, Rejected> {
        let forced = Rejected {
            retry_after: self.cfg.first_open,
            state: State::ForcedOpen,
        };
        match state_of(word) {
            State::Disabled => return Ok(Token::new(word, NO_START)),
            State::ForcedOpen => return Err(forced),
            State::Closed | State::Open | State::HalfOpen => {}
        }
        let now = Instant::now();
        let at = self.nanos(now);
        if state_of(word) == State::Open {
            let until = self.open_until.load(Ordering::Acquire);
            if at < until {
                return Err(Rejected {
                    retry_after: Duration::from_nanos(until - at),
                    state: State::Open,
                });
            }
        }
        let mut core = self.lock();
        self.advance(&mut core, now);
        let word = self.hot.word.load(Ordering::Acquire);
        let start = if self.hot.timed { at } else { NO_START };
        match state_of(word) {
            State::HalfOpen => {
                if core.probes.len() >= self.cfg.probes as usize {
                    return Err(Rejected {
                        retry_after: core.open_for,
                        state: State::HalfOpen,
                    });
                }
                if !grant {
                    return Ok(Token::SPENT);
                }
                let deadline = at.saturating_add(self.max_probe_nanos);
                let id = core.probes.grant(gen_of(word), deadline);
                self.probe_deadline
                    .store(core.probes.next_deadline(), Ordering::Release);
                Ok(Token::probe(word, id, start))
            }
            State::Open => {
                let until = self.open_until.load(Ordering::Acquire);
                Err(Rejected {
                    retry_after: Duration::from_nanos(until.saturating_sub(at)),
                    state: State::Open,
                })
            }
            State::ForcedOpen => Err(forced),
            State::Closed => Ok(Token::new(word, start)),
            State::Disabled => Ok(Token::new(word, NO_START)),
        }
    }

    /// Records the verdict on a permit.
    #[inline]
    pub(crate) fn finish(&self, token: Token, verdict: Verdict) {
        if token.is_fast() {
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
            State::HalfOpen => self.finish_probe(token, verdict, slow),
            State::Open | State::ForcedOpen | State::Disabled => {}
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

    fn finish_probe(&self, token: Token, verdict: Verdict, slow: bool) {
        let mut core = self.lock();
        let now = Instant::now();
        // A verdict after the probe's deadline comes too late: the probe counts as hung
        // whether or not anyone looked at the breaker in between.
        self.advance(&mut core, now);
        // The slot is freed whatever happened since: the slots count every live probe,
        // including one granted before a reopen, so probes never overlap beyond the limit.
        if core.probes.release(token.probe_id()).is_none() {
            return; // counted as hung already
        }
        self.probe_deadline
            .store(core.probes.next_deadline(), Ordering::Release);
        let word = self.hot.word.load(Ordering::Acquire);
        if state_of(word) != State::HalfOpen || gen_of(word) != token.generation() {
            return;
        }
        match verdict {
            Verdict::Outcome(Outcome::Success) if !slow => {
                core.successes = core.successes.saturating_add(1);
                if core.successes >= self.cfg.successes_to_close {
                    let successes = core.successes;
                    self.transition(
                        &mut core,
                        State::Closed,
                        Reason::ProbesSucceeded { successes },
                        now,
                    );
                }
            }
            Verdict::Outcome(Outcome::Success | Outcome::Failure) => {
                self.transition(&mut core, State::Open, Reason::ProbeFailed, now);
            }
            Verdict::Outcome(Outcome::Ignored) | Verdict::Abandoned => {}
        }
    }

    /// Stores `to` with the next generation and no failures; returns the word it replaced.
    /// A read-modify-write, not a load and a store: the lock-free closed path changes the
    /// word with compare-exchanges outside the lock, and every change of the word must be
    /// ordered against them (loom's model of a plain store racing a compare-exchange lets
    /// the compare-exchange win).
    fn next_generation(&self, to: State) -> u64 {
        let mut word = self.hot.word.load(Ordering::Acquire);
        loop {
            let next = pack(to, gen_of(word).wrapping_add(1), 0, word & GENERAL);
            match self.hot.word.compare_exchange_weak(
                word,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(prev) => return prev,
                Err(current) => word = current,
            }
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
                self.next_generation(State::Closed);
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

    /// Moves to `to`, as of `at`; the caller holds the lock.
    fn transition(&self, core: &mut Core, to: State, reason: Reason, at: Instant) {
        let mut open_for = None;
        match to {
            State::Open => {
                let d = core.schedule.next_duration();
                let d = apply_jitter(d, self.cfg.jitter, core.rng.random::<f64>());
                core.open_for = d;
                let until = self.nanos(at).saturating_add(nanos_of(d));
                self.open_until.store(until, Ordering::Release);
                open_for = Some(d);
            }
            State::Closed => self.clear_counts(core),
            State::HalfOpen | State::ForcedOpen | State::Disabled => {}
        }
        core.successes = 0;
        let from = state_of(self.next_generation(to));
        if let Some(m) = &self.metrics {
            m.transition(from, to);
        }
        self.emit(Transition {
            breaker: self.name.clone(),
            from,
            to,
            reason,
            at,
            open_for,
        });
    }

    fn emit(&self, t: Transition) {
        if t.to == State::Open || t.to == State::ForcedOpen {
            tracing::warn!(
                breaker = %self.name,
                from = t.from.as_str(),
                to = t.to.as_str(),
                reason = t.reason.as_str(),
                detail = %t.reason,
                open_for_ms = t.open_for.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                "circuit breaker opened"
            );
        } else {
            tracing::info!(
                breaker = %self.name,
                from = t.from.as_str(),
                to = t.to.as_str(),
                reason = t.reason.as_str(),
                detail = %t.reason,
                "circuit breaker state changed"
            );
        }
        // No receiver is not an error: subscribing is optional.
        if let Some(observer) = self.observer.get() {
            observer.observe(&t);
        }
        if let Some(events) = self.events.get() {
            let _ = events.send(t);
        }
    }
}

impl Refresh for Inner {
    fn refresh(&self) {
        self.state();
    }
}
