//! Builders for [`Spool`] and [`FallbackSink`].

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::sink::Settings;
use crate::state::{Options, validate_name};
use crate::{ConfigError, Durability, Error, FallbackSink, Metrics, Primary, Spool};

impl Spool {
    /// Starts building a spool in `dir` (created if missing).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Durability, Spool};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::builder(dir.path().join("audit"))
    ///     .name("audit")
    ///     .durability(Durability::Always)
    ///     .open()
    ///     .await?;
    /// assert_eq!(spool.name(), "audit");
    /// # Ok(()) }
    /// ```
    pub fn builder(dir: impl AsRef<Path>) -> SpoolBuilder {
        SpoolBuilder::new(dir)
    }
}

impl<T, P> FallbackSink<T, P>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    P: Primary<T>,
{
    /// Starts building a sink whose spool lives in `dir`; see [`FallbackSinkBuilder`].
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
    /// assert_eq!(sink.name(), "default");
    /// # Ok(()) }
    /// ```
    pub fn builder(dir: impl AsRef<Path>) -> FallbackSinkBuilder<T, P> {
        FallbackSinkBuilder::new(dir)
    }
}

/// Builds a [`Spool`]. Nothing touches the disk until [`open`](Self::open), and `open`
/// validates every setting before it creates or reads anything.
///
/// # Default
///
/// | setting | default | accepted |
/// |---|---|---|
/// | `durability` | `Durability::Batch { max_records: 64, max_delay: 0 }` (every record fsynced before its ack, concurrent records share the fsync) | `Batch`: `max_records` in `1..=65536`, `max_delay` at most 10 s |
/// | `max_bytes` | 1 GiB of backlog | at least 1 |
/// | `segment_bytes` | 16 MiB | `1..=max_bytes` |
/// | `name` | `"default"` (the `sink` label) | 1 to 256 bytes |
/// | `io_on_runtime_thread` | `false`: writes and fdatasyncs run outside the runtime (`block_in_place` on a multi-thread runtime, the blocking pool on a `current_thread` one) | |
/// | `metrics` | none | |
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use seawall_fallback_sink::{Durability, SpoolBuilder};
///
/// let dir = tempfile::tempdir()?;
/// let spool = SpoolBuilder::new(dir.path())
///     .durability(Durability::Never)
///     .segment_bytes(1 << 20)
///     .open()
///     .await?;
/// assert_eq!(spool.name(), "default");
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use]
pub struct SpoolBuilder {
    dir: PathBuf,
    opts: Options,
}

impl SpoolBuilder {
    /// A builder for a spool in `dir` (created on `open` if missing), with the defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = seawall_fallback_sink::SpoolBuilder::new("/var/spool/audit");
    /// # let _ = builder;
    /// ```
    pub fn new(dir: impl AsRef<Path>) -> Self {
        SpoolBuilder {
            dir: dir.as_ref().to_path_buf(),
            opts: Options::default(),
        }
    }

    /// The durability policy; see [`Durability`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use seawall_fallback_sink::{Durability, Error, Spool};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let nonsense = Durability::Batch { max_records: 8, max_delay: Duration::MAX };
    /// let err = Spool::builder(dir.path().join("s")).durability(nonsense).open().await.unwrap_err();
    /// let Error::Config(e) = err else { panic!() };
    /// assert_eq!(e.field(), "durability");
    /// assert!(!dir.path().join("s").exists()); // rejected before any I/O
    /// # }
    /// ```
    pub fn durability(mut self, durability: Durability) -> Self {
        self.opts.durability = durability;
        self
    }

    /// Cap on the backlog (bytes appended and not yet committed). Disk use can exceed it by
    /// the consumed part of the active segment (at most `segment_bytes`).
    ///
    /// # Examples
    ///
    /// ```
    /// let b = seawall_fallback_sink::Spool::builder("spool").max_bytes(64 << 20);
    /// # let _ = b;
    /// ```
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.opts.max_bytes = bytes;
        self
    }

    /// Size at which a segment is sealed and a new one started (a record larger than this
    /// gets a segment of its own).
    ///
    /// # Examples
    ///
    /// ```
    /// let b = seawall_fallback_sink::Spool::builder("spool").segment_bytes(4 << 20);
    /// # let _ = b;
    /// ```
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.opts.segment_bytes = bytes;
        self
    }

    /// The `sink` label of the metrics and the `sink` field of tracing events.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = seawall_fallback_sink::Spool::builder("spool").name("audit");
    /// # let _ = b;
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.opts.name = name.into();
        self
    }

    /// Where each group's `write` and `fdatasync` run. `false` (the default): outside the
    /// runtime, so no runtime work waits for the disk. On a multi-thread runtime the writer
    /// task's thread leaves the runtime for the I/O (`tokio::task::block_in_place`: its
    /// queued tasks and timers go to another thread, or wait for one if the blocking pool is
    /// full, meanwhile other workers may steal them) and, with `Durability::Always` or a
    /// `Batch` without `max_delay`, stays out for the groups that form meanwhile (at most
    /// 10 ms at a time), waiting up to 100 µs after each for the appenders it acknowledged to
    /// come back; on a `current_thread` runtime each group goes to tokio's blocking pool and
    /// back. `true`: on the runtime thread that runs the spool's
    /// writer task, which then waits for the disk itself.
    ///
    /// With `true`, and `Durability::Always` or a `Batch` without `max_delay`, an append
    /// that finds the writer idle (nothing queued, no group being written or gathered) also
    /// writes its own record, on its own thread: one appender then costs one `write` and one
    /// `fdatasync` per record and no thread hand-off. Its task is then busy for the
    /// fdatasync: a timeout around the append, and the other futures that task polls, wait
    /// for it. (With `false` an append always waits as an await that a timeout cuts short,
    /// and it works anywhere, a `LocalSet` included.)
    ///
    /// `true` saves the hand-offs: on a multi-thread runtime the wake-up of each acknowledged
    /// appender's worker (the writer replies from outside the runtime), on a `current_thread`
    /// runtime two thread wake-ups per group. Measured on a 2-core VM (criterion, 200-byte
    /// records, 2-worker runtime, two runs): `Durability::Always` with one appender 238.2 /
    /// 229.0 µs per record by default, 197.5 / 181.7 µs with `true`, a raw `write` and
    /// `fdatasync` per record 181.5 / 170.0 µs; `Durability::Batch` with 8 appenders 33.6 /
    /// 33.7 µs by default, 29.7 / 29.0 µs with `true`, raw with an fdatasync every 8 records
    /// 26.5 / 23.9 µs.
    ///
    /// The cost: while an fdatasync runs (hundreds of µs on a fast disk, tens of ms on a busy
    /// one), that runtime thread runs nothing else. On a multi-thread runtime the other
    /// workers keep going (tokio's work stealing moves queued tasks to them, except the one
    /// in the blocked worker's LIFO slot); on a `current_thread` runtime every task and timer
    /// waits. A writer task that finds an appender writing waits for it without blocking its
    /// own thread. Use it where appending is the service's main work, on a multi-thread
    /// runtime.
    /// Durability, ordering and acknowledgement are the same either way.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Durability, Envelope, Spool};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::builder(dir.path())
    ///     .durability(Durability::Always)
    ///     .io_on_runtime_thread(true)
    ///     .open()
    ///     .await?;
    /// spool.append(&Envelope::new("login")).await?;
    /// assert_eq!(spool.stats().records, 1);
    /// # Ok(()) }
    /// ```
    pub fn io_on_runtime_thread(mut self, on: bool) -> Self {
        self.opts.io_on_runtime_thread = on;
        self
    }

    /// Report metrics (backlog gauges, quarantined counter) here; takes `Metrics` or
    /// `&Metrics`.
    ///
    /// # Examples
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use seawall_fallback_sink::{Metrics, Spool};
    ///
    /// let metrics = Metrics::register(&mut Registry::default());
    /// let b = Spool::builder("spool").metrics(&metrics);
    /// # let _ = b;
    /// ```
    pub fn metrics(mut self, metrics: impl Into<Metrics>) -> Self {
        self.opts.metrics = Some(metrics.into());
        self
    }

    /// Validates the settings, opens (creating if needed) and recovers the spool, then
    /// starts its writer task.
    ///
    /// Recovery never makes `open` fail on damaged files; what it does to each kind of damage
    /// is in the [crate docs](crate#what-survives-damage). In short: every unread byte ends up
    /// in a verified record or in the [quarantine file](Spool::quarantine_path); a torn tail
    /// is quarantined and cut off; any position it changes is written to the checkpoint
    /// before appends are accepted.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for invalid settings (nothing was created), [`Error::Locked`] if
    /// another owner holds the directory, [`Error::Io`] if the directory cannot be read or
    /// written.
    ///
    /// # Panics
    ///
    /// Never. Must be called within a tokio runtime.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the recovery half done (it runs on a blocking thread and
    /// finishes there); it is safe to open again, recovery is idempotent.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let spool = seawall_fallback_sink::Spool::builder(dir.path()).open().await?;
    /// assert_eq!(spool.stats().records, 0);
    /// # Ok(()) }
    /// ```
    pub async fn open(self) -> Result<Spool, Error> {
        Spool::start(self.dir, self.opts).await
    }
}

/// Builds a [`FallbackSink`]. Nothing touches the disk until [`open`](Self::open), and `open`
/// validates every setting before it creates or reads anything.
///
/// # Default
///
/// | setting | default | accepted |
/// |---|---|---|
/// | `name` | `"default"` (the `sink` label and tracing field) | 1 to 256 bytes |
/// | `durability` | `Durability::Batch { max_records: 64, max_delay: 0 }` | as [`SpoolBuilder`] |
/// | `max_bytes` | 1 GiB of backlog | at least 1 |
/// | `segment_bytes` | 16 MiB | `1..=max_bytes` |
/// | `io_on_runtime_thread` | `false` | as [`SpoolBuilder`] |
/// | `preserve_order` | `true`: while the spool has a backlog, new records join it | |
/// | `replay_batch` | 256 records | `1..=65536` |
/// | `replay_interval` | 1 s between replay attempts while the primary fails | 1 ms to 1 h |
/// | `background_replay` | `true` | |
/// | `breaker` | none (feature `circuit-breaker`) | |
/// | `retry` | none (feature `retry`) | |
/// | `metrics` | none | |
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use seawall_fallback_sink::{Durability, Envelope, FallbackSink, Primary};
///
/// struct Nowhere;
/// impl Primary<u32> for Nowhere {
///     type Error = std::io::Error;
///     async fn write_batch(&self, _: &[Envelope<u32>]) -> Result<(), Self::Error> {
///         Err(std::io::Error::other("down"))
///     }
/// }
///
/// let dir = tempfile::tempdir()?;
/// let sink = FallbackSink::builder(dir.path())
///     .name("audit")
///     .durability(Durability::Always)
///     .replay_interval(Duration::from_millis(500))
///     .open(Nowhere)
///     .await?;
/// assert_eq!(sink.name(), "audit");
/// # Ok(()) }
/// ```
#[must_use]
pub struct FallbackSinkBuilder<T, P: Primary<T>> {
    dir: PathBuf,
    opts: Options,
    settings: Settings<P::Error>,
    _marker: PhantomData<fn(T, P)>,
}

impl<T, P: Primary<T>> std::fmt::Debug for FallbackSinkBuilder<T, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackSinkBuilder")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .field("preserve_order", &self.settings.preserve_order)
            .field("replay_batch", &self.settings.replay_batch)
            .field("replay_interval", &self.settings.replay_interval)
            .field("background_replay", &self.settings.background_replay)
            .finish_non_exhaustive()
    }
}

/// Largest accepted `replay_batch`.
const MAX_REPLAY_BATCH: usize = 65_536;
/// Accepted `replay_interval`s.
const MIN_REPLAY_INTERVAL: Duration = Duration::from_millis(1);
const MAX_REPLAY_INTERVAL: Duration = Duration::from_secs(3600);

impl<T, P> FallbackSinkBuilder<T, P>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    P: Primary<T>,
{
    /// A builder for a sink whose spool lives in `dir`, with the defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_fallback_sink::{Envelope, FallbackSinkBuilder, Primary};
    /// # struct Db;
    /// # impl Primary<String> for Db {
    /// #     type Error = std::io::Error;
    /// #     async fn write_batch(&self, _: &[Envelope<String>]) -> Result<(), Self::Error> { Ok(()) }
    /// # }
    /// let builder = FallbackSinkBuilder::<String, Db>::new("/var/spool/audit");
    /// # let _ = builder;
    /// ```
    pub fn new(dir: impl AsRef<Path>) -> Self {
        FallbackSinkBuilder {
            dir: dir.as_ref().to_path_buf(),
            opts: Options::default(),
            settings: Settings::default(),
            _marker: PhantomData,
        }
    }

    /// The `sink` label of the metrics and the `sink` field of tracing events.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.opts.name = name.into();
        self
    }
    /// The spool's durability policy; see [`SpoolBuilder::durability`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.opts.durability = durability;
        self
    }
    /// Cap on the spool's backlog; see [`SpoolBuilder::max_bytes`].
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.opts.max_bytes = bytes;
        self
    }
    /// Spool segment size; see [`SpoolBuilder::segment_bytes`].
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.opts.segment_bytes = bytes;
        self
    }
    /// Where the spool's writes and fdatasyncs run; see [`SpoolBuilder::io_on_runtime_thread`].
    pub fn io_on_runtime_thread(mut self, on: bool) -> Self {
        self.opts.io_on_runtime_thread = on;
        self
    }
    /// Whether new records join an existing backlog instead of going to the primary (so the
    /// primary sees records in order). With `false`, a healthy primary gets new records at
    /// once and the backlog arrives later, out of order.
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
    /// let sink = FallbackSink::builder(dir.path())
    ///     .preserve_order(false) // a healthy primary gets new records before the backlog
    ///     .open(Down)
    ///     .await?;
    /// # let _ = sink;
    /// # Ok(()) }
    /// ```
    pub fn preserve_order(mut self, on: bool) -> Self {
        self.settings.preserve_order = on;
        self
    }
    /// Records per replayed batch, `1..=65536`.
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
    /// let sink = FallbackSink::builder(dir.path())
    ///     .replay_batch(1000) // fewer, larger transactions against the store
    ///     .open(Down)
    ///     .await?;
    /// # let _ = sink;
    /// # Ok(()) }
    /// ```
    pub fn replay_batch(mut self, records: usize) -> Self {
        self.settings.replay_batch = records;
        self
    }
    /// Pause between replay attempts after a failure, and the background replayer's poll
    /// period (it is also woken at once when a record is spooled); 1 ms to 1 h.
    pub fn replay_interval(mut self, interval: Duration) -> Self {
        self.settings.replay_interval = interval;
        self
    }
    /// Whether `open` starts the background replayer.
    pub fn background_replay(mut self, on: bool) -> Self {
        self.settings.background_replay = on;
        self
    }
    /// Report metrics here; takes `Metrics` or `&Metrics`.
    pub fn metrics(mut self, metrics: impl Into<Metrics>) -> Self {
        self.opts.metrics = Some(metrics.into());
        self
    }
    /// Send primary writes (and replayed batches) through this breaker. While it is open,
    /// records go straight to the spool; once its open duration has passed, the replayer's
    /// next batch is the half-open probe.
    #[cfg(feature = "circuit-breaker")]
    pub fn breaker(mut self, breaker: seawall_circuit_breaker::CircuitBreaker) -> Self {
        self.settings.breaker = Some(breaker);
        self
    }
    /// Retry direct primary writes with this policy before spooling (inside the breaker
    /// permit: the breaker sees one outcome per record). Only errors that
    /// [`Primary::is_transient`](crate::Primary::is_transient) calls transient are retried.
    /// Replay does not use it: the replayer retries at `replay_interval`.
    #[cfg(feature = "retry")]
    pub fn retry(mut self, policy: seawall_retry::RetryPolicy) -> Self {
        self.settings.retry = Some(policy);
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        if !(1..=MAX_REPLAY_BATCH).contains(&s.replay_batch) {
            return Err(ConfigError::new(
                "replay_batch",
                format!("must be in 1..={MAX_REPLAY_BATCH}, got {}", s.replay_batch),
            ));
        }
        if !(MIN_REPLAY_INTERVAL..=MAX_REPLAY_INTERVAL).contains(&s.replay_interval) {
            return Err(ConfigError::new(
                "replay_interval",
                format!(
                    "must be in {MIN_REPLAY_INTERVAL:?}..={MAX_REPLAY_INTERVAL:?}, got {:?}",
                    s.replay_interval
                ),
            ));
        }
        validate_name(&self.opts.name)?;
        self.opts.validate()
    }

    /// Validates the settings, opens (and recovers) the spool and starts the background
    /// replayer.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the bad setting (nothing was created); the errors of
    /// [`SpoolBuilder::open`].
    ///
    /// # Panics
    ///
    /// Never. Must be called within a tokio runtime.
    ///
    /// # Cancel safety
    ///
    /// As [`SpoolBuilder::open`].
    pub async fn open(self, primary: P) -> Result<FallbackSink<T, P>, Error<P::Error>> {
        self.validate()?;
        let metrics = self
            .opts
            .metrics
            .as_ref()
            .map(|m| m.handles(&self.opts.name));
        let spool = Spool::start(self.dir, self.opts)
            .await
            .map_err(Error::widen)?;
        Ok(FallbackSink::start(spool, primary, self.settings, metrics))
    }
}
