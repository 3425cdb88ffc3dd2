//! A Redis cooldown whose server is down or hung applies its unreachable
//! policy within the configured timeout, reports it, and never hangs or
//! panics. No server needed: a closed port and a black hole (a listener that
//! accepts and never answers), for one server and for a cluster. These run on real time because they do real
//! network I/O; every call is bounded by a short timeout and every test by an
//! outer `tokio::time::timeout`.

#![cfg(feature = "redis")]

use std::error::Error as _;
use std::net::TcpListener;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use seawall_cooldown::{
    Decision, Metrics, RedisCooldown, RedisCooldownBuilder, RedisCooldownError, UnreachablePolicy,
};
use tokio::time::{Instant, timeout};

const TIMEOUT: Duration = Duration::from_millis(200);
/// The outer bound: a call may take the timeout plus scheduling noise.
const BOUND: Duration = Duration::from_secs(2);

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
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

fn cooldown(port: u16, policy: UnreachablePolicy, metrics: Metrics) -> RedisCooldown<String> {
    on(
        RedisCooldown::builder(format!("redis://127.0.0.1:{port}/")),
        policy,
        metrics,
    )
}

/// A cooldown named `alerts` on `builder`'s target, with the test's timeout.
fn on(
    builder: RedisCooldownBuilder<String>,
    policy: UnreachablePolicy,
    metrics: Metrics,
) -> RedisCooldown<String> {
    builder
        .name("alerts")
        .command_timeout(TIMEOUT)
        .unreachable(policy)
        .metrics(metrics)
        .build()
        .unwrap()
}

fn series(registry: &Registry) -> Vec<String> {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("decision") || l.contains("degraded_total"))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// What `series` reads when the `alerts` cooldown counted `fire` fires,
/// `suppressed` suppressions and `degraded` degraded calls (no bypass, no
/// rollback).
fn counted(fire: u64, suppressed: u64, degraded: u64) -> Vec<String> {
    let decision = |d: &str, n: u64| {
        format!(r#"seawall_cooldown_decisions_total{{cooldown="alerts",decision="{d}"}} {n}"#)
    };
    vec![
        decision("bypass", 0),
        decision("fire", fire),
        decision("rolled_back", 0),
        decision("suppressed", suppressed),
        format!(r#"seawall_cooldown_degraded_total{{cooldown="alerts"}} {degraded}"#),
    ]
}

/// On `builder`'s target (which does not serve), twice (a failed connect is
/// retried by the next call): `check` fires degraded within the timeout and
/// counts it, `try_check` returns the error naming `addr` instead and counts
/// nothing. Returns the last error.
async fn default_policy_fires_degraded(
    builder: RedisCooldownBuilder<String>,
    addr: &str,
) -> RedisCooldownError {
    let mut registry = Registry::default();
    let c = on(
        builder,
        UnreachablePolicy::default(),
        Metrics::register(&mut registry),
    );
    assert_eq!(c.unreachable_policy(), UnreachablePolicy::Fire);
    assert_eq!(c.addr(), addr);
    let key = "db-down".to_owned();
    let mut last = None;
    for attempt in 0..2 {
        let start = Instant::now();
        let d = timeout(BOUND, c.check(&key)).await.expect("bounded");
        let took = start.elapsed();
        let Decision::Fire(fire) = d else {
            panic!("the default policy fires, got {d:?}")
        };
        assert!(fire.degraded, "attempt {attempt}");
        assert_eq!(
            (
                fire.suppressed_since_last,
                fire.last_fired,
                fire.digest,
                fire.bypassed
            ),
            (0, None, None, false)
        );
        assert!(took < TIMEOUT + Duration::from_millis(500), "took {took:?}");
        let err = timeout(BOUND, c.try_check(&key))
            .await
            .expect("bounded")
            .unwrap_err();
        assert_eq!(err.addr(), addr);
        last = Some(err);
    }
    // try_check reports instead of degrading: only the checks counted.
    assert_eq!(series(&registry), counted(2, 0, 2));
    last.expect("two attempts")
}

/// `call` fails with `Timeout` after the timeout (not before: a stale
/// timeout reported early fails here), and not much later.
async fn times_out<T: std::fmt::Debug>(
    call: impl Future<Output = Result<T, RedisCooldownError>>,
) -> RedisCooldownError {
    let start = Instant::now();
    let err = timeout(BOUND, call).await.expect("bounded").unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, RedisCooldownError::Timeout { after, .. } if after == TIMEOUT),
        "{err:?}"
    );
    assert!(
        took >= TIMEOUT - Duration::from_millis(5) && took < TIMEOUT + Duration::from_millis(500),
        "timed out after {took:?}"
    );
    err
}

/// A `try_check` on `builder`'s target (a black hole) times out after the
/// timeout, not before, displaying `<at> did not answer within 200ms`.
async fn times_out_after_the_timeout(builder: RedisCooldownBuilder<String>, at: &str) {
    let c = on(
        builder,
        UnreachablePolicy::Fire,
        Metrics::register(&mut Registry::default()),
    );
    let err = times_out(c.try_check("k")).await;
    assert_eq!(err.to_string(), format!("{at} did not answer within 200ms"));
}

#[tokio::test]
async fn closed_port_fires_degraded_and_try_check_says_unreachable() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let builder = RedisCooldown::builder(format!("redis://{addr}/"));
    let err = default_policy_fires_degraded(builder, &addr).await;
    assert!(
        matches!(err, RedisCooldownError::Unreachable { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("redis at {addr} unreachable: ")),
        "{err}"
    );
    assert!(err.source().is_some(), "the redis error is the source");
}

/// A cluster whose seed nodes are all closed: the same policy, the same
/// bound, an error naming the seed nodes.
#[tokio::test]
async fn closed_cluster_ports_fire_degraded_and_try_check_says_unreachable() {
    let ports = [closed_port(), closed_port()];
    let nodes = format!("127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1]);
    let builder = RedisCooldown::cluster(ports.map(|p| format!("redis://127.0.0.1:{p}/")));
    let err = default_policy_fires_degraded(builder, &format!("cluster {nodes}")).await;
    assert!(
        matches!(err, RedisCooldownError::Unreachable { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("redis cluster at {nodes} unreachable: ")),
        "{err}"
    );
}

#[tokio::test]
async fn black_hole_fires_degraded_within_the_timeout_and_try_check_times_out() {
    let addr = format!("127.0.0.1:{}", black_hole());
    let builder = RedisCooldown::builder(format!("redis://{addr}/"));
    let err = default_policy_fires_degraded(builder, &addr).await;
    assert!(
        matches!(&err, RedisCooldownError::Timeout { after, .. } if *after == TIMEOUT),
        "{err:?}"
    );
    times_out_after_the_timeout(
        RedisCooldown::builder(format!("redis://{addr}/")),
        &format!("redis at {addr}"),
    )
    .await;
}

/// A cluster seed node that accepts and never answers: the timeout bounds
/// the first connect too.
#[tokio::test]
async fn cluster_black_hole_times_out_within_the_timeout() {
    let port = black_hole();
    let builder = RedisCooldown::cluster([format!("redis://127.0.0.1:{port}/")]);
    times_out_after_the_timeout(builder, &format!("redis cluster at 127.0.0.1:{port}")).await;
}

#[tokio::test]
async fn suppress_policy_suppresses_but_critical_still_fires() {
    let mut registry = Registry::default();
    let c = cooldown(
        closed_port(),
        UnreachablePolicy::Suppress,
        Metrics::register(&mut registry),
    );
    let key = "db-down".to_owned();
    let s = timeout(BOUND, c.check(&key))
        .await
        .unwrap()
        .suppressed()
        .expect("the suppress policy suppresses");
    assert_eq!(
        (s.degraded, s.suppressed, s.remaining),
        (true, 0, Duration::ZERO)
    );
    assert_eq!(
        s.to_string(),
        "suppressed by the cooldown's unreachable policy (its store did not answer)"
    );
    let r = timeout(BOUND, c.reserve(&key)).await.unwrap();
    let s = r.expect_err("the suppress policy refuses reservations");
    assert!(s.degraded);
    let f = timeout(BOUND, c.check_critical(&key)).await.unwrap();
    assert!(f.degraded && !f.bypassed);
    assert_eq!(series(&registry), counted(1, 2, 3));
}

#[tokio::test]
async fn reservations_commits_rollbacks_and_drains_fail_cleanly() {
    let mut registry = Registry::default();
    let port = closed_port();
    let c = cooldown(
        port,
        UnreachablePolicy::Fire,
        Metrics::register(&mut registry),
    );
    let key = "db-down".to_owned();

    let r = timeout(BOUND, c.reserve(&key))
        .await
        .unwrap()
        .expect("policy fires");
    assert!(r.fire().degraded);
    assert_eq!(r.key(), &key);
    let err = timeout(BOUND, r.commit()).await.unwrap().unwrap_err();
    assert!(
        matches!(err, RedisCooldownError::Unreachable { .. }),
        "{err:?}"
    );

    let r = timeout(BOUND, c.reserve(&key)).await.unwrap().unwrap();
    let err = timeout(BOUND, r.rollback()).await.unwrap().unwrap_err();
    assert_eq!(err.addr(), format!("127.0.0.1:{port}"));

    // A dropped reservation rolls back on a spawned task: no hang, no panic.
    drop(timeout(BOUND, c.reserve(&key)).await.unwrap().unwrap());
    assert!(timeout(BOUND, c.drain_digests()).await.unwrap().is_empty());
    // Let the dropped reservation's rollback fail and count.
    tokio::time::sleep(TIMEOUT).await;
    // 3 reserves, 1 commit, 2 rollbacks (one awaited, one on drop), 1 drain.
    assert_eq!(series(&registry), counted(0, 0, 7));
}

#[tokio::test]
async fn invalid_config_names_the_field() {
    let err = |b: seawall_cooldown::RedisCooldownBuilder<String>| b.build().unwrap_err();
    let e = err(RedisCooldown::builder("not a url"));
    assert_eq!(e.field(), "url");
    assert_eq!(
        e.to_string(),
        "invalid `url`: must be a valid redis:// or redis+unix:// URL"
    );
    let e = err(RedisCooldown::builder("rediss://127.0.0.1:6380/"));
    assert_eq!(e.field(), "url");
    assert!(e.reason().contains("TLS"), "{e}");
    let cluster = |urls: &[&str]| RedisCooldown::<String>::cluster(urls.to_vec());
    let e = err(cluster(&[]));
    assert_eq!(e.field(), "nodes");
    assert_eq!(
        e.to_string(),
        "invalid `nodes`: must list at least one node URL, got none"
    );
    assert_eq!(
        err(cluster(&["redis://127.0.0.1:7001/", "not a url"])).field(),
        "nodes"
    );
    let ok = || RedisCooldown::<String>::builder("redis://127.0.0.1:6379/");
    assert_eq!(err(ok().prefix("app{x}:")).field(), "prefix");
    assert_eq!(err(ok().prefix("app}:")).field(), "prefix");
    assert_eq!(
        err(ok().prefix("app")).to_string(),
        "invalid `prefix`: must end with `:` and contain no `{` or `}`, got \"app\""
    );
    assert_eq!(err(ok().prefix("")).field(), "prefix");
    assert_eq!(err(ok().name("a{b}")).field(), "name");
    assert_eq!(err(ok().name("")).field(), "name");
    assert_eq!(
        err(ok().window(Duration::from_nanos(999))).field(),
        "window"
    );
    assert_eq!(
        err(ok().command_timeout(Duration::ZERO)).field(),
        "command_timeout"
    );
    assert_eq!(
        err(ok().reservation_timeout(Duration::ZERO)).field(),
        "reservation_timeout"
    );
    let c = ok().build().unwrap();
    assert_eq!(
        (c.name(), c.window(), c.addr(), c.prefix()),
        (
            seawall_cooldown::DEFAULT_NAME,
            Duration::from_secs(1800),
            "127.0.0.1:6379",
            "seawall:cooldown:"
        )
    );
    assert_eq!(c.command_timeout(), Duration::from_secs(1));
    let c = cluster(&["redis://10.0.0.1:6379/", "redis://10.0.0.2:6380/"])
        .build()
        .unwrap();
    assert_eq!(c.addr(), "cluster 10.0.0.1:6379,10.0.0.2:6380");
}

/// Every duration the scripts turn into a `PX`/`PEXPIRE` (and add up in a
/// Lua double) is bounded at build time: `Duration::MAX` used to be accepted
/// as a `reservation_timeout` and made every reserve fail in Redis (a degraded
/// fire), and a zero `retention` lost suppressed counts when the window ended.
#[tokio::test]
async fn durations_redis_cannot_hold_are_config_errors() {
    use seawall_cooldown::{MAX_REDIS_DURATION, MIN_RETENTION};
    let ok = || RedisCooldown::<String>::builder("redis://127.0.0.1:6379/");
    let err = |b: seawall_cooldown::RedisCooldownBuilder<String>| b.build().unwrap_err();
    let over = MAX_REDIS_DURATION + Duration::from_millis(1);
    for (field, e) in [
        (
            "reservation_timeout",
            err(ok().reservation_timeout(Duration::MAX)),
        ),
        ("reservation_timeout", err(ok().reservation_timeout(over))),
        ("window", err(ok().window(Duration::MAX))),
        ("window", err(ok().window(over))),
        ("retention", err(ok().retention(Duration::MAX))),
        ("retention", err(ok().retention(over))),
        ("retention", err(ok().retention(Duration::ZERO))),
        (
            "retention",
            err(ok().retention(MIN_RETENTION - Duration::from_nanos(1))),
        ),
    ] {
        assert_eq!(e.field(), field, "{e}");
        assert!(e.to_string().contains(&format!("`{field}`")), "{e}");
    }
    assert_eq!(
        err(ok().retention(Duration::ZERO)).to_string(),
        format!("invalid `retention`: must be in 1s..={MAX_REDIS_DURATION:?}, got 0ns")
    );
    // The bounds themselves are accepted.
    ok().window(MAX_REDIS_DURATION)
        .reservation_timeout(MAX_REDIS_DURATION)
        .retention(MAX_REDIS_DURATION)
        .build()
        .unwrap();
    ok().retention(MIN_RETENTION).build().unwrap();
}

/// A reserve whose task never finishes (its runtime shut down under it)
/// applies the unreachable policy like any other failed call: under the
/// default `Fire` it hands out a degraded reservation, it does not suppress.
#[test]
fn a_reserve_whose_task_is_cancelled_applies_the_policy() {
    for policy in [UnreachablePolicy::Fire, UnreachablePolicy::Suppress] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let port = black_hole();
        let c: RedisCooldown<String> = rt.block_on(async {
            RedisCooldown::builder(format!("redis://127.0.0.1:{port}/"))
                .command_timeout(Duration::from_secs(30))
                .unreachable(policy)
                .build()
                .unwrap()
        });
        // The caller is not on a runtime, so the reserve task runs on the
        // cooldown's runtime, which shuts down while the task waits on the
        // black hole (or before it starts): the task is cancelled.
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let caller = std::thread::spawn(move || {
            futures::executor::block_on(async {
                let key = "db-down".to_owned();
                let reserve = c.reserve(&key);
                started_tx.send(()).unwrap();
                match reserve.await {
                    Ok(r) => Ok(r.fire().degraded),
                    Err(s) => Err(s.degraded),
                }
            })
        });
        started_rx.recv().unwrap();
        rt.shutdown_timeout(Duration::from_secs(5));
        let got = caller.join().unwrap();
        match policy {
            UnreachablePolicy::Fire => assert_eq!(got, Ok(true), "{policy:?}"),
            _ => assert_eq!(got, Err(true), "{policy:?}"),
        }
    }
}

/// The connection manager's stale timeouts (see `src/redis/client.rs`): a
/// call that gives up on a connection attempt to a hung server leaves it
/// unpolled, its connect timeout (the command timeout) running. Once that has
/// run out, the next call polls the attempt and gets its timeout at once,
/// without anything sent: the transport asks again on a fresh connection, so
/// the commit reports `Timeout` only after its own command timeout. (Without
/// the retry it fails within a millisecond; the doubled client timeouts this
/// crate used before only moved that stale outcome later.) A commit, because
/// a decision is sent twice anyway when its first attempt gets no reply.
#[tokio::test]
async fn a_stale_timeout_left_by_an_abandoned_connect_is_asked_again() {
    let c = cooldown(
        black_hole(),
        UnreachablePolicy::default(),
        Metrics::register(&mut Registry::default()),
    );
    let reservation = timeout(BOUND, c.reserve("db-down"))
        .await
        .expect("bounded")
        .expect("the default policy hands out a reservation");
    assert!(reservation.fire().degraded);
    // Past the abandoned attempts' connect timeouts, even doubled ones.
    tokio::time::sleep(TIMEOUT * 3).await;
    times_out(reservation.commit()).await;
}

#[test]
fn build_outside_a_runtime_is_a_config_error() {
    let e = RedisCooldown::<String>::builder("redis://127.0.0.1:6379/")
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "runtime");
    let e = RedisCooldown::<String>::cluster(["redis://127.0.0.1:7001/"])
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "runtime");
}
