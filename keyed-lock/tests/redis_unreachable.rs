//! Redis unreachable at acquire: a clear error, never a hang. Runs without a server (not
//! ignored): a closed port (connection refused) and a black hole (a listener that accepts and
//! never answers).
//!
//! The same for a cluster built with `RedisBackend::cluster`: closed ports and a black hole.
//!
//! These use real time, since they do real network I/O; the command timeout is 200 ms and
//! every call is bounded by a `tokio::time::timeout` in the test.

#![cfg(feature = "redis")]

use std::net::TcpListener;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use std::error::Error as _;

use seawall_keyed_lock::{
    KeyedLock, LockTimeoutError, Metrics, RedisBackend, RedisBackendBuilder, RedisBackendError,
    TryLockError, WithLockError,
};

const COMMAND_TIMEOUT: Duration = Duration::from_millis(200);
/// The test's own bound: a call that has not returned by then hangs.
const NO_HANG: Duration = Duration::from_secs(2);

fn locks(port: u16, metrics: Metrics) -> KeyedLock<String, RedisBackend> {
    on(
        RedisBackend::builder(format!("redis://127.0.0.1:{port}/")),
        metrics,
    )
}

/// A lock named `unreachable` on the backend `builder` makes, with the test's command timeout.
fn on(builder: RedisBackendBuilder, metrics: Metrics) -> KeyedLock<String, RedisBackend> {
    let backend = builder.command_timeout(COMMAND_TIMEOUT).build().unwrap();
    KeyedLock::builder()
        .name("unreachable")
        .metrics(metrics)
        .build_with_backend(backend)
        .unwrap()
}

fn backend_errors(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text.lines()
        .find(|l| l.starts_with("seawall_keyed_lock_backend_errors_total{lock=\"unreachable\"}"))
        .unwrap_or_else(|| panic!("no backend_errors line in\n{text}"))
        .to_owned()
}

/// A port that accepts connections and never answers.
fn black_hole() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream); // keep it open, say nothing
        }
    });
    port
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Every call on `builder`'s backend (closed ports) fails `Unreachable` at once, twice in a
/// row (a failed connect is retried by the next call), naming the server as `addr` and
/// displaying `<at> unreachable: ...`; nothing is left queued and every failure is counted.
async fn unreachable_at_once(builder: RedisBackendBuilder, addr: &str, at: &str) {
    let mut registry = Registry::default();
    let locks = on(builder, Metrics::register(&mut registry));
    assert_eq!(locks.backend().addr(), addr);
    let key = "k".to_owned();
    for attempt in 0..2 {
        let start = Instant::now();
        let err = tokio::time::timeout(NO_HANG, locks.lock(&key))
            .await
            .expect("lock() hung")
            .unwrap_err();
        assert!(
            start.elapsed() <= COMMAND_TIMEOUT + Duration::from_millis(100),
            "attempt {attempt} took {:?}",
            start.elapsed()
        );
        assert!(
            matches!(err, RedisBackendError::Unreachable { .. }),
            "attempt {attempt}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.starts_with(&format!("{at} unreachable: ")), "{text}");
        assert!(err.source().is_some(), "the redis error is the source");
        assert_eq!(err.addr(), addr);
    }
    let err = tokio::time::timeout(NO_HANG, locks.try_lock(&key))
        .await
        .expect("try_lock() hung")
        .unwrap_err();
    assert!(
        matches!(
            err,
            TryLockError::Backend(RedisBackendError::Unreachable { .. })
        ),
        "{err:?}"
    );
    let err = tokio::time::timeout(NO_HANG, locks.lock_timeout(&key, Duration::from_secs(5)))
        .await
        .expect("lock_timeout() hung")
        .unwrap_err();
    assert!(
        matches!(
            err,
            LockTimeoutError::Backend(RedisBackendError::Unreachable { .. })
        ),
        "{err:?}"
    );
    let err = tokio::time::timeout(NO_HANG, locks.with_lock(&key, async |_g| unreachable!()))
        .await
        .expect("with_lock() hung")
        .unwrap_err();
    assert!(matches!(err, WithLockError::Backend(_)), "{err:?}");
    assert_eq!(locks.backend().local_len(), 0);
    assert_eq!(
        backend_errors(&registry),
        "seawall_keyed_lock_backend_errors_total{lock=\"unreachable\"} 5"
    );
}

/// Every call on `builder`'s backend (a black hole) fails `Timeout` after the command timeout,
/// not before, displaying `<at> did not answer within 200ms`.
async fn timeout_after_the_command_timeout(builder: RedisBackendBuilder, at: &str) {
    let mut registry = Registry::default();
    let locks = on(builder, Metrics::register(&mut registry));
    let key = "k".to_owned();
    for attempt in 0..2 {
        let start = Instant::now();
        let err = tokio::time::timeout(NO_HANG, locks.lock(&key))
            .await
            .expect("lock() hung on a black hole")
            .unwrap_err();
        let took = start.elapsed();
        assert!(
            took >= COMMAND_TIMEOUT - Duration::from_millis(5)
                && took <= COMMAND_TIMEOUT + Duration::from_millis(400),
            "attempt {attempt} took {took:?}: {err:?}"
        );
        match &err {
            RedisBackendError::Timeout { after, .. } => assert_eq!(*after, COMMAND_TIMEOUT),
            other => panic!("attempt {attempt}: {other:?}"),
        }
        assert_eq!(err.to_string(), format!("{at} did not answer within 200ms"));
    }
    let err = tokio::time::timeout(NO_HANG, locks.try_lock(&key))
        .await
        .expect("try_lock() hung on a black hole")
        .unwrap_err();
    assert!(
        matches!(
            err,
            TryLockError::Backend(RedisBackendError::Timeout { .. })
        ),
        "{err:?}"
    );
    assert_eq!(locks.backend().local_len(), 0);
    assert_eq!(
        backend_errors(&registry),
        "seawall_keyed_lock_backend_errors_total{lock=\"unreachable\"} 3"
    );
}

#[tokio::test]
async fn closed_port_is_a_clear_unreachable_error_at_once() {
    let port = closed_port();
    let addr = format!("127.0.0.1:{port}");
    let builder = RedisBackend::builder(format!("redis://{addr}/"));
    unreachable_at_once(builder, &addr, &format!("redis at {addr}")).await;
}

#[tokio::test]
async fn closed_cluster_ports_are_a_clear_unreachable_error_at_once() {
    let ports = [closed_port(), closed_port()];
    let nodes = format!("127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1]);
    let builder = RedisBackend::cluster(ports.map(|p| format!("redis://127.0.0.1:{p}/")));
    let at = format!("redis cluster at {nodes}");
    unreachable_at_once(builder, &format!("cluster {nodes}"), &at).await;
}

#[tokio::test]
async fn black_hole_gives_no_answer_within_the_command_timeout() {
    let port = black_hole();
    let builder = RedisBackend::builder(format!("redis://127.0.0.1:{port}/"));
    timeout_after_the_command_timeout(builder, &format!("redis at 127.0.0.1:{port}")).await;
}

#[tokio::test]
async fn cluster_black_hole_gives_no_answer_within_the_command_timeout() {
    let port = black_hole();
    let builder = RedisBackend::cluster([format!("redis://127.0.0.1:{port}/")]);
    let at = format!("redis cluster at 127.0.0.1:{port}");
    timeout_after_the_command_timeout(builder, &at).await;
}

#[tokio::test]
async fn builder_rejects_invalid_settings() {
    let err = RedisBackend::builder("http://nope").build().unwrap_err();
    assert_eq!(err.field(), "url");
    assert_eq!(
        err.reason(),
        "must be a valid redis:// or redis+unix:// URL"
    );
    // TLS is not built in.
    let err = RedisBackend::builder("rediss://127.0.0.1:6380/")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "url");
    assert!(err.reason().contains("TLS"), "{err}");
    let err = RedisBackend::builder("redis://127.0.0.1/")
        .prefix("")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "prefix");
    let err = RedisBackend::builder("redis://127.0.0.1/")
        .prefix("a{b")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "prefix");
    let err = RedisBackend::builder("redis://127.0.0.1/")
        .command_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "command_timeout");
    let err = RedisBackend::builder("redis://127.0.0.1/")
        .backoff(Duration::from_millis(10), Duration::from_millis(5))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "backoff");
    let err = RedisBackend::cluster(["redis://127.0.0.1:7001/", "http://nope"])
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "nodes");
    let err = RedisBackend::cluster(Vec::<String>::new())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "nodes");
    let err = RedisBackend::cluster(["redis://127.0.0.1:7001/"])
        .prefix("a}")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "prefix");
    let ok = RedisBackend::builder("redis://127.0.0.1:6999/")
        .build()
        .unwrap();
    assert_eq!(ok.addr(), "127.0.0.1:6999");
    assert_eq!(ok.prefix(), "seawall:lock:");
    assert_eq!(ok.command_timeout(), Duration::from_secs(1));
    assert!(!ok.auto_renew());
    assert_eq!(ok.lease_key(&"user:1"), "seawall:lock:{user:1}");
}

/// The connection manager's stale timeouts (see `src/redis/client.rs`): `lock_timeout` gives
/// up on a connection attempt to a hung server after 50 ms and leaves it unpolled, its
/// connect timeout (the command timeout) running. Once that has run out, the next call polls
/// the attempt and gets its timeout at once, without anything sent: the transport asks again
/// on a fresh connection, so the call reports `Timeout` only after its own command timeout.
/// (Without the retry the second call fails within a millisecond; doubling the client's own
/// timeouts, the cooldown's former workaround, only moves that stale outcome later.)
#[tokio::test]
async fn a_stale_timeout_left_by_an_abandoned_connect_is_asked_again() {
    let port = black_hole();
    let locks = locks(port, Metrics::register(&mut Registry::default()));
    let key = "stale".to_owned();
    let err = tokio::time::timeout(NO_HANG, locks.lock_timeout(&key, Duration::from_millis(50)))
        .await
        .expect("lock_timeout() hung")
        .unwrap_err();
    assert!(matches!(err, LockTimeoutError::Timeout(_)), "{err:?}");
    // Past every connect timeout started so far (the abandoned attempt's cleanup too).
    tokio::time::sleep(COMMAND_TIMEOUT * 3).await;
    let start = Instant::now();
    let err = tokio::time::timeout(NO_HANG, locks.try_lock(&key))
        .await
        .expect("try_lock() hung")
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, TryLockError::Backend(RedisBackendError::Timeout { after, .. }) if after == COMMAND_TIMEOUT),
        "{err:?}"
    );
    assert!(
        took >= COMMAND_TIMEOUT - Duration::from_millis(5),
        "a stale timeout was reported after {took:?}"
    );
}

#[test]
fn build_outside_a_runtime_is_a_config_error() {
    let err = RedisBackend::builder("redis://127.0.0.1/")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "runtime");
}

/// Waiters queued in this process on one key while Redis hangs all fail within about one
/// command timeout of their own start: when the head's call fails, the waiters queued behind
/// it fail with the same error instead of each starting its own full timeout in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_waiters_on_a_black_hole_fail_together() {
    let port = black_hole();
    let mut registry = Registry::default();
    let locks = locks(port, Metrics::register(&mut registry));
    let waiters: Vec<_> = (0..5)
        .map(|i| {
            let locks = locks.clone();
            tokio::spawn(async move {
                // Staggered a little, so each queues behind the previous one.
                tokio::time::sleep(Duration::from_millis(10 * i)).await;
                let start = Instant::now();
                let result = tokio::time::timeout(NO_HANG, locks.lock(&"queued".to_owned())).await;
                (start.elapsed(), result)
            })
        })
        .collect();
    let mut took = Vec::new();
    for w in waiters {
        let (elapsed, result) = w.await.unwrap();
        let err = result.expect("lock() hung").unwrap_err();
        assert!(
            matches!(err, RedisBackendError::Timeout { after, .. } if after == COMMAND_TIMEOUT),
            "{err:?}"
        );
        took.push(elapsed);
    }
    assert!(
        took.iter()
            .all(|t| *t <= COMMAND_TIMEOUT + Duration::from_millis(150)),
        "{took:?}"
    );
    assert_eq!(locks.backend().local_len(), 0);
    assert_eq!(
        backend_errors(&registry),
        "seawall_keyed_lock_backend_errors_total{lock=\"unreachable\"} 5"
    );
}

/// `lock_timeout(d)` returns after `d` even when Redis does not answer: an acquire in flight
/// at the give-up time is abandoned (not waited for up to the command timeout).
#[tokio::test]
async fn lock_timeout_is_bounded_by_its_timeout_when_redis_hangs() {
    let port = black_hole();
    let mut registry = Registry::default();
    let locks = locks(port, Metrics::register(&mut registry));
    let wait = Duration::from_millis(50);
    for attempt in 0..2 {
        let start = Instant::now();
        let err = tokio::time::timeout(NO_HANG, locks.lock_timeout(&"k".to_owned(), wait))
            .await
            .expect("lock_timeout() hung")
            .unwrap_err();
        let took = start.elapsed();
        assert!(
            matches!(err, LockTimeoutError::Timeout(t) if t.after == wait),
            "attempt {attempt}: {err:?}"
        );
        assert!(
            took >= wait && took <= wait + Duration::from_millis(100),
            "attempt {attempt} took {took:?}"
        );
    }
    assert_eq!(locks.backend().local_len(), 0);
}

/// A TTL that leaves no validity once the drift margin (1 % + 2 ms) is taken off is refused:
/// as a default TTL by `build_with_backend` (field `ttl`), per call with a clear error before
/// anything is sent (the port is closed: a call that reached the network would be
/// `Unreachable`). 3 ms is the shortest TTL accepted.
#[tokio::test]
async fn ttls_too_short_for_the_drift_margin_are_refused() {
    let backend = || {
        RedisBackend::builder(format!("redis://127.0.0.1:{}/", closed_port()))
            .command_timeout(COMMAND_TIMEOUT)
            .build()
            .unwrap()
    };
    assert_eq!(RedisBackend::MIN_TTL, Duration::from_millis(3));
    for ttl in [
        Duration::from_micros(500),
        Duration::from_millis(2),
        Duration::from_micros(2999),
    ] {
        let err = KeyedLock::<String>::builder()
            .ttl(ttl)
            .build_with_backend(backend())
            .unwrap_err();
        assert_eq!(err.field(), "ttl", "{ttl:?}");
        assert!(err.to_string().contains("3ms"), "{err}");
    }
    let locks = KeyedLock::<String>::builder()
        .ttl(Duration::from_millis(3))
        .build_with_backend(backend())
        .unwrap();
    let key = "short".to_owned();
    let short = Duration::from_millis(2);
    let check = |err: &RedisBackendError| {
        assert!(
            matches!(err, RedisBackendError::InvalidTtl { ttl, .. } if *ttl == short),
            "{err:?}"
        );
        assert!(err.to_string().contains("ttl 2ms"), "{err}");
    };
    check(&locks.lock_with_ttl(&key, short).await.unwrap_err());
    match locks.try_lock_with_ttl(&key, short).await.unwrap_err() {
        TryLockError::Backend(e) => check(&e),
        other => panic!("{other:?}"),
    }
    match locks
        .lock_timeout_with_ttl(&key, Duration::from_secs(1), short)
        .await
        .unwrap_err()
    {
        LockTimeoutError::Backend(e) => check(&e),
        other => panic!("{other:?}"),
    }
    // The default TTL (3 ms) is accepted: that call reaches the (closed) port.
    assert!(matches!(
        locks.lock(&key).await.unwrap_err(),
        RedisBackendError::Unreachable { .. }
    ));
    assert_eq!(locks.backend().local_len(), 0);
}
