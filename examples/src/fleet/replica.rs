//! One replica of the fleet: the bot's parts in their distributed form.
//!
//! | part | embedded bot | replica |
//! |---|---|---|
//! | messages | generated in process | PostgreSQL inbox, any replica takes any user |
//! | per-user order | in-memory keyed lock | Redis keyed lock + a fenced conversation update |
//! | audit | fallback sink to SQLite | fallback sink to PostgreSQL, idempotent by event id |
//! | alerts | in-memory cooldown | Redis cooldown, once per window fleet-wide, fires in PostgreSQL |
//! | upstream | timeout, retry with budget, breaker | the same, per replica |
//!
//! A worker picks a user with a message waiting, takes the user's lease with `try_lock` (a
//! busy user is someone else's), handles the user's next message, and records the outcome
//! with the fenced statement ([`Sql::fenced_advance`]): the row moves only if the lease's
//! token is not lower than the last writer's and the message is the next in line, so a
//! replica that was paused past its lease changes nothing when it wakes up.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::Pool;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use seawall_circuit_breaker::{self as breaker, CircuitBreaker, State};
use seawall_cooldown::{self as cooldown, Decision, RedisCooldown};
use seawall_fallback_sink::{self as sink, FallbackSink};
use seawall_keyed_lock::{self as keyed_lock, KeyedLock, RedisBackend, TryLockError};
use seawall_retry::{self as retry, Jitter, RetryBudget, RetryPolicy};
use tokio::sync::watch;

use super::pg::{self, FleetEvent, PgAudit};
use super::sql::{Sql, event_id};
use crate::bot::Args;
use crate::bot::components::{self, UpstreamCallError};
use crate::bot::counters::{BotMetrics, Readings};
use crate::bot::http::{self, Health, Status};
use crate::bot::upstream::{Upstream, UpstreamError};

/// Health thresholds, as the seeds' health checks had them.
const PG_SLOW: Duration = Duration::from_millis(500);
const REDIS_SLOW: Duration = Duration::from_millis(200);
/// The alert cooldown's window, fleet-wide.
pub const ALERT_WINDOW: Duration = Duration::from_secs(3);

/// What the replica counts itself, registered beside the crates' metrics.
#[derive(Debug, Clone, Default)]
struct FleetMetrics {
    handled: Counter,
    fenced: Counter,
    lease_lost: Counter,
    pg_errors: Counter,
    redis_errors: Counter,
    /// Messages being handled right now (the scenario SIGSTOPs a replica while it is > 0).
    in_flight: Gauge,
}

impl FleetMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = FleetMetrics::default();
        for (name, help, c) in [
            (
                "fleet_handled",
                "Messages this replica handled (fenced write applied)",
                &m.handled,
            ),
            (
                "fleet_fenced_off",
                "Writes the fence turned away: this replica's lease was stale",
                &m.fenced,
            ),
            (
                "fleet_lease_lost",
                "Messages whose lease had expired by the time they were written",
                &m.lease_lost,
            ),
            (
                "fleet_postgres_errors",
                "PostgreSQL calls that failed",
                &m.pg_errors,
            ),
            (
                "fleet_redis_errors",
                "Lock calls Redis failed",
                &m.redis_errors,
            ),
        ] {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "fleet_in_flight",
            "Messages this replica is handling right now",
            m.in_flight.clone(),
        );
        m
    }
}

/// A fired alert waiting to be stored: key, fired at (ms since the epoch), degraded,
/// suppressed before it, message.
type FiredAlert = (String, i64, bool, i64, String);

/// The last round trip to a dependency, or why it failed.
type RoundTrip = Option<Result<Duration, String>>;

struct Replica {
    id: String,
    sql: Sql,
    pool: Pool,
    redis: redis::Client,
    locks: KeyedLock<u32, RedisBackend>,
    alerts: RedisCooldown<String>,
    sink: FallbackSink<FleetEvent, PgAudit>,
    upstream: Upstream,
    upstream_breaker: CircuitBreaker,
    audit_breaker: CircuitBreaker,
    retry: RetryPolicy,
    registry: Arc<Registry>,
    bot: BotMetrics,
    metrics: FleetMetrics,
    /// Outcome events this process has written, so the repair of a predecessor's outcome
    /// event (see `handle`) is skipped for our own.
    audited: Mutex<HashSet<(u32, u32)>>,
    /// Fired alerts not yet stored in PostgreSQL (it may be down when they fire).
    pending_alerts: Mutex<Vec<FiredAlert>>,
    pg_rtt: Mutex<RoundTrip>,
    redis_rtt: Mutex<RoundTrip>,
    stopping: AtomicBool,
    statements: Statements,
}

struct Statements {
    waiting: String,
    next: String,
    advance: String,
    fenced: String,
    alert: String,
}

/// Runs one replica until SIGTERM (or Ctrl-C): in-flight messages finish, the spool is
/// flushed to PostgreSQL, the replica's figures go to `replica_runs`. Returns whether it
/// stopped cleanly (spool empty).
pub async fn run(args: &Args) -> anyhow::Result<bool> {
    let (Some(redis_url), Some(pg_url), Some(id)) = (&args.redis, &args.postgres, &args.replica)
    else {
        anyhow::bail!("a replica needs --redis, --postgres and --replica");
    };
    std::fs::create_dir_all(&args.data_dir)?;
    let sql = Sql::new(&args.schema)?;
    let lease = Duration::from_millis(args.lease_ms);
    let mut registry = Registry::default();
    let bot = BotMetrics::register(&mut registry);
    let metrics = FleetMetrics::register(&mut registry);
    let pool = pg::pool(pg_url, args.workers as usize + 4)?;

    let breakers = breaker::Metrics::register(&mut registry);
    let breaker = |name: &str, failures: u32, first: u64, max: u64| {
        CircuitBreaker::builder()
            .name(name)
            .consecutive_failures(failures)
            .open_durations(
                retry::Backoff::exponential(Duration::from_millis(first))
                    .max_delay(Duration::from_millis(max))
                    .build()?,
            )
            .jitter(0.2)
            .metrics(breakers.clone())
            .build()
            .map_err(anyhow::Error::from)
    };
    let upstream_breaker = breaker("upstream", 5, 1000, 2000)?;
    let audit_breaker = breaker("audit", 3, 200, 1600)?;
    let retry = RetryPolicy::builder()
        .name("upstream")
        .max_attempts(3)
        .exponential(Duration::from_millis(100))
        .factor(2.0)
        .max_delay(Duration::from_millis(800))
        .jitter(Jitter::Full)
        .seed(args.seed ^ fxhash(id))
        .budget(
            RetryBudget::builder()
                .ratio(0.2)
                .min_per_second(10)
                .build()?,
        )
        .metrics(retry::Metrics::register(&mut registry))
        .build()?;

    let backend = RedisBackend::builder(redis_url)
        .prefix(format!("seawall:fleet:{}:lock:", sql.schema()))
        .command_timeout(Duration::from_millis(300))
        // A live holder keeps its lease through a slow database call; a paused or dead one
        // loses it, and after a Redis restart the renewal finds it gone (`lost()`).
        .auto_renew(true)
        .build()?;
    let locks = KeyedLock::builder()
        .name("users")
        .ttl(lease)
        .metrics(keyed_lock::Metrics::register(&mut registry))
        .build_with_backend(backend)?;
    let alerts = RedisCooldown::builder(redis_url)
        .name(format!("fleet-{}", sql.schema()))
        .window(ALERT_WINDOW)
        .command_timeout(Duration::from_millis(300))
        .metrics(cooldown::Metrics::register(&mut registry))
        .build()?;

    let spool_dir = args.data_dir.join("spool");
    let sink = FallbackSink::builder(&spool_dir)
        .name("audit")
        .durability(sink::Durability::Batch {
            max_records: 64,
            max_delay: Duration::from_millis(2),
        })
        .replay_interval(Duration::from_millis(200))
        .breaker(audit_breaker.clone())
        .metrics(sink::Metrics::register(&mut registry))
        .open(PgAudit::new(pool.clone(), &sql))
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the spool in {}: {e}", spool_dir.display()))?;
    let inherited = sink.stats().records;
    if inherited > 0 {
        println!(
            "replica {id}: {inherited} record(s) in the spool from before a crash will be replayed"
        );
    }

    let statements = Statements {
        waiting: sql.waiting_users(),
        next: sql.next_message(),
        advance: sql.fenced_advance(),
        fenced: sql.record_fenced(),
        alert: sql.record_alert(),
    };
    let replica = Arc::new(Replica {
        id: id.clone(),
        sql,
        pool,
        redis: redis::Client::open(redis_url.as_str())?,
        locks,
        alerts,
        sink,
        upstream: Upstream::new(args.seed ^ fxhash(id), 1.0),
        upstream_breaker,
        audit_breaker,
        retry,
        registry: Arc::new(registry),
        bot,
        metrics,
        audited: Mutex::new(HashSet::new()),
        pending_alerts: Mutex::new(Vec::new()),
        pg_rtt: Mutex::new(None),
        redis_rtt: Mutex::new(None),
        stopping: AtomicBool::new(false),
        statements,
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install the SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            let _ = stop_tx.send(true);
        }
    });

    let listener = http::bind(args.port).await?;
    let port = listener.local_addr()?.port();
    let ready = Arc::new(AtomicBool::new(true));
    let server = tokio::spawn(http::serve(
        listener,
        Arc::clone(&replica.registry),
        {
            let r = Arc::clone(&replica);
            Arc::new(move || r.health())
        },
        Arc::clone(&ready),
        {
            let mut stop = stop_rx.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        },
    ));
    let monitor = tokio::spawn(Arc::clone(&replica).monitor());
    println!(
        "replica {id} ready on http://127.0.0.1:{port} (pid {})",
        std::process::id()
    );

    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.workers {
        workers.spawn(Arc::clone(&replica).work(stop_rx.clone()));
    }
    let mut stop = stop_rx.clone();
    let _ = stop.wait_for(|s| *s).await;
    println!("replica {id}: SIGTERM, finishing in-flight messages");
    ready.store(false, Ordering::SeqCst);
    replica.stopping.store(true, Ordering::SeqCst);
    while workers.join_next().await.is_some() {}

    // Flush the spool to PostgreSQL before leaving.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while replica.sink.stats().records > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = replica.sink.shutdown().await;
    monitor.abort();
    replica.flush_alerts().await;
    let left = replica.sink.stats().records;
    let clean = replica.record_run(inherited, left).await;
    let _ = server.await;
    println!(
        "replica {id} stopped: handled {}, fenced off {}, spool left {left}{}",
        replica.metrics.handled.get(),
        replica.metrics.fenced.get(),
        if clean {
            ""
        } else {
            " (its figures could not be stored)"
        }
    );
    Ok(left == 0)
}

/// A stable small hash, to give each replica its own upstream and jitter seeds.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Replica {
    /// One worker: pick a user with a message waiting, take the lease, handle one message.
    async fn work(self: Arc<Self>, stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let users = match pg::query(&self.pool, &self.statements.waiting, &[&4i64]).await {
                Ok(rows) => rows
                    .iter()
                    .map(|r| r.get::<_, i32>(0) as u32)
                    .collect::<Vec<_>>(),
                Err(_) => {
                    self.metrics.pg_errors.inc();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            if users.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            for user in users {
                if *stop.borrow() {
                    break;
                }
                match self.locks.try_lock(&user).await {
                    Ok(guard) => self.handle(user, guard).await,
                    Err(TryLockError::Busy(_)) => continue,
                    Err(_) => {
                        self.metrics.redis_errors.inc();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        break;
                    }
                }
            }
        }
    }

    /// Handles `user`'s next message under `guard`.
    async fn handle(&self, user: u32, guard: keyed_lock::Guard<u32, RedisBackend>) {
        self.metrics.in_flight.inc();
        self.handle_locked(user, &guard).await;
        self.metrics.in_flight.dec();
        if guard.is_expired() {
            self.metrics.lease_lost.inc();
        }
    }

    async fn handle_locked(&self, user: u32, guard: &keyed_lock::Guard<u32, RedisBackend>) {
        let token = guard.token().get() as i64;
        let row = match pg::query(&self.pool, &self.statements.next, &[&(user as i32)]).await {
            Ok(rows) => match rows.into_iter().next() {
                Some(row) => row,
                None => return, // someone else handled it since we looked
            },
            Err(_) => {
                self.metrics.pg_errors.inc();
                return;
            }
        };
        let seq = row.get::<_, i32>(0) as u32;
        let body: String = row.get(1);
        // The previous message's outcome event, from its handled row: a replica killed between
        // its fenced write and its audit write left it unwritten. Same id, same content, so
        // this is a no-op when the event is already stored.
        if let (Some(prev), Some(outcome), Some(detail), Some(prev_token), Some(prev_replica)) = (
            seq.checked_sub(1),
            row.get::<_, Option<String>>(2),
            row.get::<_, Option<String>>(3),
            row.get::<_, Option<i64>>(4),
            row.get::<_, Option<String>>(5),
        ) && !self.audited.lock().contains(&(user, prev))
        {
            self.audit(FleetEvent {
                event_id: event_id(user, prev, "outcome"),
                user,
                seq: prev,
                kind: "outcome".into(),
                token: prev_token,
                replica: prev_replica,
                detail: format!("{outcome}: {detail}"),
            })
            .await;
        }
        self.audit(FleetEvent {
            event_id: event_id(user, seq, "received"),
            user,
            seq,
            kind: "received".into(),
            token,
            replica: self.id.clone(),
            detail: body.clone(),
        })
        .await;
        let (outcome, detail) = match self.answer(&body).await {
            Ok(answer) => ("answered", answer),
            Err(reason) => ("failed", reason),
        };
        // No `guard.is_expired()` check before writing: the process can be paused right after
        // such a check, so it would prove nothing. The fence in the statement decides.
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
            &(user as i32),
            &(seq as i32),
            &token,
            &self.id,
            &outcome,
            &detail,
        ];
        // While PostgreSQL is down the write waits, holding the (renewed) lease, so the
        // user's order is kept; the wait is audited once (it goes to the spool). It gives up
        // when the lease is lost or the replica is stopping: the message stays next in line.
        let mut waited = false;
        let applied = loop {
            match pg::execute(&self.pool, &self.statements.advance, &params).await {
                Ok(n) => break Some(n),
                Err(e) => {
                    self.metrics.pg_errors.inc();
                    if !waited {
                        waited = true;
                        self.audit(FleetEvent {
                            event_id: event_id(user, seq, "db_wait"),
                            user,
                            seq,
                            kind: "db_wait".into(),
                            token,
                            replica: self.id.clone(),
                            detail: format!("conversation update waits: {e}"),
                        })
                        .await;
                    }
                    if guard.is_expired() || self.stopping.load(Ordering::Relaxed) {
                        break None;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        match applied {
            Some(1) => {
                self.metrics.handled.inc();
                self.audit(FleetEvent {
                    event_id: event_id(user, seq, "outcome"),
                    user,
                    seq,
                    kind: "outcome".into(),
                    token,
                    replica: self.id.clone(),
                    detail: format!("{outcome}: {detail}"),
                })
                .await;
                self.audited.lock().insert((user, seq));
            }
            Some(_) => {
                self.metrics.fenced.inc();
                let _ = pg::execute(
                    &self.pool,
                    &self.statements.fenced,
                    &[&(user as i32), &(seq as i32), &token, &self.id],
                )
                .await;
                self.alert(
                    "stale_write_fenced",
                    &format!(
                        "a write under an expired lease (user {user}, message {seq}) was fenced off"
                    ),
                )
                .await;
            }
            None => {}
        }
    }

    async fn audit(&self, event: FleetEvent) {
        if self.sink.write(event).await.is_err() {
            self.bot.audit_lost.inc();
            self.alert(
                "audit_write_failed",
                "an audit event was lost: both PostgreSQL and the spool failed",
            )
            .await;
        }
    }

    /// The upstream through a per-attempt timeout, the breaker and the retry policy, as the
    /// embedded bot calls it.
    async fn answer(&self, prompt: &str) -> Result<String, String> {
        let attempt_timeout = Duration::from_millis(400);
        self.retry
            .retry(|| async {
                self.upstream_breaker
                    .call(|| async {
                        match tokio::time::timeout(attempt_timeout, self.upstream.ask(prompt)).await
                        {
                            Ok(r) => r,
                            Err(_) => {
                                self.bot.attempt_timeouts.inc();
                                Err(UpstreamError::Timeout)
                            }
                        }
                    })
                    .await
            })
            .retry_if(components::is_transient)
            .retry_after(components::retry_after)
            .notify(components::count_hinted(&self.bot.hinted_retries))
            .await
            .map_err(|e: retry::RetryError<UpstreamCallError>| e.to_string())
    }

    /// Raises alert `key` through the Redis cooldown: it reaches a person once per window
    /// across the fleet; a fired alert is stored in PostgreSQL (later, if it is down).
    async fn alert(&self, key: &str, message: &str) {
        if let Decision::Fire(fire) = self.alerts.check(key).await {
            println!(
                "ALERT [{}] {key}: {message} ({} more like this were suppressed{})",
                self.id,
                fire.suppressed_since_last,
                if fire.degraded {
                    "; Redis unreachable, fired without the cooldown"
                } else {
                    ""
                }
            );
            self.pending_alerts.lock().push((
                key.to_string(),
                now_ms(),
                fire.degraded,
                fire.suppressed_since_last as i64,
                message.to_string(),
            ));
        }
    }

    async fn flush_alerts(&self) {
        let pending = std::mem::take(&mut *self.pending_alerts.lock());
        let mut failed = Vec::new();
        for a in pending {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                [&a.0, &self.id, &a.1, &a.2, &a.3, &a.4];
            if pg::execute(&self.pool, &self.statements.alert, &params)
                .await
                .is_err()
            {
                failed.push(a);
            }
        }
        self.pending_alerts.lock().splice(0..0, failed);
    }

    /// Every 200 ms: Redis and PostgreSQL round trips, breaker states, spool backlog; alerts
    /// on what is wrong, and stores fired alerts.
    async fn monitor(self: Arc<Self>) {
        let mut redis_was_up = true;
        let mut pg_was_up = true;
        let mut upstream_rx = self.upstream_breaker.subscribe();
        let mut audit_rx = self.audit_breaker.subscribe();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                Ok(t) = upstream_rx.recv() => if t.to == State::Open {
                    self.alert("breaker_open:upstream", &format!("upstream breaker opened: {}", t.reason)).await;
                },
                Ok(t) = audit_rx.recv() => if t.to == State::Open {
                    self.alert("breaker_open:audit", &format!("audit breaker opened: {}", t.reason)).await;
                },
                _ = tick.tick() => {
                    let pg = self.ping_pg().await;
                    if let Err(e) = &pg {
                        self.alert("postgres_unreachable", e).await;
                        if pg_was_up {
                            // Once per outage, an audit event written while PostgreSQL is
                            // down: it can only reach the table through the spool's replay.
                            let at = now_ms();
                            self.audit(FleetEvent {
                                event_id: format!("{}-db_down-{at}", self.id),
                                user: 0,
                                seq: 0,
                                kind: "db_down".into(),
                                token: 0,
                                replica: self.id.clone(),
                                detail: format!("PostgreSQL unreachable at {at} ms: {e}"),
                            })
                            .await;
                        }
                    }
                    pg_was_up = pg.is_ok();
                    *self.pg_rtt.lock() = Some(pg);
                    let redis = self.ping_redis().await;
                    // Once per outage: the cooldown lives in that Redis, and while it is
                    // unreachable every check fires (degraded) rather than lose an alert.
                    if let Err(e) = &redis && redis_was_up {
                        self.alert("redis_unreachable", e).await;
                    }
                    redis_was_up = redis.is_ok();
                    *self.redis_rtt.lock() = Some(redis);
                    let backlog = self.sink.stats().records;
                    if backlog >= 50 {
                        self.alert("spool_backlog_high", &format!("audit spool backlog is {backlog} records")).await;
                    }
                    self.flush_alerts().await;
                }
            }
        }
    }

    async fn ping_pg(&self) -> Result<Duration, String> {
        let start = tokio::time::Instant::now();
        pg::query(&self.pool, "SELECT 1", &[])
            .await
            .map(|_| start.elapsed())
            .map_err(|e| e.to_string())
    }

    async fn ping_redis(&self) -> Result<Duration, String> {
        let start = tokio::time::Instant::now();
        let ping = async {
            let mut conn = self.redis.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        match tokio::time::timeout(Duration::from_millis(500), ping).await {
            Ok(Ok(_)) => Ok(start.elapsed()),
            Ok(Err(e)) => Err(format!("redis unreachable: {e}")),
            Err(_) => Err("redis ping timed out after 500ms".into()),
        }
    }

    fn health(&self) -> Health {
        let mut status = Status::Healthy;
        let mut reasons = Vec::new();
        let mut worse = |s: Status, why: String| {
            status = status.max_with(s);
            reasons.push(why);
        };
        match &*self.redis_rtt.lock() {
            Some(Ok(d)) if *d > REDIS_SLOW => worse(
                Status::Degraded,
                format!("redis round trip {d:?} over {REDIS_SLOW:?}"),
            ),
            Some(Err(e)) => worse(Status::Unhealthy, format!("no user locks: {e}")),
            _ => {}
        }
        match &*self.pg_rtt.lock() {
            Some(Ok(d)) if *d > PG_SLOW => worse(
                Status::Degraded,
                format!("postgres round trip {d:?} over {PG_SLOW:?}"),
            ),
            Some(Err(e)) => worse(
                Status::Degraded,
                format!("{e}: audit events spool, conversations wait"),
            ),
            _ => {}
        }
        for b in [&self.upstream_breaker, &self.audit_breaker] {
            if !matches!(b.state(), State::Closed | State::Disabled) {
                worse(
                    Status::Degraded,
                    format!("breaker {} is {}", b.name(), b.state()),
                );
            }
        }
        let spool = self.sink.stats();
        if spool.records > 0 {
            worse(
                Status::Degraded,
                format!("audit spool backlog: {} records", spool.records),
            );
        }
        if self.stopping.load(Ordering::Relaxed) {
            worse(Status::Degraded, "draining".into());
        }
        Health { status, reasons }
    }

    /// Stores this process's figures in `replica_runs`; false if PostgreSQL refused.
    async fn record_run(&self, inherited: u64, left: u64) -> bool {
        let m = Readings::of(&self.registry);
        let sink = [("sink", "audit")];
        let alerts = format!("fleet-{}", self.sql.schema());
        let n = |v: u64| v as i64;
        let values = [
            n(self.metrics.handled.get()),
            n(self.metrics.fenced.get()),
            n(self.metrics.lease_lost.get()),
            n(m.sum(
                "seawall_fallback_sink_writes_total",
                &[("sink", "audit"), ("destination", "spool")],
            )),
            n(m.sum("seawall_fallback_sink_replayed_total", &sink)),
            n(inherited),
            n(m.sum(
                "seawall_cooldown_decisions_total",
                &[("cooldown", &alerts), ("decision", "fire")],
            )),
            n(m.sum(
                "seawall_cooldown_decisions_total",
                &[("cooldown", &alerts), ("decision", "suppressed")],
            )),
            n(self.metrics.pg_errors.get()),
            n(self.metrics.redis_errors.get()),
            n(left),
        ];
        let pid = std::process::id() as i32;
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&self.id, &pid];
        params.extend(
            values
                .iter()
                .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)),
        );
        for _ in 0..10 {
            if pg::execute(&self.pool, &self.sql.record_run(), &params)
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        false
    }
}
