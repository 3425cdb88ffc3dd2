//! The reference bot: every Seawall crate composed in one service.

mod alerts;
mod audit;
mod cli;
mod http;
mod report;
mod schedule;
mod upstream;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use anyhow::Context as _;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use seawall_circuit_breaker::{self as breaker, CircuitBreaker, State, Transition};
use seawall_cooldown::{self as cooldown, Cooldown};
use seawall_fallback_sink::{self as sink, Delivered, FallbackSink};
use seawall_keyed_lock::{self as keyed_lock, KeyedLock};
use seawall_retry::{self as retry, AttemptError, Jitter, RetryBudget, RetryError, RetryPolicy};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use cli::Args;
pub use report::{
    AlertReport, BreakerReport, Check, LockReport, MessageReport, Report, SinkReport,
    TransitionLine, UpstreamReport,
};

use alerts::Alerter;
use audit::{AuditEvent, AuditStore};
use http::{Health, Status};
use schedule::{Arrival, Fault, PHASES, scaled};
use upstream::{Mode, Upstream, UpstreamError};

/// The outcome of one message.
#[derive(Debug, Clone)]
enum Outcome {
    Answered,
    Failed(String),
    Cancelled(String),
}

/// Everything the message handlers share.
struct Bot {
    run: String,
    scale: f64,
    start: Instant,
    upstream: Upstream,
    upstream_breaker: CircuitBreaker,
    audit_breaker: CircuitBreaker,
    retry: RetryPolicy<UpstreamCallError>,
    locks: KeyedLock<u32>,
    sink: FallbackSink<AuditEvent, AuditStore>,
    alerter: Alerter,
    outcomes: Mutex<Vec<Option<Outcome>>>,
    /// Per user, (seq, fencing token) in the order the lock was granted.
    order: Mutex<HashMap<u32, Vec<(u32, u64)>>>,
    /// Keys of every audit event the bot tried to write.
    events: Mutex<Vec<String>>,
    acks: Option<Mutex<std::fs::File>>,
    stats: Arc<Stats>,
}

/// What one attempt at the upstream can fail with: the breaker's rejection or the upstream's
/// own error.
type UpstreamCallError = breaker::Error<UpstreamError>;

#[derive(Default)]
struct Stats {
    retries: AtomicU64,
    hinted_retries: AtomicU64,
    budget_exhausted: AtomicU64,
    timeouts: AtomicU64,
    rejected_upstream: AtomicU64,
    primary: AtomicU64,
    spooled: AtomicU64,
    sink_failed: AtomicU64,
    peak_backlog: AtomicU64,
    acquired: AtomicU64,
    contended: AtomicU64,
    expired: AtomicU64,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot")
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Creates the data directory, or says in one line why it cannot be used.
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    let fail = |e: std::io::Error| {
        anyhow::anyhow!(
            "data directory {} is not usable ({e}): pass --data-dir with a writable directory",
            dir.display()
        )
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;
    Ok(())
}

/// Runs the bot: the scenario, the report, and with `--serve` the endpoints until Ctrl-C.
///
/// Returns the report; `Err` is for the run that could not start (bad data directory, port in
/// use), with a one-line message saying what to do.
pub async fn run(args: Args) -> anyhow::Result<Report> {
    prepare_data_dir(&args.data_dir)?;
    let listener = http::bind(args.port).await?;
    let port = listener.local_addr()?.port();

    let mut registry = Registry::default();
    let breaker_metrics = breaker::Metrics::register(&mut registry);
    let retry_metrics = retry::Metrics::register(&mut registry);
    let cooldown_metrics = cooldown::Metrics::register(&mut registry);
    let lock_metrics = keyed_lock::Metrics::register(&mut registry);
    let sink_metrics = sink::Metrics::register(&mut registry);

    let scale = args.time_scale;
    let s = |ms: u64| scaled(Duration::from_millis(ms), scale);

    let upstream_breaker = CircuitBreaker::builder()
        .name("upstream")
        .consecutive_failures(5)
        .open_durations(
            retry::Backoff::exponential(s(1000))
                .max_delay(s(2000))
                .build()?,
        )
        .jitter(0.2)
        .metrics(breaker_metrics.clone())
        .build()?;
    let audit_breaker = CircuitBreaker::builder()
        .name("audit")
        .consecutive_failures(3)
        .open_durations(
            retry::Backoff::exponential(s(200))
                .max_delay(s(1600))
                .build()?,
        )
        .jitter(0.2)
        .metrics(breaker_metrics)
        .build()?;

    let stats = Arc::new(Stats::default());
    let budget = RetryBudget::builder()
        .ratio(0.2)
        .min_per_second(10)
        .build()?;
    let retry = RetryPolicy::<UpstreamCallError>::builder()
        .name("upstream")
        .max_attempts(3)
        .exponential(s(100))
        .factor(2.0)
        .max_delay(s(800))
        .jitter(Jitter::Full)
        .seed(args.seed)
        .budget(budget)
        // An open breaker or a bad request will not get better by retrying at once.
        .retry_if(|e: &UpstreamCallError| match e {
            breaker::Error::Inner(e) => e.is_transient(),
            _ => false,
        })
        .retry_after(|e: &UpstreamCallError| match e {
            breaker::Error::Inner(e) => e.retry_after(),
            _ => None,
        })
        .notify({
            let stats = Arc::clone(&stats);
            move |_attempt, failure: &AttemptError<UpstreamCallError>, _delay| {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                if let AttemptError::Failed(breaker::Error::Inner(e)) = failure
                    && e.retry_after().is_some()
                {
                    stats.hinted_retries.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .metrics(retry_metrics)
        .build()?;

    let locks = KeyedLock::builder()
        .name("users")
        .ttl(s(30_000))
        .metrics(lock_metrics)
        .build()?;

    let store = AuditStore::open(&args.data_dir.join("audit.sqlite3")).with_context(|| {
        format!(
            "cannot open the audit database in {}: remove the file if it is corrupt",
            args.data_dir.display()
        )
    })?;
    let spool_dir = args.data_dir.join("spool");
    let sink = FallbackSink::builder(&spool_dir)
        .name("audit")
        .sync(sink::Sync::Batch {
            max_records: 64,
            max_delay: Duration::from_millis(2),
        })
        .replay_interval(s(200))
        .breaker(audit_breaker.clone())
        .metrics(&sink_metrics)
        .open(store.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the spool in {}: {e}", spool_dir.display()))?;
    let opened = sink.stats();
    let inherited = opened.records;
    let quarantined = opened.quarantined;
    if quarantined > 0 {
        println!(
            "spool: {quarantined} corrupt line(s) from an earlier run moved to {}",
            spool_dir.join("quarantine.jsonl").display()
        );
    }
    if inherited > 0 {
        println!("spool: {inherited} record(s) left by an earlier run will be replayed");
    }

    let alerter = Alerter::new(
        &args.data_dir.join("alerts.log"),
        Cooldown::builder()
            .name("alerts")
            .window(s(5_000))
            .max_keys(1_000)
            .metrics(cooldown_metrics)
            .build()?,
    )
    .context("cannot open the alerts file")?;

    let acks = if args.ack_log {
        Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(args.data_dir.join("acks.log"))?,
        ))
    } else {
        None
    };

    let arrivals = schedule::arrivals(args.users, args.messages, args.seed);
    let run_id = format!(
        "{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
        std::process::id()
    );
    let bot = Arc::new(Bot {
        run: run_id,
        scale,
        start: Instant::now(),
        upstream: Upstream::new(args.seed, scale),
        upstream_breaker,
        audit_breaker,
        retry,
        locks,
        sink,
        alerter,
        outcomes: Mutex::new(vec![None; arrivals.len()]),
        order: Mutex::new(HashMap::new()),
        events: Mutex::new(Vec::with_capacity(arrivals.len() * 2)),
        acks,
        stats,
    });

    // Ctrl-C: stop taking messages, let in-flight ones finish, flush the spool.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                println!("\nCtrl-C: finishing in-flight messages, then flushing the spool");
                let _ = stop_tx.send(true);
            }
        }
    });

    let ready = Arc::new(AtomicBool::new(true));
    let registry = Arc::new(registry);
    let health: Arc<dyn Fn() -> Health + Send + Sync> = {
        let bot = Arc::clone(&bot);
        Arc::new(move || bot.health())
    };
    let server = tokio::spawn(http::serve(
        listener,
        Arc::clone(&registry),
        health,
        Arc::clone(&ready),
        {
            let mut stop = stop_rx.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        },
    ));
    println!("listening on http://127.0.0.1:{port}");
    println!(
        "run {}: {} users x {} messages, time scale {scale}, data in {}",
        bot.run,
        args.users,
        args.messages,
        args.data_dir.display()
    );

    let monitors = bot.spawn_monitors();
    bot.scenario(&arrivals, stop_rx.clone()).await;

    // Drain: the stores are back; wait for the spool to empty.
    bot.upstream.set_mode(Mode::Healthy);
    bot.sink.primary().set_down(false);
    bot.progress("drain");
    let drain_deadline = Instant::now() + Duration::from_secs(30).max(s(30_000));
    while bot.sink.stats().records > 0 && Instant::now() < drain_deadline && !*stop_rx.borrow() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bot.sink.shutdown().await.context("closing the spool")?;
    monitors.abort();
    bot.alerter.flush_digests();

    let report = bot.report(inherited, quarantined);
    let text = report.render();
    println!("{text}");
    println!(
        "scenario finished: {}",
        if report.passed() {
            "all checks passed"
        } else {
            "SOME CHECKS FAILED"
        }
    );
    std::fs::write(
        args.data_dir.join("report.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;

    if args.serve && !*stop_rx.borrow() {
        println!("serving on http://127.0.0.1:{port} until Ctrl-C");
        let mut stop = stop_rx.clone();
        let _ = stop.wait_for(|s| *s).await;
    }
    ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let _ = server.await;
    Ok(report)
}

impl Bot {
    fn elapsed(&self) -> f64 {
        secs(self.start.elapsed())
    }

    fn progress(&self, phase: &str) {
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
            self.upstream_breaker.state(),
            stats.records
        );
    }

    /// Dispatches every message at its arrival time while switching the faults phase by phase.
    async fn scenario(self: &Arc<Self>, arrivals: &[Arrival], mut stop: watch::Receiver<bool>) {
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
        let locks = self.locks.clone();
        let mut acquire = Box::pin(async move { locks.lock(&a.user).await });
        // Poll once here, in arrival order, so the message takes its place in the user's FIFO
        // queue now rather than whenever its task first runs.
        let mut cx = Context::from_waker(Waker::noop());
        let first = acquire.as_mut().poll(&mut cx);
        let contended = first.is_pending();
        handlers.spawn(async move {
            let guard = match first {
                Poll::Ready(guard) => guard,
                Poll::Pending => acquire.await,
            };
            bot.stats.acquired.fetch_add(1, Ordering::Relaxed);
            if contended {
                bot.stats.contended.fetch_add(1, Ordering::Relaxed);
            }
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
                .answer(&format!("user {} message {}", a.user, a.seq))
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
            if guard.is_expired() {
                bot.stats.expired.fetch_add(1, Ordering::Relaxed);
            }
            bot.outcomes.lock()[index] = Some(outcome);
            drop(guard);
        });
    }

    /// Writes one audit event through the fallback sink.
    async fn audit(&self, event: AuditEvent) {
        let key = event.key.clone();
        self.events.lock().push(key.clone());
        match self.sink.write(event).await {
            Ok(delivered) => {
                match delivered {
                    Delivered::Primary => self.stats.primary.fetch_add(1, Ordering::Relaxed),
                    Delivered::Spooled => self.stats.spooled.fetch_add(1, Ordering::Relaxed),
                };
                if let Some(acks) = &self.acks {
                    use std::io::Write as _;
                    let _ = writeln!(acks.lock(), "{} {key}", self.run);
                }
            }
            Err(e) => {
                self.stats.sink_failed.fetch_add(1, Ordering::Relaxed);
                self.alerter.alert(
                    "audit_write_failed",
                    &format!("audit event lost: {e}"),
                    self.elapsed(),
                );
            }
        }
    }

    /// Asks the upstream through the breaker, a per-attempt timeout and the retry policy.
    /// `Err` carries the reason the message could not be answered.
    async fn answer(&self, prompt: &str) -> Result<String, String> {
        let attempt_timeout = scaled(Duration::from_millis(400), self.scale);
        let result = self
            .retry
            .retry(|| async {
                self.upstream_breaker
                    .call(|| async {
                        match tokio::time::timeout(attempt_timeout, self.upstream.ask(prompt)).await
                        {
                            Ok(r) => r,
                            Err(_) => {
                                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
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
            .await;
        match result {
            Ok(answer) => Ok(answer),
            Err(e) => Err(describe_retry_error(&e, &self.stats)),
        }
    }

    fn spawn_monitors(self: &Arc<Self>) -> tokio::task::AbortHandle {
        let bot = Arc::clone(self);
        let mut upstream_rx = self.upstream_breaker.subscribe();
        let mut audit_rx = self.audit_breaker.subscribe();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(scaled(Duration::from_millis(100), bot.scale));
            loop {
                tokio::select! {
                    Ok(t) = upstream_rx.recv() => bot.on_transition(&t),
                    Ok(t) = audit_rx.recv() => bot.on_transition(&t),
                    _ = tick.tick() => {
                        let backlog = bot.sink.stats().records;
                        bot.stats.peak_backlog.fetch_max(backlog, Ordering::Relaxed);
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

    fn on_transition(&self, t: &Transition) {
        self.alerter.record_transition(t, secs(t.at - self.start));
        if t.to == State::Open {
            self.alerter.alert(
                &format!("breaker_open:{}", t.breaker),
                &format!("circuit breaker {} opened: {}", t.breaker, t.reason),
                self.elapsed(),
            );
        }
    }

    fn health(&self) -> Health {
        let mut reasons = Vec::new();
        let mut status = Status::Healthy;
        for b in [&self.upstream_breaker, &self.audit_breaker] {
            match b.state() {
                State::Closed | State::Disabled => {}
                State::ForcedOpen => {
                    status = Status::Unhealthy;
                    reasons.push(format!("breaker {} is forced open", b.name()));
                }
                s => {
                    status = status.max_with(Status::Degraded);
                    reasons.push(format!("breaker {} is {s}", b.name()));
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
        if self.stats.sink_failed.load(Ordering::Relaxed) > 0 {
            status = Status::Unhealthy;
            reasons.push("audit events were lost: both SQLite and the spool failed".into());
        }
        Health { status, reasons }
    }

    fn report(&self, inherited: u64, quarantined: u64) -> Report {
        let st = &self.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let outcomes = self.outcomes.lock().clone();
        let mut messages = MessageReport {
            total: outcomes.len() as u64,
            ..MessageReport::default()
        };
        let mut reasons: HashMap<String, u64> = HashMap::new();
        let mut unexplained = 0;
        for o in &outcomes {
            match o {
                Some(Outcome::Answered) => messages.answered += 1,
                Some(Outcome::Failed(r)) => {
                    messages.failed += 1;
                    *reasons.entry(r.clone()).or_default() += 1;
                }
                Some(Outcome::Cancelled(r)) => {
                    messages.cancelled += 1;
                    *reasons.entry(format!("cancelled: {r}")).or_default() += 1;
                }
                None => unexplained += 1,
            }
        }
        let mut reasons: Vec<_> = reasons.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        messages.failure_reasons = reasons;

        let mut checks = Vec::new();
        let stated = outcomes.iter().all(|o| match o {
            Some(Outcome::Failed(r) | Outcome::Cancelled(r)) => !r.is_empty(),
            Some(Outcome::Answered) => true,
            None => false,
        });
        checks.push(Check {
            name: "every message answered or failed with a stated reason".into(),
            passed: stated && unexplained == 0,
            detail: format!(
                "{} answered, {} failed, {} cancelled, {unexplained} without outcome, of {}",
                messages.answered, messages.failed, messages.cancelled, messages.total
            ),
        });

        let order = self.order.lock();
        let mut out_of_order = 0;
        let mut token_regressions = 0;
        for grants in order.values() {
            out_of_order += grants.windows(2).filter(|w| w[1].0 <= w[0].0).count();
            token_regressions += grants.windows(2).filter(|w| w[1].1 <= w[0].1).count();
        }
        let handled: usize = order.values().map(Vec::len).sum();
        checks.push(Check {
            name: "per-user order kept".into(),
            passed: out_of_order == 0 && token_regressions == 0,
            detail: format!(
                "{} users, {handled} messages handled, {out_of_order} out of order, {token_regressions} fencing-token regressions",
                order.len()
            ),
        });
        drop(order);

        let events = self.events.lock().clone();
        let check = self.sink.primary().verify(&self.run, &events);
        checks.push(match check {
            Ok(c) => Check {
                name: "every audit event in SQLite exactly once".into(),
                passed: c.missing == 0 && c.duplicated == 0 && c.rows == events.len() as u64,
                detail: format!(
                    "{} events written, {} rows, {} distinct, {} duplicated, {} missing (SQL)",
                    events.len(),
                    c.rows,
                    c.distinct,
                    c.duplicated,
                    c.missing
                ),
            },
            Err(e) => Check {
                name: "every audit event in SQLite exactly once".into(),
                passed: false,
                detail: format!("query failed: {e}"),
            },
        });
        let left = self.sink.stats();
        checks.push(Check {
            name: "spool empty at the end".into(),
            passed: left.records == 0,
            detail: format!("{} records, {} bytes left", left.records, left.bytes),
        });

        let mut breakers = std::collections::BTreeMap::new();
        for (name, b, rejected) in [
            (
                "upstream",
                &self.upstream_breaker,
                load(&st.rejected_upstream),
            ),
            ("audit", &self.audit_breaker, 0),
        ] {
            breakers.insert(
                name.to_string(),
                BreakerReport {
                    transitions: self.alerter.transitions(name),
                    rejected,
                    final_state: b.state().to_string(),
                },
            );
        }
        let store = self.sink.primary();
        let replayed = store.records_written().saturating_sub(load(&st.primary));
        Report {
            run: self.run.clone(),
            elapsed_secs: self.elapsed(),
            messages,
            upstream: UpstreamReport {
                attempts: self.upstream.calls(),
                retries: load(&st.retries),
                hinted_retries: load(&st.hinted_retries),
                budget_exhausted: load(&st.budget_exhausted),
                timeouts: load(&st.timeouts),
            },
            breakers,
            sink: SinkReport {
                primary: load(&st.primary),
                spooled: load(&st.spooled),
                replayed: replayed.saturating_sub(inherited),
                inherited,
                quarantined,
                failed: load(&st.sink_failed),
                peak_backlog: load(&st.peak_backlog),
            },
            locks: LockReport {
                acquired: load(&st.acquired),
                contended: load(&st.contended),
                expired: load(&st.expired),
            },
            alerts: self.alerter.report(),
            checks,
        }
    }
}

impl Status {
    fn max_with(self, other: Status) -> Status {
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
fn describe_retry_error(e: &RetryError<UpstreamCallError>, stats: &Stats) -> String {
    let last = match e.last() {
        AttemptError::Failed(breaker::Error::Open { .. }) => {
            stats.rejected_upstream.fetch_add(1, Ordering::Relaxed);
            "upstream circuit breaker open".to_string()
        }
        AttemptError::Failed(breaker::Error::Inner(e)) => e.to_string(),
        AttemptError::TimedOut(d) => format!("attempt timed out after {d:?}"),
    };
    match e {
        RetryError::Permanent { .. } => format!("not retried: {last}"),
        RetryError::Exhausted { attempts, .. } => {
            format!("gave up after {attempts} attempts: {last}")
        }
        RetryError::Deadline { .. } => format!("retry deadline reached: {last}"),
        RetryError::Budget { .. } => {
            stats.budget_exhausted.fetch_add(1, Ordering::Relaxed);
            format!("retry budget exhausted: {last}")
        }
    }
}
