//! The fallback sink: primary first, spool on failure, ordered replay.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use seawall_fallback_sink::{Delivered, Envelope, Error, FallbackSink, Metrics, Primary, Spool};
use uuid::Uuid;

#[derive(Debug)]
struct Down;
impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("primary down")
    }
}
impl std::error::Error for Down {}

/// An in-memory primary that records what it received and can be switched off, or set to
/// accept only the next `budget` batches.
#[derive(Default)]
struct Mem {
    down: AtomicBool,
    /// Batches still accepted; negative means unlimited.
    budget: AtomicI64,
    calls: AtomicUsize,
    got: Mutex<Vec<(Uuid, u64)>>,
}

impl Mem {
    fn new() -> Arc<Self> {
        let m = Mem::default();
        m.budget.store(-1, Ordering::SeqCst);
        Arc::new(m)
    }
    fn payloads(&self) -> Vec<u64> {
        self.got.lock().iter().map(|(_, p)| *p).collect()
    }
}

struct Handle(Arc<Mem>);

impl Primary<u64> for Handle {
    type Error = Down;
    async fn write_batch(&self, records: &[Envelope<u64>]) -> Result<(), Down> {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        if self.0.down.load(Ordering::SeqCst) {
            return Err(Down);
        }
        let b = self.0.budget.load(Ordering::SeqCst);
        if b == 0 {
            return Err(Down);
        }
        if b > 0 {
            self.0.budget.fetch_sub(1, Ordering::SeqCst);
        }
        self.0
            .got
            .lock()
            .extend(records.iter().map(|r| (r.id, r.payload)));
        Ok(())
    }
}

async fn sink(
    dir: &std::path::Path,
    mem: &Arc<Mem>,
    f: impl FnOnce(
        seawall_fallback_sink::FallbackSinkBuilder<u64, Handle>,
    ) -> seawall_fallback_sink::FallbackSinkBuilder<u64, Handle>,
) -> FallbackSink<u64, Handle> {
    f(FallbackSink::builder(dir).name("audit"))
        .open(Handle(mem.clone()))
        .await
        .unwrap()
}

#[tokio::test]
async fn order_is_preserved_across_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Mem::new();
    let s = sink(dir.path(), &mem, |b| {
        b.background_replay(false).replay_batch(3)
    })
    .await;
    assert_eq!(s.write(1).await.unwrap(), Delivered::Primary);
    mem.down.store(true, Ordering::SeqCst);
    for i in 2..=6 {
        assert_eq!(s.write(i).await.unwrap(), Delivered::Spooled);
    }
    mem.down.store(false, Ordering::SeqCst);
    // The primary is back, but the backlog is not drained yet: new records join it.
    for i in 7..=9 {
        assert_eq!(s.write(i).await.unwrap(), Delivered::Spooled);
    }
    assert_eq!(s.stats().records, 8);
    assert_eq!(s.replay_once().await.unwrap(), 8);
    assert_eq!(s.stats().records, 0);
    for i in 10..=12 {
        assert_eq!(s.write(i).await.unwrap(), Delivered::Primary);
    }
    assert_eq!(mem.payloads(), (1..=12).collect::<Vec<_>>());
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_preserve_order_new_records_overtake_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Mem::new();
    let s = sink(dir.path(), &mem, |b| {
        b.background_replay(false).preserve_order(false)
    })
    .await;
    mem.down.store(true, Ordering::SeqCst);
    assert_eq!(s.write(1).await.unwrap(), Delivered::Spooled);
    mem.down.store(false, Ordering::SeqCst);
    assert_eq!(s.write(2).await.unwrap(), Delivered::Primary);
    assert_eq!(s.replay_once().await.unwrap(), 1);
    assert_eq!(mem.payloads(), [2, 1]);
    s.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn background_replayer_drains_when_the_primary_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Mem::new();
    let s = sink(dir.path(), &mem, |b| {
        b.replay_interval(Duration::from_secs(5)).replay_batch(4)
    })
    .await;
    mem.down.store(true, Ordering::SeqCst);
    for i in 1..=10 {
        assert_eq!(s.write(i).await.unwrap(), Delivered::Spooled);
    }
    // The replayer tried (woken by the first spooled record) and backs off for 5 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = mem.calls.load(Ordering::SeqCst);
    assert_eq!(
        calls, 2,
        "1 direct attempt (the rest joined the backlog) + 1 replay attempt"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        mem.calls.load(Ordering::SeqCst),
        2,
        "no retry before the interval"
    );
    mem.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.stats().records, 0);
    assert_eq!(mem.payloads(), (1..=10).collect::<Vec<_>>());
    assert_eq!(s.write(11).await.unwrap(), Delivered::Primary);
    s.shutdown().await.unwrap();
    assert!(matches!(
        s.spool().append(&Envelope::new(0u64)).await,
        Err(Error::Closed)
    ));
    // The directory is free again.
    Spool::open(dir.path())
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_primary_failing_half_way_through_replay_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Mem::new();
    let s = sink(dir.path(), &mem, |b| {
        b.background_replay(false).replay_batch(5)
    })
    .await;
    mem.down.store(true, Ordering::SeqCst);
    for i in 0..20 {
        s.write(i).await.unwrap();
    }
    mem.down.store(false, Ordering::SeqCst);
    mem.budget.store(2, Ordering::SeqCst);
    let e = s.replay_once().await.unwrap_err();
    assert!(matches!(e, Error::Inner(Down)), "{e:?}");
    assert_eq!(mem.payloads(), (0..10).collect::<Vec<_>>());
    assert_eq!(s.stats().records, 10);
    mem.budget.store(-1, Ordering::SeqCst);
    assert_eq!(s.replay_once().await.unwrap(), 10);
    assert_eq!(mem.payloads(), (0..20).collect::<Vec<_>>());
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn errors_only_when_both_fail() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Mem::new();
    let s = sink(dir.path(), &mem, |b| {
        b.background_replay(false)
            .preserve_order(false)
            .max_bytes(600)
            .segment_bytes(600)
    })
    .await;
    mem.down.store(true, Ordering::SeqCst);
    let mut spooled = 0;
    let err = loop {
        match s.write(spooled).await {
            Ok(d) => {
                assert_eq!(d, Delivered::Spooled);
                spooled += 1;
            }
            Err(e) => break e,
        }
    };
    let Error::Unavailable { primary, spool } = err else {
        panic!("{err:?}")
    };
    assert!(matches!(*primary, Error::Inner(Down)), "{primary:?}");
    assert!(matches!(*spool, Error::Full { max_bytes: 600, .. }));
    // The primary recovering makes writes succeed again (and replay drains what was kept).
    mem.down.store(false, Ordering::SeqCst);
    assert_eq!(s.write(100).await.unwrap(), Delivered::Primary);
    assert_eq!(s.replay_once().await.unwrap(), spooled);
    s.shutdown().await.unwrap();

    // With preserve_order, a full spool behind a backlog is reported as the spool's error.
    let dir = tempfile::tempdir().unwrap();
    let mem = Mem::new();
    let s = sink(dir.path(), &mem, |b| {
        b.background_replay(false).max_bytes(600).segment_bytes(600)
    })
    .await;
    mem.down.store(true, Ordering::SeqCst);
    let err = loop {
        if let Err(e) = s.write(1).await {
            break e;
        }
    };
    assert!(matches!(err, Error::Full { .. }), "{err:?}");
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn undecodable_records_are_quarantined_not_wedged() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).await.unwrap();
    spool.append(&Envelope::new(1u64)).await.unwrap();
    spool.append(&Envelope::new("not a number")).await.unwrap();
    spool.append(&Envelope::new(3u64)).await.unwrap();
    spool.close().await.unwrap();
    let mem = Mem::new();
    let s = sink(dir.path(), &mem, |b| b.background_replay(false)).await;
    assert_eq!(s.replay_once().await.unwrap(), 2);
    assert_eq!(mem.payloads(), [1, 3]);
    assert_eq!(s.stats().quarantined, 1);
    assert_eq!(s.stats().records, 0);
    let q = std::fs::read_to_string(dir.path().join("quarantine.jsonl")).unwrap();
    assert_eq!(q.lines().count(), 1);
    assert!(q.contains("not a number"), "{q}");
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_are_exported() {
    use prometheus_client::encoding::text::encode;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let dir = tempfile::tempdir().unwrap();
    let mem = Mem::new();
    let s = sink(dir.path(), &mem, |b| {
        b.background_replay(false).metrics(metrics.clone())
    })
    .await;
    s.write(1).await.unwrap();
    mem.down.store(true, Ordering::SeqCst);
    s.write(2).await.unwrap();
    s.write(3).await.unwrap();
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    for line in [
        r#"seawall_fallback_sink_writes_total{sink="audit",destination="primary"} 1"#,
        r#"seawall_fallback_sink_writes_total{sink="audit",destination="spool"} 2"#,
        r#"seawall_fallback_sink_backlog_records{sink="audit"} 2"#,
        r#"seawall_fallback_sink_errors_total{sink="audit",kind="primary"} 1"#,
        r#"seawall_fallback_sink_quarantined_total{sink="audit"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    let bytes = s.stats().bytes;
    assert!(text.contains(&format!(
        r#"seawall_fallback_sink_backlog_bytes{{sink="audit"}} {bytes}"#
    )));
    assert!(text.contains("seawall_fallback_sink_oldest_record_age_seconds{sink=\"audit\"}"));
    mem.down.store(false, Ordering::SeqCst);
    s.replay_once().await.unwrap();
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    for line in [
        r#"seawall_fallback_sink_replayed_total{sink="audit"} 2"#,
        r#"seawall_fallback_sink_backlog_records{sink="audit"} 0"#,
        r#"seawall_fallback_sink_backlog_bytes{sink="audit"} 0"#,
        r#"seawall_fallback_sink_oldest_record_age_seconds{sink="audit"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_with_a_flapping_primary_keep_per_writer_order() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Mem::new();
    let s = sink(dir.path(), &mem, |b| {
        b.replay_interval(Duration::from_millis(1)).replay_batch(7)
    })
    .await;
    let flapper = {
        let mem = mem.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                mem.down.store(i % 3 == 0, Ordering::SeqCst);
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            mem.down.store(false, Ordering::SeqCst);
        })
    };
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut spooled = 0;
                for i in 0..100u64 {
                    if s.write(w * 1000 + i).await.unwrap() == Delivered::Spooled {
                        spooled += 1;
                    }
                }
                spooled
            })
        })
        .collect();
    let mut spooled = 0;
    for w in writers {
        spooled += w.await.unwrap();
    }
    flapper.await.unwrap();
    mem.down.store(false, Ordering::SeqCst);
    s.replay_once().await.unwrap();
    assert_eq!(s.stats().records, 0);
    let got = mem.payloads();
    assert_eq!(
        got.len(),
        800,
        "every record exactly once ({spooled} went through the spool)"
    );
    for w in 0..8u64 {
        let mine: Vec<u64> = got.iter().copied().filter(|p| p / 1000 == w).collect();
        assert_eq!(mine, (0..100).map(|i| w * 1000 + i).collect::<Vec<_>>());
    }
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_sink_config_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Mem::new();
    let e = FallbackSink::builder(dir.path())
        .replay_batch(0)
        .open(Handle(mem.clone()))
        .await
        .unwrap_err();
    let Error::Config(c) = e else { panic!("{e:?}") };
    assert_eq!(c.field(), "replay_batch");
    let e = FallbackSink::builder(dir.path())
        .name("")
        .open(Handle(mem))
        .await
        .unwrap_err();
    let Error::Config(c) = e else { panic!("{e:?}") };
    assert_eq!(c.field(), "name");
}

#[test]
fn bounds() {
    fn types<T: Send + std::marker::Sync + 'static>() {}
    fn is_send<T: Send>(_: &T) {}
    types::<FallbackSink<u64, Handle>>();
    types::<seawall_fallback_sink::FallbackSinkBuilder<u64, Handle>>();
    types::<Delivered>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mem = Mem::new();
    is_send(&FallbackSink::builder(dir.path()).open(Handle(mem.clone())));
    let s: FallbackSink<u64, Handle> = rt
        .block_on(FallbackSink::builder(dir.path()).open(Handle(mem)))
        .unwrap();
    is_send(&s.write(1));
    is_send(&s.replay_once());
    is_send(&s.shutdown());
    rt.block_on(s.shutdown()).unwrap();
}

#[cfg(feature = "circuit-breaker")]
#[tokio::test(start_paused = true)]
async fn an_open_breaker_sends_records_to_the_spool_and_replay_probes() {
    use seawall_circuit_breaker::{CircuitBreaker, State};
    let breaker = CircuitBreaker::builder()
        .name("audit")
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(30))
        .jitter(0.0)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mem = Mem::new();
    let s = sink(dir.path(), &mem, |b| {
        b.breaker(breaker.clone())
            .preserve_order(false)
            .replay_interval(Duration::from_secs(1))
    })
    .await;
    mem.down.store(true, Ordering::SeqCst);
    assert_eq!(s.write(1).await.unwrap(), Delivered::Spooled);
    tokio::task::yield_now().await;
    // Write 1 failed directly; the replayer's first attempt failed too: the breaker opens.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(breaker.state(), State::Open);
    let calls = mem.calls.load(Ordering::SeqCst);
    assert_eq!(calls, 2);
    // While open, nothing reaches the primary.
    for i in 2..=5 {
        assert_eq!(s.write(i).await.unwrap(), Delivered::Spooled);
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(mem.calls.load(Ordering::SeqCst), 2);
    mem.down.store(false, Ordering::SeqCst);
    // After the open duration the replayer's batch is the half-open probe; it closes the
    // breaker and drains the spool.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(s.stats().records, 0);
    assert_eq!(mem.payloads(), [1, 2, 3, 4, 5]);
    assert_eq!(s.write(6).await.unwrap(), Delivered::Primary);
    s.shutdown().await.unwrap();
}

#[cfg(feature = "retry")]
#[tokio::test]
async fn retry_policy_is_used_before_spooling() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Mem::new();
    let policy = seawall_retry::RetryPolicy::builder()
        .max_attempts(3)
        .constant(Duration::ZERO)
        .build()
        .unwrap();
    let s = sink(dir.path(), &mem, |b| {
        b.background_replay(false).retry(policy)
    })
    .await;
    mem.budget.store(0, Ordering::SeqCst);
    assert_eq!(s.write(1).await.unwrap(), Delivered::Spooled);
    assert_eq!(
        mem.calls.load(Ordering::SeqCst),
        3,
        "three attempts, then the spool"
    );
    mem.budget.store(-1, Ordering::SeqCst);
    assert_eq!(s.replay_once().await.unwrap(), 1);
    assert_eq!(s.write(2).await.unwrap(), Delivered::Primary);
    assert_eq!(mem.calls.load(Ordering::SeqCst), 5);
    s.shutdown().await.unwrap();
}

/// A primary whose every error is permanent (a record it will never accept as it is).
struct Rejecting(Arc<Mem>);

impl Primary<u64> for Rejecting {
    type Error = Down;
    async fn write_batch(&self, records: &[Envelope<u64>]) -> Result<(), Down> {
        Handle(self.0.clone()).write_batch(records).await
    }
    fn is_transient(&self, _: &Down) -> bool {
        false
    }
}

#[cfg(feature = "retry")]
#[tokio::test]
async fn a_permanent_primary_error_is_spooled_without_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Mem::new();
    let policy = seawall_retry::RetryPolicy::builder()
        .max_attempts(3)
        .constant(Duration::ZERO)
        .build()
        .unwrap();
    let s = FallbackSink::builder(dir.path())
        .name("audit")
        .background_replay(false)
        .retry(policy)
        .open(Rejecting(mem.clone()))
        .await
        .unwrap();
    mem.budget.store(0, Ordering::SeqCst);
    assert_eq!(s.write(1).await.unwrap(), Delivered::Spooled);
    assert_eq!(
        mem.calls.load(Ordering::SeqCst),
        1,
        "a permanent error is not retried: one attempt, then the spool"
    );
    assert_eq!(s.stats().records, 1, "the record is in the spool, not lost");
    s.shutdown().await.unwrap();
}

/// A primary that is down, then panics on the next batch (a bug in the user's store).
struct Panicky(std::sync::atomic::AtomicBool);

impl Primary<u64> for Panicky {
    type Error = Down;
    async fn write_batch(&self, _: &[Envelope<u64>]) -> Result<(), Down> {
        if self.0.load(Ordering::SeqCst) {
            panic!("the store's driver panicked");
        }
        Err(Down)
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_replayer_is_never_silent() {
    let dir = tempfile::tempdir().unwrap();
    let s = FallbackSink::builder(dir.path())
        .replay_interval(Duration::from_millis(10))
        .open(Panicky(Default::default()))
        .await
        .unwrap();
    assert_eq!(s.write(1).await.unwrap(), Delivered::Spooled);
    s.primary().0.store(true, Ordering::SeqCst);
    let mut err = None;
    for i in 2..100 {
        match s.write(i).await {
            Ok(d) => assert_eq!(d, Delivered::Spooled, "behind the backlog"),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = err.expect("the replayer died and writes kept succeeding");
    assert!(
        matches!(&err, Error::ReplayerFailed { cause } if cause.contains("driver panicked")),
        "{err}"
    );
    assert!(matches!(
        s.replay_once().await,
        Err(Error::ReplayerFailed { .. })
    ));
    // Everything accepted is still in the spool for the next owner.
    let stored = s.stats().records;
    s.shutdown().await.unwrap();
    let spool = Spool::open(dir.path()).await.unwrap();
    assert_eq!(spool.stats().records, stored);
}
