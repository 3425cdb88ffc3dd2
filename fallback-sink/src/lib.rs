//! A durable local spool for tokio services: records go to a file when the primary store is
//! down, and are replayed to it, in order, when it recovers.
//!
//! An audit log, an event stream or a billing ledger usually has one primary store (a
//! database). When that store is down, the records must go somewhere durable and come back
//! later, without loss, without reordering, without a corrupt file wedging start-up.
//! [`Spool`] is that somewhere: a directory of JSON Lines segments with checksums, an
//! atomically written checkpoint, quarantine for corrupt lines and a process-exclusive lock.
//!
//! # Quick example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use seawall_fallback_sink::{Envelope, Spool, Sync};
//!
//! let dir = tempfile::tempdir()?;
//! let spool = Spool::builder(dir.path()).sync(Sync::Always).open().await?;
//! spool.append(&Envelope::new(serde_json::json!({"event": "login", "user": 7}))).await?;
//! assert_eq!(spool.stats().records, 1);
//!
//! let batch = spool.read_batch(100).await?;
//! assert_eq!(batch.records.len(), 1);
//! spool.commit(&batch).await?;
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

mod checkpoint;
mod envelope;
mod error;
mod metrics;
mod record;
mod recovery;
mod spool;
mod sync;
mod writer;

pub use envelope::Envelope;
pub use error::{ConfigError, Error};
pub use metrics::Metrics;
pub use spool::{Batch, Position, Spool, SpoolBuilder, SpooledRecord, Stats};
pub use sync::Sync;
