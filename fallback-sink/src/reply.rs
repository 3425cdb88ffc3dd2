//! Waiting for the writer's reply.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;

use crate::Error;
use crate::state::Shared;

/// Waits for the reply to a message sent to the writer; `None` if none will come.
///
/// The writer answers every message it takes, and drops the ones still queued when it ends.
/// One sent as it ends can still be left unanswered: tokio's channel drains its queue when the
/// receiver drops, and a sender that reserved its slot before that pushes after the drain
/// (seen: an append racing `close` waited for ever, about once in 60 runs of a test). So the
/// wait also ends when the writer task has ended: a reply not there by then never comes.
pub(crate) async fn wait<R>(shared: &Shared, rx: &mut oneshot::Receiver<R>) -> Option<R> {
    tokio::select! {
        biased;
        r = &mut *rx => r.ok(),
        () = shared.writer_ended() => rx.try_recv().ok(),
    }
}

/// An append's reply channel. The writer counts the replies it sent (`Shared::returning`) so
/// group commit can wait for their appenders to come back; this takes each one off the
/// count exactly once, whether the reply is read or dropped unread with the future.
pub(crate) struct Reply<'a> {
    pub(crate) rx: Option<oneshot::Receiver<Result<u64, Error>>>,
    pub(crate) shared: &'a Shared,
}

impl Reply<'_> {
    /// The writer's reply, or `None` if the writer went away without one.
    pub(crate) async fn recv(&mut self) -> Option<Result<u64, Error>> {
        let rx = self.rx.as_mut()?;
        let r = wait(self.shared, rx).await;
        self.rx = None;
        if r.is_some() {
            self.shared.reply_taken();
        }
        r
    }
}

impl Drop for Reply<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            // Close first: a reply sent after this fails to send and the writer takes it off
            // the count itself; one sent before is found by `try_recv`. Looking before closing
            // left a window where the send succeeded after the look and the reply was dropped
            // unread and uncounted (`returning` stuck above zero, every later group waiting
            // out its turns).
            rx.close();
            if rx.try_recv().is_ok() {
                self.shared.reply_taken();
            }
        }
    }
}

/// Counts an append in flight (`Shared::inflight`) for as long as it lives.
pub(crate) struct Inflight<'a>(&'a AtomicU64);

impl<'a> Inflight<'a> {
    pub(crate) fn new(c: &'a AtomicU64) -> Self {
        c.fetch_add(1, Ordering::AcqRel);
        Inflight(c)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
