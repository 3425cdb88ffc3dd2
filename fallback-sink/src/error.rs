//! Errors.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong in the spool or the sink.
///
/// The primary store's own error is kept as the boxed original in [`Error::Unavailable`] and
/// [`Error::Primary`] (get it back with `<dyn std::error::Error>::downcast_ref`).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The spool holds `max_bytes` already: the record was not written. Nothing was dropped
    /// silently; the caller decides what to do with it.
    Full {
        /// Backlog bytes in the spool when the record was refused.
        bytes: u64,
        /// Size of the refused record's line.
        record_bytes: u64,
        /// The configured cap.
        max_bytes: u64,
    },
    /// Another process (or another `Spool` in this process) owns the directory.
    Locked {
        /// The spool directory.
        dir: PathBuf,
    },
    /// A file-system operation failed.
    Io {
        /// What the spool was doing.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The record could not be serialised to JSON, or a spooled payload could not be decoded
    /// into the record type.
    Serde(serde_json::Error),
    /// The spool was closed; no more reads or writes.
    Closed,
    /// The spool's writer task died (it panicked); the spool is closed. The records it had
    /// not acknowledged may or may not be on disk (the next open recovers them if they are).
    /// Logged at `error` level when it happens.
    WriterFailed {
        /// Why it died.
        cause: String,
    },
    /// The sink's background replayer died (the primary's `write_batch` panicked while
    /// replaying). The sink refuses new records from then on, so a backlog that would never
    /// drain does not grow silently; the spool keeps what it holds for the next owner. Logged
    /// at `error` level when it happens.
    ReplayerFailed {
        /// Why it died.
        cause: String,
    },
    /// A batch was committed out of order (its start is not the current checkpoint).
    StaleBatch,
    /// The configuration was rejected.
    Config(ConfigError),
    /// The primary store failed during replay; everything before the failing batch is
    /// checkpointed, the failing batch stays in the spool.
    Primary(Box<dyn std::error::Error + Send + Sync>),
    /// Both destinations failed: the primary (or its breaker) refused the record and the spool
    /// could not take it either. The record was not stored anywhere.
    Unavailable {
        /// Why the primary did not take the record (the primary's own error, or the breaker's
        /// rejection).
        primary: Box<dyn std::error::Error + Send + Sync>,
        /// Why the spool did not take it.
        spool: Box<Error>,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A short stable name for the error, used as the `kind` label of
    /// `seawall_fallback_sink_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Full { .. } => "full",
            Error::Locked { .. } => "locked",
            Error::Io { .. } => "io",
            Error::Serde(_) => "serde",
            Error::Closed => "closed",
            Error::WriterFailed { .. } => "writer_failed",
            Error::ReplayerFailed { .. } => "replayer_failed",
            Error::StaleBatch => "stale_batch",
            Error::Config(_) => "config",
            Error::Primary(_) => "primary",
            Error::Unavailable { .. } => "unavailable",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Full {
                bytes,
                record_bytes,
                max_bytes,
            } => write!(
                f,
                "spool full: {bytes} bytes spooled, a {record_bytes}-byte record would exceed max_bytes = {max_bytes}"
            ),
            Error::Locked { dir } => write!(
                f,
                "spool directory {} is owned by another process",
                dir.display()
            ),
            Error::Io { op, path, source } => {
                write!(f, "spool I/O failed: {op} {}: {source}", path.display())
            }
            Error::Serde(e) => write!(f, "record (de)serialisation failed: {e}"),
            Error::Closed => f.write_str("spool is closed"),
            Error::WriterFailed { cause } => {
                write!(f, "spool is closed: its writer task died: {cause}")
            }
            Error::ReplayerFailed { cause } => {
                write!(
                    f,
                    "fallback sink refuses records: its replayer died: {cause}"
                )
            }
            Error::StaleBatch => f.write_str("batch does not start at the current checkpoint"),
            Error::Config(e) => write!(f, "{e}"),
            Error::Primary(e) => write!(f, "primary store failed during replay: {e}"),
            Error::Unavailable { primary, spool } => write!(
                f,
                "record not stored: primary failed ({primary}) and spool failed ({spool})"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Serde(e) => Some(e),
            Error::Config(e) => Some(e),
            Error::Primary(e) => Some(e.as_ref()),
            Error::Unavailable { spool, .. } => Some(spool.as_ref()),
            _ => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

/// An invalid setting, returned by a builder's `open` before anything touches the disk.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use seawall_fallback_sink::{Error, Spool};
///
/// let err = Spool::builder("never-created").max_bytes(0).open().await.unwrap_err();
/// let Error::Config(e) = err else { panic!() };
/// assert_eq!(e.field(), "max_bytes");
/// assert_eq!(e.to_string(), "invalid `max_bytes`: must be at least 1, got 0");
/// assert!(!std::path::Path::new("never-created").exists());
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    reason: Cow<'static, str>,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }

    /// The builder setter's name, e.g. `"max_bytes"`, `"durability"`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why, stating the allowed range and the value given, e.g.
    /// `"must be in 1..=65536, got 0"`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}
