//! The reference bot: every Seawall crate composed in one service.
//!
//! - [`components`](self) (`components.rs`): how the five crates are wired; the file to copy.
//! - `scenario.rs`: the bot at work, message by message, through the scripted outage.
//! - `report.rs` and `counters.rs`: the report, whose counters come from the metrics registry
//!   `/metrics` serves, and the end-to-end checks.

mod alerts;
mod audit;
mod cli;
pub(crate) mod components;
pub(crate) mod counters;
pub(crate) mod http;
mod report;
mod scenario;
mod schedule;
pub(crate) mod upstream;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::time::Instant;

pub use cli::Args;
pub use report::{
    AlertReport, BreakerReport, Check, LockReport, MessageReport, Report, SinkReport,
    TransitionLine, UpstreamReport,
};

use alerts::Alerter;
use audit::AuditStore;
use counters::BotMetrics;
use http::Health;
use scenario::Bot;
use schedule::scaled;
use upstream::{Mode, Upstream};

/// Creates the data directory, or says in one line why it cannot be used.
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    let fail = |e: std::io::Error| {
        anyhow::anyhow!(
            "data directory {} is not usable ({e}): pass --data-dir with a writable directory",
            dir.display()
        )
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;
    Ok(())
}

/// Runs the bot: the scenario, the report, and with `--serve` the endpoints until Ctrl-C.
///
/// Returns the report; `Err` is for the run that could not start (bad data directory, port in
/// use), with a one-line message saying what to do.
pub async fn run(args: Args) -> anyhow::Result<Report> {
    prepare_data_dir(&args.data_dir)?;
    let listener = http::bind(args.port).await?;
    let port = listener.local_addr()?.port();

    let mut registry = Registry::default();
    let metrics = BotMetrics::register(&mut registry);
    let scale = args.time_scale;
    let s = |ms: u64| scaled(Duration::from_millis(ms), scale);

    let store = AuditStore::open(&args.data_dir.join("audit.sqlite3")).with_context(|| {
        format!(
            "cannot open the audit database in {}: remove the file if it is corrupt",
            args.data_dir.display()
        )
    })?;
    let spool_dir = args.data_dir.join("spool");
    let parts = components::build(&mut registry, &s, args.seed, &spool_dir, store).await?;
    let opened = parts.sink.stats();
    let inherited = opened.records;
    let quarantined = opened.quarantined;
    if quarantined > 0 {
        println!(
            "spool: {quarantined} corrupt line(s) from an earlier run moved to {}",
            parts.sink.spool().quarantine_path().display()
        );
    }
    if inherited > 0 {
        println!("spool: {inherited} record(s) left by an earlier run will be replayed");
    }
    let alerter = Alerter::new(&args.data_dir.join("alerts.log"), parts.alerts)
        .context("cannot open the alerts file")?;

    let acks = if args.ack_log {
        Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(args.data_dir.join("acks.log"))?,
        ))
    } else {
        None
    };

    let arrivals = schedule::arrivals(args.users, args.messages, args.seed);
    let run_id = format!(
        "{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
        std::process::id()
    );
    let bot = Arc::new(Bot {
        run: run_id,
        scale,
        start: Instant::now(),
        upstream: Upstream::new(args.seed, scale),
        upstream_breaker: parts.upstream_breaker,
        audit_breaker: parts.audit_breaker,
        retry: parts.retry,
        locks: parts.locks,
        sink: parts.sink,
        alerter,
        registry: Arc::new(registry),
        metrics,
        outcomes: Mutex::new(vec![None; arrivals.len()]),
        order: Mutex::new(HashMap::new()),
        events: Mutex::new(Vec::with_capacity(arrivals.len() * 2)),
        acks,
        peak_backlog: AtomicU64::new(0),
    });

    // Ctrl-C: stop taking messages, let in-flight ones finish, flush the spool.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                println!("\nCtrl-C: finishing in-flight messages, then flushing the spool");
                let _ = stop_tx.send(true);
            }
        }
    });

    let ready = Arc::new(AtomicBool::new(true));
    let health: Arc<dyn Fn() -> Health + Send + Sync> = {
        let bot = Arc::clone(&bot);
        Arc::new(move || bot.health())
    };
    let server = tokio::spawn(http::serve(
        listener,
        Arc::clone(&bot.registry),
        health,
        Arc::clone(&ready),
        {
            let mut stop = stop_rx.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        },
    ));
    println!("listening on http://127.0.0.1:{port}");
    println!(
        "run {}: {} users x {} messages, time scale {scale}, data in {}",
        bot.run,
        args.users,
        args.messages,
        args.data_dir.display()
    );

    let monitors = bot.spawn_monitors();
    bot.scenario(&arrivals, stop_rx.clone()).await;

    // Drain: the stores are back; wait for the spool to empty.
    bot.upstream.set_mode(Mode::Healthy);
    bot.sink.primary().set_down(false);
    bot.progress("drain");
    let drain_deadline = Instant::now() + Duration::from_secs(30).max(s(30_000));
    while bot.sink.stats().records > 0 && Instant::now() < drain_deadline && !*stop_rx.borrow() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bot.sink.shutdown().await.context("closing the spool")?;
    monitors.abort();
    bot.alerter.flush_digests();

    let report = bot.report(inherited, quarantined);
    let text = report.render();
    println!("{text}");
    println!(
        "scenario finished: {}",
        if report.passed() {
            "all checks passed"
        } else {
            "SOME CHECKS FAILED"
        }
    );
    std::fs::write(
        args.data_dir.join("report.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;

    if args.serve && !*stop_rx.borrow() {
        println!("serving on http://127.0.0.1:{port} until Ctrl-C");
        let mut stop = stop_rx.clone();
        let _ = stop.wait_for(|s| *s).await;
    }
    ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let _ = server.await;
    Ok(report)
}
