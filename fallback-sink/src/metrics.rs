//! Prometheus metrics.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The sink's metric families, registered once and shared by every sink and spool (each
/// labelled by its `sink` name).
///
/// | family | type | labels |
/// |---|---|---|
/// | `seawall_fallback_sink_writes_total` | counter | `sink`, `destination` = `primary` \| `spool` |
/// | `seawall_fallback_sink_replayed_total` | counter | `sink` |
/// | `seawall_fallback_sink_quarantined_total` | counter | `sink` |
/// | `seawall_fallback_sink_backlog_records` | gauge | `sink` |
/// | `seawall_fallback_sink_backlog_bytes` | gauge | `sink` |
/// | `seawall_fallback_sink_oldest_record_age_seconds` | gauge | `sink` |
/// | `seawall_fallback_sink_spool_syncs_total` | counter | `sink` |
/// | `seawall_fallback_sink_errors_total` | counter | `sink`, `kind` (see [`Error::kind`](crate::Error::kind)) |
///
/// `kind` values: `primary` (a direct write failed; the record was spooled), `breaker_open`
/// (the breaker refused a write or a replay), `replay` (a replayed batch failed), and the
/// spool's own [`Error::kind`](crate::Error::kind)s when the spool refused a record (`full`,
/// `io`, `closed`, ...).
///
/// Cloning is cheap (reference counted).
///
/// # Examples
///
/// ```
/// use prometheus_client::registry::Registry;
/// let mut registry = Registry::default();
/// let metrics = seawall_fallback_sink::Metrics::register(&mut registry);
/// # let _ = metrics;
/// ```
#[derive(Debug, Clone)]
pub struct Metrics {
    writes: Family<Labels, Counter>,
    replayed: Family<Labels, Counter>,
    quarantined: Family<Labels, Counter>,
    backlog_records: Family<Labels, Gauge>,
    backlog_bytes: Family<Labels, Gauge>,
    oldest_age: Family<Labels, Gauge<f64, AtomicU64>>,
    spool_syncs: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
}

impl Metrics {
    /// Creates the families and registers them in `registry`.
    ///
    /// # Examples
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// let mut registry = Registry::default();
    /// let metrics = seawall_fallback_sink::Metrics::register(&mut registry);
    /// let builder = seawall_fallback_sink::Spool::builder("spool").metrics(&metrics);
    /// # let _ = builder;
    /// ```
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            writes: Family::default(),
            replayed: Family::default(),
            quarantined: Family::default(),
            backlog_records: Family::default(),
            backlog_bytes: Family::default(),
            oldest_age: Family::default(),
            spool_syncs: Family::default(),
            errors: Family::default(),
        };
        registry.register(
            "seawall_fallback_sink_writes",
            "Records accepted, by destination (primary or spool)",
            m.writes.clone(),
        );
        registry.register(
            "seawall_fallback_sink_replayed",
            "Spooled records delivered to the primary by replay",
            m.replayed.clone(),
        );
        registry.register(
            "seawall_fallback_sink_quarantined",
            "Corrupt spool lines moved to quarantine.jsonl",
            m.quarantined.clone(),
        );
        registry.register(
            "seawall_fallback_sink_backlog_records",
            "Records in the spool not yet delivered to the primary",
            m.backlog_records.clone(),
        );
        registry.register(
            "seawall_fallback_sink_backlog_bytes",
            "Bytes in the spool not yet delivered to the primary",
            m.backlog_bytes.clone(),
        );
        registry.register(
            "seawall_fallback_sink_oldest_record_age_seconds",
            "Age of the oldest record waiting in the spool (0 when empty)",
            m.oldest_age.clone(),
        );
        registry.register(
            "seawall_fallback_sink_spool_syncs",
            "fdatasync calls on spool segments while appending (records spooled / this = records per group commit)",
            m.spool_syncs.clone(),
        );
        registry.register(
            "seawall_fallback_sink_errors",
            "Errors by kind",
            m.errors.clone(),
        );
        m
    }

    pub(crate) fn handles(&self, sink: &str) -> Handles {
        let l = vec![("sink", sink.to_owned())];
        let with = |k: &'static str, v: &str| {
            let mut l = l.clone();
            l.push((k, v.to_owned()));
            l
        };
        Handles {
            writes_primary: self
                .writes
                .get_or_create_owned(&with("destination", "primary")),
            writes_spool: self
                .writes
                .get_or_create_owned(&with("destination", "spool")),
            replayed: self.replayed.get_or_create_owned(&l),
            quarantined: self.quarantined.get_or_create_owned(&l),
            backlog_records: self.backlog_records.get_or_create_owned(&l),
            backlog_bytes: self.backlog_bytes.get_or_create_owned(&l),
            oldest_age: self.oldest_age.get_or_create_owned(&l),
            syncs: self.spool_syncs.get_or_create_owned(&l),
            errors: self.errors.clone(),
            sink: sink.to_owned(),
        }
    }
}

/// Lets builders take `&metrics` as well as `metrics` (a clone is cheap).
impl From<&Metrics> for Metrics {
    fn from(m: &Metrics) -> Self {
        m.clone()
    }
}

/// One sink's resolved metric handles.
#[derive(Debug, Clone)]
pub(crate) struct Handles {
    pub(crate) writes_primary: Counter,
    pub(crate) writes_spool: Counter,
    pub(crate) replayed: Counter,
    pub(crate) quarantined: Counter,
    pub(crate) backlog_records: Gauge,
    pub(crate) backlog_bytes: Gauge,
    pub(crate) oldest_age: Gauge<f64, AtomicU64>,
    pub(crate) syncs: Counter,
    errors: Family<Labels, Counter>,
    sink: String,
}

impl Handles {
    pub(crate) fn error(&self, kind: &'static str) {
        self.errors
            .get_or_create(&vec![
                ("sink", self.sink.clone()),
                ("kind", kind.to_owned()),
            ])
            .inc();
    }
}
