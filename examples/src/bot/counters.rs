//! The counters the report reads, all from the metrics registry `/metrics` serves: the crates'
//! own families, plus the few the bot counts itself (registered beside them as `bot_*`).

use std::collections::HashMap;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// What the bot counts that no crate can: why an upstream attempt failed, and lost events.
#[derive(Debug, Clone, Default)]
pub(crate) struct BotMetrics {
    /// Retries whose delay the upstream's `Retry-After` hint set.
    pub(crate) hinted_retries: Counter,
    /// Upstream attempts cut off by the per-attempt timeout.
    pub(crate) attempt_timeouts: Counter,
    /// Audit events that neither the store nor the spool took.
    pub(crate) audit_lost: Counter,
}

impl BotMetrics {
    /// Registers the bot's counters in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = BotMetrics::default();
        registry.register(
            "bot_upstream_hinted_retries",
            "Retries whose delay was set by the upstream's Retry-After hint",
            m.hinted_retries.clone(),
        );
        registry.register(
            "bot_upstream_attempt_timeouts",
            "Upstream attempts cut off by the per-attempt timeout",
            m.attempt_timeouts.clone(),
        );
        registry.register(
            "bot_audit_lost",
            "Audit events neither the store nor the spool accepted",
            m.audit_lost.clone(),
        );
        m
    }
}

/// One sample's labels, as (name, value) pairs.
type Labels = Vec<(String, String)>;

/// One reading of every sample in a registry, as the OpenMetrics text encodes it.
#[derive(Debug, Default)]
pub(crate) struct Readings {
    /// Sample name (with its `_total` suffix) to (labels, value) pairs.
    samples: HashMap<String, Vec<(Labels, f64)>>,
}

impl Readings {
    /// Encodes `registry` and parses the text back into samples.
    pub(crate) fn of(registry: &Registry) -> Self {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
            return Readings::default();
        }
        Readings::parse(&text)
    }

    /// Parses OpenMetrics text (only what the encoder writes: no escaped quotes or commas in
    /// label values, which the bot's instance names never contain).
    pub(crate) fn parse(text: &str) -> Self {
        let mut samples: HashMap<String, Vec<_>> = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect();
            samples
                .entry(name.to_string())
                .or_default()
                .push((labels, value));
        }
        Readings { samples }
    }

    /// The sum of the samples of `name` whose labels include every pair in `labels`.
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.samples
            .get(name)
            .map(|all| {
                all.iter()
                    .filter(|(have, _)| {
                        labels
                            .iter()
                            .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
                    })
                    .map(|(_, v)| *v)
                    .sum::<f64>()
            })
            .unwrap_or(0.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_back_from_the_registry() {
        let mut registry = Registry::default();
        let bot = BotMetrics::register(&mut registry);
        let metrics = seawall_keyed_lock::Metrics::register(&mut registry);
        let locks = seawall_keyed_lock::KeyedLock::<u32>::builder()
            .name("users")
            .metrics(metrics)
            .build()
            .unwrap();
        drop(locks.try_lock(&1).unwrap());
        drop(locks.try_lock(&2).unwrap());
        bot.audit_lost.inc();
        let r = Readings::of(&registry);
        assert_eq!(r.sum("bot_audit_lost_total", &[]), 1);
        assert_eq!(r.sum("bot_upstream_hinted_retries_total", &[]), 0);
        assert_eq!(
            r.sum("seawall_keyed_lock_acquired_total", &[("lock", "users")]),
            2
        );
        assert_eq!(
            r.sum("seawall_keyed_lock_acquired_total", &[("lock", "other")]),
            0
        );
    }
}
