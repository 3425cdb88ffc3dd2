//! `spool`: look at a `seawall-fallback-sink` spool directory by hand.
//!
//! ```text
//! spool inspect DIR            segments, checkpoint, backlog, quarantine (read-only, no lock)
//! spool verify DIR             check every line's checksum; exit code 1 if any line is bad
//! spool replay DIR [--commit]  print the backlog's records as JSON lines on stdout;
//!                              with --commit, checkpoint them (they leave the spool);
//!                              without it the whole backlog is read into memory once
//! spool                        (no arguments) a self-contained demo in a temp directory
//! ```
//!
//! `inspect` and `verify` never change the directory and work beside a running owner.
//! `replay` takes the directory's lock, so it refuses to run while the service owns it; it
//! also runs the owner's recovery (torn tail truncated, bad lines quarantined).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use seawall_fallback_sink::{Durability, Envelope, Inspection, Spool, SpooledRecord, inspect};

#[derive(Parser)]
#[command(about = "Inspect, verify or replay a seawall fallback-sink spool")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Show segments, checkpoint, backlog and quarantine.
    Inspect {
        /// The spool directory.
        dir: PathBuf,
    },
    /// Verify every line; exit code 1 if a line is corrupt or torn.
    Verify {
        /// The spool directory.
        dir: PathBuf,
    },
    /// Print the backlog's records as JSON lines; optionally checkpoint them.
    Replay {
        /// The spool directory.
        dir: PathBuf,
        /// Checkpoint what was printed (the records leave the spool).
        #[arg(long)]
        commit: bool,
    },
}

fn age(t: Option<SystemTime>) -> String {
    match t {
        None => "-".to_owned(),
        Some(t) => {
            let d = SystemTime::now()
                .duration_since(t)
                .unwrap_or(Duration::ZERO);
            format!("{:.1}s", d.as_secs_f64())
        }
    }
}

fn print_inspection(r: &Inspection) {
    println!("spool {}", r.dir.display());
    println!(
        "  owner lock     {}",
        if r.locked {
            "held by a running process"
        } else {
            "free"
        }
    );
    match (&r.checkpoint, &r.checkpoint_error) {
        (Some((pos, seq)), _) => println!(
            "  checkpoint     segment {} offset {} (last seq {seq})",
            pos.segment, pos.offset
        ),
        (None, Some(e)) => {
            println!("  checkpoint     UNREADABLE ({e}): the owner replays from the start")
        }
        (None, None) => println!("  checkpoint     none (nothing replayed yet)"),
    }
    println!(
        "  backlog        {} records, {} bytes, oldest {} ago",
        r.backlog_records(),
        r.backlog_bytes(),
        age(r.oldest())
    );
    println!(
        "  quarantine     {} lines in {}",
        r.quarantined_lines,
        r.quarantine_path().display()
    );
    println!(
        "  {:>8} {:>8} {:>8} {:>7}  {:<12} {:>4} {:>5}",
        "segment", "bytes", "records", "unread", "seq range", "bad", "torn"
    );
    for s in &r.segments {
        let seqs = s
            .seq_range
            .map_or("-".to_owned(), |(a, b)| format!("{a}..={b}"));
        println!(
            "  {:>8} {:>8} {:>8} {:>7}  {:<12} {:>4} {:>5}",
            s.segment,
            s.bytes,
            s.records,
            s.unread_records,
            seqs,
            s.bad_lines.len(),
            s.torn_tail
        );
    }
}

fn verify(r: &Inspection) -> bool {
    let mut ok = true;
    for s in &r.segments {
        for (offset, reason) in &s.bad_lines {
            ok = false;
            println!("BAD  {} offset {offset}: {reason}", s.path.display());
        }
        if s.torn_tail > 0 {
            ok = false;
            println!(
                "TORN {}: {} bytes after the last newline",
                s.path.display(),
                s.torn_tail
            );
        }
    }
    let total: u64 = r.segments.iter().map(|s| s.records).sum();
    println!(
        "{}: {total} valid records in {} segments, {} bad lines",
        if ok { "OK" } else { "DAMAGED" },
        r.segments.len(),
        r.bad_lines()
    );
    ok
}

fn print_record(r: &SpooledRecord) -> anyhow::Result<()> {
    let payload: serde_json::Value = serde_json::from_slice(&r.payload)?;
    let ts = r
        .timestamp
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    println!(
        "{}",
        serde_json::json!({"id": r.id, "seq": r.seq, "ts": ts, "payload": payload})
    );
    Ok(())
}

async fn replay(dir: &Path, commit: bool) -> anyhow::Result<u64> {
    let spool = Spool::open(dir).await?;
    let mut n = 0;
    if commit {
        loop {
            let batch = spool.read_batch(256).await?;
            if batch.is_noop() {
                break;
            }
            for r in &batch.records {
                print_record(r)?;
            }
            n += batch.records.len() as u64;
            spool.commit(&batch).await?;
        }
    } else {
        // The checkpoint does not move, so read the whole backlog in one pass.
        let all = spool.read_batch(usize::MAX).await?;
        for r in &all.records {
            print_record(r)?;
        }
        n = all.records.len() as u64;
    }
    spool.close().await?;
    Ok(n)
}

async fn demo() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    println!(
        "demo: writing 6 audit events to a spool in {}",
        dir.path().display()
    );
    let spool = Spool::builder(dir.path())
        .name("demo")
        .durability(Durability::Always)
        .open()
        .await?;
    let quarantine = spool.quarantine_path();
    for (i, what) in ["login", "message", "reply", "message", "reply", "logout"]
        .iter()
        .enumerate()
    {
        spool
            .append(&Envelope::new(
                serde_json::json!({"user": 7, "n": i, "event": what}),
            ))
            .await?;
    }
    let first = spool.read_batch(2).await?;
    spool.commit(&first).await?;
    spool.close().await?;
    println!("demo: 2 events replayed and checkpointed; now damaging one line on disk\n");

    let seg = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.extension().is_some_and(|x| x == "jsonl") && p.to_string_lossy().contains("segment-")
        })
        .expect("a segment");
    let mut bytes = std::fs::read(&seg)?;
    let fourth_line_start = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(2)
        .map(|(i, _)| i + 1)
        .expect("lines");
    bytes[fourth_line_start + 100] ^= 0x04;
    std::fs::write(&seg, bytes)?;

    println!("$ spool inspect DIR");
    print_inspection(&inspect(dir.path())?);
    println!("\n$ spool verify DIR");
    verify(&inspect(dir.path())?);
    println!("\n$ spool replay DIR --commit");
    let n = replay(dir.path(), true).await?;
    println!("({n} records replayed; the damaged one is in quarantine.jsonl)");
    println!("\n$ cat DIR/quarantine.jsonl");
    print!("{}", std::fs::read_to_string(&quarantine)?);
    println!("\n$ spool inspect DIR");
    print_inspection(&inspect(dir.path())?);
    Ok(())
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let p =
            std::env::temp_dir().join(format!("seawall-spool-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        None => demo().await?,
        Some(Command::Inspect { dir }) => print_inspection(&inspect(&dir)?),
        Some(Command::Verify { dir }) => {
            if !verify(&inspect(&dir)?) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Some(Command::Replay { dir, commit }) => {
            let n = replay(&dir, commit).await?;
            eprintln!(
                "{n} records {}",
                if commit {
                    "replayed and checkpointed"
                } else {
                    "printed (checkpoint unchanged)"
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
