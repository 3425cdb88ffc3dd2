//! tokio's own `Mutex` tests (tokio/tests/sync_mutex.rs: straight execution, readiness, the two
//! aborted futures, try_lock), translated to one key of a `KeyedLock`, plus the wake-up cases
//! its suite leaves to tokio-test's mock task: which waker a grant wakes when a waiting future
//! was polled by more than one task, and how many times.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::{ArcWake, waker};
use seawall_keyed_lock::KeyedLock;
use tokio::time::timeout;

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Counter(AtomicUsize);

impl ArcWake for Counter {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Counter {
    fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Polls `fut` once with `counter`'s waker.
fn poll_with<F: Future + Unpin>(fut: &mut F, counter: &Arc<Counter>) -> Poll<F::Output> {
    let waker = waker(Arc::clone(counter));
    Pin::new(fut).poll(&mut Context::from_waker(&waker))
}

#[tokio::test(start_paused = true)]
async fn straight_execution() {
    let locks = KeyedLock::<u64>::new();
    let task = Arc::new(Counter::default());
    let mut last = None;
    for _ in 0..3 {
        let mut fut = Box::pin(locks.lock(&7));
        let Poll::Ready(guard) = poll_with(&mut fut, &task) else {
            panic!("a free key is granted at the first poll")
        };
        assert!(last.is_none_or(|t| guard.token() > t));
        last = Some(guard.token());
    }
    assert_eq!(task.wakes(), 0);
    assert!(locks.is_empty());
}

#[tokio::test(start_paused = true)]
async fn readiness() {
    let locks = KeyedLock::<u64>::new();
    let (t1, t2) = (Arc::new(Counter::default()), Arc::new(Counter::default()));
    let mut first = Box::pin(locks.lock(&7));
    let mut second = Box::pin(locks.lock(&7));
    let Poll::Ready(guard) = poll_with(&mut first, &t1) else {
        panic!("free key")
    };
    // It can't be had while `guard` holds it...
    assert!(poll_with(&mut second, &t2).is_pending());
    assert_eq!(t2.wakes(), 0);
    // ...but once `guard` unlocks, the waiter is woken and gets it.
    drop(guard);
    assert_eq!(t2.wakes(), 1);
    assert!(poll_with(&mut second, &t2).is_ready());
    assert_eq!(t1.wakes(), 0);
}

/// A waiting future polled by one task, then by another (it moved): the grant wakes the
/// second task only, once.
#[tokio::test(start_paused = true)]
async fn the_grant_wakes_the_task_that_polled_last() {
    for owned in [false, true] {
        let locks = KeyedLock::<u64>::new();
        let guard = locks.lock(&7).await;
        let (a, b) = (Arc::new(Counter::default()), Arc::new(Counter::default()));
        let mut waiting: Pin<Box<dyn Future<Output = _> + Send>> = if owned {
            Box::pin(locks.enqueue(&7))
        } else {
            let locks = locks.clone();
            Box::pin(async move { locks.lock(&7).await })
        };
        assert!(poll_with(&mut waiting, &a).is_pending());
        assert!(poll_with(&mut waiting, &b).is_pending());
        assert!(
            poll_with(&mut waiting, &b).is_pending(),
            "polled again: still waiting"
        );
        drop(guard);
        assert_eq!((a.wakes(), b.wakes()), (0, 1));
        let Poll::Ready(next) = poll_with(&mut waiting, &b) else {
            panic!("woken: granted")
        };
        drop(next);
        assert_eq!((a.wakes(), b.wakes()), (0, 1));
        assert!(locks.is_empty());
    }
}

/// tokio's `aborted_future_1`: a future that holds the lock is dropped by a timeout; the key
/// is free again.
#[tokio::test(start_paused = true)]
async fn aborted_future_holding_the_lock() {
    let locks = KeyedLock::<u64>::new();
    {
        let locks = locks.clone();
        timeout(Duration::from_millis(1), async move {
            let _guard = locks.lock(&7).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        })
        .await
        .unwrap_err();
    }
    let guard = timeout(Duration::from_millis(1), locks.lock(&7))
        .await
        .expect("the key is free");
    drop(guard);
}

/// tokio's `aborted_future_2`: a future waiting for the lock is dropped by a timeout; once the
/// holder unlocks, the key is free.
#[tokio::test(start_paused = true)]
async fn aborted_future_waiting_for_the_lock() {
    let locks = KeyedLock::<u64>::new();
    {
        let _guard = locks.lock(&7).await;
        let waiting = locks.clone();
        timeout(Duration::from_millis(1), async move {
            drop(waiting.lock(&7).await);
        })
        .await
        .unwrap_err();
    }
    let guard = timeout(Duration::from_millis(1), locks.lock(&7))
        .await
        .expect("the key is free");
    drop(guard);
    assert!(locks.is_empty());
}

#[tokio::test(start_paused = true)]
async fn try_lock() {
    let locks = KeyedLock::<u64>::new();
    {
        let g1 = locks.try_lock(&7);
        assert!(g1.is_ok());
        let g2 = locks.try_lock(&7);
        assert!(g2.is_err());
    }
    assert!(locks.try_lock(&7).is_ok());
}
