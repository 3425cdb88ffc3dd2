//! End-to-end tests of the reference bot, run as the real binary in a child process.
//!
//! These are the one place in the workspace where tests run on the wall clock: the bot is a
//! separate process doing real SQLite and file I/O, so paused tokio time cannot drive it. They
//! assert states and counts, never durations, and run the scenario at a small time scale.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BOT: &str = env!("CARGO_BIN_EXE_bot");

/// Starts the bot with `args` and returns it with a channel of its stdout lines.
fn spawn_bot(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(BOT)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the bot");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("bot> {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a stdout line containing `needle`, failing the test after `limit`.
fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line containing {needle:?} ({e})"),
        }
    }
}

/// A minimal HTTP/1.1 GET, so the test needs no HTTP client crate.
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn port_of(line: &str) -> u16 {
    line.rsplit(':')
        .next()
        .and_then(|p| p.trim().trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

fn report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    serde_json::from_str(&text).expect("report.json is JSON")
}

fn assert_all_checks_pass(report: &serde_json::Value) {
    let checks = report["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 4, "{checks:?}");
    for c in checks {
        assert_eq!(c["passed"], true, "check failed: {c}");
    }
}

#[test]
fn scenario_passes_every_check_and_health_follows_the_outage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (mut child, rx) = spawn_bot(&[
        "--users",
        "8",
        "--messages",
        "6",
        "--time-scale",
        "0.2",
        "--port",
        "0",
        "--data-dir",
        data,
        "--serve",
    ]);
    let port = port_of(&wait_for_line(&rx, "listening on", Duration::from_secs(60)));
    assert_eq!(http_get(port, "/readyz").0, 200);

    // Poll /healthz until the scenario is over, remembering every status seen.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (code, body) = http_get(port, "/healthz");
        let health: serde_json::Value = serde_json::from_str(&body).expect("healthz is JSON");
        let status = health["status"].as_str().unwrap().to_string();
        assert_eq!(code == 503, status == "unhealthy", "{code} {body}");
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) if line.contains("scenario finished") => break,
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("bot stopped early: {e}"),
        }
        assert!(Instant::now() < deadline, "scenario did not finish");
    }
    assert!(
        seen.iter().any(|s| s == "degraded"),
        "never degraded: {seen:?}"
    );

    let (code, body) = http_get(port, "/healthz");
    assert_eq!(code, 200);
    assert!(
        body.contains("\"healthy\""),
        "not healthy after the scenario: {body}"
    );

    let (code, metrics) = http_get(port, "/metrics");
    assert_eq!(code, 200);
    for family in [
        "seawall_circuit_breaker_calls_total",
        "seawall_circuit_breaker_transitions_total",
        "seawall_retry_attempts_total",
        "seawall_cooldown_decisions_total",
        "seawall_keyed_lock_acquired_total",
        "seawall_fallback_sink_writes_total",
        "seawall_fallback_sink_replayed_total",
    ] {
        assert!(metrics.contains(family), "/metrics lacks {family}");
    }

    // Ctrl-C ends a serving bot gracefully, with the scenario's verdict as its exit code.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "bot exited with {exit}");

    let report = report(dir.path());
    assert_all_checks_pass(&report);
    assert_eq!(report["messages"]["total"], 48);
    assert!(
        report["sink"]["spooled"].as_u64().unwrap() > 0,
        "nothing spooled: {report}"
    );
    assert_eq!(report["sink"]["spooled"], report["sink"]["replayed"]);
    assert!(
        report["breakers"]["upstream"]["transitions"]
            .as_array()
            .unwrap()
            .len()
            >= 2
    );
}

#[test]
fn killed_during_the_audit_outage_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let args = [
        "--users",
        "10",
        "--messages",
        "8",
        "--time-scale",
        "0.25",
        "--data-dir",
        data,
        "--ack-log",
    ];
    let (mut child, rx) = spawn_bot(&args);
    wait_for_line(&rx, "audit store outage", Duration::from_secs(120));
    // Let some events be acknowledged from the spool during the outage, then kill.
    let acks = dir.path().join("acks.log");
    let before = std::fs::read_to_string(&acks)
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&acks)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < before + 5
    {
        assert!(
            Instant::now() < deadline,
            "no event acknowledged during the outage"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acked: Vec<(String, String)> = std::fs::read_to_string(&acks)
        .unwrap()
        .lines()
        .map(|l| {
            let (run, key) = l.split_once(' ').expect("run key");
            (run.to_string(), key.to_string())
        })
        .collect();
    assert!(
        acked.len() > before,
        "no event acknowledged before the kill"
    );

    // Leave a corrupt line behind as well: the restart must quarantine it and carry on.
    let segment = std::fs::read_dir(dir.path().join("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("quarantine")
        })
        .max()
        .expect("a spool segment");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(b"{\"this is\": not a spooled record}\n")
        .unwrap();

    // The restarted bot replays the spool of the killed one, then runs its own scenario.
    let (mut child, rx) = spawn_bot(&args);
    wait_for_line(
        &rx,
        "corrupt line(s) from an earlier run",
        Duration::from_secs(60),
    );
    wait_for_line(&rx, "scenario finished", Duration::from_secs(120));
    let exit = child.wait().unwrap();
    assert!(exit.success(), "restarted bot exited with {exit}");
    drop(rx);

    let db = rusqlite::Connection::open(dir.path().join("audit.sqlite3")).unwrap();
    let mut stmt = db
        .prepare("SELECT COUNT(*) FROM audit WHERE run = ?1 AND key = ?2")
        .unwrap();
    let mut missing = Vec::new();
    for (run, key) in &acked {
        let n: i64 = stmt.query_row([run, key], |r| r.get(0)).unwrap();
        if n != 1 {
            missing.push(format!("{run} {key}: {n}"));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events not stored once: {missing:?}",
        missing.len(),
        acked.len()
    );
}

#[test]
fn bad_input_gets_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = Command::new(BOT)
        .args(["--data-dir", file.join("sub").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("data directory"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(BOT)
        .args([
            "--port",
            &port,
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("already in use"), "{err}");
}
