//! Redis-only fault tests (ignored by default: run with `-- --ignored`).
//!
//! - Redis restarted (without persistence) while a lock is held: the test runs its own
//!   `redis-server` on a free port, kills it and starts it again on the same port.
//! - Two processes contending for the same keys keep mutual exclusion, counted with a shared
//!   in-flight counter in Redis itself (server from `SEAWALL_REDIS_URL`).
//! - The script cache flushed (`SCRIPT FLUSH`, on the test's own server): `NOSCRIPT` is handled.
//!
//! Real time, as in `conformance_redis.rs`: Redis expires keys on its own clock.

#![cfg(feature = "redis")]

use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands as _;
use seawall_keyed_lock::{ExtendError, KeyedLock, RedisBackend};
use tokio::time::{Instant, sleep, timeout};

/// A throwaway `redis-server` without persistence; killed on drop.
struct Server {
    port: u16,
    child: Option<Child>,
}

impl Server {
    async fn start() -> Self {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut server = Self { port, child: None };
        server.spawn().await;
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH for these tests");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        let start = Instant::now();
        loop {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "redis-server did not start"
            );
            sleep(Duration::from_millis(10)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn locks(url: &str, ttl: Duration, auto_renew: bool) -> KeyedLock<String, RedisBackend> {
    locks_with(url, ttl, Duration::from_secs(1), auto_renew)
}

fn locks_with(
    url: &str,
    ttl: Duration,
    command_timeout: Duration,
    auto_renew: bool,
) -> KeyedLock<String, RedisBackend> {
    let backend = RedisBackend::builder(url)
        .command_timeout(command_timeout)
        .auto_renew(auto_renew)
        .build()
        .unwrap();
    KeyedLock::builder()
        .name("faults")
        .ttl(ttl)
        .build_with_backend(backend)
        .unwrap()
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn redis_restart_while_held_reports_lost_and_the_next_token_is_higher() {
    let mut server = Server::start().await;
    // A TTL of 3 s renewed every second: the local deadline stays at least 2 s away, so a
    // `lost()` within 1.5 s of the restart can only come from the watchdog finding the lease
    // gone, not from the deadline passing.
    let ttl = Duration::from_secs(3);
    let holder = locks(&server.url(), ttl, true);
    let key = "order:1".to_owned();
    let mut guard = holder.lock(&key).await.unwrap();
    let first_token = guard.token();
    sleep(Duration::from_millis(1200)).await; // one renewal went through
    assert!(guard.deadline() > guard.acquired_at() + ttl, "not renewed");

    server.kill();
    server.spawn().await; // empty: no persistence
    let restarted = Instant::now();

    timeout(Duration::from_millis(1500), guard.lost())
        .await
        .expect("lost() must resolve once the watchdog finds the lease gone");
    assert!(guard.is_expired());
    assert!(restarted.elapsed() < Duration::from_millis(1500));
    match guard.extend(ttl).await {
        Err(ExtendError::Expired(e)) => assert_eq!(e.token, first_token),
        other => panic!("extend after the restart: {other:?}"),
    }

    // Another process takes the key at once, with a higher token although the fence counter
    // was lost with the data: tokens follow the server's clock.
    let other = locks(&server.url(), ttl, false);
    let next = timeout(Duration::from_secs(1), other.try_lock(&key))
        .await
        .unwrap()
        .unwrap();
    assert!(
        next.token() > first_token,
        "{} <= {}",
        next.token(),
        first_token
    );

    // The stale guard's drop does not release the new holder.
    drop(guard);
    sleep(Duration::from_millis(100)).await;
    let mut conn = server.conn().await;
    let value: Option<String> = conn.get(other.backend().lease_key(&key)).await.unwrap();
    assert_eq!(value.as_deref(), Some(next.lease().value()));
    drop(next);
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn script_flush_is_handled_by_reloading() {
    let server = Server::start().await;
    let locks = locks(&server.url(), Duration::from_secs(5), false);
    let key = "k".to_owned();
    let first = locks.lock(&key).await.unwrap();
    let t1 = first.token();
    drop(first);
    let mut conn = server.conn().await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let exists: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(redis::Script::new("return 1").get_hash())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, vec![false]);
    // Acquire (after the background release), extend and release all run after the flush.
    // (The lease TTL is 5 s: a release that failed would make this time out.)
    let mut second = locks
        .lock_timeout(&key, Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("lock after SCRIPT FLUSH: {e:?}"));
    assert!(second.token() > t1);
    second.extend(Duration::from_secs(5)).await.unwrap();
    let lease_key = locks.backend().lease_key(&key);
    drop(second);
    let start = Instant::now();
    loop {
        let n: usize = conn.exists(&lease_key).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "release did not run"
        );
        sleep(Duration::from_millis(10)).await;
    }
}

const CHILD_ENV: &str = "SEAWALL_CONTENDER_PREFIX";
const KEYS: usize = 3;
const TASKS: usize = 4;
const ROUNDS: usize = 25;

/// The child: `TASKS` tasks each run `ROUNDS` critical sections over `KEYS` keys, counting
/// overlaps in Redis.
#[test]
#[ignore = "helper run by `two_processes_keep_mutual_exclusion` in a child process"]
fn contender_child() {
    let Ok(prefix) = std::env::var(CHILD_ENV) else {
        return;
    };
    let url = std::env::var("SEAWALL_REDIS_URL").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let backend = RedisBackend::builder(&url)
            .prefix(prefix.clone())
            .build()
            .unwrap();
        // Leases far longer than a critical section: an expiry would be a legitimate overlap
        // (a lease is not a mutex), not what this test looks for.
        let locks = KeyedLock::<String, _>::builder()
            .ttl(Duration::from_secs(10))
            .build_with_backend(backend)
            .unwrap();
        let conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let prefix = Arc::new(prefix);
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let (locks, mut conn, prefix) = (locks.clone(), conn.clone(), Arc::clone(&prefix));
            tasks.push(tokio::spawn(async move {
                for round in 0..ROUNDS {
                    let key = format!("k{}", (t + round) % KEYS);
                    let guard = locks.lock(&key).await.unwrap();
                    let inflight = format!("{prefix}inflight:{key}");
                    let n: i64 = conn.incr(&inflight, 1).await.unwrap();
                    if n > 1 {
                        let _: i64 = conn.incr(format!("{prefix}violations"), 1).await.unwrap();
                    }
                    sleep(Duration::from_millis(1)).await;
                    let _: i64 = conn.decr(&inflight, 1).await.unwrap();
                    let _: i64 = conn.incr(format!("{prefix}total"), 1).await.unwrap();
                    drop(guard);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        // Let the background releases of the last guards finish before the runtime stops.
        sleep(Duration::from_millis(50)).await;
    });
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn two_processes_keep_mutual_exclusion() {
    let url = std::env::var("SEAWALL_REDIS_URL")
        .expect("SEAWALL_REDIS_URL is not set: this test needs a Redis server");
    let r = RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()));
    let prefix = format!("seawall:test:{r:016x}:");
    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "contender_child",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &prefix)
            .env("SEAWALL_REDIS_URL", &url)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let children = [spawn(), spawn()];
    let statuses = tokio::task::spawn_blocking(move || children.map(|mut c| c.wait().unwrap()))
        .await
        .unwrap();
    for status in statuses {
        assert!(status.success(), "child failed: {status}");
    }
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let total: Option<i64> = conn.get(format!("{prefix}total")).await.unwrap();
    let violations: Option<i64> = conn.get(format!("{prefix}violations")).await.unwrap();
    let mut keys: Vec<String> = vec![format!("{prefix}total")];
    for k in 0..KEYS {
        let inflight: i64 = conn.get(format!("{prefix}inflight:k{k}")).await.unwrap();
        assert_eq!(inflight, 0);
        keys.push(format!("{prefix}inflight:k{k}"));
    }
    let _: usize = conn.del(keys).await.unwrap();
    assert_eq!(violations, None, "critical sections overlapped");
    assert_eq!(total, Some((2 * TASKS * ROUNDS) as i64));
}

/// Pauses the server's writes (`CLIENT PAUSE <ms> WRITE`: scripts wait, keys do not expire)
/// from another connection; `CLIENT UNPAUSE` on drop, so a failing test never leaves the
/// server paused.
struct Paused {
    conn: redis::aio::MultiplexedConnection,
}

impl Paused {
    async fn start(conn: &mut redis::aio::MultiplexedConnection, ms: u64) -> Self {
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("WRITE")
            .query_async(conn)
            .await
            .unwrap();
        Self { conn: conn.clone() }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let mut conn = self.conn.clone();
        // Best effort; the server is the test's own and dies with it anyway.
        drop(tokio::spawn(async move {
            let _: redis::RedisResult<()> = redis::cmd("CLIENT")
                .arg("UNPAUSE")
                .query_async(&mut conn)
                .await;
        }));
    }
}

/// Once `lost()` resolved, the auto-renew watchdog never revives the lease: a renewal due
/// right at the deadline (after failed ones) is not sent.
///
/// TTL 2 s: the watchdog renews at +666 ms (period TTL/3) into paused writes, so that renewal
/// times out at +1866 ms (command timeout 1200 ms), shortly before the local deadline
/// (+1978 ms); the retry is then scheduled at the deadline. The pause ends at about +1935 ms,
/// before Redis expires the key (+2000 ms), and the timed-out renewal still queued in the
/// server runs then, extending the key there. A retry sent at the deadline would succeed and
/// push the local deadline to about +3950 ms, after `lost()` had resolved.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn auto_renew_never_revives_a_lost_lease() {
    let server = Server::start().await;
    let ttl = Duration::from_secs(2);
    let locks = locks_with(&server.url(), ttl, Duration::from_millis(1200), true);
    let key = "revive".to_owned();
    let mut pauser = server.conn().await;
    let guard = locks.lock(&key).await.unwrap();
    let granted = guard.acquired_at();
    let first_deadline = guard.deadline();
    let pause_ms = 1935 - u64::try_from(granted.elapsed().as_millis()).unwrap();
    let pause = Paused::start(&mut pauser, pause_ms).await;
    timeout(Duration::from_secs(3), guard.lost())
        .await
        .expect("lost() resolves at the deadline");
    let lost_at = Instant::now();
    assert!(lost_at >= first_deadline);
    // Past the end of the pause and past when a renewal sent at the deadline answers.
    sleep_until_after(granted, Duration::from_millis(2300)).await;
    drop(pause);
    assert!(
        guard.is_expired(),
        "revived: deadline {:?} after the grant (lost at {:?})",
        guard.deadline() - granted,
        lost_at - granted
    );
    assert_eq!(guard.deadline(), first_deadline);
    timeout(Duration::from_millis(1), guard.lost())
        .await
        .expect("lost() stays resolved");
}

/// An `extend` whose reply arrives after the local deadline passed does not revive the
/// lease: it fails with `Expired` and the deadline stays where it was.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn a_late_extend_reply_does_not_revive_an_expired_lease() {
    let server = Server::start().await;
    let ttl = Duration::from_millis(600);
    let locks = locks_with(&server.url(), ttl, Duration::from_secs(2), false);
    let key = "late-extend".to_owned();
    let mut conn = server.conn().await;
    let mut guard = locks.lock(&key).await.unwrap();
    let granted = guard.acquired_at();
    let deadline = guard.deadline();
    // The key outlives the local deadline in Redis (as after an extension whose reply was
    // lost), so the extend below finds it and succeeds there.
    let _: bool = conn
        .pexpire(locks.backend().lease_key(&key), 5000)
        .await
        .unwrap();
    sleep_until_after(granted, Duration::from_millis(300)).await;
    // Paused until about +1000 ms: the extend sent at +300 ms answers after the deadline
    // (+592 ms), well within its 2 s command timeout.
    let pause = Paused::start(&mut conn, 700).await;
    let result = guard.extend(ttl).await;
    let answered = Instant::now();
    drop(pause);
    assert!(answered > deadline, "the pause did not hold the extend");
    match result {
        Err(ExtendError::Expired(e)) => assert_eq!(e.expired_at, deadline),
        other => panic!("a late extend revived the lease: {other:?}"),
    }
    assert!(guard.is_expired());
    assert_eq!(guard.deadline(), deadline);
}

async fn sleep_until_after(start: Instant, d: Duration) {
    tokio::time::sleep_until(start + d).await;
}
