//! Corruption fuzzer (issue 13 §1): damage closed spools at random and check what comes back.
//!
//! Each case copies a spool built by the real API (known records, part of them replayed and
//! checkpointed, several segments), damages it with one damage class, then runs `inspect`,
//! opens it, reads and commits part of the backlog, appends new records, closes, reopens and
//! drains. It asserts:
//!
//! - 0 intact records missing: every unread record whose bytes (newline aside) survived, and
//!   every record appended after the damage, is delivered;
//! - 0 invented records: every delivered id is a known one, with its own payload;
//! - 0 duplicates: no id is delivered twice, and a checkpointed record comes back only when
//!   the checkpoint itself was lost or damaged (replay is at least once then);
//! - every damaged unread record is detected: a quarantine entry covers its bytes;
//! - `inspect` and `open` never fail, panic or hang (each case is bounded by a timeout).
//!
//! Seeded (`SEAWALL_FUZZ_SEED` overrides the seed, `SEAWALL_FUZZ_CASES` the cases per class);
//! `cargo test --test corruption_fuzz -- --nocapture` prints the case counts and violations.
//! Files live on tmpfs (`/dev/shm`) when there is one, and appends use `Durability::Never`,
//! so the few thousand cases take seconds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use seawall_fallback_sink::{Durability, Envelope, Spool, inspect};
use serde_json::Value;
use uuid::Uuid;

const CLASSES: [&str; 6] = [
    "flip",
    "truncate",
    "zeroed range",
    "appended garbage",
    "checkpoint deleted",
    "checkpoint corrupt",
];
const TEMPLATES: usize = 40;
const CASE_TIMEOUT: Duration = Duration::from_secs(30);
const PARALLEL: u64 = 8;

/// SplitMix64: a tiny seeded generator, so the fuzzer needs no extra dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, a: u64, b: u64) -> u64 {
        a + self.below(b - a + 1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn base_dir() -> Option<PathBuf> {
    let shm = Path::new("/dev/shm");
    shm.is_dir().then(|| shm.to_path_buf())
}

fn tempdir() -> tempfile::TempDir {
    match base_dir() {
        Some(b) => tempfile::Builder::new()
            .prefix("seawall-fuzz-")
            .tempdir_in(b)
            .unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

/// One record of a template, where its line is.
#[derive(Debug, Clone)]
struct Rec {
    id: Uuid,
    segment: String,
    /// Byte range of the line without its newline.
    start: usize,
    end: usize,
    consumed: bool,
}

/// A closed spool: its files and what is in them.
struct Template {
    files: BTreeMap<String, Vec<u8>>,
    records: Vec<Rec>,
    payloads: HashMap<Uuid, Value>,
}

fn payload(rng: &mut Rng, n: u64) -> Value {
    let len = rng.range(0, 120) as usize;
    let s: String = (0..len)
        .map(|_| match rng.below(20) {
            0 => '\n',
            1 => '"',
            2 => '}',
            3 => 'é',
            _ => char::from(b'a' + rng.below(26) as u8),
        })
        .collect();
    match rng.below(3) {
        0 => serde_json::json!(n),
        // An object that looks like a spool line inside the payload.
        1 => serde_json::json!({"v": 2, "id": s, "seq": n, "crc": 7, "payload": {"n": n}}),
        _ => serde_json::json!({"n": n, "text": s}),
    }
}

async fn build_template(rng: &mut Rng) -> Template {
    let dir = tempdir();
    let segment_bytes = rng.range(300, 3000);
    let spool = Spool::builder(dir.path())
        .durability(Durability::Never)
        .segment_bytes(segment_bytes)
        .open()
        .await
        .unwrap();
    let n = rng.range(3, 40);
    let mut payloads = HashMap::new();
    for i in 0..n {
        // Ids and timestamps from the seed too, so a seed reproduces the exact bytes.
        let e = Envelope {
            id: Uuid::from_u64_pair(rng.next(), rng.next()),
            timestamp: std::time::UNIX_EPOCH
                + Duration::from_millis(1_700_000_000_000 + rng.below(1 << 40)),
            payload: payload(rng, i),
        };
        payloads.insert(e.id, e.payload.clone());
        spool.append(&e).await.unwrap();
    }
    let consume = rng.below(n + 1) as usize;
    let mut consumed = HashSet::new();
    while consumed.len() < consume {
        let b = spool.read_batch(consume - consumed.len()).await.unwrap();
        consumed.extend(b.records.iter().map(|r| r.id));
        spool.commit(&b).await.unwrap();
    }
    spool.close().await.unwrap();

    let mut files = BTreeMap::new();
    let mut records = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "spool.lock" {
            continue;
        }
        let data = std::fs::read(entry.path()).unwrap();
        if name.starts_with("segment-") {
            let mut start = 0;
            for (i, b) in data.iter().enumerate() {
                if *b == b'\n' {
                    let v: Value = serde_json::from_slice(&data[start..i]).unwrap();
                    let id: Uuid = v["id"].as_str().unwrap().parse().unwrap();
                    records.push(Rec {
                        id,
                        segment: name.clone(),
                        start,
                        end: i,
                        consumed: consumed.contains(&id),
                    });
                    start = i + 1;
                }
            }
        }
        files.insert(name, data);
    }
    Template {
        files,
        records,
        payloads,
    }
}

/// Damages a copy of `t` in `dir`; returns false when the class does not apply to `t`.
fn damage(class: &str, t: &Template, dir: &Path, rng: &mut Rng) -> bool {
    let mut files = t.files.clone();
    let segs: Vec<String> = files
        .keys()
        .filter(|k| k.starts_with("segment-") && !files[*k].is_empty())
        .cloned()
        .collect();
    let pick = |rng: &mut Rng| segs[rng.below(segs.len() as u64) as usize].clone();
    match class {
        "flip" | "truncate" | "zeroed range" if segs.is_empty() => return false,
        "flip" => {
            for _ in 0..rng.range(1, 3) {
                let s = pick(rng);
                let d = files.get_mut(&s).unwrap();
                let i = rng.below(d.len() as u64) as usize;
                d[i] ^= rng.range(1, 255) as u8;
            }
        }
        "truncate" => {
            let s = pick(rng);
            let d = files.get_mut(&s).unwrap();
            let to = rng.below(d.len() as u64) as usize;
            d.truncate(to);
        }
        "zeroed range" => {
            let s = pick(rng);
            let d = files.get_mut(&s).unwrap();
            let a = rng.below(d.len() as u64) as usize;
            let b = (a + rng.range(1, 300) as usize).min(d.len());
            d[a..b].fill(0);
        }
        "appended garbage" => {
            let s = if segs.is_empty() || rng.chance(20) {
                files
                    .keys()
                    .rfind(|k| k.starts_with("segment-"))
                    .cloned()
                    .unwrap_or_else(|| "segment-00000000000000000001.jsonl".into())
            } else if rng.chance(70) {
                segs.last().unwrap().clone()
            } else {
                pick(rng)
            };
            let d = files.entry(s).or_default();
            for _ in 0..rng.range(1, 6) {
                match rng.below(5) {
                    0 => d.extend_from_slice(b"{\"v\":2,\"id\":\""),
                    1 => d.push(b'\n'),
                    2 => d.extend_from_slice(b",\"crc\":12345}"),
                    _ => {
                        for _ in 0..rng.range(1, 80) {
                            d.push(rng.next() as u8);
                        }
                    }
                }
            }
        }
        "checkpoint deleted" => {
            if files.remove("checkpoint.json").is_none() {
                return false;
            }
        }
        "checkpoint corrupt" => {
            let Some(d) = files.get_mut("checkpoint.json") else {
                return false;
            };
            match rng.below(3) {
                0 => {
                    let i = rng.below(d.len() as u64) as usize;
                    d[i] ^= rng.range(1, 255) as u8;
                }
                1 => {
                    let to = rng.below(d.len() as u64) as usize;
                    d.truncate(to);
                }
                _ => {
                    let a = rng.below(d.len() as u64) as usize;
                    let b = (a + rng.range(1, 20) as usize).min(d.len());
                    d[a..b].fill(0);
                }
            }
        }
        _ => unreachable!("{class}"),
    }
    for (name, data) in &files {
        std::fs::write(dir.join(name), data).unwrap();
    }
    true
}

/// A record's fate after damage, judged from the damaged files.
fn intact(t: &Template, r: &Rec, dir: &Path) -> Intact {
    let Ok(now) = std::fs::read(dir.join(&r.segment)) else {
        return Intact::Gone;
    };
    let before = &t.files[&r.segment][r.start..r.end];
    if now.len() <= r.start {
        return Intact::Gone;
    }
    match now.get(r.start..r.end) {
        Some(b) if b == before => Intact::Yes,
        _ => Intact::Damaged,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intact {
    Yes,
    Damaged,
    /// Cut off entirely by a truncation: no byte of it is left to detect.
    Gone,
}

/// Quarantine entries: (segment, offset, len).
fn quarantine(spool_dir: &Path) -> Vec<(String, usize, usize)> {
    let Ok(text) = std::fs::read_to_string(spool_dir.join("quarantine.jsonl")) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["segment"].as_str().unwrap().to_owned(),
                v["offset"].as_u64().unwrap() as usize,
                v["len"].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

#[derive(Default, Debug)]
struct Tally {
    cases: u64,
    damaged_records: u64,
    detected: u64,
    cut_off: u64,
    redelivered: u64,
    violations: Vec<String>,
}

async fn drain(spool: &Spool, out: &mut Vec<(Uuid, Value)>) {
    loop {
        let b = spool.read_batch(5).await.unwrap();
        if b.is_noop() {
            return;
        }
        for r in &b.records {
            out.push((r.id, r.decode::<Value>().unwrap().payload));
        }
        spool.commit(&b).await.unwrap();
    }
}

/// Runs one case on a damaged directory; returns what was delivered and the new ids.
async fn exercise(
    dir: PathBuf,
    extra: u64,
) -> Result<(Vec<(Uuid, Value)>, Vec<Envelope<Value>>, u64), String> {
    let report = inspect(&dir).map_err(|e| format!("inspect failed: {e}"))?;
    let reported = report.bad_lines() + report.segments.iter().map(|s| s.torn_tail).sum::<u64>();
    let spool = Spool::builder(&dir)
        .durability(Durability::Never)
        .segment_bytes(2000)
        .open()
        .await
        .map_err(|e| format!("open failed: {e}"))?;
    let mut got = Vec::new();
    // Read and commit part of the backlog, then append behind it.
    let b = spool.read_batch(3).await.map_err(|e| e.to_string())?;
    for r in &b.records {
        got.push((r.id, r.decode::<Value>().unwrap().payload));
    }
    spool.commit(&b).await.map_err(|e| e.to_string())?;
    let mut new = Vec::new();
    for i in 0..extra {
        let e = Envelope::new(serde_json::json!({"new": i}));
        spool.append(&e).await.map_err(|e| e.to_string())?;
        new.push(e);
    }
    spool.close().await.map_err(|e| e.to_string())?;
    let spool = Spool::builder(&dir)
        .durability(Durability::Never)
        .open()
        .await
        .map_err(|e| format!("reopen failed: {e}"))?;
    drain(&spool, &mut got).await;
    spool.close().await.map_err(|e| e.to_string())?;
    inspect(&dir).map_err(|e| format!("inspect after drain failed: {e}"))?;
    Ok((got, new, reported))
}

/// Runs one case with its own generator; `None` when the class does not apply to `t`.
async fn run_case(class: &'static str, t: &Template, seed: u64, label: String) -> Option<Tally> {
    let mut rng = Rng(seed);
    let rng = &mut rng;
    let mut tally = Tally::default();
    let tally = &mut tally;
    let label = &label;
    let tmp = tempdir();
    let dir = tmp.path().to_path_buf();
    if !damage(class, t, &dir, rng) {
        return None;
    }
    let fates: Vec<Intact> = t.records.iter().map(|r| intact(t, r, &dir)).collect();
    let extra = rng.range(1, 5);
    let task = tokio::spawn(tokio::time::timeout(
        CASE_TIMEOUT,
        exercise(dir.clone(), extra),
    ));
    tally.cases += 1;
    let (got, new, reported) = match task.await {
        Err(e) => {
            tally.violations.push(format!("{label}: panicked: {e}"));
            return Some(std::mem::take(tally));
        }
        Ok(Err(_)) => {
            tally
                .violations
                .push(format!("{label}: hung for {CASE_TIMEOUT:?}"));
            return Some(std::mem::take(tally));
        }
        Ok(Ok(Err(e))) => {
            tally.violations.push(format!("{label}: {e}"));
            return Some(std::mem::take(tally));
        }
        Ok(Ok(Ok(v))) => v,
    };
    let checkpoint_lost = class.starts_with("checkpoint");
    let mut known: HashMap<Uuid, &Value> = t.payloads.iter().map(|(k, v)| (*k, v)).collect();
    for e in &new {
        known.insert(e.id, &e.payload);
    }
    let mut seen = HashSet::new();
    for (id, payload) in &got {
        match known.get(id) {
            None => tally.violations.push(format!("{label}: invented id {id}")),
            Some(p) if *p != payload => tally
                .violations
                .push(format!("{label}: {id} came back with another payload")),
            Some(_) => {}
        }
        if !seen.insert(*id) {
            tally
                .violations
                .push(format!("{label}: {id} delivered twice"));
        }
    }
    let q = quarantine(&dir);
    for (r, fate) in t.records.iter().zip(&fates) {
        let delivered = seen.contains(&r.id);
        if r.consumed {
            if delivered {
                if checkpoint_lost {
                    tally.redelivered += 1;
                } else {
                    tally
                        .violations
                        .push(format!("{label}: checkpointed record {} read again", r.id));
                }
            }
            continue;
        }
        match fate {
            Intact::Yes if !delivered => tally.violations.push(format!(
                "{label}: intact record {} ({}@{}) missing",
                r.id, r.segment, r.start
            )),
            Intact::Yes => {}
            Intact::Gone => tally.cut_off += 1,
            Intact::Damaged => {
                tally.damaged_records += 1;
                if delivered {
                    tally
                        .violations
                        .push(format!("{label}: damaged record {} read back", r.id));
                } else if q
                    .iter()
                    .any(|(s, off, len)| *s == r.segment && *off <= r.end && off + len > r.start)
                {
                    tally.detected += 1;
                } else {
                    tally.violations.push(format!(
                        "{label}: damaged record {} ({}@{}) not quarantined",
                        r.id, r.segment, r.start
                    ));
                }
            }
        }
    }
    let damaged_unread = t
        .records
        .iter()
        .zip(&fates)
        .any(|(r, f)| !r.consumed && *f == Intact::Damaged);
    if damaged_unread && reported == 0 {
        tally
            .violations
            .push(format!("{label}: inspect reported no damage"));
    }
    for e in &new {
        if !seen.contains(&e.id) {
            tally
                .violations
                .push(format!("{label}: appended record {} missing", e.id));
        }
    }
    Some(std::mem::take(tally))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_fuzz() {
    let seed: u64 = std::env::var("SEAWALL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5ea_3a11);
    let per_class: u64 = std::env::var("SEAWALL_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let mut rng = Rng(seed);
    let mut templates = Vec::new();
    for _ in 0..TEMPLATES {
        templates.push(build_template(&mut rng).await);
    }
    let started = std::time::Instant::now();
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for class in CLASSES {
        let tally = tallies.entry(class).or_default();
        let mut i = 0u64;
        while tally.cases < per_class {
            // A few cases at a time: most of a case is waiting on blocking-pool hand-offs.
            let chunk = PARALLEL.min(per_class - tally.cases);
            let cases = (0..chunk).map(|k| {
                let n = i + k;
                let t = &templates[(n % TEMPLATES as u64) as usize];
                let label = format!(
                    "seed {seed} {class} #{n} (template {})",
                    n % TEMPLATES as u64
                );
                run_case(class, t, rng.next(), label)
            });
            let cases: Vec<_> = cases.collect();
            for r in futures::future::join_all(cases).await.into_iter().flatten() {
                tally.cases += r.cases;
                tally.damaged_records += r.damaged_records;
                tally.detected += r.detected;
                tally.cut_off += r.cut_off;
                tally.redelivered += r.redelivered;
                tally.violations.extend(r.violations);
            }
            i += chunk;
            assert!(i < per_class * 10, "{class}: too few templates apply");
        }
    }
    let mut report = format!(
        "corruption fuzz, seed {seed}, {TEMPLATES} templates, {:.1?}\n",
        started.elapsed()
    );
    let _ = writeln!(
        report,
        "{:<20} {:>6} {:>9} {:>9} {:>8} {:>12} {:>11}",
        "class", "cases", "damaged", "detected", "cut off", "redelivered", "violations"
    );
    let mut total = 0;
    for (class, t) in &tallies {
        let _ = writeln!(
            report,
            "{:<20} {:>6} {:>9} {:>9} {:>8} {:>12} {:>11}",
            class,
            t.cases,
            t.damaged_records,
            t.detected,
            t.cut_off,
            t.redelivered,
            t.violations.len()
        );
        total += t.violations.len();
    }
    println!("{report}");
    let examples: Vec<&String> = tallies
        .values()
        .flat_map(|t| t.violations.iter().take(5))
        .collect();
    assert_eq!(total, 0, "violations (first 5 per class):\n{examples:#?}");
}
