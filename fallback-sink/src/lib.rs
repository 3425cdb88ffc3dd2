//! A durable local spool for tokio services: records go to a file when the primary store is
//! down, and are replayed to it, in order, when it recovers.
//!
//! An audit log, an event stream or a billing ledger usually has one primary store (a
//! database). When that store is down, the records must go somewhere durable and come back
//! later, without loss, without reordering, without a corrupt file wedging start-up.
//! [`Spool`] is that somewhere: a directory of JSON Lines segments with checksums, an
//! atomically written checkpoint, quarantine for damaged bytes and a process-exclusive lock.
//!
//! [`FallbackSink`] composes it with the primary: `write` goes to the primary (through an
//! optional circuit breaker and retry policy); when that fails the record is spooled and the
//! call still succeeds ([`Delivered::Spooled`]); a background replayer drains the spool back
//! to the primary in order, at least once, idempotent by the record's UUIDv7
//! ([`Envelope::id`]). `write` fails only when both the primary and the spool failed.
//!
//! # Quick example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use seawall_fallback_sink::{Delivered, Durability, Envelope, FallbackSink, Primary};
//!
//! struct Down; // a primary store that is down
//! impl Primary<String> for Down {
//!     type Error = std::io::Error;
//!     async fn write_batch(&self, _: &[Envelope<String>]) -> Result<(), Self::Error> {
//!         Err(std::io::Error::other("connection refused"))
//!     }
//! }
//!
//! let dir = tempfile::tempdir()?;
//! let sink = FallbackSink::builder(dir.path())
//!     .name("audit")
//!     .durability(Durability::Always)
//!     .open(Down)
//!     .await?;
//! assert_eq!(sink.write("user 7 logged in".to_string()).await?, Delivered::Spooled);
//! assert_eq!(sink.stats().records, 1); // durable on disk, replayed when the store is back
//! sink.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! The spool alone:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use seawall_fallback_sink::{Envelope, Spool};
//!
//! let dir = tempfile::tempdir()?;
//! let spool = Spool::open(dir.path()).await?;
//! spool.append(&Envelope::new(serde_json::json!({"event": "login", "user": 7}))).await?;
//! let batch = spool.read_batch(100).await?;
//! assert_eq!(batch.records.len(), 1);
//! spool.commit(&batch).await?; // checkpointed: never read again
//! assert_eq!(spool.stats().records, 0);
//! # Ok(()) }
//! ```
//!
//! # What survives damage
//!
//! On open, recovery verifies every unread byte (see [`SpoolBuilder::open`]). For damage to
//! the files of a closed spool (a bad disk block, a bad copy, an operator's editor):
//!
//! | damage to a closed spool | damaged records | intact records | later appends |
//! |---|---|---|---|
//! | flipped byte(s) | detected by the CRC32C, which covers every byte that identifies or orders a line (version, id, seq, ts, payload); the bytes go to the quarantine file with segment, offset and length; never delivered, never read back as another record | delivered exactly once, in order, even when the flipped byte is the newline before or after them (a verified line is kept whether or not its newline survived) | accepted, delivered after the backlog |
//! | truncation inside the unread part | a record cut in the middle is quarantined (incomplete line) and cut off; records cut off entirely have no bytes left and cannot be detected from the file | delivered exactly once | accepted; never written after a partial line (a new segment is started) |
//! | truncation below the checkpoint | none unread (the cut part was replayed) | delivered | the checkpoint is moved to the end of the file and written back atomically before appends are accepted, so the next open reads them |
//! | zeroed range | every record it touches is quarantined (one entry per damaged range, with its offset) | delivered, including a record whose preceding newline was zeroed | accepted |
//! | appended garbage | none; the garbage is quarantined and cut off (bytes forming a record would need a matching CRC32C) | delivered | accepted, on a fresh line |
//! | checkpoint deleted | none | replayed from the first segment on disk: records already replayed but still in that segment are delivered again (at least once; the primary deduplicates by id); none is lost | accepted |
//! | checkpoint corrupt | none (its own checksum detects it) | as deleted; the recovered position is written back atomically before appends are accepted | accepted |
//!
//! "Intact" means the record's own bytes, newline aside, are unchanged. Recovery is linear in
//! the size of the damage: the search for intact records inside a damaged line has a work
//! budget (64 times the line's length), and in a crafted line that exhausts it the rest goes to
//! quarantine rather than being searched (kept, never skipped). No byte range after the
//! checkpoint is skipped without being quarantined, and `open` never fails on damage. A seeded
//! fuzzer (`tests/corruption_fuzz.rs`, 1000 cases per damage class, part of `cargo test`) checks every row:
//! 0 intact records missing, 0 invented ids, 0 duplicates beyond the checkpoint rows, every
//! damaged unread record quarantined.
//!
//! Segment ids never wrap. A segment named with the last possible id (`u64::MAX`, only a crafted
//! or renamed file, or a crafted checkpoint, gets there) opens and is read like any other; once
//! it is full (or ends mid-line at the checkpoint) appends are refused with an I/O error that
//! says no segment id follows it, and what is in it stays readable. Renaming the segments to
//! lower ids, keeping their order, lets the spool write on.
//!
//! Lines written before 0.1 (format version 1, `{"id":..,"crc":..,"payload":..}`) are still read,
//! so an old spool drains after an upgrade; their checksum covers only the payload, so damage to
//! their id, seq or timestamp is not detected. Every line written now is version 2.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `circuit-breaker` | no | route primary writes through a `seawall-circuit-breaker` |
//! | `retry` | no | retry primary writes with a `seawall-retry` policy before spooling |
//!
//! # Minimum supported Rust version
//!
//! 1.89 (`File::try_lock`).

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod batch;
mod builder;
mod checkpoint;
mod durability;
mod envelope;
mod error;
mod inspect;
mod layout;
mod metrics;
mod primary;
mod quarantine;
mod record;
mod recovery;
mod reply;
mod sink;
mod spool;
mod state;
mod stats;
mod writer;

pub use batch::{Batch, SpooledRecord};
pub use builder::{FallbackSinkBuilder, SpoolBuilder};
pub use durability::Durability;
pub use envelope::Envelope;
pub use error::{ConfigError, Error};
pub use inspect::{Inspection, SegmentReport, inspect};
pub use layout::Position;
pub use metrics::Metrics;
pub use primary::Primary;
pub use sink::{Delivered, FallbackSink};
pub use spool::Spool;
pub use stats::Stats;
