//! `seawall-cooldown` demo: an alert storm for a few keys goes through a cooldown.
//!
//! A scripted burst of alerts (a database down, a disk filling up, an upstream answering 5xx,
//! a critical payments outage) is replayed in real time. Each alert reserves its key, is
//! "sent" by a fake sender that fails once, and is committed after a successful send; the
//! failed send rolls back so the key is not silenced. The output shows what fires, what is
//! suppressed, what a fire reports about the events suppressed before it, and, at the end, the
//! digests of keys that went quiet, then the metrics.
//!
//! The window is 1 s instead of the production 1800 s so the demo finishes in about 2.5 s of
//! wall time. A window starts when a send is committed, i.e. a few milliseconds after the
//! alert that opened it.
//!
//! Run with `cargo run -p seawall-examples --bin cooldown`.

use std::time::Duration;

use prometheus_client::registry::Registry;
use seawall_cooldown::{Cooldown, Fire, Metrics};
use tokio::time::{Instant, sleep_until};

const WINDOW: Duration = Duration::from_secs(1);

/// One scripted alert: when (ms after start), key, message, critical, does the send fail.
struct Alert {
    at_ms: u64,
    key: &'static str,
    message: &'static str,
    critical: bool,
    send_fails: bool,
}

const fn alert(at_ms: u64, key: &'static str, message: &'static str) -> Alert {
    Alert {
        at_ms,
        key,
        message,
        critical: false,
        send_fails: false,
    }
}

const SCRIPT: &[Alert] = &[
    alert(0, "db-down", "primary unreachable"),
    alert(50, "db-down", "primary unreachable"),
    alert(100, "disk-full", "/var 91% full"),
    alert(150, "db-down", "primary unreachable"),
    alert(200, "disk-full", "/var 93% full"),
    Alert {
        send_fails: true,
        ..alert(250, "upstream-5xx", "LLM API 502")
    },
    alert(300, "upstream-5xx", "LLM API 503"),
    alert(350, "db-down", "replica lagging"),
    alert(400, "disk-full", "/var 95% full"),
    alert(450, "upstream-5xx", "LLM API 502"),
    Alert {
        critical: true,
        ..alert(500, "payments-down", "card processor unreachable")
    },
    Alert {
        critical: true,
        ..alert(550, "payments-down", "card processor unreachable")
    },
    alert(600, "db-down", "primary unreachable"),
    alert(700, "disk-full", "/var 97% full"),
    alert(800, "upstream-5xx", "LLM API 504"),
    alert(1050, "db-down", "primary unreachable"),
    alert(1150, "disk-full", "/var 98% full"),
    alert(1200, "db-down", "primary unreachable"),
];

/// When the demo stops feeding alerts and drains the digests of quiet keys.
const DRAIN_AT_MS: u64 = 2400;

fn secs(start: Instant, at: Instant) -> String {
    format!("{:.2}s", at.saturating_duration_since(start).as_secs_f64())
}

/// What a fire says about the events suppressed before it.
fn report(start: Instant, fire: &Fire<String>) -> String {
    match &fire.digest {
        None => "nothing suppressed before it".to_owned(),
        Some(d) => format!(
            "+{} suppressed between {} and {} (last: {:?})",
            d.count,
            secs(start, d.first_suppressed),
            secs(start, d.last_suppressed),
            d.last_payload.as_deref().unwrap_or("-"),
        ),
    }
}

/// A fake alert channel that fails when told to.
async fn send(fails: bool) -> Result<(), &'static str> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    if fails {
        Err("chat API timeout")
    } else {
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let alerts: Cooldown<&'static str, String> = Cooldown::builder()
        .name("alerts")
        .window(WINDOW)
        .max_keys(1_000)
        .metrics(Metrics::register(&mut registry))
        .payload::<String>()
        .build()?;

    println!("seawall-cooldown demo: one alert per key per window, the rest counted and reported.");
    println!(
        "window = {:?} (stands in for the production 1800 s); {} alerts replayed in real time.\n",
        WINDOW,
        SCRIPT.len()
    );
    println!("{:>6}  {:<14} {:<28} decision", "t", "key", "message");

    let start = Instant::now();
    for a in SCRIPT {
        sleep_until(start + Duration::from_millis(a.at_ms)).await;
        let t = secs(start, Instant::now());
        let head = format!("{t:>6}  {:<14} {:<28}", a.key, a.message);
        if a.critical {
            let fire = alerts.check_critical(&a.key);
            let how = if fire.bypassed {
                "FIRE (critical, bypassed the window)"
            } else {
                "FIRE (critical)"
            };
            println!("{head} {how}, {}", report(start, &fire));
            continue;
        }
        match alerts.reserve_with(&a.key, &a.message.to_owned()) {
            Ok(reservation) => {
                let what = report(start, reservation.fire());
                match send(a.send_fails).await {
                    Ok(()) => {
                        reservation.commit();
                        println!("{head} FIRE, sent, {what}");
                    }
                    Err(e) => {
                        // Dropping the reservation rolls back: the key may fire again at once.
                        drop(reservation);
                        println!("{head} FIRE, send failed ({e}): rolled back");
                    }
                }
            }
            Err(s) => println!(
                "{head} suppressed #{} ({:.2}s left)",
                s.suppressed,
                s.remaining.as_secs_f64()
            ),
        }
    }

    sleep_until(start + Duration::from_millis(DRAIN_AT_MS)).await;
    println!(
        "\n{}: no new alerts; digests of keys that went quiet with suppressed events:",
        secs(start, Instant::now())
    );
    let mut digests = alerts.drain_digests();
    digests.sort_by_key(|(key, _)| *key);
    if digests.is_empty() {
        println!("  (none)");
    }
    for (key, d) in &digests {
        let when = if d.count == 1 {
            format!("at {}", secs(start, d.last_suppressed))
        } else {
            format!(
                "between {} and {}",
                secs(start, d.first_suppressed),
                secs(start, d.last_suppressed)
            )
        };
        println!(
            "  {key}: {} more like this {when} (last: {:?})",
            d.count,
            d.last_payload.as_deref().unwrap_or("-"),
        );
    }
    println!(
        "keys still tracked: {} (bounded: max_keys = {})",
        alerts.len(),
        alerts.max_keys()
    );

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    println!("\nmetrics:");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        println!("  {line}");
    }
    Ok(())
}
