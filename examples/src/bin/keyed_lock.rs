//! `seawall-keyed-lock` demo: bursts of chat messages for a few users, handled concurrently
//! across users and strictly in order per user, while one handler crashes without releasing
//! its lock and another hangs past its lease.
//!
//! - `carol`'s first handler "crashes": it leaks its guard (`std::mem::forget`), so the key is
//!   never released. Her next message waits only until the lease TTL, then takes over.
//! - `dave`'s first handler hangs past the TTL. The next handler takes over; when the hung one
//!   wakes up and tries to write, the store rejects it by its stale fencing token.
//!
//! Run with `cargo run -p seawall-examples --bin keyed_lock`; it finishes in about two seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use seawall_keyed_lock::{FencingToken, KeyedLock, Metrics};
use tokio::time::{Instant, sleep};

const TTL: Duration = Duration::from_millis(700);
const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const BURST: u32 = 4;

/// A store that remembers the highest fencing token per user and rejects lower ones.
#[derive(Default)]
struct Store {
    inner: Mutex<HashMap<String, (u64, Vec<u32>)>>,
}

impl Store {
    fn write(&self, user: &str, token: FencingToken, msg: u32) -> Result<(), String> {
        let mut inner = self.inner.lock().unwrap();
        let (last, log) = inner.entry(user.to_owned()).or_default();
        if token.get() < *last {
            return Err(format!(
                "stale token {} < {} for {user}, write of #{msg} rejected",
                token, last
            ));
        }
        *last = token.get();
        log.push(msg);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The lock reports lease take-overs as `tracing` warnings.
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_target(false)
        .without_time()
        .init();
    let mut registry = Registry::default();
    let locks = KeyedLock::<String>::builder()
        .name("users")
        .ttl(TTL)
        .metrics(Metrics::register(&mut registry))
        .build()?;
    let store = Arc::new(Store::default());
    let start = Instant::now();
    let ms = move || start.elapsed().as_millis();

    println!(
        "lease TTL {TTL:?}; {} users, bursts of {BURST} messages each\n",
        USERS.len()
    );
    let mut tasks = Vec::new();
    for msg in 1..=BURST {
        for user in USERS {
            let locks = locks.clone();
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let arrived = ms();
                let guard = locks.lock(user).await; // a `&str` key: no `String` built
                let waited = ms() - arrived;
                let token = guard.token();
                println!(
                    "{:>5} ms  {user:<5} #{msg} locked   token {token:>2}  (waited {waited} ms)",
                    ms()
                );
                match (user, msg) {
                    ("carol", 1) => {
                        println!("{:>5} ms  carol #1 handler crashes, never releases", ms());
                        std::mem::forget(guard);
                        return;
                    }
                    ("dave", 1) => {
                        sleep(TTL + Duration::from_millis(300)).await; // hangs past its lease
                        println!(
                            "{:>5} ms  dave  #1 wakes up, lease expired: {}",
                            ms(),
                            guard.is_expired()
                        );
                    }
                    _ => sleep(Duration::from_millis(40)).await,
                }
                match store.write(user, token, msg) {
                    Ok(()) => {
                        println!("{:>5} ms  {user:<5} #{msg} written  token {token:>2}", ms())
                    }
                    Err(e) => println!("{:>5} ms  {user:<5} #{msg} REJECTED: {e}", ms()),
                }
                drop(guard);
            }));
            // Messages of a burst arrive a few milliseconds apart.
            sleep(Duration::from_millis(2)).await;
        }
    }
    for t in tasks {
        t.await?;
    }

    println!("\nper-user order in the store (carol #1 crashed, dave #1 was fenced off):");
    let inner = store.inner.lock().unwrap();
    let mut ok = true;
    for user in USERS {
        let log = &inner[user].1;
        let in_order = log.windows(2).all(|w| w[0] < w[1]);
        ok &= in_order;
        println!(
            "  {user:<5} {log:?}  {}",
            if in_order { "in order" } else { "OUT OF ORDER" }
        );
    }
    drop(inner);
    // The crashed holder's expired entry was taken over; everything else was released.
    println!("entries left in the lock map: {}", locks.len());

    let mut text = String::new();
    encode(&mut text, &registry)?;
    println!("\nmetrics:");
    for line in text.lines().filter(|l| {
        !l.starts_with('#') && !l.contains("_bucket") && l.contains("seawall_keyed_lock")
    }) {
        println!("  {line}");
    }
    println!("\nfinished in {} ms; order kept: {ok}", ms());
    Ok(())
}
