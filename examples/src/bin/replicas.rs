//! Two bot replicas that share nothing but Redis: per-user locks and alert cooldowns that hold
//! across processes, with the Redis backends of `seawall-keyed-lock` and `seawall-cooldown`.
//!
//! Each replica has its own connection, its own `KeyedLock<_, RedisBackend>` and its own
//! `RedisCooldown`, exactly as two processes would.
//!
//! 1. Both replicas receive messages for the same users at the same time. Every handler
//!    counts itself in and out of a per-user "in flight" counter kept in Redis: with the lock,
//!    no two handlers of one user ever overlap, across replicas.
//! 2. Both replicas raise the same alert 10 times each: one alert reaches a person, the other
//!    19 are counted; when the window ends, a replica drains the digest "19 more like this".
//! 3. Replica A takes a user's lock and dies without releasing it (the guard is leaked):
//!    replica B gets the key when the lease ends, with a larger fencing token.
//! 4. A replica pointed at a Redis that is down gets a clear error for the lock, and the
//!    cooldown fires (marked degraded) rather than lose the alert.
//!
//! Needs a Redis server, found through `SEAWALL_REDIS_URL`. One command starts a throwaway
//! server, runs the demo and stops the server:
//! `bash .ci/redis-tests cargo run -p seawall-examples --bin replicas`.
//! It finishes in about two seconds.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use seawall_cooldown::{Decision, RedisCooldown};
use seawall_keyed_lock::{KeyedLock, RedisBackend};
use tokio::task::JoinSet;

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const MESSAGES_PER_REPLICA: u32 = 6;
const WINDOW: Duration = Duration::from_millis(400);
const TTL: Duration = Duration::from_millis(500);

struct Replica {
    name: &'static str,
    locks: KeyedLock<String, RedisBackend>,
    alerts: RedisCooldown<String>,
}

fn replica(name: &'static str, url: &str, run: &str) -> anyhow::Result<Replica> {
    let backend = RedisBackend::builder(url)
        .prefix(format!("seawall:demo:{run}:lock:"))
        .command_timeout(Duration::from_millis(500))
        .build()?;
    let locks = KeyedLock::builder()
        .name("users")
        .ttl(Duration::from_secs(10))
        .build_with_backend(backend)?;
    let alerts = RedisCooldown::builder(url)
        .name(format!("demo-{run}"))
        .window(WINDOW)
        .build()?;
    Ok(Replica {
        name,
        locks,
        alerts,
    })
}

/// One message for `user`, handled under the user's lock: in flight +1, a little work, -1.
/// Returns the highest in-flight count it saw (1 when nothing overlapped).
async fn handle(
    r: &Replica,
    redis: &mut redis::aio::ConnectionManager,
    run: &str,
    user: &str,
) -> anyhow::Result<i64> {
    let guard = r.locks.lock(&user.to_owned()).await?;
    let counter = format!("seawall:demo:{run}:inflight:{user}");
    let inflight: i64 = redis.incr(&counter, 1).await?;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let _: i64 = redis.decr(&counter, 1).await?;
    let _: () = redis
        .rpush(
            format!("seawall:demo:{run}:log:{user}"),
            format!("{}#{}", r.name, guard.token()),
        )
        .await?;
    let _: bool = redis.expire(&counter, 60).await?;
    Ok(inflight)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Ok(url) = std::env::var("SEAWALL_REDIS_URL") else {
        anyhow::bail!(
            "SEAWALL_REDIS_URL is not set; run `bash .ci/redis-tests cargo run -p seawall-examples --bin replicas`"
        );
    };
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)?
        .as_millis()
        .to_string();
    let a = Arc::new(replica("A", &url, &run)?);
    let b = Arc::new(replica("B", &url, &run)?);
    let client = redis::Client::open(url.as_str())?;
    let redis = redis::aio::ConnectionManager::new(client).await?;

    println!("1. {MESSAGES_PER_REPLICA} messages per user on each of two replicas, at once");
    let mut handlers = JoinSet::new();
    for r in [&a, &b] {
        for user in USERS {
            for _ in 0..MESSAGES_PER_REPLICA {
                let (r, mut redis, run) = (Arc::clone(r), redis.clone(), run.clone());
                handlers.spawn(async move { handle(&r, &mut redis, &run, user).await });
            }
        }
    }
    let mut most_in_flight = 0;
    let mut handled = 0;
    while let Some(done) = handlers.join_next().await {
        most_in_flight = most_in_flight.max(done??);
        handled += 1;
    }
    for user in USERS {
        let log: Vec<String> = redis
            .clone()
            .lrange(format!("seawall:demo:{run}:log:{user}"), 0, -1)
            .await?;
        let tokens: Vec<&str> = log.iter().filter_map(|e| e.split('#').nth(1)).collect();
        let by_a = log.iter().filter(|e| e.starts_with("A#")).count();
        println!(
            "   {user:<6} {} messages ({by_a} on A, {} on B), fencing tokens increasing: {}",
            log.len(),
            log.len() - by_a,
            tokens
                .windows(2)
                .all(|w| w[0].parse::<u64>().ok() < w[1].parse::<u64>().ok())
        );
    }
    println!(
        "   {handled} handled; most handlers of one user in flight at once: {most_in_flight} (1 = never overlapped)"
    );
    anyhow::ensure!(most_in_flight == 1, "two handlers of one user overlapped");

    println!("\n2. the same alert raised 10 times on each replica");
    let key = "audit-db-down".to_owned();
    let (mut fired, mut suppressed) = (0, 0);
    for _ in 0..10 {
        for r in [&a, &b] {
            match r.alerts.check(&key).await {
                Decision::Fire(f) => {
                    fired += 1;
                    println!(
                        "   replica {} sends \"{key}\" (degraded: {})",
                        r.name, f.degraded
                    );
                }
                Decision::Suppressed(_) => suppressed += 1,
            }
        }
    }
    println!("   {fired} sent, {suppressed} suppressed across both replicas");
    tokio::time::sleep(WINDOW + Duration::from_millis(50)).await;
    for (key, digest) in b.alerts.drain_digests().await {
        println!(
            "   window over; replica B reports: \"{key}\": {} more like this",
            digest.count
        );
    }

    println!("\n3. replica A dies holding dave's lock");
    let dave = "dave".to_owned();
    let held = a.locks.lock_with_ttl(&dave, TTL).await?;
    let dead_token = held.token();
    std::mem::forget(held); // no release ever reaches Redis: the lease must end by itself
    let started = tokio::time::Instant::now();
    let next = b.locks.lock(&dave).await?;
    println!(
        "   replica B got dave after {} ms (lease {} ms), token {} > {}: {}",
        started.elapsed().as_millis(),
        TTL.as_millis(),
        next.token(),
        dead_token,
        next.token() > dead_token
    );
    drop(next);

    println!("\n4. a replica whose Redis is down");
    let down = replica("C", "redis://127.0.0.1:1/", &run)?;
    match down.locks.lock(&dave).await {
        Ok(_) => anyhow::bail!("locked on a server that is not there"),
        Err(e) => println!("   lock: error: {e}"),
    }
    if let Decision::Fire(f) = down.alerts.check(&key).await {
        println!("   alert: fires anyway, degraded: {}", f.degraded);
    }
    Ok(())
}
