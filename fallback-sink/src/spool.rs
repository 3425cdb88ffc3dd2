//! The spool: a directory of JSON Lines segments with a checkpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::batch::{self, Commit};
use crate::envelope::{from_ms, to_ms};
use crate::layout::QUARANTINE;
use crate::record;
use crate::reply::{self, Inflight, Reply};
use crate::state::{Options, Shared};
use crate::writer::{self, Msg};
use crate::{Batch, Envelope, Error, SpooledRecord, Stats, quarantine, recovery};

/// A durable on-disk queue of JSON records, owned by one process.
///
/// Usable on its own (append, then read and commit batches), and the storage underneath
/// [`FallbackSink`](crate::FallbackSink).
///
/// # Layout
///
/// ```text
/// DIR/spool.lock                       flock'ed by the owner (freed by the OS when it dies)
/// DIR/segment-00000000000000000001.jsonl   one JSON object per line, see below
/// DIR/checkpoint.json                  {"segment":1,"offset":4096,"last_seq":17,"crc":...}
/// DIR/quarantine.jsonl                 damaged byte ranges found by recovery or reads
/// ```
///
/// Each segment line is
/// `{"v":2,"id":"<uuidv7>","seq":17,"ts":<unix ms>,"payload":<the record>,"crc":<crc32c>}`,
/// where the CRC32C covers every byte before `,"crc":`, so `jq .payload DIR/segment-*.jsonl`
/// prints the records and a damaged line is never read back as another record.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use seawall_fallback_sink::{Durability, Envelope, Spool};
///
/// let dir = tempfile::tempdir()?;
/// let spool = Spool::builder(dir.path()).durability(Durability::Always).open().await?;
/// spool.append(&Envelope::new("first")).await?;
/// spool.append(&Envelope::new("second")).await?;
///
/// let batch = spool.read_batch(10).await?;
/// let texts: Vec<String> = batch.records.iter().map(|r| r.decode().unwrap().payload).collect();
/// assert_eq!(texts, ["first", "second"]);
/// spool.commit(&batch).await?; // durable: these two are never read again
/// assert_eq!(spool.stats().records, 0);
/// spool.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Spool {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Msg>,
}

impl Spool {
    /// Validates `opts`, recovers `dir` and starts the writer task.
    pub(crate) async fn start(dir: PathBuf, opts: Options) -> Result<Spool, Error> {
        opts.validate()?;
        let (writer, state) = {
            let d = dir.clone();
            let opts = opts.clone();
            tokio::task::spawn_blocking(move || recovery::recover(&d, &opts))
                .await
                .map_err(|e| Error::io("recover", &dir, std::io::Error::other(e)))??
        };
        let (writer_done, _) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            dir,
            metrics: opts.metrics.as_ref().map(|m| m.handles(&opts.name)),
            opts,
            state: parking_lot::Mutex::new(state),
            commit_lock: parking_lot::Mutex::new(()),
            inflight: AtomicU64::new(0),
            returning: std::sync::atomic::AtomicUsize::new(0),
            writer_idle: std::sync::atomic::AtomicBool::new(true),
            returned: tokio::sync::Notify::new(),
            writer_done,
            seg: parking_lot::Mutex::new(Some(writer)),
            seg_freed: tokio::sync::Notify::new(),
        });
        shared.publish(&shared.state.lock());
        if let Some(m) = &shared.metrics {
            m.quarantined.inc_by(shared.state.lock().quarantined);
        }
        let (tx, rx) = mpsc::channel(4096);
        let task = tokio::spawn(writer::run(rx, writer::Owner(shared.clone())));
        tokio::spawn(supervise(task, shared.clone()));
        Ok(Spool { shared, tx })
    }

    /// Opens `dir` with the default settings; see [`SpoolBuilder::open`](crate::SpoolBuilder::open).
    ///
    /// # Errors
    ///
    /// As [`SpoolBuilder::open`](crate::SpoolBuilder::open).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// As [`SpoolBuilder::open`](crate::SpoolBuilder::open).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Envelope, Spool};
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::open(dir.path().join("spool")).await?; // created if missing
    /// assert_eq!(spool.stats().records, 0);
    /// # Ok(()) }
    /// ```
    pub async fn open(dir: impl AsRef<Path>) -> Result<Spool, Error> {
        Spool::start(dir.as_ref().to_path_buf(), Options::default()).await
    }

    /// The spool directory.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Envelope, Spool};
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::open(dir.path()).await?;
    /// assert_eq!(spool.dir(), dir.path());
    /// # Ok(()) }
    /// ```
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The name given to the builder (the `sink` metrics label).
    pub fn name(&self) -> &str {
        &self.shared.opts.name
    }

    /// The quarantine file, `DIR/quarantine.jsonl`: one JSON object per byte range the spool
    /// refused to deliver (`segment`, `offset`, `len`, `reason`, `quarantined_at_ms`, and the
    /// bytes as `line`, or `line_hex` when they are not UTF-8).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let spool = seawall_fallback_sink::Spool::open(dir.path()).await?;
    /// assert_eq!(spool.quarantine_path(), dir.path().join("quarantine.jsonl"));
    /// assert!(!spool.quarantine_path().exists()); // nothing was ever damaged
    /// # Ok(()) }
    /// ```
    pub fn quarantine_path(&self) -> PathBuf {
        self.shared.dir.join(QUARANTINE)
    }

    /// Copies a record that cannot be used (its payload does not decode) to
    /// `quarantine.jsonl`; committing its batch then drops it from the spool.
    pub(crate) async fn quarantine_record(
        &self,
        record: &SpooledRecord,
        reason: &str,
    ) -> Result<(), Error> {
        let shared = self.shared.clone();
        let position = record.position;
        let mut line = Vec::new();
        record::encode(
            &mut line,
            record.id,
            record.seq,
            to_ms(record.timestamp),
            &record.payload,
        );
        let reason = format!("payload does not decode: {reason}");
        tokio::task::spawn_blocking(move || quarantine::record(&shared, position, &line, &reason))
            .await
            .map_err(|e| Error::io("quarantine", &self.shared.dir, std::io::Error::other(e)))?
    }

    /// Appends a record and returns its sequence number once the durability policy is met.
    ///
    /// The payload is serialised here, on the caller's task; the write and fdatasync happen
    /// on the spool's writer, outside the runtime (in `block_in_place` on a multi-thread
    /// runtime, on tokio's blocking pool on a `current_thread` one), unless the spool was
    /// built with [`io_on_runtime_thread`](crate::SpoolBuilder::io_on_runtime_thread).
    /// With `io_on_runtime_thread`, and [`Durability::Always`](crate::Durability::Always) or
    /// a `Batch` without `max_delay`, an append that finds the writer idle (nothing queued, no
    /// group being written or gathered) writes its own record instead, on the calling thread:
    /// it is then ready at its first poll, and meanwhile neither a timeout around it nor other
    /// futures polled by the same task (`join!`, `select!`) run until its fdatasync returns.
    /// By default an append always waits for the writer as an await, which a timeout cuts
    /// short (the record may still be written).
    ///
    /// # Errors
    ///
    /// [`Error::Full`] when the backlog would exceed `max_bytes`; [`Error::Io`] when the
    /// write or fdatasync failed (the record may still be found by a later open: append the
    /// same envelope again and its id makes the copies one); [`Error::Serde`];
    /// [`Error::Closed`].
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes may or may not store the record (it is then
    /// stored but unacknowledged). Retrying with the same envelope is safe: replay is
    /// idempotent by id.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Envelope, Spool};
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::open(dir.path()).await?;
    /// let first = spool.append(&Envelope::new("login")).await?;
    /// let second = spool.append(&Envelope::new("logout")).await?;
    /// assert!(second > first); // sequence numbers follow append order
    /// # Ok(()) }
    /// ```
    pub async fn append<T: Serialize>(&self, record: &Envelope<T>) -> Result<u64, Error> {
        let payload = serde_json::to_vec(&record.payload).map_err(Error::Serde)?;
        self.append_raw(record.id, record.timestamp_ms(), payload)
            .await
    }

    pub(crate) async fn append_raw(
        &self,
        id: Uuid,
        ts_ms: u64,
        payload: Vec<u8>,
    ) -> Result<u64, Error> {
        let (reply, rx) = oneshot::channel();
        let _inflight = Inflight::new(&self.shared.inflight);
        let mut rx = Reply {
            rx: Some(rx),
            shared: &self.shared,
        };
        let msg = Msg::Append {
            id,
            ts_ms,
            payload,
            reply,
        };
        // With `io_on_runtime_thread` and an idle writer, it is written here (`append_here`).
        if let Err(msg) = writer::append_here(&self.shared, &self.tx, msg)
            && self.tx.send(msg).await.is_err()
        {
            return Err(self.shared.writer_gone().await);
        }
        match rx.recv().await {
            Some(r) => r,
            None => Err(self.shared.writer_gone().await),
        }
    }

    /// Sends `msg` to the writer and waits for its reply; when the writer is gone, returns
    /// why ([`Error::Closed`], or [`Error::WriterFailed`] with the cause).
    async fn request<R>(
        &self,
        msg: Msg,
        mut rx: oneshot::Receiver<Result<R, Error>>,
    ) -> Result<R, Error> {
        if self.tx.send(msg).await.is_err() {
            return Err(self.shared.writer_gone().await);
        }
        match reply::wait(&self.shared, &mut rx).await {
            Some(r) => r,
            None => Err(self.shared.writer_gone().await),
        }
    }

    /// Makes everything appended so far durable (useful with [`Durability::Never`](crate::Durability::Never)).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the fdatasync failed; [`Error::Closed`].
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the sync may still happen.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Durability, Envelope, Spool};
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::builder(dir.path()).durability(Durability::Never).open().await?;
    /// spool.append(&Envelope::new(1)).await?;
    /// spool.sync().await?; // now it survives a power loss too
    /// # Ok(()) }
    /// ```
    pub async fn sync(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.request(Msg::Sync { reply }, rx).await
    }

    /// Writes out and syncs everything appended, stops the writer and releases the
    /// directory lock. Later calls fail with [`Error::Closed`].
    ///
    /// Dropping a `Spool` without closing it also finishes the queued appends and releases
    /// the lock, but asynchronously.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the final fdatasync failed; [`Error::Closed`] if already closed.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the close still happens.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Envelope, Spool};
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::open(dir.path()).await?;
    /// spool.append(&Envelope::new(1)).await?;
    /// spool.close().await?;
    /// assert!(spool.append(&Envelope::new(2)).await.is_err());
    /// let reopened = Spool::open(dir.path()).await?; // the lock is free again
    /// assert_eq!(reopened.stats().records, 1);
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        let r = self.request(Msg::Close { reply }, rx).await;
        self.shared.state.lock().closed = true;
        r
    }

    /// The backlog right now. Cheap (a mutex-protected snapshot, no I/O); also refreshes
    /// the backlog gauges.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Envelope, Spool};
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::open(dir.path()).await?;
    /// spool.append(&Envelope::new("x")).await?;
    /// let st = spool.stats();
    /// assert_eq!(st.records, 1);
    /// assert!(st.bytes > 0 && st.oldest.is_some());
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> Stats {
        let st = self.shared.state.lock();
        self.shared.publish(&st);
        Stats {
            records: st.records,
            bytes: st.bytes,
            oldest: st.oldest_ms.map(from_ms),
            segments: st.segments.len() as u64,
            quarantined: st.quarantined,
            checkpoint: st.committed,
        }
    }

    /// True when nothing is waiting and no append is in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Envelope, Spool};
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::open(dir.path()).await?;
    /// assert!(spool.is_empty());
    /// spool.append(&Envelope::new(1)).await?;
    /// assert!(!spool.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.shared.inflight.load(Ordering::Acquire) == 0 && self.shared.state.lock().records == 0
    }

    /// Reads up to `max_records` records from the checkpoint onward (only acknowledged
    /// records are visible). Reading does not move the checkpoint: reading again without a
    /// commit returns the same records. Lines that fail verification are quarantined and
    /// skipped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`]; [`Error::Closed`].
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: reading has no effect besides quarantining.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Envelope, Spool};
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::open(dir.path()).await?;
    /// for i in 0..5 {
    ///     spool.append(&Envelope::new(i)).await?;
    /// }
    /// let batch = spool.read_batch(3).await?;
    /// assert_eq!(batch.records.len(), 3);
    /// // Without a commit, the same records come back.
    /// assert_eq!(spool.read_batch(3).await?.records, batch.records);
    /// # Ok(()) }
    /// ```
    pub async fn read_batch(&self, max_records: usize) -> Result<Batch, Error> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || batch::read(&shared, max_records.max(1)))
            .await
            .map_err(|e| Error::io("read", &self.shared.dir, std::io::Error::other(e)))?
    }

    /// Durably moves the checkpoint past `batch` (temp file, fdatasync, rename, directory
    /// fsync), then deletes the segments it passed. After `Ok`, the batch is never read again,
    /// even after a crash.
    ///
    /// # Errors
    ///
    /// [`Error::StaleBatch`] if the checkpoint moved since the batch was read;
    /// [`Error::Io`] if the checkpoint could not be written (the batch will be read again);
    /// [`Error::Closed`].
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// The commit finishes on a blocking thread even if the future is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Envelope, Spool};
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::open(dir.path()).await?;
    /// spool.append(&Envelope::new(1)).await?;
    /// let batch = spool.read_batch(10).await?;
    /// spool.commit(&batch).await?;
    /// assert!(spool.read_batch(10).await?.is_empty());
    /// // Committing the same batch twice is refused.
    /// assert!(spool.commit(&batch).await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn commit(&self, batch: &Batch) -> Result<(), Error> {
        let shared = self.shared.clone();
        let c = Commit::of(batch);
        tokio::task::spawn_blocking(move || batch::commit(&shared, &c))
            .await
            .map_err(|e| Error::io("commit", &self.shared.dir, std::io::Error::other(e)))?
    }
}

/// Waits for the writer task; if it panicked, leaves the cause for every later call.
async fn supervise(task: tokio::task::JoinHandle<()>, shared: Arc<Shared>) {
    /// Marks the writer as gone however this task ends (even if it is cancelled).
    struct Done(Arc<Shared>);
    impl Drop for Done {
        fn drop(&mut self) {
            self.0.writer_done.send_replace(true);
        }
    }
    let done = Done(shared);
    if let Err(e) = task.await
        && e.is_panic()
    {
        done.0.writer_failed(format!(
            "the writer task panicked: {}",
            writer::panic_message(e)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kills the writer with an injected panic after one acknowledged record, and checks that
    /// every later call says why and that the record survives.
    async fn a_dead_writer_leaves_its_cause_behind() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).await.unwrap();
        spool.append(&Envelope::new(1)).await.unwrap();
        spool.tx.send(Msg::Crash).await.unwrap();
        // Once the writer is dead (an append racing the crash may be written before it).
        let _ = spool.shared.writer_done.subscribe().wait_for(|d| *d).await;
        let e = spool.append(&Envelope::new(2)).await.unwrap_err();
        assert!(
            matches!(&e, Error::WriterFailed { cause } if cause.contains("injected writer crash")),
            "{e}"
        );
        assert_eq!(e.kind(), "writer_failed");
        // Every later call says why, not just "closed".
        assert!(matches!(
            spool.sync().await,
            Err(Error::WriterFailed { .. })
        ));
        assert!(matches!(
            spool.read_batch(1).await,
            Err(Error::WriterFailed { .. })
        ));
        assert!(matches!(
            spool.close().await,
            Err(Error::WriterFailed { .. })
        ));
        // The record acknowledged before the crash is found by the next owner.
        drop(spool);
        let spool = Spool::open(dir.path()).await.unwrap();
        assert_eq!(spool.read_batch(10).await.unwrap().records.len(), 1);
    }

    /// On a `current_thread` runtime the writer's I/O runs on the blocking pool.
    #[tokio::test]
    async fn a_dead_writer_leaves_its_cause_behind_on_current_thread() {
        a_dead_writer_leaves_its_cause_behind().await;
    }

    /// On a multi-thread runtime the writer runs its I/O in `block_in_place`: a panic there
    /// unwinds the writer task, and its cause is still left behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_dead_in_block_in_place_leaves_its_cause_behind() {
        a_dead_writer_leaves_its_cause_behind().await;
    }

    /// Yields `n` times.
    async fn turns(n: u64) {
        for _ in 0..n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_reply_is_taken_off_the_count_once() {
        // Group commit waits for the appenders it acknowledged (`Shared::returning`); an
        // append dropped before, while or after its reply arrives must leave no count behind.
        // A drop racing the writer's send on the other worker once left one behind (the reply
        // guard looked for the reply before closing its channel): 3000 appends, so that race
        // is run often (before the fix, 300 appends failed 2 runs in 40).
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(
            Spool::builder(dir.path())
                .durability(crate::Durability::Never)
                .open()
                .await
                .unwrap(),
        );
        for i in 0..3000u64 {
            let s = spool.clone();
            let append = async move { s.append(&Envelope::new(i)).await.unwrap() };
            if i % 3 == 0 {
                append.await;
                continue;
            }
            tokio::select! {
                _ = append => {}
                () = turns(i % 40) => {}
            }
        }
        spool.sync().await.unwrap(); // every queued append has been answered
        assert_eq!(spool.shared.returning.load(Ordering::Acquire), 0);
        // And group commit still runs: a batch after all those drops is acknowledged.
        spool.append(&Envelope::new(1)).await.unwrap();
        assert_eq!(spool.shared.returning.load(Ordering::Acquire), 0);
    }

    // One thread, so the writer cannot answer inside the append's first poll (on two
    // workers it sometimes did, and the "not answered yet" step below had nothing to test).
    #[tokio::test(flavor = "current_thread")]
    async fn a_reply_answered_and_never_read_is_taken_off_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::builder(dir.path())
            .durability(crate::Durability::Never)
            .open()
            .await
            .unwrap();
        // Sent, answered, never read: dropping the future takes the reply off the count.
        let e = Envelope::new(0u64);
        let mut append = Box::pin(spool.append(&e));
        tokio::select! {
            biased;
            _ = &mut append => panic!("answered before the writer ran"),
            () = std::future::ready(()) => {}
        }
        spool.sync().await.unwrap(); // behind the append: its reply has been sent
        assert_eq!(spool.shared.returning.load(Ordering::Acquire), 1);
        drop(append);
        assert_eq!(spool.shared.returning.load(Ordering::Acquire), 0);
        // And group commit still runs: a batch after all those drops is acknowledged.
        spool.append(&Envelope::new(1)).await.unwrap();
        assert_eq!(spool.shared.returning.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn fdatasyncs_are_counted() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = crate::Metrics::register(&mut registry);
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::builder(dir.path())
            .metrics(&metrics)
            .durability(crate::Durability::Always)
            .open()
            .await
            .unwrap();
        for i in 0..3 {
            spool.append(&Envelope::new(i)).await.unwrap();
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("seawall_fallback_sink_spool_syncs_total{sink=\"default\"} 3\n"),
            "{text}"
        );
    }
}
