//! Config fuzz test (issue 13 §2): random builder inputs, from sensible to absurd (zero, huge,
//! `Duration::MAX`, empty and 100 kB names). Every input is either rejected by `open` with a
//! `ConfigError` naming the setter and the allowed range — before anything is created on
//! disk — or accepted and then exercised (append, read, commit, replay, close): 0 panics, 0
//! dead writer tasks, 0 directories created by a rejected configuration.
//!
//! No input here sizes an allocation (the largest are bounded by the builders), so nothing can
//! abort the process and no case needs a child process.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use seawall_fallback_sink::{Durability, Envelope, Error, FallbackSink, Primary, Spool};

const CASES: u64 = 400;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

fn u64s(rng: &mut Rng) -> u64 {
    let v = rng.next();
    rng.pick(&[
        0,
        1,
        2,
        300,
        4096,
        1 << 20,
        1 << 30,
        u64::MAX - 1,
        u64::MAX,
        v,
    ])
}

fn usizes(rng: &mut Rng) -> usize {
    let v = rng.next() as usize;
    rng.pick(&[0, 1, 2, 64, 65_536, 65_537, 1 << 31, usize::MAX, v])
}

fn durations(rng: &mut Rng) -> Duration {
    let v = Duration::from_nanos(rng.next());
    rng.pick(&[
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(1),
        Duration::from_millis(5),
        Duration::from_secs(10),
        Duration::from_secs(10) + Duration::from_nanos(1),
        Duration::from_secs(3600),
        Duration::from_secs(u64::MAX),
        Duration::MAX,
        v,
    ])
}

fn name(rng: &mut Rng) -> String {
    match rng.next() % 4 {
        0 => String::new(),
        1 => "x".repeat(100_000),
        2 => "a".repeat(256),
        _ => "audit".into(),
    }
}

fn durability(rng: &mut Rng) -> Durability {
    match rng.next() % 3 {
        0 => Durability::Always,
        1 => Durability::Never,
        _ => Durability::Batch {
            max_records: usizes(rng),
            max_delay: durations(rng),
        },
    }
}

fn base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A primary that fails every other call.
struct Flaky(AtomicU64);

impl Primary<u64> for Flaky {
    type Error = std::io::Error;
    async fn write_batch(&self, _: &[Envelope<u64>]) -> Result<(), Self::Error> {
        if self.0.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
            Err(std::io::Error::other("flaky"))
        } else {
            Ok(())
        }
    }
}

fn check_rejection<E: std::fmt::Debug>(e: &Error<E>, dir: &Path) -> Result<(), String> {
    let Error::Config(c) = e else {
        return Err(format!("open failed with a non-config error: {e:?}"));
    };
    let known = [
        "durability",
        "max_bytes",
        "segment_bytes",
        "name",
        "replay_batch",
        "replay_interval",
    ];
    if !known.contains(&c.field()) || c.reason().is_empty() {
        return Err(format!("bad ConfigError: {c:?}"));
    }
    if !c
        .to_string()
        .starts_with(&format!("invalid `{}`: ", c.field()))
    {
        return Err(format!("bad Display: {c}"));
    }
    if dir.exists() {
        return Err(format!("rejected config ({c}) created {}", dir.display()));
    }
    Ok(())
}

async fn spool_case(rng: &mut Rng, dir: PathBuf) -> Result<bool, String> {
    let b = Spool::builder(&dir)
        .durability(durability(rng))
        .max_bytes(u64s(rng))
        .segment_bytes(u64s(rng))
        .io_on_runtime_thread(rng.next().is_multiple_of(2))
        .name(name(rng));
    let spool = match b.open().await {
        Ok(s) => s,
        Err(e) => return check_rejection(&e, &dir).map(|()| false),
    };
    for i in 0..5u64 {
        match spool.append(&Envelope::new(i)).await {
            Ok(_) | Err(Error::Full { .. }) => {}
            Err(e) => return Err(format!("append: {e}")),
        }
    }
    let batch = spool
        .read_batch(usizes(rng))
        .await
        .map_err(|e| e.to_string())?;
    spool.commit(&batch).await.map_err(|e| e.to_string())?;
    spool.sync().await.map_err(|e| e.to_string())?;
    spool.close().await.map_err(|e| e.to_string())?;
    Ok(true)
}

async fn sink_case(rng: &mut Rng, dir: PathBuf) -> Result<bool, String> {
    let b = FallbackSink::builder(&dir)
        .durability(durability(rng))
        .max_bytes(u64s(rng))
        .segment_bytes(u64s(rng))
        .io_on_runtime_thread(rng.next().is_multiple_of(2))
        .name(name(rng))
        .replay_batch(usizes(rng))
        .replay_interval(durations(rng))
        .background_replay(rng.next().is_multiple_of(2));
    let sink = match b.open(Flaky(AtomicU64::new(0))).await {
        Ok(s) => s,
        Err(e) => return check_rejection(&e, &dir).map(|()| false),
    };
    for i in 0..6u64 {
        match sink.write(i).await {
            Ok(_) | Err(Error::Unavailable { .. } | Error::Full { .. }) => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    match sink.replay_once().await {
        Ok(_) | Err(Error::Inner(_)) => {}
        Err(e) => return Err(format!("replay: {e}")),
    }
    sink.shutdown().await.map_err(|e| e.to_string())?;
    Ok(true)
}

// Paused time: an accepted group-commit delay of up to 10 s, or a replay interval of an hour,
// passes at once instead of stalling the test.
#[tokio::test(start_paused = true)]
async fn random_builder_inputs_never_panic() {
    let seed = std::env::var("SEAWALL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x000c_0f1a);
    let mut rng = Rng(seed);
    let root = tempfile::tempdir_in(base()).unwrap();
    let (mut accepted, mut rejected) = (0u64, 0u64);
    let mut violations = Vec::new();
    for i in 0..CASES {
        let dir = root.path().join(format!("case-{i}"));
        let case_seed = rng.next();
        let task = tokio::spawn(async move {
            let mut rng = Rng(case_seed);
            if i % 2 == 0 {
                spool_case(&mut rng, dir).await
            } else {
                sink_case(&mut rng, dir).await
            }
        });
        match task.await {
            Err(e) => violations.push(format!("case {i}: panicked: {e}")),
            Ok(Err(e)) => violations.push(format!("case {i}: {e}")),
            Ok(Ok(true)) => accepted += 1,
            Ok(Ok(false)) => rejected += 1,
        }
    }
    println!(
        "config fuzz, seed {seed}: {CASES} cases, {accepted} accepted and exercised, {rejected} rejected, {} violations",
        violations.len()
    );
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(accepted > 20 && rejected > 20, "{accepted} / {rejected}");
}

#[tokio::test]
async fn batch_max_delay_duration_max_is_rejected_before_any_io() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("spool");
    let e = Spool::builder(&dir)
        .durability(Durability::Batch {
            max_records: 8,
            max_delay: Duration::MAX,
        })
        .open()
        .await
        .unwrap_err();
    let Error::Config(c) = e else { panic!("{e:?}") };
    assert_eq!(c.field(), "durability");
    assert!(c.reason().contains("at most 10s"), "{c}");
    assert!(!dir.exists(), "a rejected setting created the directory");
    // The largest accepted delay works.
    let spool = Spool::builder(&dir)
        .durability(Durability::Batch {
            max_records: 1,
            max_delay: Durability::MAX_DELAY,
        })
        .open()
        .await
        .unwrap();
    spool.append(&Envelope::new(1)).await.unwrap();
    spool.close().await.unwrap();
}
