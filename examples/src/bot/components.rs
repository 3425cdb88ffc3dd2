//! How the five crates are wired: copy this file into a service and change the numbers.
//!
//! One registry holds every crate's metrics; each crate gets its `Metrics` handle through its
//! builder. The upstream gets a keyed breaker, one breaker per model, so an outage of one
//! model cuts off that model alone. The audit sink takes the audit breaker, so an outage of the
//! store opens it and the sink spools without waiting on the store.

use std::path::Path;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use seawall_circuit_breaker::{self as breaker, CircuitBreaker, KeyedCircuitBreaker};
use seawall_cooldown::{self as cooldown, Cooldown};
use seawall_fallback_sink::{self as sink, FallbackSink, Primary};
use seawall_keyed_lock::{self as keyed_lock, KeyedLock};
use seawall_retry::{self as retry, AttemptError, Jitter, RetryBudget, RetryPolicy};

use super::upstream::UpstreamError;

/// What one attempt at the upstream can fail with: the breaker's rejection or the upstream's
/// own error.
pub(crate) type UpstreamCallError = breaker::Error<UpstreamError>;

/// Which upstream failures are worth retrying (the retry policy's per-call `retry_if`): an
/// open breaker or a bad request will not get better by retrying at once.
pub(crate) fn is_transient(e: &UpstreamCallError) -> bool {
    matches!(e, breaker::Error::Inner(e) if e.is_transient())
}

/// The upstream's Retry-After hint (the retry policy's per-call `retry_after`).
pub(crate) fn retry_after(e: &UpstreamCallError) -> Option<Duration> {
    match e {
        breaker::Error::Inner(e) => e.retry_after(),
        _ => None,
    }
}

/// Counts retries made on a server's hint (the retry policy's per-call `notify`).
pub(crate) fn count_hinted(
    hinted: &Counter,
) -> impl Fn(u32, &AttemptError<UpstreamCallError>, Duration) + '_ {
    move |_attempt, failure, _delay| {
        if let AttemptError::Inner(breaker::Error::Inner(e)) = failure
            && e.retry_after().is_some()
        {
            hinted.inc();
        }
    }
}

/// The resilience parts of the bot, built from one set of timings.
pub(crate) struct Components<T, P: Primary<T>> {
    /// One breaker per upstream model, keyed by the model's name.
    pub(crate) upstream_breaker: KeyedCircuitBreaker<&'static str>,
    pub(crate) audit_breaker: CircuitBreaker,
    pub(crate) retry: RetryPolicy,
    pub(crate) locks: KeyedLock<u32>,
    pub(crate) sink: FallbackSink<T, P>,
    pub(crate) alerts: Cooldown<String>,
}

/// Builds every part, registering its metrics in `registry`. `s` scales a duration in
/// milliseconds by the run's time scale.
pub(crate) async fn build<T, P>(
    registry: &mut Registry,
    s: impl Fn(u64) -> Duration,
    seed: u64,
    spool_dir: &Path,
    store: P,
) -> anyhow::Result<Components<T, P>>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    P: Primary<T>,
{
    let breakers = breaker::Metrics::register(registry);
    let breaker = |name: &str, failures: u32, first_open: u64, max_open: u64| {
        anyhow::Ok(
            CircuitBreaker::builder()
                .name(name)
                .consecutive_failures(failures)
                .open_durations(
                    retry::Backoff::exponential(s(first_open))
                        .max_delay(s(max_open))
                        .build()?,
                )
                .jitter(0.2)
                .metrics(breakers.clone()),
        )
    };
    // One breaker per model, each with these settings; metrics under the one name "upstream".
    let upstream_breaker = breaker("upstream", 5, 1000, 2000)?.keyed().build()?;
    let audit_breaker = breaker("audit", 3, 200, 1600)?.build()?;

    let retry = RetryPolicy::builder()
        .name("upstream")
        .max_attempts(3)
        .exponential(s(100))
        .factor(2.0)
        .max_delay(s(800))
        .jitter(Jitter::Full)
        .seed(seed)
        // Retries may add at most 20 % to the calls (plus 10 a second), fleet-wide per process.
        .budget(
            RetryBudget::builder()
                .ratio(0.2)
                .min_per_second(10)
                .build()?,
        )
        .metrics(retry::Metrics::register(registry))
        .build()?;

    let locks = KeyedLock::builder()
        .name("users")
        .ttl(s(30_000))
        .metrics(keyed_lock::Metrics::register(registry))
        .build()?;

    let sink = FallbackSink::builder(spool_dir)
        .name("audit")
        .durability(sink::Durability::Batch {
            max_records: 64,
            max_delay: Duration::from_millis(2),
        })
        .replay_interval(s(200))
        .breaker(audit_breaker.clone())
        .metrics(sink::Metrics::register(registry))
        .open(store)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the spool in {}: {e}", spool_dir.display()))?;

    let alerts = Cooldown::builder()
        .name("alerts")
        .window(s(5_000))
        .max_keys(1_000)
        .metrics(cooldown::Metrics::register(registry))
        .build()?;

    Ok(Components {
        upstream_breaker,
        audit_breaker,
        retry,
        locks,
        sink,
        alerts,
    })
}
