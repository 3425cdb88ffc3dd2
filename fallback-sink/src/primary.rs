//! The primary store.

use std::future::Future;

use crate::Envelope;

/// The store records belong in (a database, a queue, an HTTP API).
///
/// `write_batch` must be **idempotent by [`Envelope::id`]**: replay is at-least-once, so the
/// same record can arrive twice (after a crash between delivering a batch and checkpointing
/// it, or when a write timed out but had in fact succeeded). A unique constraint on the id
/// with `INSERT .. ON CONFLICT DO NOTHING` is the usual way. `records` are in order; the
/// sink never sends a later record before an earlier one that is still in the spool.
///
/// The returned future must be `Send` (an `async fn` in the impl is fine when everything it
/// holds across an `.await` is `Send`).
///
/// # Examples
///
/// ```
/// use std::sync::Mutex;
/// use seawall_fallback_sink::{Envelope, Primary};
///
/// #[derive(Default)]
/// struct Memory(Mutex<Vec<Envelope<String>>>);
///
/// impl Primary<String> for Memory {
///     type Error = std::io::Error;
///     async fn write_batch(&self, records: &[Envelope<String>]) -> Result<(), Self::Error> {
///         let mut stored = self.0.lock().unwrap();
///         for r in records {
///             if !stored.iter().any(|s| s.id == r.id) {
///                 stored.push(r.clone());
///             }
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Primary<T>: Send + std::marker::Sync + 'static {
    /// The store's error, passed through to the caller unchanged, typed, as
    /// [`Error::Inner`](crate::Error::Inner).
    type Error: std::error::Error + Send + std::marker::Sync + 'static;

    /// Stores `records`, all or nothing from the sink's point of view: on `Err`, every record
    /// of the batch is spooled (or kept in the spool) and sent again later.
    fn write_batch(
        &self,
        records: &[Envelope<T>],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether a write that failed with `error` may succeed when tried again (a dropped
    /// connection, a timeout, a failover), as opposed to failing the same way every time (a
    /// constraint the record violates, a permission error). The retry policy given to
    /// [`FallbackSinkBuilder::retry`](crate::FallbackSinkBuilder) retries only transient
    /// errors; a permanent one goes to the spool at once. Either way the record is not lost.
    ///
    /// The default treats every error as transient.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_fallback_sink::{Envelope, Primary};
    ///
    /// struct Http;
    ///
    /// #[derive(Debug)]
    /// struct Status(u16);
    /// impl std::fmt::Display for Status {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         write!(f, "HTTP {}", self.0)
    ///     }
    /// }
    /// impl std::error::Error for Status {}
    ///
    /// impl Primary<String> for Http {
    ///     type Error = Status;
    ///     async fn write_batch(&self, _: &[Envelope<String>]) -> Result<(), Status> {
    ///         Err(Status(503))
    ///     }
    ///     fn is_transient(&self, error: &Status) -> bool {
    ///         error.0 >= 500
    ///     }
    /// }
    ///
    /// assert!(Http.is_transient(&Status(503)));
    /// assert!(!Http.is_transient(&Status(400)));
    /// ```
    fn is_transient(&self, error: &Self::Error) -> bool {
        let _ = error;
        true
    }
}
