//! Prometheus metrics (OpenMetrics, via `prometheus-client`).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::State;

/// A breaker whose time-driven transitions a scrape brings up to date. Implemented by the
/// state machine; a trait so that this module does not depend on it.
pub(crate) trait Refresh: Send + Sync + fmt::Debug {
    /// Makes the transitions that are due now.
    fn refresh(&self);
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    breaker: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    breaker: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    breaker: String,
    from: &'static str,
    to: &'static str,
}

/// The breaker metric families, shared by every breaker built with them (each breaker is
/// told apart by its `breaker` label, its name).
///
/// | family | type | labels |
/// | --- | --- | --- |
/// | `seawall_circuit_breaker_state` | gauge, 1 for the current state, 0 for the others; computed at scrape time (an open breaker whose open duration has passed reads `half_open`) | `breaker`, `state` |
/// | `seawall_circuit_breaker_calls_total` | counter | `breaker`, `outcome` = `success`, `failure`, `ignored`, `rejected`, `abandoned`; for a keyed breaker also `untracked` |
/// | `seawall_circuit_breaker_transitions_total` | counter | `breaker`, `from`, `to` |
/// | `seawall_circuit_breaker_keys` | gauge: keys of a [`KeyedCircuitBreaker`](crate::KeyedCircuitBreaker) per state, computed at scrape time | `breaker`, `state` |
///
/// A keyed breaker counts the calls and transitions of all its keys under its own name, and
/// has no `state` series (it has no single state): never a key as a label value.
///
/// Cheap to clone (the families are reference counted). A breaker resolves its own series
/// once, when it is built, so recording a call costs one atomic add.
///
/// # Examples
///
/// ```
/// use prometheus_client::registry::Registry;
/// use seawall_circuit_breaker::{CircuitBreaker, Metrics};
///
/// let mut registry = Registry::default();
/// let metrics = Metrics::register(&mut registry);
/// let breaker = CircuitBreaker::builder().name("audit").metrics(metrics).build().unwrap();
/// # drop(breaker);
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains(r#"seawall_circuit_breaker_state{breaker="audit",state="closed"} 1"#));
/// ```
#[derive(Debug, Clone)]
pub struct Metrics {
    state: StateFamily,
    keys: KeysFamily,
    calls: Family<CallLabels, Counter>,
    transitions: Family<TransitionLabels, Counter>,
}

impl Metrics {
    /// Creates the families and registers them in `registry`. Register once per registry
    /// and hand clones to every breaker.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use seawall_circuit_breaker::{CircuitBreaker, Metrics};
    ///
    /// let mut registry = Registry::default();
    /// let metrics = Metrics::register(&mut registry);
    /// let a = CircuitBreaker::builder().name("a").metrics(metrics.clone()).build().unwrap();
    /// let b = CircuitBreaker::builder().name("b").metrics(metrics).build().unwrap();
    /// # drop((a, b));
    /// ```
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            state: StateFamily::default(),
            keys: KeysFamily::default(),
            calls: Family::default(),
            transitions: Family::default(),
        };
        registry.register(
            "seawall_circuit_breaker_state",
            "Current state of the circuit breaker: 1 for the current state, 0 for the others",
            metrics.state.clone(),
        );
        registry.register(
            "seawall_circuit_breaker_keys",
            "Keys tracked by a keyed circuit breaker, by state; computed at scrape time",
            metrics.keys.clone(),
        );
        registry.register(
            "seawall_circuit_breaker_calls",
            "Calls through the circuit breaker, by outcome",
            metrics.calls.clone(),
        );
        registry.register(
            "seawall_circuit_breaker_transitions",
            "State transitions of the circuit breaker",
            metrics.transitions.clone(),
        );
        metrics
    }

    pub(crate) fn for_breaker(&self, name: &str) -> BreakerMetrics {
        let call = |outcome| {
            self.calls.get_or_create_owned(&CallLabels {
                breaker: name.to_owned(),
                outcome,
            })
        };
        let states = State::ALL.map(|state| {
            self.state.family.get_or_create_owned(&StateLabels {
                breaker: name.to_owned(),
                state: state.as_str(),
            })
        });
        for (gauge, state) in states.iter().zip(State::ALL) {
            gauge.set(i64::from(state == State::Closed));
        }
        BreakerMetrics {
            name: name.to_owned(),
            success: call("success"),
            failure: call("failure"),
            ignored: call("ignored"),
            rejected: call("rejected"),
            abandoned: call("abandoned"),
            states,
            transitions: self.transitions.clone(),
        }
    }
}

impl Metrics {
    /// The series of a keyed breaker named `name`, cloned into each key's breaker: the
    /// shared call and transition series, state gauges that are not registered (the keyed
    /// breaker reports keys per state instead), and the `untracked` call counter.
    pub(crate) fn for_keyed(&self, name: &str) -> (BreakerMetrics, Counter) {
        let call = |outcome| {
            self.calls.get_or_create_owned(&CallLabels {
                breaker: name.to_owned(),
                outcome,
            })
        };
        let metrics = BreakerMetrics {
            name: name.to_owned(),
            success: call("success"),
            failure: call("failure"),
            ignored: call("ignored"),
            rejected: call("rejected"),
            abandoned: call("abandoned"),
            states: Default::default(),
            transitions: self.transitions.clone(),
        };
        (metrics, call("untracked"))
    }

    /// Remembers a keyed breaker so that each scrape counts its keys per state.
    pub(crate) fn track_keyed(&self, keyed: Weak<dyn CountKeys>) {
        let mut list = self
            .keys
            .keyed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        list.retain(|w| w.strong_count() > 0);
        list.push(keyed);
    }

    /// Remembers `inner` so that each scrape brings its state up to date.
    pub(crate) fn track(&self, breaker: Weak<dyn Refresh>) {
        let mut tracked = self
            .state
            .breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Forget dropped breakers once the list has doubled since the last sweep, so it
        // stays within twice the live breakers without a sweep per build.
        if tracked.list.len() >= tracked.sweep_at {
            tracked.list.retain(|w| w.strong_count() > 0);
            tracked.sweep_at = (tracked.list.len() * 2).max(16);
        }
        tracked.list.push(breaker);
    }
}

#[derive(Debug, Default)]
struct Tracked {
    list: Vec<Weak<dyn Refresh>>,
    sweep_at: usize,
}

/// The state gauge family, computed at scrape time: before encoding, every live breaker
/// makes the time-driven transitions that are due (an open duration that has passed, a hung
/// probe), so the gauge shows what the next call would see even when no call came.
#[derive(Debug, Clone, Default)]
struct StateFamily {
    family: Family<StateLabels, Gauge>,
    breakers: Arc<Mutex<Tracked>>,
}

impl StateFamily {
    fn refresh(&self) {
        let live: Vec<Arc<dyn Refresh>> = {
            let tracked = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
            tracked.list.iter().filter_map(Weak::upgrade).collect()
        };
        for breaker in live {
            breaker.refresh();
        }
    }
}

impl TypedMetric for StateFamily {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for StateFamily {
    fn encode(&self, encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.refresh();
        self.family.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// A keyed breaker whose keys a scrape counts per state. A trait so that this module does
/// not depend on keyed.rs.
pub(crate) trait CountKeys: Send + Sync + fmt::Debug {
    /// The keyed breaker's name (its `breaker` label).
    fn name(&self) -> &str;
    /// Tracked keys per state, indexed by [`State::code`], after making the transitions
    /// that are due now.
    fn count_states(&self) -> [i64; 5];
}

/// The keys-per-state gauge family, computed at scrape time.
#[derive(Debug, Clone, Default)]
struct KeysFamily {
    family: Family<StateLabels, Gauge>,
    keyed: Arc<Mutex<Vec<Weak<dyn CountKeys>>>>,
}

impl TypedMetric for KeysFamily {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for KeysFamily {
    fn encode(&self, encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let live: Vec<Arc<dyn CountKeys>> = {
            let list = self.keyed.lock().unwrap_or_else(PoisonError::into_inner);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        for keyed in live {
            let counts = keyed.count_states();
            for state in State::ALL {
                self.family
                    .get_or_create(&StateLabels {
                        breaker: keyed.name().to_owned(),
                        state: state.as_str(),
                    })
                    .set(counts[state.code() as usize]);
            }
        }
        self.family.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// One breaker's resolved series.
#[derive(Debug, Clone)]
pub(crate) struct BreakerMetrics {
    name: String,
    success: Counter,
    failure: Counter,
    ignored: Counter,
    pub(crate) rejected: Counter,
    abandoned: Counter,
    states: [Gauge; 5],
    transitions: Family<TransitionLabels, Counter>,
}

impl BreakerMetrics {
    #[inline]
    pub(crate) fn count(&self, verdict: crate::outcome::Verdict) {
        use crate::Outcome;
        use crate::outcome::Verdict;
        match verdict {
            Verdict::Outcome(Outcome::Success) => self.success.inc(),
            Verdict::Outcome(Outcome::Failure) => self.failure.inc(),
            Verdict::Outcome(Outcome::Ignored) => self.ignored.inc(),
            Verdict::Abandoned => self.abandoned.inc(),
        };
    }

    pub(crate) fn transition(&self, from: State, to: State) {
        self.states[from.code() as usize].set(0);
        self.states[to.code() as usize].set(1);
        self.transitions
            .get_or_create(&TransitionLabels {
                breaker: self.name.clone(),
                from: from.as_str(),
                to: to.as_str(),
            })
            .inc();
    }
}
