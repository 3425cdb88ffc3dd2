//! The fleet scenario: three bot replicas on Redis and PostgreSQL, through the failures that
//! hurt the services Seawall comes from, checked by SQL.
//!
//! Run it with `bash .ci/fleet`, which starts a throwaway PostgreSQL and Redis
//! (`.ci/services.sh`), builds the `bot` and this driver, and runs this with
//! `SEAWALL_POSTGRES_URL`, `SEAWALL_REDIS_URL` and `SEAWALL_SERVICES_CTL` set.
//!
//! 0. The fenced statement's semantics, on a scratch schema.
//! 1. Normal traffic: the driver writes the users' messages into the inbox in bursts.
//! 2. SIGKILL one replica while it handles messages; restart it later on the same data dir.
//! 3. SIGSTOP one replica past its lease TTL, then SIGCONT: its stale writes are fenced off.
//! 4. Restart Redis: every lease and cooldown is lost.
//! 5. Stop PostgreSQL for a stretch (and SIGKILL a replica with audit events in its spool),
//!    then start it again (and the replica, whose spool replays). Every replica writes a
//!    `db_down` audit event when it sees the outage; a check requires one stored from r1 and
//!    from r2 (alive throughout), which only a replay can have put there.
//! 6. Drain: SIGTERM every replica once the inbox is handled.
//!
//! Then the report: a table per replica, fleet totals, the checks (by SQL), and messages per
//! second with 1, 2 and 3 replicas. Exits 1 if a check fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Parser;
use deadpool_postgres::Pool;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use seawall_examples::fleet::pg;
use seawall_examples::fleet::replica::ALERT_WINDOW;
use seawall_examples::fleet::sql::Sql;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// The fleet scenario (run by `bash .ci/fleet`).
#[derive(Debug, Parser)]
struct Args {
    /// Synthetic users.
    #[arg(long, default_value_t = 30)]
    users: u32,
    /// Messages per user.
    #[arg(long, default_value_t = 30)]
    messages: u32,
    /// Seconds over which the messages arrive.
    #[arg(long, default_value_t = 28)]
    span: u64,
    /// Seed of the arrival schedule.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The replicas' lease on a user, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    lease_ms: u64,
    /// Skip the throughput runs.
    #[arg(long)]
    no_throughput: bool,
}

/// The end-of-run verdicts.
struct Check {
    name: &'static str,
    passed: bool,
    detail: String,
}

/// One replica process.
struct Replica {
    id: String,
    data_dir: PathBuf,
    child: Option<Child>,
    /// The HTTP port, once the replica said it is ready.
    ready: watch::Receiver<Option<u16>>,
}

struct Env {
    bot: PathBuf,
    redis: String,
    postgres: String,
    ctl: PathBuf,
    work: PathBuf,
    lease_ms: u64,
    start: Instant,
}

impl Env {
    fn at(&self) -> String {
        format!("[{:>6.2} s]", self.start.elapsed().as_secs_f64())
    }

    /// Starts replica `id` on `schema` with `data_dir`; its stdout lines that matter are echoed.
    fn spawn(
        &self,
        id: &str,
        schema: &str,
        data_dir: &Path,
        echo: bool,
    ) -> anyhow::Result<Replica> {
        let mut child = Command::new(&self.bot)
            .args([
                "--redis",
                &self.redis,
                "--postgres",
                &self.postgres,
                "--replica",
                id,
            ])
            .args(["--schema", schema, "--port", "0", "--workers", "6"])
            .arg("--lease-ms")
            .arg(self.lease_ms.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bot.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = watch::channel(None);
        let id_owned = id.to_string();
        let start = self.start;
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split(" ready on http://127.0.0.1:").nth(1) {
                    let _ = tx.send(rest.split(' ').next().and_then(|p| p.parse().ok()));
                }
                let interesting = ["ready on", "ALERT", "stopped", "SIGTERM", "spool", "error"]
                    .iter()
                    .any(|w| line.contains(w));
                if echo && interesting {
                    println!(
                        "[{:>6.2} s]   {id_owned}> {line}",
                        start.elapsed().as_secs_f64()
                    );
                }
            }
        });
        Ok(Replica {
            id: id.to_string(),
            data_dir: data_dir.to_path_buf(),
            child: Some(child),
            ready: rx,
        })
    }

    async fn ctl(&self, script: &str, arg: Option<&str>) -> anyhow::Result<()> {
        let mut cmd = Command::new("bash");
        cmd.arg(self.ctl.join(script));
        if let Some(a) = arg {
            cmd.arg(a);
        }
        let status = cmd.status().await?;
        anyhow::ensure!(status.success(), "{script} failed: {status}");
        Ok(())
    }
}

impl Replica {
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        tokio::time::timeout(
            Duration::from_secs(30),
            self.ready.wait_for(Option::is_some),
        )
        .await
        .with_context(|| format!("replica {} did not get ready in 30 s", self.id))?
        .map(drop)
        .with_context(|| format!("replica {} exited before it was ready", self.id))
    }

    /// `GET path` on the replica's HTTP port: the status code and the body.
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let port = (*self.ready.borrow())?;
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.ok()?;
        let status = raw.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, raw.split_once("\r\n\r\n")?.1.to_string()))
    }

    /// The first sample of `/metrics` whose line starts with `series` (a name, or a name and
    /// the opening of its labels).
    async fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await?;
        body.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.trim().parse().ok())
    }

    /// `/healthz`'s status and reasons, as one line.
    async fn health(&self) -> String {
        match self.get("/healthz").await {
            Some((code, body)) => {
                let h: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let reasons: Vec<&str> = h["reasons"]
                    .as_array()
                    .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                format!(
                    "{code} {} [{}]",
                    h["status"].as_str().unwrap_or("?"),
                    reasons.join("; ")
                )
            }
            None => "no answer".into(),
        }
    }

    /// Waits (at most `limit`) until `series` is above zero; returns its last value.
    async fn wait_metric(&self, series: &str, limit: Duration) -> f64 {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.metric(series).await.unwrap_or(0.0);
            if v > 0.0 || Instant::now() >= deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill")
                .args(["-s", sig, &pid.to_string()])
                .status();
        }
    }

    /// SIGTERM, then wait for the exit (SIGKILL after 40 s). Returns whether it exited 0.
    async fn stop(&mut self) -> bool {
        self.signal("TERM");
        let Some(mut child) = self.child.take() else {
            return false;
        };
        match tokio::time::timeout(Duration::from_secs(40), child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => {
                let _ = child.kill().await;
                false
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Every message of every user as (at, user, seq), sorted by arrival: bursts of 2 to 5 a few
/// milliseconds apart, bursts spread over `span`.
fn arrivals(users: u32, messages: u32, span: Duration, seed: u64) -> Vec<(Duration, u32, u32)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let span_ms = span.as_millis().max(1) as u64;
    let mut out = Vec::new();
    for user in 0..users {
        let mut starts = Vec::new();
        let mut left = messages;
        while left > 0 {
            let size = rng.random_range(2..=5).min(left);
            starts.push((rng.random_range(0..span_ms), size));
            left -= size;
        }
        starts.sort_unstable();
        let (mut seq, mut last) = (0, 0);
        for (start, size) in starts {
            let mut at = start.max(last);
            for _ in 0..size {
                out.push((Duration::from_millis(at), user, seq));
                seq += 1;
                at += rng.random_range(1..8);
            }
            last = at;
        }
    }
    out.sort();
    out
}

async fn count(pool: &Pool, sql: &str) -> anyhow::Result<i64> {
    let rows = pg::query(pool, sql, &[]).await?;
    Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0))
}

/// Waits until `handled` rows reach `total` (or `limit` passes); returns whether they did.
async fn wait_handled(pool: &Pool, schema: &str, total: i64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(n) = count(pool, &format!("SELECT count(*) FROM {schema}.handled")).await
            && n >= total
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Step 0: the fenced statement, case by case, on a scratch schema.
async fn fence_self_test(pool: &Pool) -> anyhow::Result<Check> {
    let sql = Sql::new("fleet_selftest")?;
    pg::batch(pool, &sql.create()).await?;
    pg::execute(pool, &sql.add_users(), &[&1i32]).await?;
    let advance = sql.fenced_advance();
    let cases: [(i32, i64, u64, &str); 7] = [
        (0, 10, 1, "first message, first token"),
        (1, 5, 0, "a lower token (a stale holder)"),
        (0, 20, 0, "a message already handled"),
        (2, 20, 0, "a message past the next one"),
        (1, 10, 1, "the same token, next message"),
        (2, 30, 1, "a higher token, next message"),
        (3, 29, 0, "a lower token, next message"),
    ];
    let mut wrong = Vec::new();
    for (seq, token, expected, what) in cases {
        let n = pg::execute(
            pool,
            &advance,
            &[&0i32, &seq, &token, &"selftest", &"answered", &""],
        )
        .await?;
        if n != expected {
            wrong.push(format!("{what}: changed {n} rows, expected {expected}"));
        }
    }
    let rows = pg::query(
        pool,
        "SELECT seq, token FROM fleet_selftest.handled ORDER BY id",
        &[],
    )
    .await?;
    let got: Vec<(i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    if got != [(0, 10), (1, 10), (2, 30)] {
        wrong.push(format!(
            "handled rows {got:?}, expected [(0, 10), (1, 10), (2, 30)]"
        ));
    }
    pg::batch(pool, "DROP SCHEMA fleet_selftest CASCADE").await?;
    Ok(Check {
        name: "fenced statement: 7 cases (lower token, handled or skipped message refused)",
        passed: wrong.is_empty(),
        detail: if wrong.is_empty() {
            "each changed the rows it should".into()
        } else {
            wrong.join("; ")
        },
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let var = |name: &str| {
        std::env::var(name).with_context(|| format!("{name} is not set: run `bash .ci/fleet`"))
    };
    let work = tempfile_dir()?;
    let env = Env {
        bot: std::env::current_exe()?.with_file_name("bot"),
        redis: var("SEAWALL_REDIS_URL")?,
        postgres: var("SEAWALL_POSTGRES_URL")?,
        ctl: var("SEAWALL_SERVICES_CTL")?.into(),
        work: work.clone(),
        lease_ms: args.lease_ms,
        start: Instant::now(),
    };
    let pool = pg::pool(&env.postgres, 4)?;
    let mut checks = vec![fence_self_test(&pool).await?];
    println!(
        "{} 0. fenced statement self-test: {}",
        env.at(),
        verdict(checks[0].passed)
    );

    // The scenario.
    let sql = Sql::new("fleet_main")?;
    let schema = sql.schema().to_string();
    pg::batch(&pool, &sql.create()).await?;
    pg::execute(&pool, &sql.add_users(), &[&(args.users as i32)]).await?;
    let total = i64::from(args.users) * i64::from(args.messages);
    let mut replicas = Vec::new();
    for id in ["r1", "r2", "r3"] {
        replicas.push(env.spawn(id, &schema, &work.join(id), true)?);
    }
    for r in &mut replicas {
        r.wait_ready().await?;
    }
    println!(
        "{} 1. normal traffic: {} users x {} messages arrive over {} s, in bursts",
        env.at(),
        args.users,
        args.messages,
        args.span
    );
    let delivered = Arc::new(AtomicU64::new(0));
    let feeder = tokio::spawn({
        let (pool, deliver, delivered) = (pool.clone(), sql.deliver(), Arc::clone(&delivered));
        let schedule = arrivals(
            args.users,
            args.messages,
            Duration::from_secs(args.span),
            args.seed,
        );
        let start = tokio::time::Instant::now();
        async move {
            for (at, user, seq) in schedule {
                tokio::time::sleep_until(start + at).await;
                let body = format!("message {seq} of user {user}");
                // While PostgreSQL is down the messages queue up here, in order.
                while pg::execute(&pool, &deliver, &[&(user as i32), &(seq as i32), &body])
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let handled_by = |who: &str| {
        let (pool, q) = (
            pool.clone(),
            format!("SELECT count(*) FROM {schema}.handled WHERE replica = '{who}'"),
        );
        async move { count(&pool, &q).await.unwrap_or(-1) }
    };

    tokio::time::sleep(Duration::from_secs(4)).await;
    let health_normal = replicas[0].health().await;
    println!("{}    r1 /healthz: {health_normal}", env.at());
    replicas[0]
        .wait_metric("fleet_in_flight ", Duration::from_secs(5))
        .await;
    println!(
        "{} 2. SIGKILL r1 in the middle of handling (it has handled {} so far)",
        env.at(),
        handled_by("r1").await
    );
    if let Some(mut c) = replicas[0].child.take() {
        let _ = c.kill().await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    println!("{}    restart r1 on the same data directory", env.at());
    replicas[0] = env.spawn("r1", &schema, &work.join("r1"), true)?;
    replicas[0].wait_ready().await?;

    tokio::time::sleep(Duration::from_millis(500)).await;
    let pause = Duration::from_millis(args.lease_ms) + Duration::from_millis(1500);
    // Stop r2 while it is handling a message, so a write of its is in flight when its lease
    // ends; try again (at most 3 times) if that write happened to need no fence.
    for attempt in 1..=3 {
        replicas[1]
            .wait_metric("fleet_in_flight ", Duration::from_secs(5))
            .await;
        replicas[1].signal("STOP");
        println!(
            "{} 3. SIGSTOP r2 in the middle of handling, for {} ms (its lease is {} ms){}",
            env.at(),
            pause.as_millis(),
            args.lease_ms,
            if attempt > 1 { " (again)" } else { "" }
        );
        tokio::time::sleep(pause).await;
        replicas[1].signal("CONT");
        println!("{}    SIGCONT r2", env.at());
        tokio::time::sleep(Duration::from_millis(700)).await;
        let fenced = format!("SELECT count(*) FROM {schema}.fenced WHERE replica = 'r2'");
        if count(&pool, &fenced).await.unwrap_or(0) > 0 {
            break;
        }
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "{} 4. restart Redis (down about 1 s; every lease and cooldown lost)",
        env.at()
    );
    let redis_down = now_ms();
    env.ctl("redis-restart", Some("1")).await?;
    let redis_up = now_ms();
    println!("{}    Redis is back", env.at());

    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("{} 5. stop PostgreSQL for 6 s", env.at());
    // Stop it while r3 is handling a message, so that message's write has to wait and its
    // audit event goes to r3's spool.
    replicas[2]
        .wait_metric("fleet_in_flight ", Duration::from_secs(5))
        .await;
    let outage = Instant::now();
    env.ctl("pg-stop", None).await?;
    // A crash with audit events in the spool: the restart on the same directory replays them.
    let backlog = replicas[2]
        .wait_metric(
            "seawall_fallback_sink_backlog_records{",
            Duration::from_secs(4),
        )
        .await;
    if let Some(mut c) = replicas[2].child.take() {
        let _ = c.kill().await;
    }
    println!(
        "{}    SIGKILL r3 with {backlog} audit event(s) in its spool",
        env.at()
    );
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(outage.elapsed())).await;
    let health_in_outage = replicas[0].health().await;
    println!("{}    r1 /healthz: {health_in_outage}", env.at());
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(outage.elapsed())).await;
    env.ctl("pg-start", None).await?;
    println!(
        "{}    PostgreSQL is back; restart r3 on the same data directory",
        env.at()
    );
    replicas[2] = env.spawn("r3", &schema, &work.join("r3"), true)?;
    replicas[2].wait_ready().await?;

    feeder.await?;
    println!(
        "{}    all {} messages delivered; waiting for them to be handled",
        env.at(),
        delivered.load(Ordering::Relaxed)
    );
    let all_handled = wait_handled(&pool, &schema, total, Duration::from_secs(60)).await;
    println!("{} 6. drain: SIGTERM every replica", env.at());
    let mut clean = Vec::new();
    for r in &mut replicas {
        clean.push((r.id.clone(), r.stop().await));
    }
    println!("{}    stopped: {clean:?} (true = exit status 0)", env.at());
    let scenario_secs = env.start.elapsed().as_secs_f64();

    let mut report = String::new();
    sql_report(
        &pool,
        &schema,
        total,
        &mut report,
        &mut checks,
        (redis_down, redis_up),
    )
    .await?;
    checks.push(Check {
        name: "/healthz follows the PostgreSQL outage",
        passed: health_in_outage.starts_with("200 degraded")
            && health_in_outage.contains("postgres"),
        detail: format!(
            "r1 in normal traffic: {health_normal}; 3 s into the outage: {health_in_outage}"
        ),
    });
    checks.push(Check {
        name: "drain: every replica stopped cleanly on SIGTERM",
        passed: all_handled && clean.iter().all(|(_, ok)| *ok),
        detail: format!("inbox fully handled before the drain: {all_handled}; exits {clean:?}"),
    });
    let mut left = Vec::new();
    for r in &replicas {
        let backlog = seawall_fallback_sink::inspect(r.data_dir.join("spool"))
            .map(|i| i.backlog_records())
            .unwrap_or(u64::MAX);
        left.push(format!("{} {backlog}", r.id));
    }
    if let Some(c) = checks
        .iter_mut()
        .find(|c| c.name.starts_with("every replica's spool"))
    {
        c.passed &= left.iter().all(|l| l.ends_with(" 0"));
        c.detail.push_str(&format!(
            "; spool directories inspected: {}",
            left.join(", ")
        ));
    }

    // Throughput: the same bot, 1, 2 and 3 replicas on a prefilled inbox.
    let mut throughput = Vec::new();
    if !args.no_throughput {
        for n in 1..=3 {
            throughput.push((n, measure(&env, &pool, n).await?));
        }
    }

    println!("\n=== Seawall fleet report ({scenario_secs:.1} s scenario) ===\n{report}");
    if !throughput.is_empty() {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "throughput (24 users x 15 messages on a prefilled inbox, upstream 10-40 ms; {} CPUs, load average {}):",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            load.split(' ').next().unwrap_or("?")
        );
        for (n, rate) in &throughput {
            println!(
                "  {n} replica{}: {rate:>6.0} messages/s",
                if *n == 1 { " " } else { "s" }
            );
        }
        println!();
    }
    println!("checks:");
    for c in &checks {
        println!("  {}  {} ({})", verdict(c.passed), c.name, c.detail);
    }
    let passed = checks.iter().all(|c| c.passed);
    println!(
        "\nfleet scenario: {}",
        if passed {
            "all checks passed"
        } else {
            "SOME CHECKS FAILED"
        }
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(passed)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("seawall-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Messages per second with `n` replicas: they start on an empty inbox, then 360 messages
/// land at once; timed until the last is handled.
async fn measure(env: &Env, pool: &Pool, n: usize) -> anyhow::Result<f64> {
    let sql = Sql::new(&format!("fleet_tp{n}"))?;
    let schema = sql.schema().to_string();
    pg::batch(pool, &sql.create()).await?;
    let (users, messages) = (24i32, 15i32);
    pg::execute(pool, &sql.add_users(), &[&users]).await?;
    let mut replicas = Vec::new();
    for i in 1..=n {
        let id = format!("t{n}-{i}");
        replicas.push(env.spawn(&id, &schema, &env.work.join(&id), false)?);
    }
    for r in &mut replicas {
        r.wait_ready().await?;
    }
    let start = Instant::now();
    pg::batch(
        pool,
        &format!(
            "INSERT INTO {schema}.inbox (user_id, seq, body)
             SELECT u, s, 'message ' || s || ' of user ' || u
               FROM generate_series(0, {}) u, generate_series(0, {}) s",
            users - 1,
            messages - 1
        ),
    )
    .await?;
    let total = i64::from(users * messages);
    let done = wait_handled(pool, &schema, total, Duration::from_secs(60)).await;
    let secs = start.elapsed().as_secs_f64();
    for r in &mut replicas {
        r.stop().await;
    }
    anyhow::ensure!(
        done,
        "{n} replica(s) did not handle {total} messages in 60 s"
    );
    Ok(total as f64 / secs)
}

/// The per-replica table, the fleet totals and the checks, all from SQL.
async fn sql_report(
    pool: &Pool,
    s: &str,
    total: i64,
    out: &mut String,
    checks: &mut Vec<Check>,
    (redis_down, redis_up): (i64, i64),
) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let q = |sql: String| async move { pg::query(pool, &sql, &[]).await };
    // Per replica: handled, fenced off, users taken over from another replica, and what each
    // process reported when it stopped (a SIGKILLed process reports nothing).
    let mut table: BTreeMap<String, [i64; 10]> = BTreeMap::new();
    for row in q(format!(
        "SELECT replica, count(*) FROM {s}.handled GROUP BY replica"
    ))
    .await?
    {
        table.entry(row.get(0)).or_default()[0] = row.get(1);
    }
    for row in q(format!(
        "SELECT replica, count(*) FROM {s}.fenced GROUP BY replica"
    ))
    .await?
    {
        table.entry(row.get(0)).or_default()[1] = row.get(1);
    }
    // A takeover: a message another replica had started (its `received` event, first writer
    // wins) and this one finished, after the first died, paused, or lost the database.
    for row in q(format!(
        "SELECT h.replica, count(*) FROM {s}.handled h
           JOIN {s}.audit a ON a.event_id = 'u' || h.user_id || '-m' || h.seq || '-received'
          WHERE a.replica <> h.replica GROUP BY h.replica"
    ))
    .await?
    {
        table.entry(row.get(0)).or_default()[2] = row.get(1);
    }
    for row in q(format!(
        "SELECT replica, sum(lease_lost)::bigint, sum(spooled)::bigint, sum(replayed)::bigint,
                sum(inherited)::bigint, sum(pg_errors)::bigint, sum(fired)::bigint,
                sum(suppressed)::bigint
           FROM {s}.replica_runs GROUP BY replica"
    ))
    .await?
    {
        let e = table.entry(row.get(0)).or_default();
        for i in 0..7 {
            e[3 + i] = row.get(i + 1);
        }
    }
    for row in q(format!(
        "SELECT replica, count(*) FROM {s}.alerts GROUP BY replica"
    ))
    .await?
    {
        table.entry(row.get(0)).or_default()[8] = row.get(1);
    }
    let _ = writeln!(
        out,
        "{:<8} {:>8} {:>7} {:>9} {:>10} {:>8} {:>9} {:>9} {:>8} {:>6} {:>10}",
        "replica",
        "handled",
        "fenced",
        "takeovers",
        "lease lost",
        "spooled",
        "replayed",
        "inherited",
        "pg waits",
        "fired",
        "suppressed"
    );
    let mut sum = [0i64; 10];
    for (id, v) in &table {
        let _ = writeln!(
            out,
            "{id:<8} {:>8} {:>7} {:>9} {:>10} {:>8} {:>9} {:>9} {:>8} {:>6} {:>10}",
            v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]
        );
        for i in 0..10 {
            sum[i] += v[i];
        }
    }
    let _ = writeln!(
        out,
        "{:<8} {:>8} {:>7} {:>9} {:>10} {:>8} {:>9} {:>9} {:>8} {:>6} {:>10}\n",
        "fleet", sum[0], sum[1], sum[2], sum[3], sum[4], sum[5], sum[6], sum[7], sum[8], sum[9]
    );
    let _ = writeln!(
        out,
        "handled, fenced, takeovers (messages another replica had started, finished by this one)\n\
         and fired are counted by SQL; the other columns are what each process reported on\n\
         SIGTERM (a SIGKILLed process reported nothing; its spool went to its restart: inherited).\n\
         pg waits: database calls that failed, the message left next in line.\n"
    );

    // 1. Exactly once, in order.
    let r = &q(format!(
        "SELECT (SELECT count(*) FROM {s}.inbox),
                (SELECT count(*) FROM {s}.handled),
                (SELECT count(*) FROM (SELECT DISTINCT user_id, seq FROM {s}.handled) d),
                (SELECT count(*) FROM {s}.inbox i WHERE NOT EXISTS
                    (SELECT 1 FROM {s}.handled h WHERE h.user_id = i.user_id AND h.seq = i.seq)),
                (SELECT count(*) FROM (SELECT seq, row_number() OVER (PARTITION BY user_id ORDER BY id) - 1 AS pos
                                         FROM {s}.handled) x WHERE seq <> pos),
                (SELECT count(*) FROM {s}.conversations c WHERE next_seq <>
                    (SELECT count(*) FROM {s}.inbox i WHERE i.user_id = c.user_id))"
    ))
    .await?[0];
    let v: Vec<i64> = (0..6).map(|i| r.get(i)).collect();
    checks.push(Check {
        name: "every message handled exactly once, in per-user sequence order",
        passed: v[0] == total && v[1] == total && v[2] == total && v[3] == 0 && v[4] == 0 && v[5] == 0,
        detail: format!(
            "{} in the inbox of {total} sent, {} handled rows, {} distinct, {} missing, {} out of order, {} conversations off",
            v[0], v[1], v[2], v[3], v[4], v[5]
        ),
    });

    // 2. Fencing tokens.
    let regressions = count(
        pool,
        &format!(
            "SELECT count(*) FROM (SELECT token, lag(token) OVER (PARTITION BY user_id ORDER BY seq) AS prev
                                     FROM {s}.handled) x WHERE prev IS NOT NULL AND token <= prev"
        ),
    )
    .await?;
    checks.push(Check {
        name: "fencing tokens strictly increase per user over the handled messages",
        passed: regressions == 0,
        detail: format!("{regressions} regressions"),
    });

    // 3. Fenced-off writes: exercised, and none reached the tables.
    let r = &q(format!(
        "SELECT (SELECT count(*) FROM {s}.fenced),
                (SELECT count(*) FROM {s}.fenced WHERE replica = 'r2'),
                (SELECT count(*) FROM {s}.fenced f JOIN {s}.handled h
                    ON h.user_id = f.user_id AND h.seq = f.seq AND h.token = f.token),
                (SELECT count(*) FROM {s}.fenced f JOIN {s}.audit a
                    ON a.kind = 'outcome' AND a.user_id = f.user_id AND a.seq = f.seq AND a.token = f.token),
                (SELECT count(*) FROM {s}.conversations c WHERE c.token <>
                    coalesce((SELECT max(token) FROM {s}.handled h WHERE h.user_id = c.user_id), 0))"
    ))
    .await?[0];
    let v: Vec<i64> = (0..5).map(|i| r.get(i)).collect();
    checks.push(Check {
        name: "stale writes fenced off (step 3), and none reached the tables",
        passed: v[1] >= 1 && v[2] == 0 && v[3] == 0 && v[4] == 0,
        detail: format!(
            "{} fenced off ({} by the paused r2); in handled: {}, in audit outcomes: {}, conversations not at their last applied token: {}",
            v[0], v[1], v[2], v[3], v[4]
        ),
    });

    // 4. Audit exactly once.
    let r = &q(format!(
        "SELECT (SELECT 2 * count(*) FROM {s}.handled),
                (SELECT count(*) FROM {s}.audit WHERE kind IN ('received', 'outcome')),
                (SELECT count(DISTINCT event_id) FROM {s}.audit WHERE kind IN ('received', 'outcome')),
                (SELECT count(*) FROM {s}.handled h CROSS JOIN (VALUES ('received'), ('outcome')) k(kind)
                  WHERE NOT EXISTS (SELECT 1 FROM {s}.audit a
                                     WHERE a.event_id = 'u' || h.user_id || '-m' || h.seq || '-' || k.kind)),
                (SELECT count(*) FROM {s}.audit a JOIN {s}.handled h ON h.user_id = a.user_id AND h.seq = a.seq
                  WHERE a.kind = 'outcome' AND (a.token <> h.token OR a.detail <> h.outcome || ': ' || h.detail)),
                (SELECT count(*) FROM {s}.audit WHERE kind = 'db_wait'),
                (SELECT count(*) FROM {s}.audit a WHERE kind = 'db_wait' AND NOT EXISTS
                    (SELECT 1 FROM {s}.inbox i WHERE i.user_id = a.user_id AND i.seq = a.seq))"
    ))
    .await?[0];
    let v: Vec<i64> = (0..7).map(|i| r.get(i)).collect();
    checks.push(Check {
        name: "every audit event in PostgreSQL exactly once",
        passed: v[0] == v[1] && v[1] == v[2] && v[3] == 0 && v[4] == 0 && v[6] == 0,
        detail: format!(
            "received + outcome: {} expected, {} rows, {} distinct ids, {} missing, {} duplicated, {} outcomes disagreeing with their handled row; plus {} db_wait events (one per message that waited for PostgreSQL), {} of no message",
            v[0], v[1], v[2], v[3], v[1] - v[2], v[4], v[5], v[6]
        ),
    });

    // 4b. The outage went through the spools: r1 and r2 live through the whole outage, and
    // each writes a `db_down` event when its health loop sees PostgreSQL go down, so each row
    // got there by a replay. (r3 is SIGKILLed as soon as its spool holds anything, which may
    // be before its health loop has noticed: its event is reported, not required.)
    let r = &q(format!(
        "SELECT (SELECT count(DISTINCT replica) FROM {s}.audit WHERE kind = 'db_down' AND replica IN ('r1', 'r2')),
                (SELECT count(*) FROM {s}.audit WHERE kind = 'db_down'),
                (SELECT coalesce(string_agg(DISTINCT replica, ',' ORDER BY replica), '') FROM {s}.audit WHERE kind = 'db_down'),
                (SELECT coalesce(sum(spooled), 0)::bigint FROM {s}.replica_runs),
                (SELECT coalesce(sum(replayed), 0)::bigint FROM {s}.replica_runs)"
    ))
    .await?[0];
    let (survivors, events, names, spooled, replayed): (i64, i64, String, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    checks.push(Check {
        name: "the PostgreSQL outage (step 5) was spooled and replayed by the replicas that lived through it",
        passed: survivors == 2,
        detail: format!(
            "db_down events written during the outage and stored: {events}, from {names} (r1 and r2 required); spooled {spooled}, replayed {replayed} as the replicas reported on exit (r3's SIGKILLed run reported nothing)"
        ),
    });

    // 5. Alerts: once per window fleet-wide (fires decided by Redis; a pair straddling the
    // Redis restart is excused: a restart without persistence forgets the windows).
    let window = ALERT_WINDOW.as_millis() as i64;
    let r = &q(format!(
        "SELECT (SELECT count(*) FROM {s}.alerts),
                (SELECT count(*) FROM {s}.alerts WHERE degraded),
                (SELECT count(DISTINCT key) FROM {s}.alerts),
                (SELECT count(*) FROM {s}.alerts a JOIN {s}.alerts b
                    ON a.key = b.key AND a.id < b.id AND NOT a.degraded AND NOT b.degraded
                   AND abs(a.fired_at_ms - b.fired_at_ms) < {window} - 100
                   AND NOT (least(a.fired_at_ms, b.fired_at_ms) < {redis_up}
                            AND greatest(a.fired_at_ms, b.fired_at_ms) > {redis_down})),
                (SELECT coalesce(sum(suppressed), 0)::bigint FROM {s}.replica_runs)"
    ))
    .await?[0];
    let v: Vec<i64> = (0..5).map(|i| r.get(i)).collect();
    let keys: Vec<String> = q(format!(
        "SELECT key || ' ' || count(*) FROM {s}.alerts GROUP BY key ORDER BY key"
    ))
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect();
    checks.push(Check {
        name: "each alert key fired at most once per window fleet-wide",
        passed: v[3] == 0,
        detail: format!(
            "{} fired over {} keys ({}), {} of them degraded (Redis unreachable), {} suppressed, {} pairs closer than {window} ms",
            v[0],
            v[2],
            keys.join(", "),
            v[1],
            v[4],
            v[3]
        ),
    });

    // 6. Spools.
    let r = &q(format!(
        "SELECT count(DISTINCT replica), coalesce(sum(spool_left), 0)::bigint FROM {s}.replica_runs r
          WHERE stopped_at = (SELECT max(stopped_at) FROM {s}.replica_runs x WHERE x.replica = r.replica)"
    ))
    .await?[0];
    let (reporting, left): (i64, i64) = (r.get(0), r.get(1));
    checks.push(Check {
        name: "every replica's spool empty at the end",
        passed: reporting == 3 && left == 0,
        detail: format!("{reporting} replicas reported on exit, {left} records left"),
    });
    Ok(())
}
