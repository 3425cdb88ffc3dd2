//! `append_here`: where an append is written on the caller's thread, and that everything the
//! spool promises still holds when it is.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::{Durability, Envelope, Error, Spool};

thread_local! {
    /// Set by a test: the next `append_here` on this thread panics while it holds the segment.
    pub(super) static PANIC_HERE: Cell<bool> = const { Cell::new(false) };
}

fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    let mut b = if multi_thread {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().unwrap()
}

fn batch(max_delay: Duration) -> Durability {
    Durability::Batch {
        max_records: 8,
        max_delay,
    }
}

/// Whether `f` is ready at its first poll (then its output).
fn first_poll<F: Future>(f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// Every sequence number stored in `dir` (reopened).
async fn stored(dir: &std::path::Path) -> BTreeSet<u64> {
    let spool = Spool::open(dir).await.unwrap();
    let batch = spool.read_batch(1 << 20).await.unwrap();
    spool.close().await.unwrap();
    batch.records.iter().map(|r| r.seq).collect()
}

/// An append is written within its first poll exactly where `append_here` says: `Always` or
/// a `Batch` without `max_delay`, an idle writer, and either `io_on_runtime_thread` or a multi-thread runtime (whose thread
/// can leave the runtime in `block_in_place`). Elsewhere it goes to the writer task.
#[test]
fn an_idle_always_spool_writes_within_the_first_poll_where_it_may() {
    for (multi_thread, durability, on_runtime, here) in [
        (true, Durability::Always, false, true),
        (true, Durability::Always, true, true),
        (false, Durability::Always, true, true),
        (false, Durability::Always, false, false),
        (true, Durability::Never, false, false),
        (true, batch(Duration::ZERO), false, true),
        (false, batch(Duration::ZERO), true, true),
        (false, batch(Duration::ZERO), false, false),
        (true, batch(Duration::from_millis(1)), false, false),
    ] {
        let rt = runtime(multi_thread);
        let dir = tempfile::tempdir().unwrap();
        let case = format!("{multi_thread} {durability:?} {on_runtime}");
        let seqs = rt.block_on(async {
            let spool = Spool::builder(dir.path())
                .durability(durability)
                .io_on_runtime_thread(on_runtime)
                .open()
                .await
                .unwrap();
            // Run on a worker (the test's `block_on` thread is not one).
            let spool = Arc::new(spool);
            let s = spool.clone();
            let first = tokio::spawn(async move {
                let e = Envelope::new(0u64);
                first_poll(s.append(&e)).map(|r| r.unwrap())
            })
            .await
            .unwrap();
            assert_eq!(first.is_some(), here, "{case}");
            // Then the normal path, and both are stored once, in order.
            let second = spool.append(&Envelope::new(1u64)).await.unwrap();
            spool.close().await.unwrap();
            (first, second)
        });
        let all = rt.block_on(stored(dir.path()));
        match seqs {
            (Some(a), b) => {
                assert!(a < b, "{case}");
                assert_eq!(all, BTreeSet::from([a, b]), "{case}");
            }
            (None, b) => assert!(all.contains(&b) && all.len() <= 2, "{case}"),
        }
    }
}

/// A panic while an append holds the segment (there is none by construction; one is
/// injected) fails the spool as a dead writer task does: every later call says why, the
/// directory lock is released, and what was acknowledged before survives.
#[test]
fn a_panic_while_appending_here_fails_the_spool_and_keeps_what_it_had() {
    let rt = runtime(true);
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let spool = Arc::new(
            Spool::builder(dir.path())
                .durability(Durability::Always)
                .open()
                .await
                .unwrap(),
        );
        let before = spool.append(&Envelope::new(0u64)).await.unwrap();
        let s = spool.clone();
        let crashed = tokio::spawn(async move {
            PANIC_HERE.with(|p| p.set(true));
            s.append(&Envelope::new(1u64)).await
        })
        .await;
        assert!(crashed.unwrap_err().is_panic());
        let e = spool.append(&Envelope::new(2u64)).await.unwrap_err();
        assert!(
            matches!(&e, Error::WriterFailed { cause } if cause.contains("panicked")),
            "{e}"
        );
        assert!(matches!(
            spool.sync().await,
            Err(Error::WriterFailed { .. })
        ));
        assert!(matches!(
            spool.close().await,
            Err(Error::WriterFailed { .. })
        ));
        // The lock is released while the handle still lives: the directory opens again.
        assert_eq!(stored(dir.path()).await, BTreeSet::from([before]));
    });
}

/// Appenders on both paths racing a close: each append is either acknowledged and stored
/// once, or refused with `Closed` and not stored; nothing is written after the close; and
/// no append waits for ever (before `reply::wait` also watched for the writer's end, an
/// append sent as the writer ended hung about once in 60 runs, in both writer modes, and
/// before `append_here` existed too).
#[test]
fn appends_racing_a_close_are_stored_exactly_when_acknowledged() {
    for on_runtime in [false, true] {
        for round in 0..20u64 {
            let rt = runtime(true);
            let dir = tempfile::tempdir().unwrap();
            let acked = rt.block_on(async {
                let spool = Arc::new(
                    Spool::builder(dir.path())
                        .durability(Durability::Always)
                        .io_on_runtime_thread(on_runtime)
                        .open()
                        .await
                        .unwrap(),
                );
                let tasks: Vec<_> = (0..4u64)
                    .map(|a| {
                        let spool = spool.clone();
                        tokio::spawn(async move {
                            let mut acked = Vec::new();
                            loop {
                                match spool.append(&Envelope::new(a)).await {
                                    Ok(seq) => acked.push(seq),
                                    Err(Error::Closed) => break acked,
                                    Err(e) => panic!("{e}"),
                                }
                                tokio::task::yield_now().await;
                            }
                        })
                    })
                    .collect();
                for _ in 0..round {
                    tokio::task::yield_now().await;
                }
                spool.close().await.unwrap();
                let mut acked = BTreeSet::new();
                for t in tasks {
                    for seq in t.await.unwrap() {
                        assert!(acked.insert(seq), "sequence {seq} acknowledged twice");
                    }
                }
                acked
            });
            let all = rt.block_on(stored(dir.path()));
            assert_eq!(
                all, acked,
                "round {round}, io_on_runtime_thread {on_runtime}"
            );
        }
    }
}

/// The segment (and the directory lock) lives in state the handle shares, not in the writer
/// task: when the spool's runtime is dropped with the handle still alive, the lock is still
/// released (the writer task's drop takes the segment), and what was acknowledged survives.
#[test]
fn dropping_the_runtime_releases_the_directory_while_the_handle_lives() {
    let dir = tempfile::tempdir().unwrap();
    let own = runtime(true);
    let spool = own.block_on(async {
        let spool = Spool::builder(dir.path())
            .durability(Durability::Always)
            .open()
            .await
            .unwrap();
        spool.append(&Envelope::new(0u64)).await.unwrap();
        spool
    });
    drop(own);
    let other = runtime(false);
    assert_eq!(other.block_on(stored(dir.path())).len(), 1);
    drop(spool);
}
