//! The spool's single writer: appends lines, rotates segments, group-commits.
//!
//! One tokio task writes the groups. (The active segment sits behind a lock in `Shared`: with
//! `io_on_runtime_thread`, an append that finds the writer idle writes its own record
//! instead, in `append_here`.) Appends arrive over a channel; the task collects a group
//! according to the [`Durability`](crate::Durability) policy, then runs the `write` and
//! `fdatasync` outside the runtime: in `block_in_place` on a multi-thread runtime, on tokio's
//! blocking pool on a `current_thread` one (or on the runtime thread itself, with
//! `io_on_runtime_thread`). While that runs, new appends queue up and form the next group, so
//! concurrent writers share fdatasyncs without anyone waiting on a timer.
//! With `Durability::Batch`, once a group is acknowledged the writer also lets its appenders
//! come back before it gathers the next group (`gather_returning`; on a multi-thread runtime
//! with a zero `max_delay`, the spin in `process_while_busy`).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout_at};
use uuid::Uuid;

use crate::checkpoint::sync_dir;
use crate::layout::{next_segment_id, segment_name};
use crate::record;
use crate::state::Shared;
use crate::{Durability, Error};

/// A request to the writer.
#[derive(Debug)]
pub(crate) enum Msg {
    Append {
        id: Uuid,
        ts_ms: u64,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<u64, Error>>,
    },
    /// Makes the writer panic, to test that a dead writer leaves its cause behind.
    #[cfg(test)]
    Crash,
    Sync {
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Close {
        reply: oneshot::Sender<Result<(), Error>>,
    },
}

/// The active segment, plus the directory lock (held until the writer task ends, or a
/// write panics: see `Owner` and `append_here`).
#[derive(Debug)]
pub(crate) struct SegWriter {
    pub(crate) file: File,
    pub(crate) id: u64,
    /// Bytes in the file that are known good.
    pub(crate) len: u64,
    pub(crate) next_seq: u64,
    /// A failed write could not be rolled back: start a new segment before the next write.
    pub(crate) broken: bool,
    pub(crate) _lock: File,
}

/// Largest group for `Always` and `Never`, which do not wait for company.
const GREEDY_GROUP: usize = 1024;

/// The writer task. `owner` is built before the task is spawned, so that however the task
/// ends (close, every handle dropped, a panic, its runtime dropping it, even before its
/// first poll) the segment is synced and the directory lock released.
pub(crate) async fn run(mut rx: mpsc::Receiver<Msg>, owner: Owner) {
    let shared = owner.0.clone();
    let _owner = owner;
    let policy = shared.opts.durability;
    // `block_in_place` exists only on a multi-thread runtime (this task never changes runtime).
    let multi_thread = matches!(
        tokio::runtime::Handle::current().runtime_flavor(),
        tokio::runtime::RuntimeFlavor::MultiThread
    );
    loop {
        let first = match rx.try_recv() {
            Ok(m) => m,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                // Idle: nothing queued, no group being written or gathered. Only
                // `append_here` reads this, and only with `io_on_runtime_thread`.
                let mark = shared.opts.io_on_runtime_thread;
                if mark {
                    shared.writer_idle.store(true, Ordering::Release);
                }
                let first = rx.recv().await;
                if mark {
                    shared.writer_idle.store(false, Ordering::Release);
                }
                let Some(first) = first else { break };
                first
            }
        };
        let mut group = vec![first];
        match policy {
            Durability::Always | Durability::Never => {
                while group.len() < GREEDY_GROUP {
                    match rx.try_recv() {
                        Ok(m) => group.push(m),
                        Err(_) => break,
                    }
                }
            }
            Durability::Batch {
                max_records,
                max_delay,
            } => {
                // `max_delay` is bounded by the builder; an unrepresentable deadline would
                // simply mean "no deadline".
                let deadline = Instant::now().checked_add(max_delay);
                while group.len() < max_records {
                    if matches!(group.last(), Some(Msg::Close { .. } | Msg::Sync { .. })) {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(m) => {
                            group.push(m);
                            continue;
                        }
                        Err(mpsc::error::TryRecvError::Disconnected) => break,
                        Err(mpsc::error::TryRecvError::Empty) => {}
                    }
                    if max_delay.is_zero() {
                        break;
                    }
                    let next = match deadline {
                        Some(d) => timeout_at(d, rx.recv()).await.ok().flatten(),
                        None => rx.recv().await,
                    };
                    match next {
                        Some(m) => group.push(m),
                        None => break,
                    }
                }
            }
        }
        let mut appends = appends_in(&group);
        let done = if shared.opts.io_on_runtime_thread {
            // The caller chose to wait for the disk here (`io_on_runtime_thread`): no hand-off
            // to the blocking pool and back. An appender may be writing in `append_here`: its
            // fdatasync is waited for without blocking this thread. A panic unwinds this task;
            // `supervise` reports it.
            let seg = lock_async(&shared).await;
            Ok(locked(&shared, seg, group, |w, g| process(w, &shared, g)))
        } else if multi_thread {
            // This thread leaves the runtime for the disk: `block_in_place` hands its
            // scheduler (queued tasks, timers) to another thread, so no runtime work waits for
            // the fdatasync, and this task keeps its thread, so no wake-up is on the
            // acknowledgement's path (the blocking pool costs two per group). Nothing else runs
            // in this task, so nothing else is held up. A panic unwinds this task; `supervise`
            // reports it.
            let mut overstayed = false;
            let step = tokio::task::block_in_place(|| {
                locked(&shared, shared.seg.lock(), group, |w, g| {
                    let (close, over) = process_while_busy(w, &shared, &mut rx, g, appends);
                    overstayed = over;
                    close
                })
            });
            if stays_while_busy(policy) {
                // The appenders were given their time to come back inside.
                appends = 0;
            }
            if overstayed {
                // Appends are still queued, so the next `recv` would not wait: yield, so that
                // a cancellation (a runtime shutting down) reaches this task now rather than
                // when tokio's budget runs out (128 stays later).
                tokio::task::yield_now().await;
            }
            Ok(step)
        } else {
            // A `current_thread` runtime has no other thread to hand its scheduler to.
            let sh = shared.clone();
            tokio::task::spawn_blocking(move || {
                locked(&sh, sh.seg.lock(), group, |w, g| process(w, &sh, g))
            })
            .await
        };
        match done {
            Ok(Step::Next) => {
                if appends > 0 && matches!(policy, Durability::Batch { .. }) {
                    gather_returning(&shared, &rx, appends).await;
                }
            }
            Ok(Step::Closed((reply, result))) => {
                // The directory lock was released (with the segment) before the closer is
                // told it may reopen.
                shared.state.lock().closed = true;
                let _ = reply.send(result);
                return;
            }
            Ok(Step::Gone) => return,
            // The blocking closure panicked (it does not, by construction): the segment's
            // state is unknown, so stop writing, and leave the cause for every later call.
            Err(e) => {
                shared.writer_failed(format!("the writer panicked: {}", panic_message(e)));
                return;
            }
        }
    }
}

/// What the writer does after a group.
enum Step {
    /// Gathers the next group.
    Next,
    /// The group ended with a close, whose reply this is: the segment is gone, so stop.
    Closed(CloseReply),
    /// The segment was gone (a write panicked in `append_here`); the group was refused.
    Gone,
}

/// The segment lock, waited for without blocking the thread: with `io_on_runtime_thread`
/// an appender writing in `append_here` holds it for one fdatasync, and this runtime thread
/// must not wait for that too.
async fn lock_async(shared: &Shared) -> SegGuard<'_> {
    loop {
        if let Some(seg) = shared.seg.try_lock() {
            return seg;
        }
        let freed = shared.seg_freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        if let Some(seg) = shared.seg.try_lock() {
            return seg;
        }
        freed.await;
    }
}

type SegGuard<'a> = parking_lot::MutexGuard<'a, Option<SegWriter>>;

/// Runs `f` on the active segment, whose lock `seg` holds. If the group closed the spool,
/// the segment (and the directory lock) is dropped before the lock is released. If the
/// segment is already gone, every request in `group` is answered with why.
fn locked(
    shared: &Shared,
    mut seg: SegGuard<'_>,
    group: Vec<Msg>,
    f: impl FnOnce(&mut SegWriter, Vec<Msg>) -> Option<CloseReply>,
) -> Step {
    let Some(w) = seg.as_mut() else {
        drop(seg);
        let why = || shared.state.lock().closed_error();
        for msg in group {
            match msg {
                Msg::Append { reply, .. } => answer(shared, reply, Err(why())),
                Msg::Sync { reply } | Msg::Close { reply } => {
                    let _ = reply.send(Err(why()));
                }
                #[cfg(test)]
                Msg::Crash => {}
            }
        }
        return Step::Gone;
    };
    match f(w, group) {
        None => Step::Next,
        Some(close) => {
            drop(seg.take());
            Step::Closed(close)
        }
    }
}

/// Owned by the writer task: when the task ends, however it ends, syncs what was written and
/// drops the segment, which releases the directory lock.
pub(crate) struct Owner(pub(crate) Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(w) = self.0.seg.lock().take() {
            // Dropped without close: make what was written durable before releasing the lock.
            let _ = w.file.sync_data();
        }
    }
}

/// With `io_on_runtime_thread`, appends `msg` (an append) on the caller's thread, if the
/// spool is `Durability::Always` or a `Batch` without `max_delay`, the writer task is idle
/// (waiting for a message with nothing queued: not writing a group, nor waiting for the
/// appenders of the last one to come back) and nobody is writing; otherwise gives it back,
/// to be sent to the writer task. One appender then costs one `write` and one fdatasync per
/// record and no thread hand-off. The group it writes is the one the writer would have
/// formed: what was queued, that is this record. With concurrent appenders the writer is
/// rarely idle, so group commit keeps its groups.
///
/// Only with `io_on_runtime_thread`, whose caller accepted that runtime threads wait for
/// the disk: the appender's own thread then waits for its fdatasync, and its task can be
/// neither cancelled nor timed out meanwhile. By default the writer task does every write,
/// outside the runtime: an append's wait for the disk stays an await that a timeout can cut
/// short, and nothing needs `block_in_place` on the caller's thread (which panics inside a
/// `LocalSet`). A `Batch` with a `max_delay` (which waits for company) and `Never` always
/// go through the writer. The segment lock is only tried, never waited for; the writer task
/// waits for it without blocking its thread (`lock_async`). A panic while writing (there is
/// none by construction) drops the segment and leaves its cause for every later call.
pub(crate) fn append_here(shared: &Shared, tx: &mpsc::Sender<Msg>, msg: Msg) -> Result<(), Msg> {
    let eligible = match shared.opts.durability {
        Durability::Always => true,
        Durability::Batch { max_delay, .. } => max_delay.is_zero(),
        Durability::Never => false,
    };
    if !shared.opts.io_on_runtime_thread
        || !eligible
        || !shared.writer_idle.load(Ordering::Acquire)
        || tx.capacity() < tx.max_capacity()
    {
        return Err(msg);
    }
    let Some(seg) = shared.seg.try_lock() else {
        return Err(msg);
    };
    if seg.is_none() || shared.state.lock().closed {
        return Err(msg);
    }
    let mut writing = Writing {
        seg: Some(seg),
        shared,
    };
    #[cfg(test)]
    tests::on_append_here();
    if let Some(w) = writing.seg.as_mut().and_then(|seg| seg.as_mut()) {
        process(w, shared, [msg]);
    }
    Ok(())
}

/// In `append_here`: releases the segment lock, then wakes a writer waiting for it
/// (`lock_async`); if the write unwinds, first drops the segment and fails the spool.
struct Writing<'a> {
    seg: Option<SegGuard<'a>>,
    shared: &'a Shared,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(seg) = self.seg.as_mut() {
                drop(seg.take());
            }
            self.shared
                .writer_failed("an append panicked while writing".to_owned());
        }
        drop(self.seg.take());
        self.shared.seg_freed.notify_waiters();
    }
}

/// Longest the writer waits outside the runtime, after a group, for the appenders it
/// acknowledged to come back with their next records.
const RETURN_SPIN: std::time::Duration = std::time::Duration::from_micros(100);
/// Once every reply was taken, how much longer it waits for appenders still sending.
const RETURN_SPIN_TAIL: std::time::Duration = std::time::Duration::from_micros(20);
/// Longest one stay outside the runtime lasts before the writer goes back to its async loop
/// (where cancellation and runtime shutdown reach it) even though appends keep coming.
const MAX_STAY: std::time::Duration = std::time::Duration::from_millis(10);

/// Handles `group`, then, while the writer is busy, the groups that form meanwhile, all on
/// this thread outside the runtime (inside `block_in_place`): after each group it waits up to
/// [`RETURN_SPIN`] for the appenders it acknowledged to come back (the role of
/// `gather_returning`, without a trip through the scheduler per turn), then takes what is
/// queued as the next group. Returns to the async loop when nothing came, after
/// [`MAX_STAY`] (then with `true`, and the caller yields, so a steady stream of appends
/// cannot keep the task from its runtime, e.g. from a shutdown), or at once for a `Batch` with a `max_delay` (whose wait needs a timer)
/// or `Never` (which acknowledges without waiting for the disk, so spinning would cost more
/// than it saves: one appender took 17–20 µs per record with the spin, 14–15 µs without).
fn process_while_busy(
    w: &mut SegWriter,
    shared: &Shared,
    rx: &mut mpsc::Receiver<Msg>,
    mut group: Vec<Msg>,
    mut acked: usize,
) -> (Option<CloseReply>, bool) {
    let max = match shared.opts.durability {
        Durability::Batch { max_records, .. } => max_records,
        _ => GREEDY_GROUP,
    };
    if !stays_while_busy(shared.opts.durability) {
        return (process(w, shared, group), false);
    }
    let entered = std::time::Instant::now();
    loop {
        if let Some(close) = process(w, shared, group) {
            return (Some(close), false);
        }
        let start = std::time::Instant::now();
        if start.duration_since(entered) >= MAX_STAY {
            return (None, true);
        }
        if acked == 0 {
            return (None, false);
        }
        // The channel holds at most its capacity: a larger group cannot all be back at once.
        let expected = acked.min(rx.max_capacity());
        let mut all_taken = None;
        while rx.len() < expected {
            let now = std::time::Instant::now();
            if shared.returning.load(Ordering::Acquire) == 0 {
                let since = *all_taken.get_or_insert(now);
                if now.duration_since(since) >= RETURN_SPIN_TAIL {
                    break;
                }
            }
            if now.duration_since(start) >= RETURN_SPIN {
                break;
            }
            std::thread::yield_now();
        }
        group = Vec::new();
        while group.len() < max {
            if matches!(group.last(), Some(Msg::Close { .. } | Msg::Sync { .. })) {
                break;
            }
            match rx.try_recv() {
                Ok(m) => group.push(m),
                Err(_) => break,
            }
        }
        if group.is_empty() {
            return (None, false);
        }
        acked = appends_in(&group);
    }
}

/// The appends in a group (the replies the writer will send).
fn appends_in(group: &[Msg]) -> usize {
    group
        .iter()
        .filter(|m| matches!(m, Msg::Append { .. }))
        .count()
}

/// Whether [`process_while_busy`] keeps the writer outside the runtime between groups.
fn stays_while_busy(policy: Durability) -> bool {
    match policy {
        Durability::Always => true,
        Durability::Batch { max_delay, .. } => max_delay.is_zero(),
        Durability::Never => false,
    }
}

/// Most scheduler turns group commit gives the appenders it just acknowledged to come back.
const RETURN_TURNS: usize = 64;
/// Turns given, once all replies are taken, to appenders still sending their next record.
const RETURN_TAIL_TURNS: usize = 4;

/// Group commit with appenders that each wait for their acknowledgement (a request handler,
/// a worker loop): once a group is acknowledged, its appenders come back at once with their
/// next records. Starting the next group before they are back splits the appenders into two
/// cohorts that take turns, each fdatasync carrying about half of them. So before gathering
/// the next group, wait until every acknowledged appender has taken its reply (and so has
/// had its turn to append again), or until `RETURN_TURNS` scheduler turns have passed (an
/// appender whose future is kept but no longer polled cannot hold the spool up). No timer:
/// the wait is a `Notify` raced with `yield_now`.
async fn gather_returning(shared: &Shared, rx: &mpsc::Receiver<Msg>, acked: usize) {
    let mut turns = 0;
    while turns < RETURN_TURNS {
        let back = shared.returned.notified();
        if shared.returning.load(Ordering::Acquire) == 0 {
            break;
        }
        tokio::select! {
            biased;
            () = back => {}
            () = tokio::task::yield_now() => turns += 1,
        }
    }
    // The last appenders to take their replies may still be sending their next records (on
    // another worker): give them a few turns, unless they are all queued already.
    for _ in 0..RETURN_TAIL_TURNS {
        if rx.len() >= acked {
            break;
        }
        tokio::task::yield_now().await;
    }
}

/// The message of a task's panic (or why it was cancelled).
pub(crate) fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned()),
        Err(e) => e.to_string(),
    }
}

/// Replies waiting for the current group's write (and sync).
struct Pending {
    buf: Vec<u8>,
    acks: Vec<(oneshot::Sender<Result<u64, Error>>, u64)>,
    first_ts: Option<u64>,
}

type CloseReply = (oneshot::Sender<Result<(), Error>>, Result<(), Error>);

/// Handles one group; returns the close request's reply if the group ended with a close.
fn process(
    w: &mut SegWriter,
    shared: &Shared,
    group: impl IntoIterator<Item = Msg>,
) -> Option<CloseReply> {
    let policy = shared.opts.durability;
    let mut p = Pending {
        buf: Vec::new(),
        acks: Vec::new(),
        first_ts: None,
    };
    let mut line = Vec::new();
    for msg in group {
        match msg {
            Msg::Append {
                id,
                ts_ms,
                payload,
                reply,
            } => {
                if w.broken
                    && p.acks.is_empty()
                    && let Err(e) = rotate(w, shared)
                {
                    answer(shared, reply, Err(e));
                    continue;
                }
                let seq = w.next_seq;
                line.clear();
                record::encode(&mut line, id, seq, ts_ms, &payload);
                let len = line.len() as u64;
                {
                    let st = shared.state.lock();
                    let bytes = st.bytes.saturating_add(p.buf.len() as u64);
                    if bytes.saturating_add(len) > shared.opts.max_bytes {
                        drop(st);
                        if let Some(m) = &shared.metrics {
                            m.error("full");
                        }
                        answer(
                            shared,
                            reply,
                            Err(Error::Full {
                                bytes,
                                record_bytes: len,
                                max_bytes: shared.opts.max_bytes,
                            }),
                        );
                        continue;
                    }
                }
                let in_file = w.len + p.buf.len() as u64;
                if in_file > 0 && in_file.saturating_add(len) > shared.opts.segment_bytes {
                    flush(w, shared, &mut p, true);
                    if let Err(e) = rotate(w, shared) {
                        answer(shared, reply, Err(e));
                        continue;
                    }
                }
                p.buf.extend_from_slice(&line);
                w.next_seq = w.next_seq.saturating_add(1);
                p.first_ts.get_or_insert(ts_ms);
                p.acks.push((reply, seq));
                if policy == Durability::Always {
                    flush(w, shared, &mut p, true);
                }
            }
            Msg::Sync { reply } => {
                flush(w, shared, &mut p, policy != Durability::Never);
                let _ = reply.send(sync(w, shared));
            }
            Msg::Close { reply } => {
                flush(w, shared, &mut p, policy != Durability::Never);
                return Some((reply, sync(w, shared)));
            }
            #[cfg(test)]
            Msg::Crash => panic!("injected writer crash"),
        }
    }
    flush(w, shared, &mut p, policy != Durability::Never);
    None
}

/// Replies to an append, counting the reply in `Shared::returning` until its appender takes
/// it (see `gather_returning`).
fn answer(shared: &Shared, reply: oneshot::Sender<Result<u64, Error>>, r: Result<u64, Error>) {
    shared.returning.fetch_add(1, Ordering::AcqRel);
    if reply.send(r).is_err() {
        // The appender is gone: nobody will take this reply.
        shared.reply_taken();
    }
}

fn sync(w: &SegWriter, shared: &Shared) -> Result<(), Error> {
    count_sync(shared);
    w.file
        .sync_data()
        .map_err(|e| Error::io("fdatasync", shared.dir.join(segment_name(w.id)), e))
}

fn count_sync(shared: &Shared) {
    if let Some(m) = &shared.metrics {
        m.syncs.inc();
    }
}

/// Writes the pending lines, syncs if asked, then acknowledges them (or fails them all).
fn flush(w: &mut SegWriter, shared: &Shared, p: &mut Pending, do_sync: bool) {
    if p.acks.is_empty() {
        return;
    }
    let path = || shared.dir.join(segment_name(w.id));
    let mut result = w
        .file
        .write_all(&p.buf)
        .map_err(|e| Error::io("write", path(), e));
    if result.is_ok() && do_sync {
        count_sync(shared);
        result = w
            .file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", path(), e));
    }
    let n = p.acks.len() as u64;
    let bytes = p.buf.len() as u64;
    let first_ts = p.first_ts.take();
    p.buf.clear();
    match result {
        Ok(()) => {
            w.len += bytes;
            {
                let mut st = shared.state.lock();
                st.segments.insert(w.id, w.len);
                st.records += n;
                st.bytes += bytes;
                if st.oldest_ms.is_none() {
                    st.oldest_ms = first_ts;
                }
                shared.publish(&st);
            }
            for (reply, seq) in p.acks.drain(..) {
                answer(shared, reply, Ok(seq));
            }
        }
        Err(e) => {
            tracing::error!(sink = %shared.opts.name, error = %e, records = n, "spool append failed");
            // Roll the file back so later lines never follow a partial one; after a failed
            // fdatasync the page cache cannot be trusted, so move to a fresh segment anyway.
            if w.file.set_len(w.len).is_err() || do_sync {
                w.broken = true;
            }
            let kind = e.kind();
            let msg = e.to_string();
            let mut first = Some(e);
            for (reply, _) in p.acks.drain(..) {
                let err = first.take().unwrap_or_else(|| {
                    Error::io("write", path(), std::io::Error::other(msg.clone()))
                });
                if let Some(m) = &shared.metrics {
                    m.error(kind);
                }
                answer(shared, reply, Err(err));
            }
        }
    }
}

/// Seals the active segment and starts the next one.
fn rotate(w: &mut SegWriter, shared: &Shared) -> Result<(), Error> {
    let next = next_segment_id(&shared.dir, w.id)?;
    let path = shared.dir.join(segment_name(next));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|f| f.set_len(0).map(|()| f))
        .map_err(|e| Error::io("create", &path, e))?;
    sync_dir(&shared.dir)?;
    count_sync(shared);
    let _ = w.file.sync_data();
    w.file = file;
    w.id = next;
    w.len = 0;
    w.broken = false;
    let mut st = shared.state.lock();
    st.segments.insert(next, 0);
    st.active = next;
    tracing::debug!(sink = %shared.opts.name, segment = next, "spool segment rotated");
    Ok(())
}

#[cfg(test)]
mod tests;
