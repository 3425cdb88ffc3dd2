//! The bot at work: dispatching the scripted messages, handling each under its user's lock,
//! answering through the upstream's retry and breaker, auditing through the fallback sink, and
//! alerting on what goes wrong.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use seawall_circuit_breaker::{
    self as breaker, CircuitBreaker, KeyedCircuitBreaker, State, Transition,
};
use seawall_fallback_sink::{Delivered, FallbackSink};
use seawall_keyed_lock::KeyedLock;
use seawall_retry::{AttemptError, RetryError, RetryPolicy};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::alerts::Alerter;
use super::audit::{AuditEvent, AuditStore};
use super::components::{self, UpstreamCallError};
use super::counters::BotMetrics;
use super::http::{Health, Status};
use super::schedule::{Arrival, Fault, MODEL_DOWN_FIRST, PHASES, scaled};
use super::upstream::{Mode, Upstream, UpstreamError, model_for};

/// The outcome of one message.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Answered,
    Failed(String),
    Cancelled(String),
}

/// Everything the message handlers share.
pub(crate) struct Bot {
    pub(crate) run: String,
    pub(crate) scale: f64,
    pub(crate) start: Instant,
    pub(crate) upstream: Upstream,
    /// One breaker per upstream model.
    pub(crate) upstream_breaker: KeyedCircuitBreaker<&'static str>,
    pub(crate) audit_breaker: CircuitBreaker,
    pub(crate) retry: RetryPolicy,
    pub(crate) locks: KeyedLock<u32>,
    pub(crate) sink: FallbackSink<AuditEvent, AuditStore>,
    pub(crate) alerter: Alerter,
    /// Every crate's metrics and the bot's own: what the report's counters come from.
    pub(crate) registry: Arc<Registry>,
    pub(crate) metrics: BotMetrics,
    pub(crate) outcomes: Mutex<Vec<Option<Outcome>>>,
    /// Per user, (seq, fencing token) in the order the lock was granted.
    pub(crate) order: Mutex<HashMap<u32, Vec<(u32, u64)>>>,
    /// Keys of every audit event the bot tried to write.
    pub(crate) events: Mutex<Vec<String>>,
    pub(crate) acks: Option<Mutex<std::fs::File>>,
    /// The most records the spool held at once, as sampled by the monitor.
    pub(crate) peak_backlog: AtomicU64,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot")
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Bot {
    pub(crate) fn elapsed(&self) -> f64 {
        secs(self.start.elapsed())
    }

    pub(crate) fn progress(&self, phase: &str) {
        let outcomes = self.outcomes.lock();
        let (mut answered, mut failed) = (0, 0);
        for o in outcomes.iter().flatten() {
            match o {
                Outcome::Answered => answered += 1,
                _ => failed += 1,
            }
        }
        let stats = self.sink.stats();
        println!(
            "[{:>6.2} s] {phase:<30} answered {answered:>5}, failed {failed:>4} of {:>5}; upstream breaker {}, spool backlog {}",
            self.elapsed(),
            outcomes.len(),
            self.upstream_state(),
            stats.records
        );
    }

    /// The upstream breakers' state: `closed` when every model's breaker is closed, else
    /// each model whose breaker is not, with its state (e.g. `model-a open`).
    pub(crate) fn upstream_state(&self) -> String {
        let mut keys = self.upstream_breaker.open_keys();
        if keys.is_empty() {
            return State::Closed.to_string();
        }
        keys.sort_unstable_by_key(|(model, _)| *model);
        keys.iter()
            .map(|(model, state)| format!("{model} {state}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Dispatches every message at its arrival time while switching the faults phase by phase.
    pub(crate) async fn scenario(
        self: &Arc<Self>,
        arrivals: &[Arrival],
        mut stop: watch::Receiver<bool>,
    ) {
        let mut handlers = JoinSet::new();
        let mut next = 0;
        let mut phase_start = Duration::ZERO;
        'phases: for phase in PHASES {
            let phase_end = phase_start + phase.base;
            self.upstream.set_mode(match phase.fault {
                Fault::UpstreamErrors => Mode::Failing,
                Fault::UpstreamSlow => Mode::Slow,
                _ => Mode::Healthy,
            });
            self.upstream
                .set_failing_model((phase.fault == Fault::ModelErrors).then_some(MODEL_DOWN_FIRST));
            self.sink
                .primary()
                .set_down(phase.fault == Fault::AuditDown);
            self.progress(phase.name);
            while next < arrivals.len() && arrivals[next].at < phase_end {
                let a = arrivals[next];
                let due = self.start + scaled(a.at, self.scale);
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = stop.wait_for(|s| *s) => break 'phases,
                }
                self.dispatch(next, a, &mut handlers);
                next += 1;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(self.start + scaled(phase_end, self.scale)) => {}
                _ = stop.wait_for(|s| *s) => break 'phases,
            }
            phase_start = phase_end;
        }
        // Wait for the handlers; after a Ctrl-C give them a grace period, then cancel.
        let stopped = *stop.borrow();
        let grace = if stopped {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(600)
        };
        let drained = tokio::time::timeout(grace, async {
            while handlers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            handlers.abort_all();
            while handlers.join_next().await.is_some() {}
        }
        let mut outcomes = self.outcomes.lock();
        for o in outcomes.iter_mut().filter(|o| o.is_none()) {
            *o = Some(Outcome::Cancelled(if stopped {
                "shutdown before it was handled".into()
            } else {
                "handler ended without an outcome".into()
            }));
        }
    }

    /// Queues the message on its user's lock now, so per-user order is arrival order, and
    /// spawns its handler.
    fn dispatch(self: &Arc<Self>, index: usize, a: Arrival, handlers: &mut JoinSet<()>) {
        let bot = Arc::clone(self);
        // Take the message's place in the user's FIFO queue now, in arrival order, rather
        // than whenever its task first runs.
        let place = self.locks.enqueue(&a.user);
        handlers.spawn(async move {
            let guard = place.await;
            let token = guard.token().get();
            bot.order
                .lock()
                .entry(a.user)
                .or_default()
                .push((a.seq, token));
            let event = |kind: &str, detail: String| AuditEvent {
                run: bot.run.clone(),
                key: format!("u{}-m{}-{kind}", a.user, a.seq),
                kind: kind.to_string(),
                user: a.user,
                seq: a.seq,
                token,
                detail,
            };
            bot.audit(event(
                "received",
                format!("message {} of user {}", a.seq, a.user),
            ))
            .await;
            let outcome = match bot
                .answer(
                    model_for(a.user),
                    &format!("user {} message {}", a.user, a.seq),
                )
                .await
            {
                Ok(answer) => {
                    bot.audit(event("answered", answer)).await;
                    Outcome::Answered
                }
                Err(reason) => {
                    bot.audit(event("failed", reason.clone())).await;
                    Outcome::Failed(reason)
                }
            };
            bot.outcomes.lock()[index] = Some(outcome);
            drop(guard);
        });
    }

    /// Writes one audit event through the fallback sink.
    async fn audit(&self, event: AuditEvent) {
        let key = event.key.clone();
        self.events.lock().push(key.clone());
        match self.sink.write(event).await {
            Ok(Delivered::Primary | Delivered::Spooled) => {
                if let Some(acks) = &self.acks {
                    use std::io::Write as _;
                    let _ = writeln!(acks.lock(), "{} {key}", self.run);
                }
            }
            Err(e) => {
                self.metrics.audit_lost.inc();
                self.alerter.alert(
                    "audit_write_failed",
                    &format!("audit event lost: {e}"),
                    self.elapsed(),
                );
            }
        }
    }

    /// Asks `model` of the upstream through its breaker, a per-attempt timeout and the retry
    /// policy. `Err` carries the reason the message could not be answered.
    async fn answer(&self, model: &'static str, prompt: &str) -> Result<String, String> {
        let attempt_timeout = scaled(Duration::from_millis(400), self.scale);
        let result = self
            .retry
            .retry(|| async {
                self.upstream_breaker
                    .call(&model, || async {
                        match tokio::time::timeout(
                            attempt_timeout,
                            self.upstream.ask_model(model, prompt),
                        )
                        .await
                        {
                            Ok(r) => r,
                            Err(_) => {
                                self.metrics.attempt_timeouts.inc();
                                self.alerter.alert(
                                    "upstream_slow",
                                    "upstream attempts are timing out",
                                    self.elapsed(),
                                );
                                Err(UpstreamError::Timeout)
                            }
                        }
                    })
                    .await
            })
            .retry_if(components::is_transient)
            .retry_after(components::retry_after)
            .notify(components::count_hinted(&self.metrics.hinted_retries))
            .await;
        match result {
            Ok(answer) => Ok(answer),
            Err(e) => Err(describe_retry_error(&e)),
        }
    }

    pub(crate) fn spawn_monitors(self: &Arc<Self>) -> tokio::task::AbortHandle {
        let bot = Arc::clone(self);
        let mut upstream_rx = self.upstream_breaker.subscribe();
        let mut audit_rx = self.audit_breaker.subscribe();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(scaled(Duration::from_millis(100), bot.scale));
            loop {
                tokio::select! {
                    Ok(t) = upstream_rx.recv() => bot.on_transition(&t.transition, Some(t.key)),
                    Ok(t) = audit_rx.recv() => bot.on_transition(&t, None),
                    _ = tick.tick() => {
                        let backlog = bot.sink.stats().records;
                        bot.peak_backlog.fetch_max(backlog, Ordering::Relaxed);
                        if backlog >= 20 {
                            bot.alerter.alert(
                                "spool_backlog_high",
                                &format!("audit spool backlog is {backlog} records"),
                                bot.elapsed(),
                            );
                        }
                        bot.alerter.flush_digests();
                    }
                }
            }
        });
        task.abort_handle()
    }

    /// Records a transition of a breaker, or of one key's breaker of a keyed one, and alerts
    /// when it opened (one alert key per model: `breaker_open:upstream/model-a`).
    fn on_transition(&self, t: &Transition, key: Option<&str>) {
        self.alerter
            .record_transition(t, key, secs(t.at.saturating_duration_since(self.start)));
        if t.to == State::Open {
            let name = match key {
                Some(key) => format!("{}/{key}", t.breaker),
                None => t.breaker.to_string(),
            };
            self.alerter.alert(
                &format!("breaker_open:{name}"),
                &format!("circuit breaker {name} opened: {}", t.reason),
                self.elapsed(),
            );
        }
    }

    pub(crate) fn health(&self) -> Health {
        let mut reasons = Vec::new();
        let mut status = Status::Healthy;
        let mut upstream = self.upstream_breaker.open_keys();
        upstream.sort_unstable_by_key(|(model, _)| *model);
        let breakers = upstream
            .into_iter()
            .map(|(model, state)| (format!("{}/{model}", self.upstream_breaker.name()), state))
            .chain([(
                self.audit_breaker.name().to_string(),
                self.audit_breaker.state(),
            )]);
        for (name, state) in breakers {
            match state {
                State::Closed | State::Disabled => {}
                State::ForcedOpen => {
                    status = Status::Unhealthy;
                    reasons.push(format!("breaker {name} is forced open"));
                }
                s => {
                    status = status.max_with(Status::Degraded);
                    reasons.push(format!("breaker {name} is {s}"));
                }
            }
        }
        let stats = self.sink.stats();
        if stats.records > 0 {
            status = status.max_with(Status::Degraded);
            reasons.push(format!(
                "audit spool backlog: {} records, {} bytes, oldest {:.1} s",
                stats.records,
                stats.bytes,
                stats.oldest_age().map(secs).unwrap_or(0.0)
            ));
        }
        if self.metrics.audit_lost.get() > 0 {
            status = Status::Unhealthy;
            reasons.push("audit events were lost: both SQLite and the spool failed".into());
        }
        Health { status, reasons }
    }
}

impl Status {
    pub(crate) fn max_with(self, other: Status) -> Status {
        let rank = |s: Status| match s {
            Status::Healthy => 0,
            Status::Degraded => 1,
            Status::Unhealthy => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// The reason a message could not be answered, as the report states it.
fn describe_retry_error(e: &RetryError<UpstreamCallError>) -> String {
    let last = match e.last() {
        AttemptError::Inner(breaker::Error::Open { .. }) => {
            "upstream circuit breaker open".to_string()
        }
        AttemptError::Inner(breaker::Error::Inner(e)) => e.to_string(),
        AttemptError::Timeout { after } => format!("attempt timed out after {after:?}"),
    };
    match e {
        RetryError::Permanent { .. } => format!("not retried: {last}"),
        RetryError::Exhausted { attempts, .. } => {
            format!("gave up after {attempts} attempts: {last}")
        }
        RetryError::Deadline { .. } => format!("retry deadline reached: {last}"),
        RetryError::HintBeyondDeadline { hint, .. } => {
            format!("upstream asked to wait {hint:?}, past the retry deadline: {last}")
        }
        RetryError::Budget { .. } => format!("retry budget exhausted: {last}"),
    }
}
