//! The behavioural contract of `KeyedLock` on any backend: one generic body per behaviour,
//! instantiated by `conformance_memory.rs` (paused time), `conformance_redis.rs` (a real
//! server, real time) and `conformance_cluster.rs` (a Redis Cluster, real time).
//!
//! Contenders come from [`Fixture::other`], "another replica": for a shared store a second
//! lock instance on the same store (so the store itself arbitrates), for the in-memory backend
//! the same lock. FIFO order is per process, so the FIFO and cancellation bodies use one
//! instance.
//!
//! Timing assertions are written against the fixture: `drift` is the margin a backend takes
//! off every lease (zero in memory), `slack` the latency a real server may add and `handoff`
//! how late a waiting replica may notice a release (its backoff); both are zero on paused
//! time, so the in-memory instance asserts exact instants.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use seawall_keyed_lock::{ExtendError, Guard, KeyedLock, LockBackend, Refused, Wait};
use tokio::time::Instant;

#[cfg(feature = "redis")]
pub mod redis;

/// How a test instance provides the lock and lets time pass.
pub trait Fixture: Send + Sync + 'static {
    /// The backend under test.
    type B: LockBackend<String>;

    /// The lock under test; its default TTL is [`ttl`](Self::ttl).
    fn locks(&self) -> &KeyedLock<String, Self::B>;
    /// Another replica's lock on the same keys.
    fn other(&self) -> &KeyedLock<String, Self::B>;
    /// A key for this test (namespaced by the lock's prefix where the store is shared).
    fn key(&self, name: &str) -> String {
        name.to_owned()
    }
    /// The default TTL: long enough for several round trips to the store.
    fn ttl(&self) -> Duration;
    /// The margin the backend takes off a lease of `ttl`.
    fn drift(&self, ttl: Duration) -> Duration;
    /// How late a real store may make an instant we assert.
    fn slack(&self) -> Duration;
    /// How late another replica may take a key after it was released.
    fn handoff(&self) -> Duration;
    /// Lets `d` pass.
    fn pass(&self, d: Duration) -> impl Future<Output = ()> + Send;
    /// Lets spawned and background work run (queued waiters, releases started by `Drop`).
    fn settle(&self) -> impl Future<Output = ()> + Send;
    /// What is left behind for `key` once nothing holds or waits for it (entries, leases).
    fn leftovers(&self, key: &str) -> impl Future<Output = usize> + Send;
}

type G<F> = Guard<String, <F as Fixture>::B>;

async fn lock<F: Fixture>(fx: &F, key: &str) -> G<F> {
    fx.locks()
        .acquire(&key.to_owned(), fx.ttl(), Wait::Forever)
        .await
        .expect("granted")
}

/// How long a real store may take to finish a background release or to expire a key: the
/// bound of the polls below (zero on paused time: the in-memory instance asserts at once).
fn eventually<F: Fixture>(fx: &F) -> Duration {
    fx.slack() * 20
}

/// Takes `key` with `Wait::No` on `locks`, asking again every 5 ms for up to
/// [`eventually`] while it is still busy (a background release, or the store's expiry, may
/// land a little later on a loaded machine).
async fn take_soon<F: Fixture>(fx: &F, locks: &KeyedLock<String, F::B>, key: &str) -> G<F> {
    let give_up = Instant::now() + eventually(fx);
    loop {
        match locks.acquire(&key.to_owned(), fx.ttl(), Wait::No).await {
            Ok(guard) => return guard,
            Err(Refused::Busy(_)) if Instant::now() < give_up => {
                fx.pass(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("{key} still not free after {:?}: {e:?}", eventually(fx)),
        }
    }
}

/// Waits (up to [`eventually`]) until `key` is busy for `locks` (a spawned task took it);
/// a guard obtained while polling is dropped again.
async fn wait_busy<F: Fixture>(fx: &F, locks: &KeyedLock<String, F::B>, key: &str) {
    let give_up = Instant::now() + eventually(fx);
    loop {
        match locks.acquire(&key.to_owned(), fx.ttl(), Wait::No).await {
            Err(Refused::Busy(_)) => return,
            Ok(guard) if Instant::now() < give_up => {
                drop(guard);
                fx.pass(Duration::from_millis(5)).await;
            }
            other => panic!("{key} not busy after {:?}: {other:?}", eventually(fx)),
        }
    }
}

fn assert_between(what: &str, at: Instant, from: Instant, slack: Duration) {
    assert!(
        at >= from && at <= from + slack,
        "{what}: {at:?} not within [{from:?}, +{slack:?}]"
    );
}

/// Ten waiters queued one after the other are served in that order, with increasing tokens.
pub async fn fifo<F: Fixture>(fx: &F) {
    let key = fx.key("fifo");
    // Long leases: queueing ten waiters takes ten settles.
    let first = fx
        .locks()
        .acquire(&key, fx.ttl() * 10, Wait::Forever)
        .await
        .unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let locks = fx.locks().clone();
        let (key, order, ttl) = (key.clone(), Arc::clone(&order), fx.ttl() * 10);
        tasks.push(tokio::spawn(async move {
            let guard = locks.acquire(&key, ttl, Wait::Forever).await.unwrap();
            order.lock().unwrap().push((i, guard.token()));
        }));
        fx.settle().await;
    }
    assert!(order.lock().unwrap().is_empty());
    let first_token = first.token();
    drop(first);
    for t in tasks {
        t.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(
        order.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert!(order[0].1 > first_token);
    assert!(order.windows(2).all(|w| w[0].1 < w[1].1), "{order:?}");
    assert_eq!(fx.leftovers(&key).await, 0);
}

/// `Wait::No` on a held key is refused with `Busy`; other keys are independent; once the
/// holder is gone the key is free again, with a higher token.
pub async fn try_busy<F: Fixture>(fx: &F) {
    let key = fx.key("busy");
    let other = fx.key("busy-other");
    let held = lock(fx, &key).await;
    fx.pass(fx.ttl() / 4).await;
    let asked_at = Instant::now();
    let Err(Refused::Busy(busy)) = fx.other().acquire(&key, fx.ttl(), Wait::No).await else {
        panic!("a held key must be Busy");
    };
    // held_since is the holder's grant time (from the server's clock for a remote backend).
    let tolerance = fx.slack();
    assert!(
        busy.held_since + tolerance >= held.acquired_at()
            && busy.held_since <= held.acquired_at() + tolerance,
        "{busy:?} vs {:?}",
        held.acquired_at()
    );
    assert!(busy.expires_at >= asked_at, "{busy:?}");
    assert!(
        busy.expires_at <= held.acquired_at() + fx.ttl() + tolerance,
        "{busy:?}"
    );
    let o = fx
        .other()
        .acquire(&other, fx.ttl(), Wait::No)
        .await
        .unwrap();
    let held_token = held.token();
    drop(held);
    fx.settle().await;
    let again = take_soon(fx, fx.other(), &key).await;
    assert!(again.token() > held_token);
    drop((o, again));
    assert_eq!(fx.leftovers(&key).await, 0);
    assert_eq!(fx.leftovers(&other).await, 0);
}

/// `Wait::For` gives up after exactly its time and leaves nothing behind; a waiter served in
/// time gets the guard.
pub async fn timeout<F: Fixture>(fx: &F) {
    let key = fx.key("timeout");
    let ttl = fx.ttl();
    let held = lock(fx, &key).await;
    let wait = ttl / 4;
    let start = Instant::now();
    let err = fx
        .other()
        .acquire(&key, ttl, Wait::For(wait))
        .await
        .unwrap_err();
    assert!(matches!(err, Refused::TimedOut), "{err:?}");
    assert_between("gave up", Instant::now(), start + wait, fx.slack());

    // Served in time: the holder leaves after ttl/4, the waiter allows ttl/2 plus the hand-off
    // this fixture allows (on Redis a waiter polls with backoff, up to `handoff()` after the
    // release; with only ttl/4 = 75 ms of room the test failed on a loaded machine).
    let locks = fx.other().clone();
    let k2 = key.clone();
    let patience = ttl / 2 + fx.handoff();
    let waiter = tokio::spawn(async move { locks.acquire(&k2, ttl, Wait::For(patience)).await });
    fx.pass(ttl / 4).await;
    let released_at = Instant::now();
    drop(held);
    let got = waiter.await.unwrap().expect("served before its timeout");
    assert_between("served", got.acquired_at(), released_at, fx.handoff());
    drop(got);
    assert_eq!(fx.leftovers(&key).await, 0);
}

/// A holder that does nothing loses the key at its TTL: the next waiter takes over with a
/// higher token, the stale guard can tell, and dropping it does not release the new holder.
pub async fn ttl_takeover<F: Fixture>(fx: &F) {
    let key = fx.key("takeover");
    let ttl = fx.ttl();
    let stale = lock(fx, &key).await;
    assert_eq!(stale.deadline() - stale.acquired_at(), ttl - fx.drift(ttl));
    let fresh = fx.other().acquire(&key, ttl, Wait::Forever).await.unwrap();
    assert!(fresh.acquired_at() >= stale.deadline());
    assert!(
        fresh.acquired_at() <= stale.acquired_at() + ttl + fx.slack(),
        "taken over late: {:?} after the grant",
        fresh.acquired_at() - stale.acquired_at()
    );
    assert!(fresh.token() > stale.token());
    assert!(stale.is_expired());
    assert!(!fresh.is_expired());
    tokio::time::timeout(Duration::from_millis(1), stale.lost())
        .await
        .expect("lost() resolves at once for a stale guard");

    drop(stale);
    fx.settle().await;
    let busy = fx.locks().acquire(&key, ttl, Wait::No).await;
    assert!(
        matches!(busy, Err(Refused::Busy(_))),
        "a stale guard's drop released the new holder"
    );
    let busy = fx.other().acquire(&key, ttl, Wait::No).await;
    assert!(
        matches!(busy, Err(Refused::Busy(_))),
        "a stale guard's drop released the new holder"
    );
    drop(fresh);
    assert_eq!(fx.leftovers(&key).await, 0);
}

/// `try_extend` renews a live lease (a waiter then waits for the new deadline) and fails on
/// an expired one.
pub async fn extend<F: Fixture>(fx: &F) {
    let key = fx.key("extend");
    let ttl = fx.ttl();
    let mut guard = lock(fx, &key).await;
    let old_deadline = guard.deadline();
    fx.pass(ttl / 2).await;
    let before = Instant::now();
    let deadline = guard.try_extend(ttl).await.unwrap();
    let after = Instant::now();
    let lease = ttl - fx.drift(ttl);
    assert!(deadline >= before + lease && deadline <= after + lease);
    assert_eq!(guard.deadline(), deadline);

    // Past the old deadline, before the new one: still held.
    fx.pass(old_deadline.saturating_duration_since(Instant::now()) + ttl / 10)
        .await;
    assert!(!guard.is_expired());
    assert!(matches!(
        fx.other().acquire(&key, ttl, Wait::No).await,
        Err(Refused::Busy(_))
    ));

    // Past the new deadline: extend fails, whether or not someone took the key over.
    fx.pass(deadline.saturating_duration_since(Instant::now()) + ttl / 10)
        .await;
    assert!(guard.is_expired());
    match guard.try_extend(ttl).await {
        Err(ExtendError::Expired(e)) => {
            assert_eq!(e.token, guard.token());
            assert_eq!(e.expired_at, deadline);
        }
        other => panic!("extend of an expired lease: {other:?}"),
    }
    let next = take_soon(fx, fx.other(), &key).await;
    assert!(next.token() > guard.token());
    match guard.try_extend(ttl).await {
        Err(ExtendError::Expired(e)) => assert_eq!(e.token, guard.token()),
        other => panic!("extend of a replaced lease: {other:?}"),
    }
    drop((guard, next));
    assert_eq!(fx.leftovers(&key).await, 0);
}

/// `lost()` resolves at the deadline, following extensions.
pub async fn lost<F: Fixture>(fx: &F) {
    let key = fx.key("lost");
    let ttl = fx.ttl();
    let guard = lock(fx, &key).await;
    guard.lost().await;
    assert_between("lost", Instant::now(), guard.deadline(), fx.slack());
    drop(guard);

    let mut guard = lock(fx, &key).await;
    fx.pass(ttl / 2).await;
    let deadline = guard.try_extend(ttl).await.unwrap();
    guard.lost().await;
    assert_between("lost after extend", Instant::now(), deadline, fx.slack());
    assert!(guard.is_expired());
    drop(guard);
    assert_eq!(fx.leftovers(&key).await, 0);
}

/// `Guard::run` (under `with_lock`) returns the work's output, cancels work that outlives the
/// lease, and dropping it (cancelling the caller) releases the key.
pub async fn run_and_cancel<F: Fixture>(fx: &F) {
    let key = fx.key("run");
    let ttl = fx.ttl();
    let mut guard = lock(fx, &key).await;
    let token = guard.token();
    assert_eq!(guard.run(async |g| g.token()).await.unwrap(), token);

    let reached_end = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&reached_end);
    let lost = guard
        .run(async move |_g| {
            tokio::time::sleep(ttl * 3).await;
            *flag.lock().unwrap() = true;
        })
        .await
        .unwrap_err();
    assert_eq!(lost.token, token);
    assert_eq!(lost.deadline, guard.deadline());
    assert_between("cancelled", Instant::now(), guard.deadline(), fx.slack());
    assert!(!*reached_end.lock().unwrap());
    drop(guard);
    fx.settle().await;

    // A task cancelled while it holds the key (inside run) releases it.
    let locks = fx.locks().clone();
    let k2 = key.clone();
    let task = tokio::spawn(async move {
        let mut g = locks.acquire(&k2, ttl, Wait::Forever).await.unwrap();
        g.run(async |_g| std::future::pending::<()>().await).await
    });
    fx.settle().await;
    wait_busy(fx, fx.locks(), &key).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let start = Instant::now();
    let next = fx
        .locks()
        .acquire(&key, ttl, Wait::For(ttl / 2))
        .await
        .expect("released by the cancelled task");
    assert!(next.acquired_at() <= start + fx.slack());
    drop(next);
    assert_eq!(fx.leftovers(&key).await, 0);
}

/// Cancelled waiters leave nothing behind and lose no wake-up, including a waiter dropped
/// after the key was handed to it.
pub async fn cancelled_waiters<F: Fixture>(fx: &F) {
    let key = fx.key("cancelled");
    let ttl = fx.ttl();
    let held = lock(fx, &key).await;
    let spawn_waiter = || {
        let locks = fx.locks().clone();
        let key = key.clone();
        tokio::spawn(async move { locks.acquire(&key, ttl, Wait::Forever).await.unwrap() })
    };
    let cancelled = spawn_waiter();
    fx.settle().await;
    let served = spawn_waiter();
    fx.settle().await;
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());
    let released_at = Instant::now();
    let held_token = held.token();
    drop(held);
    let got = served.await.unwrap();
    assert!(got.token() > held_token);
    assert_between("served", got.acquired_at(), released_at, fx.slack());

    // A waiter that was handed the key but never looked passes it on when dropped.
    let mut first = Box::pin(fx.locks().acquire(&key, ttl, Wait::Forever));
    assert!(matches!(futures::poll!(first.as_mut()), Poll::Pending));
    let second = spawn_waiter();
    fx.settle().await;
    let got_token = got.token();
    drop(got);
    fx.settle().await;
    drop(first);
    let second = second.await.unwrap();
    assert!(second.token() > got_token);
    drop(second);
    assert_eq!(fx.leftovers(&key).await, 0);

    // Many waiters cancelled at once leave nothing either.
    let held = lock(fx, &key).await;
    let waiters: Vec<_> = (0..50).map(|_| spawn_waiter()).collect();
    fx.settle().await;
    for w in &waiters {
        w.abort();
    }
    for w in waiters {
        assert!(w.await.unwrap_err().is_cancelled());
    }
    drop(held);
    assert_eq!(fx.leftovers(&key).await, 0);
}
