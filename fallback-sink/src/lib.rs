//! A durable local spool for tokio services: records go to a file when the primary store is
//! down, and are replayed to it, in order, when it recovers.
//!
//! An audit log, an event stream or a billing ledger usually has one primary store (a
//! database). When that store is down, the records must go somewhere durable and come back
//! later, without loss, without reordering, without a corrupt file wedging start-up.
//! [`Spool`] is that somewhere: a directory of JSON Lines segments with checksums, an
//! atomically written checkpoint, quarantine for corrupt lines and a process-exclusive lock.
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
mod sink;
mod spool;
mod state;
mod writer;

pub use builder::{FallbackSinkBuilder, SpoolBuilder};
pub use durability::Durability;
pub use envelope::Envelope;
pub use error::{ConfigError, Error};
pub use inspect::{Inspection, SegmentReport, inspect};
pub use layout::Position;
pub use metrics::Metrics;
pub use primary::Primary;
pub use sink::{Delivered, FallbackSink};
pub use spool::{Batch, Spool, SpooledRecord, Stats};
