//! Prometheus metrics (OpenMetrics, via `prometheus-client`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    cooldown: String,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CooldownLabels {
    cooldown: String,
}

/// The cooldown metric families, registered once and shared by every
/// [`Cooldown`](crate::Cooldown) handed a clone (the `cooldown` label, the
/// builder's [`name`](crate::CooldownBuilder::name), tells them apart).
///
/// | family | type | labels | meaning |
/// |---|---|---|---|
/// | `seawall_cooldown_decisions_total` | counter | `cooldown`, `decision` = `fire` \| `suppressed` \| `bypass` \| `rolled_back` | events by outcome; `fire` counts checks that fired and committed reservations, `bypass` critical events that fired inside a window, `rolled_back` reservations dropped without commit |
/// | `seawall_cooldown_keys` | gauge | `cooldown` | keys currently tracked |
/// | `seawall_cooldown_evictions_total` | counter | `cooldown` | keys forgotten early because `max_keys` was reached (expired keys are not counted) |
/// | `seawall_cooldown_degraded_total` | counter | `cooldown` | feature `redis` only: decisions a `RedisCooldown` took by its unreachable policy (also counted in `decisions_total`), failed commits, rollbacks and drains |
///
/// A `RedisCooldown` counts its decisions in `decisions_total` like the
/// in-memory one; its keys live in Redis, so its `keys` and `evictions`
/// series stay 0.
///
/// Cloning is cheap (reference-counted families).
///
/// # Examples
///
/// ```
/// use prometheus_client::registry::Registry;
/// use seawall_cooldown::{Cooldown, Metrics};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut registry = Registry::default();
/// let metrics = Metrics::register(&mut registry);
/// let cooldown = Cooldown::builder().name("alerts").metrics(metrics).build().unwrap();
/// cooldown.check(&"db-down");
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains(r#"seawall_cooldown_decisions_total{cooldown="alerts",decision="fire"} 1"#));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Metrics {
    decisions: Family<DecisionLabels, Counter>,
    keys: Family<CooldownLabels, Gauge>,
    evictions: Family<CooldownLabels, Counter>,
    #[cfg(feature = "redis")]
    degraded: Family<CooldownLabels, Counter>,
}

impl Metrics {
    /// Registers the families in `registry` and returns handles to them.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use seawall_cooldown::{Cooldown, Metrics};
    ///
    /// let mut registry = Registry::default();
    /// let metrics = Metrics::register(&mut registry);
    /// let cooldown = Cooldown::<u64>::builder().name("alerts").metrics(metrics).build().unwrap();
    /// cooldown.check(&1);
    /// let mut text = String::new();
    /// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    /// assert!(text.contains("cooldown=\"alerts\""), "{text}");
    /// ```
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            decisions: Family::default(),
            keys: Family::default(),
            evictions: Family::default(),
            #[cfg(feature = "redis")]
            degraded: Family::default(),
        };
        registry.register(
            "seawall_cooldown_decisions",
            "Cooldown decisions by outcome",
            metrics.decisions.clone(),
        );
        registry.register(
            "seawall_cooldown_keys",
            "Keys currently tracked by the cooldown",
            metrics.keys.clone(),
        );
        registry.register(
            "seawall_cooldown_evictions",
            "Keys evicted before they expired because max_keys was reached",
            metrics.evictions.clone(),
        );
        #[cfg(feature = "redis")]
        registry.register(
            "seawall_cooldown_degraded",
            "Redis cooldown decisions taken by the unreachable policy because Redis did not answer",
            metrics.degraded.clone(),
        );
        metrics
    }

    /// The degraded-decision counter of one Redis cooldown.
    #[cfg(feature = "redis")]
    pub(crate) fn degraded(&self, name: &str) -> Counter {
        self.degraded.get_or_create_owned(&CooldownLabels {
            cooldown: name.to_owned(),
        })
    }

    /// Resolves the series of one cooldown, so the hot path only bumps atomics.
    pub(crate) fn instance(&self, name: &str) -> InstanceMetrics {
        let decision = |decision: &'static str| {
            self.decisions.get_or_create_owned(&DecisionLabels {
                cooldown: name.to_owned(),
                decision,
            })
        };
        let labels = CooldownLabels {
            cooldown: name.to_owned(),
        };
        InstanceMetrics {
            fire: decision("fire"),
            suppressed: decision("suppressed"),
            bypass: decision("bypass"),
            rolled_back: decision("rolled_back"),
            keys: self.keys.get_or_create_owned(&labels),
            evictions: self.evictions.get_or_create_owned(&labels),
        }
    }
}

/// The series of one cooldown instance.
#[derive(Clone, Debug)]
pub(crate) struct InstanceMetrics {
    pub(crate) fire: Counter,
    pub(crate) suppressed: Counter,
    pub(crate) bypass: Counter,
    pub(crate) rolled_back: Counter,
    pub(crate) keys: Gauge,
    pub(crate) evictions: Counter,
}
