//! Prometheus metrics (OpenMetrics, via `prometheus-client`).

use std::fmt;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels2 = [(&'static str, String); 2];
type Labels1 = [(&'static str, String); 1];

/// The retry metric families. Register once, then hand a clone to every policy's builder
/// ([`RetryPolicyBuilder::metrics`](crate::RetryPolicyBuilder::metrics)); each policy labels its
/// series with its name (`policy="upstream"`), resolved once when the policy is built.
///
/// | family | type | labels |
/// |---|---|---|
/// | `seawall_retry_attempts_total` | counter | `policy`, `outcome` = `success` \| `transient` \| `permanent` \| `timeout` |
/// | `seawall_retry_calls_total` | counter | `policy`, `result` = `first_try` \| `after_retry` \| `exhausted` \| `permanent` \| `deadline` \| `hint_beyond_deadline` \| `budget` |
/// | `seawall_retry_budget_tokens` | gauge | `policy` (only when a budget is attached) |
///
/// # Examples
/// ```
/// use prometheus_client::registry::Registry;
/// use seawall_retry::{Metrics, RetryPolicy};
///
/// let mut registry = Registry::default();
/// let metrics = Metrics::register(&mut registry);
/// let policy = RetryPolicy::builder()
///     .name("upstream")
///     .metrics(metrics)
///     .build()?;
/// # Ok::<(), seawall_retry::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Metrics {
    attempts: Family<Labels2, Counter>,
    calls: Family<Labels2, Counter>,
    budget_tokens: Family<Labels1, Gauge<f64, AtomicU64>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates the families and registers them in `registry`.
    ///
    /// # Panics
    /// Never.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            attempts: Family::default(),
            calls: Family::default(),
            budget_tokens: Family::default(),
        };
        registry.register(
            "seawall_retry_attempts",
            "Attempts made by retry policies, by outcome",
            m.attempts.clone(),
        );
        registry.register(
            "seawall_retry_calls",
            "Calls through retry policies, by how they ended",
            m.calls.clone(),
        );
        registry.register(
            "seawall_retry_budget_tokens",
            "Tokens left in the retry budget attached to the policy",
            m.budget_tokens.clone(),
        );
        m
    }

    /// Resolves one policy's series; the budget gauge only exists when a budget is attached.
    pub(crate) fn resolve(&self, policy: &str, with_budget: bool) -> PolicyMetrics {
        let a = |outcome: &str| {
            self.attempts
                .get_or_create(&[
                    ("policy", policy.to_owned()),
                    ("outcome", outcome.to_owned()),
                ])
                .clone()
        };
        let c = |result: &str| {
            self.calls
                .get_or_create(&[("policy", policy.to_owned()), ("result", result.to_owned())])
                .clone()
        };
        PolicyMetrics {
            attempt_success: a("success"),
            attempt_transient: a("transient"),
            attempt_permanent: a("permanent"),
            attempt_timeout: a("timeout"),
            call_first_try: c("first_try"),
            call_after_retry: c("after_retry"),
            call_exhausted: c("exhausted"),
            call_permanent: c("permanent"),
            call_deadline: c("deadline"),
            call_hint_beyond_deadline: c("hint_beyond_deadline"),
            call_budget: c("budget"),
            budget_tokens: if with_budget {
                self.budget_tokens
                    .get_or_create(&[("policy", policy.to_owned())])
                    .clone()
            } else {
                Gauge::default()
            },
        }
    }
}

/// One policy's series, resolved at build time so the hot path only increments atomics.
#[derive(Clone, Debug)]
pub(crate) struct PolicyMetrics {
    pub(crate) attempt_success: Counter,
    pub(crate) attempt_transient: Counter,
    pub(crate) attempt_permanent: Counter,
    pub(crate) attempt_timeout: Counter,
    pub(crate) call_first_try: Counter,
    pub(crate) call_after_retry: Counter,
    pub(crate) call_exhausted: Counter,
    pub(crate) call_permanent: Counter,
    pub(crate) call_deadline: Counter,
    pub(crate) call_hint_beyond_deadline: Counter,
    pub(crate) call_budget: Counter,
    pub(crate) budget_tokens: Gauge<f64, AtomicU64>,
}
