//! Crash test: a child process appends with `Durability::Always` and replays concurrently; it is
//! killed with SIGKILL at random moments. Odd rounds run the writer with `io_on_runtime_thread`. After each kill the spool is reopened and drained:
//! every acknowledged record is there, nothing is invented, and a record is delivered twice
//! only when the kill fell between delivering a batch and committing it.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use seawall_fallback_sink::{Durability, Envelope, Spool};

const DIR_ENV: &str = "SEAWALL_CRASH_TEST_DIR";
const ON_RUNTIME_ENV: &str = "SEAWALL_CRASH_TEST_IO_ON_RUNTIME";
const REPLAY_BATCH: usize = 16;

#[derive(serde::Serialize, serde::Deserialize)]
struct Event {
    n: u64,
    pad: String,
}

/// The child: appends forever, printing `SENT id` before and `ACK id` after each append; a
/// second task replays, printing `DELIVER id` before committing each batch.
#[test]
#[ignore = "helper run by `sigkill_never_loses_an_acknowledged_record` in a child process"]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let on_runtime = std::env::var(ON_RUNTIME_ENV).is_ok_and(|v| v == "1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let spool = std::sync::Arc::new(
            Spool::builder(&dir)
                .durability(Durability::Always)
                .segment_bytes(8 << 10)
                .io_on_runtime_thread(on_runtime)
                .open()
                .await
                .unwrap(),
        );
        let reader = spool.clone();
        tokio::spawn(async move {
            loop {
                let b = reader.read_batch(REPLAY_BATCH).await.unwrap();
                if b.is_noop() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                for r in &b.records {
                    println!("DELIVER {}", r.id);
                }
                reader.commit(&b).await.unwrap();
            }
        });
        for n in 0.. {
            let e = Envelope::new(Event {
                n,
                pad: "x".repeat(150),
            });
            println!("SENT {}", e.id);
            spool.append(&e).await.unwrap();
            println!("ACK {}", e.id);
        }
    });
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_never_loses_an_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut sent = HashSet::new();
    let mut acked = HashSet::new();
    let mut delivered: HashMap<String, u32> = HashMap::new();
    let mut total_acked = 0;
    for round in 0..40 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .env(ON_RUNTIME_ENV, if round % 2 == 1 { "1" } else { "0" })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let kill_after = 1 + rng.next() % 200;
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut acks_this_round = 0;
        let mut delivered_by_child: HashSet<String> = HashSet::new();
        let mut line = String::new();
        let mut killed = false;
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            // libtest may prefix the first line with "test crash_child_writer ... ".
            let words: Vec<&str> = line.split_whitespace().collect();
            let (kind, id) = match words.as_slice() {
                [.., kind, id] => (*kind, (*id).to_owned()),
                _ => continue,
            };
            match kind {
                "SENT" => {
                    sent.insert(id);
                }
                "ACK" => {
                    assert!(sent.contains(&id));
                    acked.insert(id);
                    acks_this_round += 1;
                }
                "DELIVER" => {
                    *delivered.entry(id.clone()).or_default() += 1;
                    delivered_by_child.insert(id);
                }
                _ => {}
            }
            if !killed && acks_this_round >= kill_after {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        assert!(
            killed,
            "child exited by itself in round {round}: {status:?}"
        );
        total_acked += acks_this_round;

        // Reopen after the crash; drain half the rounds completely, leave a backlog otherwise.
        let redelivered = rt.block_on(async {
            let spool = Spool::open(dir.path()).await.expect("reopen after SIGKILL");
            let mut redelivered = 0;
            let limit = if round % 2 == 0 { usize::MAX } else { 1 };
            for _ in 0..limit {
                let b = spool.read_batch(64).await.unwrap();
                if b.is_noop() {
                    break;
                }
                for r in &b.records {
                    let id = r.id.to_string();
                    assert!(sent.contains(&id), "invented record {id}");
                    if delivered_by_child.contains(&id) {
                        redelivered += 1;
                    }
                    *delivered.entry(id).or_default() += 1;
                    let ev = r.decode::<Event>().unwrap();
                    assert_eq!(ev.payload.pad.len(), 150);
                }
                spool.commit(&b).await.unwrap();
            }
            spool.close().await.unwrap();
            redelivered
        });
        assert!(
            redelivered <= REPLAY_BATCH,
            "round {round}: {redelivered} records re-sent, more than one batch"
        );
    }
    // Final drain.
    rt.block_on(async {
        let spool = Spool::open(dir.path()).await.unwrap();
        loop {
            let b = spool.read_batch(256).await.unwrap();
            if b.is_noop() {
                break;
            }
            for r in &b.records {
                let id = r.id.to_string();
                assert!(sent.contains(&id), "invented record {id}");
                *delivered.entry(id).or_default() += 1;
            }
            spool.commit(&b).await.unwrap();
        }
        assert_eq!(spool.stats().records, 0);
        spool.close().await.unwrap();
    });
    for id in &acked {
        assert!(delivered.contains_key(id), "acknowledged record {id} lost");
    }
    for id in delivered.keys() {
        assert!(sent.contains(id), "invented record {id}");
    }
    assert!(total_acked >= 20);
    eprintln!(
        "crash test: {} sent, {} acknowledged, {} delivered, {} delivered twice",
        sent.len(),
        acked.len(),
        delivered.len(),
        delivered.values().filter(|c| **c > 1).count()
    );
}
