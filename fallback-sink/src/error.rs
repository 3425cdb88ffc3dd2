//! Errors.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong in the spool or the sink.
///
/// `E` is the primary store's error type ([`Primary::Error`](crate::Primary::Error)); it comes
/// back unchanged in [`Error::Inner`] (also inside [`Error::Unavailable`]). The spool on its
/// own has no primary: its calls return `Error` (that is, `Error<Infallible>`).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use seawall_fallback_sink::{Envelope, Error, FallbackSink, Primary};
///
/// #[derive(Debug, PartialEq)]
/// struct Refused(u16);
/// impl std::fmt::Display for Refused {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "refused {}", self.0) }
/// }
/// impl std::error::Error for Refused {}
///
/// struct Db;
/// impl Primary<u32> for Db {
///     type Error = Refused;
///     async fn write_batch(&self, _: &[Envelope<u32>]) -> Result<(), Refused> { Err(Refused(503)) }
/// }
///
/// let dir = tempfile::tempdir().unwrap();
/// let sink = FallbackSink::builder(dir.path()).background_replay(false).open(Db).await.unwrap();
/// sink.write(7).await.unwrap(); // spooled
/// // Replay hands back the store's own error, typed.
/// assert!(matches!(sink.replay_once().await, Err(Error::Inner(Refused(503)))));
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E = Infallible> {
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
    /// The spool's writer failed (its task panicked, or an append panicked while writing, with
    /// `io_on_runtime_thread`); the spool is closed. The records it had not acknowledged may
    /// or may not be on disk (the next open recovers them if they are).
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
    /// The primary store's own error, unchanged: from a replayed batch (everything before it
    /// is checkpointed, the failing batch stays in the spool), or inside
    /// [`Unavailable`](Error::Unavailable) for a direct write.
    Inner(E),
    /// The circuit breaker refused the call without calling the primary (feature
    /// `circuit-breaker`); it admits a probe after `retry_after`.
    BreakerOpen {
        /// How long until the breaker lets a probe through.
        retry_after: Duration,
    },
    /// The retry policy gave up on a direct write (feature `retry`); the primary's last error
    /// is inside, unchanged.
    #[cfg(feature = "retry")]
    Retry(seawall_retry::RetryError<E>),
    /// Both destinations failed: the primary (or its breaker) refused the record and the spool
    /// could not take it either. The record was not stored anywhere.
    Unavailable {
        /// Why the primary did not take the record: [`Error::Inner`] (the store's own
        /// error), [`Error::BreakerOpen`] or `Error::Retry`.
        primary: Box<Error<E>>,
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

    /// The same spool error, typed for a sink whose primary fails with `E`.
    pub(crate) fn widen<E>(self) -> Error<E> {
        match self {
            Error::Full {
                bytes,
                record_bytes,
                max_bytes,
            } => Error::Full {
                bytes,
                record_bytes,
                max_bytes,
            },
            Error::Locked { dir } => Error::Locked { dir },
            Error::Io { op, path, source } => Error::Io { op, path, source },
            Error::Serde(e) => Error::Serde(e),
            Error::Closed => Error::Closed,
            Error::WriterFailed { cause } => Error::WriterFailed { cause },
            Error::ReplayerFailed { cause } => Error::ReplayerFailed { cause },
            Error::StaleBatch => Error::StaleBatch,
            Error::Config(e) => Error::Config(e),
            Error::Inner(never) => match never {},
            Error::BreakerOpen { retry_after } => Error::BreakerOpen { retry_after },
            // The spool never builds this variant; its error type has no values anyway.
            #[cfg(feature = "retry")]
            Error::Retry(e) => match e.into_last_error() {
                Some(never) => match never {},
                None => Error::Closed,
            },
            Error::Unavailable { primary, spool } => Error::Unavailable {
                primary: Box::new(primary.widen()),
                spool,
            },
        }
    }
}

impl<E> Error<E> {
    /// A short stable name for the error, used as the `kind` label of
    /// `seawall_fallback_sink_errors_total`.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_fallback_sink::Error;
    /// let e: Error = Error::Closed;
    /// assert_eq!(e.kind(), "closed");
    /// ```
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
            Error::Inner(_) => "primary",
            Error::BreakerOpen { .. } => "breaker_open",
            #[cfg(feature = "retry")]
            Error::Retry(_) => "retry",
            Error::Unavailable { .. } => "unavailable",
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
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
                write!(f, "spool is closed: its writer failed: {cause}")
            }
            Error::ReplayerFailed { cause } => {
                write!(
                    f,
                    "fallback sink refuses records: its replayer died: {cause}"
                )
            }
            Error::StaleBatch => f.write_str("batch does not start at the current checkpoint"),
            Error::Config(e) => write!(f, "{e}"),
            Error::Inner(e) => write!(f, "primary store failed: {e}"),
            Error::BreakerOpen { retry_after } => write!(
                f,
                "circuit breaker open: the primary was not called (probe in {retry_after:?})"
            ),
            #[cfg(feature = "retry")]
            Error::Retry(e) => write!(f, "primary store failed after retries: {e}"),
            Error::Unavailable { primary, spool } => write!(
                f,
                "record not stored: primary failed ({primary}) and spool failed ({spool})"
            ),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Serde(e) => Some(e),
            Error::Config(e) => Some(e),
            Error::Inner(e) => Some(e),
            #[cfg(feature = "retry")]
            Error::Retry(e) => Some(e),
            Error::Unavailable { primary, .. } => Some(primary.as_ref()),
            _ => None,
        }
    }
}

impl<E> From<ConfigError> for Error<E> {
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
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let err = seawall_fallback_sink::Spool::builder("unused").segment_bytes(0).open().await.unwrap_err();
    /// let seawall_fallback_sink::Error::Config(e) = err else { panic!() };
    /// assert_eq!(e.field(), "segment_bytes");
    /// # }
    /// ```
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why, stating the allowed range and the value given, e.g.
    /// `"must be in 1..=65536, got 0"`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let err = seawall_fallback_sink::Spool::builder("unused").name("").open().await.unwrap_err();
    /// let seawall_fallback_sink::Error::Config(e) = err else { panic!() };
    /// assert_eq!(e.reason(), "must be 1..=256 bytes long, got 0");
    /// # }
    /// ```
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
