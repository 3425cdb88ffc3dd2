//! The composition: primary first, spool when it fails, replay when it recovers.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::metrics::Handles;
use crate::writer::panic_message;
use crate::{Envelope, Error, Primary, Spool, Stats};

/// Where a record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivered {
    /// The primary store acknowledged it.
    Primary,
    /// The spool made it durable (per its [`Durability`](crate::Durability) policy); replay will deliver
    /// it to the primary later.
    Spooled,
}

/// The sink's own settings (the spool's are in `Options`).
pub(crate) struct Settings<E> {
    pub(crate) preserve_order: bool,
    pub(crate) replay_batch: usize,
    pub(crate) replay_interval: Duration,
    pub(crate) background_replay: bool,
    #[cfg(feature = "circuit-breaker")]
    pub(crate) breaker: Option<seawall_circuit_breaker::CircuitBreaker>,
    #[cfg(feature = "retry")]
    pub(crate) retry: Option<seawall_retry::RetryPolicy>,
    pub(crate) _marker: PhantomData<fn(E)>,
}

impl<E> Default for Settings<E> {
    fn default() -> Self {
        Settings {
            preserve_order: true,
            replay_batch: 256,
            replay_interval: Duration::from_secs(1),
            background_replay: true,
            #[cfg(feature = "circuit-breaker")]
            breaker: None,
            #[cfg(feature = "retry")]
            retry: None,
            _marker: PhantomData,
        }
    }
}

struct Inner<T, P: Primary<T>> {
    name: String,
    primary: P,
    spool: Spool,
    preserve_order: bool,
    replay_batch: usize,
    replay_interval: Duration,
    metrics: Option<Handles>,
    replay_lock: tokio::sync::Mutex<()>,
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    replayer: parking_lot::Mutex<Option<JoinHandle<()>>>,
    /// Why the background replayer died, if it did.
    replayer_failure: parking_lot::Mutex<Option<String>>,
    #[cfg(feature = "circuit-breaker")]
    breaker: Option<seawall_circuit_breaker::CircuitBreaker>,
    #[cfg(feature = "retry")]
    retry: Option<seawall_retry::RetryPolicy>,
    _marker: PhantomData<fn(T)>,
}

/// Writes records to a [`Primary`] store, falling back to a durable [`Spool`] when the
/// primary fails (or its breaker is open), and replaying the spool to the primary, in order,
/// when it recovers.
///
/// Cloning is cheap (an `Arc`); all clones share the spool and the replayer.
///
/// # Guarantees
///
/// - `write` returns `Ok` only once the record is stored: acknowledged by the primary, or
///   durable in the spool per its [`Durability`](crate::Durability) policy. It returns `Err` only when
///   both failed; then nothing was stored and the caller decides.
/// - Replay is at least once and in spool order; a crash re-sends at most the batch that was
///   in flight. Records keep their [`Envelope::id`], so an idempotent primary stores each
///   exactly once.
/// - With `preserve_order` (the default), the primary receives records in `write` order
///   across an outage: while anything is in the spool, new records join it.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Mutex;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use seawall_fallback_sink::{Delivered, Envelope, FallbackSink, Primary};
///
/// #[derive(Default)]
/// struct Db { up: AtomicBool, rows: Mutex<Vec<u32>> }
///
/// impl Primary<u32> for Db {
///     type Error = std::io::Error;
///     async fn write_batch(&self, records: &[Envelope<u32>]) -> Result<(), Self::Error> {
///         if !self.up.load(Ordering::SeqCst) {
///             return Err(std::io::Error::other("db down"));
///         }
///         self.rows.lock().unwrap().extend(records.iter().map(|r| r.payload));
///         Ok(())
///     }
/// }
///
/// let dir = tempfile::tempdir()?;
/// let sink = FallbackSink::builder(dir.path())
///     .name("audit")
///     .background_replay(false)
///     .open(Db::default())
///     .await?;
///
/// assert_eq!(sink.write(1).await?, Delivered::Spooled); // db is down
/// sink.primary().up.store(true, Ordering::SeqCst);
/// assert_eq!(sink.write(2).await?, Delivered::Spooled); // behind the backlog
/// assert_eq!(sink.replay_once().await?, 2);
/// assert_eq!(sink.write(3).await?, Delivered::Primary);
/// assert_eq!(*sink.primary().rows.lock().unwrap(), [1, 2, 3]);
/// sink.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct FallbackSink<T, P: Primary<T>> {
    inner: Arc<Inner<T, P>>,
}

impl<T, P: Primary<T>> Clone for FallbackSink<T, P> {
    fn clone(&self) -> Self {
        FallbackSink {
            inner: self.inner.clone(),
        }
    }
}

impl<T, P: Primary<T>> std::fmt::Debug for FallbackSink<T, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackSink")
            .field("name", &self.inner.name)
            .field("spool", &self.inner.spool)
            .finish_non_exhaustive()
    }
}

impl<T, P> FallbackSink<T, P>
where
    T: Serialize + DeserializeOwned + Send + std::marker::Sync + 'static,
    P: Primary<T>,
{
    /// Wires an opened spool to the primary and starts the replayer.
    pub(crate) fn start(
        spool: Spool,
        primary: P,
        settings: Settings<P::Error>,
        metrics: Option<Handles>,
    ) -> Self {
        let (stop_tx, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            name: spool.name().to_owned(),
            primary,
            spool,
            preserve_order: settings.preserve_order,
            replay_batch: settings.replay_batch,
            replay_interval: settings.replay_interval,
            metrics,
            replay_lock: tokio::sync::Mutex::new(()),
            wake: Arc::new(Notify::new()),
            stop: stop_tx,
            replayer: parking_lot::Mutex::new(None),
            replayer_failure: parking_lot::Mutex::new(None),
            #[cfg(feature = "circuit-breaker")]
            breaker: settings.breaker,
            #[cfg(feature = "retry")]
            retry: settings.retry,
            _marker: PhantomData,
        });
        if settings.background_replay {
            let weak = Arc::downgrade(&inner);
            let task = tokio::spawn(replayer(weak.clone(), inner.stop.subscribe()));
            let handle = tokio::spawn(supervise_replayer(task, weak));
            *inner.replayer.lock() = Some(handle);
        }
        FallbackSink { inner }
    }

    /// Stores `record`: in the primary if it takes it, otherwise in the spool.
    ///
    /// Wraps it in an [`Envelope`] (fresh UUIDv7 id) and calls
    /// [`write_envelope`](Self::write_envelope).
    ///
    /// # Errors
    ///
    /// Only when the record could not be stored anywhere: [`Error::Unavailable`] (the primary
    /// failed, then the spool did), or the spool's error ([`Error::Full`], [`Error::Io`],
    /// [`Error::Closed`]) when the record went straight to the spool (behind a backlog).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future before it completes may leave the record stored
    /// or not. Nothing was acknowledged, so nothing promised is lost.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use seawall_fallback_sink::{Delivered, Envelope, FallbackSink, Primary};
    /// # struct Down;
    /// # impl Primary<u32> for Down {
    /// #     type Error = std::io::Error;
    /// #     async fn write_batch(&self, _: &[Envelope<u32>]) -> Result<(), Self::Error> {
    /// #         Err(std::io::Error::other("down"))
    /// #     }
    /// # }
    /// # let dir = tempfile::tempdir()?;
    /// let sink = FallbackSink::builder(dir.path()).background_replay(false).open(Down).await?;
    /// assert_eq!(sink.write(7).await?, Delivered::Spooled); // the primary is down
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, record: T) -> Result<Delivered, Error<P::Error>> {
        self.write_envelope(Envelope::new(record)).await
    }

    /// Stores an envelope you built (to choose the id, so a retry of yours is deduplicated).
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// As [`write`](Self::write).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use seawall_fallback_sink::{Delivered, Envelope, FallbackSink, Primary};
    /// # struct Down;
    /// # impl Primary<u32> for Down {
    /// #     type Error = std::io::Error;
    /// #     async fn write_batch(&self, _: &[Envelope<u32>]) -> Result<(), Self::Error> {
    /// #         Err(std::io::Error::other("down"))
    /// #     }
    /// # }
    /// # let dir = tempfile::tempdir()?;
    /// let sink = FallbackSink::builder(dir.path()).background_replay(false).open(Down).await?;
    /// let event = Envelope::new(7);
    /// let id = event.id; // keep it to deduplicate your own retries
    /// sink.write_envelope(event).await?;
    /// assert_eq!(sink.spool().read_batch(1).await?.records[0].id, id);
    /// # Ok(()) }
    /// ```
    pub async fn write_envelope(
        &self,
        envelope: Envelope<T>,
    ) -> Result<Delivered, Error<P::Error>> {
        let inner = &*self.inner;
        self.check_replayer()?;
        if inner.preserve_order && !inner.spool.is_empty() {
            return self.to_spool(envelope, None).await;
        }
        match self.try_primary(&envelope).await {
            Ok(()) => {
                if let Some(m) = &inner.metrics {
                    m.writes_primary.inc();
                }
                Ok(Delivered::Primary)
            }
            Err((kind, cause)) => {
                if let Some(m) = &inner.metrics {
                    m.error(kind);
                }
                if inner.spool.is_empty() {
                    // The transition healthy -> spooling; later records join the backlog quietly.
                    tracing::warn!(sink = %inner.name, reason = %cause, "primary unavailable, spooling records");
                } else {
                    tracing::debug!(sink = %inner.name, reason = %cause, "primary refused a record, spooling it");
                }
                self.to_spool(envelope, Some(cause)).await
            }
        }
    }

    async fn to_spool(
        &self,
        envelope: Envelope<T>,
        cause: Option<Error<P::Error>>,
    ) -> Result<Delivered, Error<P::Error>> {
        let inner = &*self.inner;
        match inner.spool.append(&envelope).await {
            Ok(_) => {
                if let Some(m) = &inner.metrics {
                    m.writes_spool.inc();
                }
                inner.wake.notify_one();
                Ok(Delivered::Spooled)
            }
            Err(e) => {
                if let Some(m) = &inner.metrics {
                    m.error(e.kind());
                }
                tracing::error!(sink = %inner.name, error = %e, "record could not be stored");
                Err(match cause {
                    Some(primary) => Error::Unavailable {
                        primary: Box::new(primary),
                        spool: Box::new(e),
                    },
                    None => e.widen(),
                })
            }
        }
    }

    /// One record to the primary, through the breaker and the retry policy.
    async fn try_primary(
        &self,
        envelope: &Envelope<T>,
    ) -> Result<(), (&'static str, Error<P::Error>)> {
        let inner = &*self.inner;
        let records = std::slice::from_ref(envelope);
        self.guarded(async {
            #[cfg(feature = "retry")]
            if let Some(policy) = &inner.retry {
                return policy
                    .retry(|| inner.primary.write_batch(records))
                    .retry_if(|e| inner.primary.is_transient(e))
                    .await
                    .map_err(|e| ("primary", Error::Retry(e)));
            }
            inner
                .primary
                .write_batch(records)
                .await
                .map_err(|e| ("primary", Error::Inner(e)))
        })
        .await
    }

    /// Runs a call to the primary under the breaker (if any): refused at once while it is
    /// open, its outcome recorded otherwise.
    async fn guarded(
        &self,
        call: impl Future<Output = Result<(), (&'static str, Error<P::Error>)>>,
    ) -> Result<(), (&'static str, Error<P::Error>)> {
        #[cfg(feature = "circuit-breaker")]
        if let Some(b) = &self.inner.breaker {
            let permit = b.try_acquire().map_err(|rejected| {
                (
                    "breaker_open",
                    Error::BreakerOpen {
                        retry_after: rejected.retry_after,
                    },
                )
            })?;
            let result = call.await;
            if result.is_ok() {
                permit.success();
            } else {
                permit.failure();
            }
            return result;
        }
        call.await
    }

    /// Drains the spool to the primary now: batches of `replay_batch` records, in order, each
    /// committed (checkpointed) once the primary acknowledged it. Returns how many records
    /// were delivered. Replays are serialised: a concurrent call waits for the running one.
    ///
    /// Records whose payload no longer decodes into `T` are moved to `quarantine.jsonl`
    /// (counted in `quarantined_total`) instead of blocking the spool forever.
    ///
    /// # Errors
    ///
    /// [`Error::Inner`] with the primary's own error, or [`Error::BreakerOpen`] (the failing
    /// batch stays in the spool; earlier batches are committed); spool errors
    /// ([`Error::Io`], [`Error::Closed`]); [`Error::ReplayerFailed`].
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the at-least-once sense: a batch delivered but not yet committed when
    /// the future is dropped is sent again by the next replay.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use seawall_fallback_sink::{Delivered, Envelope, FallbackSink, Primary};
    /// # struct Down;
    /// # impl Primary<u32> for Down {
    /// #     type Error = std::io::Error;
    /// #     async fn write_batch(&self, _: &[Envelope<u32>]) -> Result<(), Self::Error> {
    /// #         Err(std::io::Error::other("down"))
    /// #     }
    /// # }
    /// # let dir = tempfile::tempdir()?;
    /// let sink = FallbackSink::builder(dir.path()).background_replay(false).open(Down).await?;
    /// sink.write(1).await?;
    /// // Still down: the batch stays in the spool and the store's own error comes back.
    /// assert!(matches!(sink.replay_once().await, Err(seawall_fallback_sink::Error::Inner(_))));
    /// assert_eq!(sink.stats().records, 1);
    /// # Ok(()) }
    /// ```
    pub async fn replay_once(&self) -> Result<u64, Error<P::Error>> {
        self.check_replayer()?;
        self.replay(None).await
    }

    /// Fails once the background replayer has died: a sink whose backlog would never drain
    /// must not keep accepting records silently.
    fn check_replayer(&self) -> Result<(), Error<P::Error>> {
        match &*self.inner.replayer_failure.lock() {
            Some(cause) => Err(Error::ReplayerFailed {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Replays batches until the spool is empty, or `stop` is set (checked between batches).
    async fn replay(&self, stop: Option<&watch::Receiver<bool>>) -> Result<u64, Error<P::Error>> {
        let inner = &*self.inner;
        let _serial = inner.replay_lock.lock().await;
        let mut total = 0u64;
        loop {
            if stop.is_some_and(|s| *s.borrow()) {
                return Ok(total);
            }
            let batch = inner
                .spool
                .read_batch(inner.replay_batch)
                .await
                .map_err(Error::widen)?;
            if batch.is_noop() {
                return Ok(total);
            }
            let mut envelopes = Vec::with_capacity(batch.records.len());
            for r in &batch.records {
                match r.decode::<T>() {
                    Ok(e) => envelopes.push(e),
                    Err(e) => inner
                        .spool
                        .quarantine_record(r, &e.to_string())
                        .await
                        .map_err(Error::widen)?,
                }
            }
            if !envelopes.is_empty()
                && let Err((kind, e)) = self
                    .guarded(async {
                        inner
                            .primary
                            .write_batch(&envelopes)
                            .await
                            .map_err(|e| ("replay", Error::Inner(e)))
                    })
                    .await
            {
                if let Some(m) = &inner.metrics {
                    m.error(kind);
                }
                return Err(e);
            }
            inner.spool.commit(&batch).await.map_err(Error::widen)?;
            let n = envelopes.len() as u64;
            total += n;
            if let Some(m) = &inner.metrics {
                m.replayed.inc_by(n);
            }
            tracing::debug!(sink = %inner.name, records = n, "replayed a batch");
        }
    }

    /// The spool's backlog (records, bytes, oldest record), for a health endpoint.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use seawall_fallback_sink::{Delivered, Envelope, FallbackSink, Primary};
    /// # struct Down;
    /// # impl Primary<u32> for Down {
    /// #     type Error = std::io::Error;
    /// #     async fn write_batch(&self, _: &[Envelope<u32>]) -> Result<(), Self::Error> {
    /// #         Err(std::io::Error::other("down"))
    /// #     }
    /// # }
    /// # let dir = tempfile::tempdir()?;
    /// let sink = FallbackSink::builder(dir.path()).background_replay(false).open(Down).await?;
    /// sink.write(1).await?;
    /// assert_eq!(sink.stats().records, 1);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> Stats {
        self.inner.spool.stats()
    }

    /// The spool underneath.
    pub fn spool(&self) -> &Spool {
        &self.inner.spool
    }

    /// The primary store.
    pub fn primary(&self) -> &P {
        &self.inner.primary
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Stops the background replayer (after the batch it is replaying, if any, is committed:
    /// this waits for that batch's `write_batch`, so bound it with your store's own timeout),
    /// then syncs and closes the spool, releasing its directory. The backlog stays on disk and
    /// is replayed by the next owner. Writes after this fail with [`Error::Closed`] (or go to
    /// the primary directly if it is healthy and nothing is spooled).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the final sync failed; [`Error::Closed`] if already shut down.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if dropped, the replayer may still be stopping; call again to finish.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use seawall_fallback_sink::{Delivered, Envelope, FallbackSink, Primary};
    /// # struct Down;
    /// # impl Primary<u32> for Down {
    /// #     type Error = std::io::Error;
    /// #     async fn write_batch(&self, _: &[Envelope<u32>]) -> Result<(), Self::Error> {
    /// #         Err(std::io::Error::other("down"))
    /// #     }
    /// # }
    /// # let dir = tempfile::tempdir()?;
    /// let sink = FallbackSink::builder(dir.path()).background_replay(false).open(Down).await?;
    /// sink.write(1).await?;
    /// sink.shutdown().await?;
    /// // The backlog stays on disk for the next owner.
    /// assert_eq!(seawall_fallback_sink::Spool::open(dir.path()).await?.stats().records, 1);
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) -> Result<(), Error<P::Error>> {
        let inner = &*self.inner;
        inner.stop.send_replace(true);
        let handle = inner.replayer.lock().take();
        if let Some(h) = handle {
            let _ = h.await;
        }
        inner.spool.close().await.map_err(Error::widen)
    }
}

impl<T, P: Primary<T>> Drop for Inner<T, P> {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// The background replayer: wakes on a spooled record or every `replay_interval`, drains the
/// spool, and after a failure waits `replay_interval` (or the breaker's `retry_after`).
async fn replayer<T, P>(sink: Weak<Inner<T, P>>, mut stop: watch::Receiver<bool>)
where
    T: Serialize + DeserializeOwned + Send + std::marker::Sync + 'static,
    P: Primary<T>,
{
    let mut backoff: Option<Duration> = None;
    loop {
        // Hold only the `Notify` while waiting, so dropping every sink handle ends the task.
        let (interval, wake) = {
            let Some(inner) = sink.upgrade() else { return };
            (inner.replay_interval, Arc::clone(&inner.wake))
        };
        match backoff.take() {
            Some(d) => {
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(d) => {}
                }
            }
            None => {
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        }
        drop(wake);
        let Some(inner) = sink.upgrade() else { return };
        if *stop.borrow() {
            return;
        }
        if inner.spool.stats().records == 0 {
            continue;
        }
        let sink = FallbackSink { inner };
        match sink.replay(Some(&stop)).await {
            Ok(n) if n > 0 => {
                if sink.inner.spool.stats().records == 0 {
                    tracing::info!(sink = %sink.inner.name, records = n, "spool drained: the primary has everything");
                } else {
                    tracing::info!(sink = %sink.inner.name, records = n, "spool partly replayed");
                }
            }
            Ok(_) => {}
            Err(e) => {
                let wait = breaker_retry_after(&e).unwrap_or(interval);
                tracing::debug!(sink = %sink.inner.name, error = %e, retry_in = ?wait, "replay failed");
                backoff = Some(wait);
            }
        }
    }
}

/// Waits for the replayer task; if it panicked (a panicking primary), logs the cause and
/// leaves it for every later call.
async fn supervise_replayer<T, P: Primary<T>>(task: JoinHandle<()>, sink: Weak<Inner<T, P>>) {
    if let Err(e) = task.await
        && e.is_panic()
    {
        let cause = format!("the replayer task panicked: {}", panic_message(e));
        if let Some(inner) = sink.upgrade() {
            tracing::error!(sink = %inner.name, cause = %cause, "fallback sink replayer died; the sink refuses new records");
            *inner.replayer_failure.lock() = Some(cause);
        }
    }
}

/// When replay was refused by an open breaker, how long until it admits a probe.
fn breaker_retry_after<E>(e: &Error<E>) -> Option<Duration> {
    match e {
        Error::BreakerOpen { retry_after } => Some((*retry_after).max(Duration::from_millis(1))),
        _ => None,
    }
}
