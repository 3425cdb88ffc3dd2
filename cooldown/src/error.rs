//! Configuration errors.

use std::fmt;
use std::time::Duration;

/// An invalid [`CooldownBuilder`](crate::CooldownBuilder) setting, returned by
/// [`build`](crate::CooldownBuilder::build). Each variant names its field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `window` was zero: every event would fire.
    ZeroWindow,
    /// `window` was longer than [`ConfigError::MAX_WINDOW`].
    WindowTooLong {
        /// The window that was asked for.
        window: Duration,
    },
    /// `max_keys` was zero: no key could be tracked.
    ZeroMaxKeys,
    /// `name` was empty: it is the `cooldown` metric label.
    EmptyName,
    /// `name` contained `{` or `}`: a Redis cooldown uses its name as the
    /// Redis Cluster hash tag of its keys (`seawall:cooldown:{name}:...`).
    #[cfg(feature = "redis")]
    InvalidName {
        /// The name that was given.
        name: String,
    },
    /// No Redis server was given: call
    /// [`url`](crate::RedisCooldownBuilder::url),
    /// [`client`](crate::RedisCooldownBuilder::client) or
    /// [`cluster_urls`](crate::RedisCooldownBuilder::cluster_urls).
    #[cfg(feature = "redis")]
    MissingRedis,
    /// The Redis URL could not be parsed.
    #[cfg(feature = "redis")]
    InvalidRedisUrl {
        /// What the `redis` crate said about it.
        reason: String,
    },
    /// A [`cluster_urls`](crate::RedisCooldownBuilder::cluster_urls) list was
    /// empty or held a URL that could not be parsed.
    #[cfg(feature = "redis")]
    InvalidClusterUrls {
        /// What was wrong with it.
        reason: String,
    },
    /// `prefix` contained `{` or `}`: the cooldown's name must be the first
    /// hash tag of its keys, so they share one Redis Cluster slot.
    #[cfg(feature = "redis")]
    InvalidPrefix {
        /// The prefix that was given.
        prefix: String,
    },
    /// `timeout` was zero: every Redis call would fail.
    #[cfg(feature = "redis")]
    ZeroTimeout,
    /// `reservation_timeout` was zero: a reservation would expire at once.
    #[cfg(feature = "redis")]
    ZeroReservationTimeout,
    /// A Redis cooldown duration (`window`, `reservation_timeout`,
    /// `retention`) was outside the range Redis and its scripts can hold:
    /// at most [`MAX_REDIS_DURATION`](crate::MAX_REDIS_DURATION) each, and
    /// `retention` at least [`MIN_RETENTION`](crate::MIN_RETENTION).
    #[cfg(feature = "redis")]
    DurationOutOfRange {
        /// The builder field.
        field: &'static str,
        /// The duration that was asked for.
        value: Duration,
        /// The shortest accepted.
        min: Duration,
        /// The longest accepted.
        max: Duration,
    },
    /// `build` was called outside a tokio runtime: a Redis cooldown needs one
    /// for its connection and to roll back dropped reservations.
    #[cfg(feature = "redis")]
    NoRuntime,
}

impl ConfigError {
    /// The longest window accepted: 100 years.
    pub const MAX_WINDOW: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

    /// The builder field this error is about.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let err = seawall_cooldown::Cooldown::<String>::builder()
    ///     .window(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "window");
    /// ```
    pub fn field(&self) -> &'static str {
        match self {
            ConfigError::ZeroWindow | ConfigError::WindowTooLong { .. } => "window",
            ConfigError::ZeroMaxKeys => "max_keys",
            ConfigError::EmptyName => "name",
            #[cfg(feature = "redis")]
            ConfigError::InvalidName { .. } => "name",
            #[cfg(feature = "redis")]
            ConfigError::MissingRedis | ConfigError::InvalidRedisUrl { .. } => "url",
            #[cfg(feature = "redis")]
            ConfigError::InvalidClusterUrls { .. } => "cluster_urls",
            #[cfg(feature = "redis")]
            ConfigError::InvalidPrefix { .. } => "prefix",
            #[cfg(feature = "redis")]
            ConfigError::ZeroTimeout => "timeout",
            #[cfg(feature = "redis")]
            ConfigError::ZeroReservationTimeout => "reservation_timeout",
            #[cfg(feature = "redis")]
            ConfigError::DurationOutOfRange { field, .. } => field,
            #[cfg(feature = "redis")]
            ConfigError::NoRuntime => "runtime",
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroWindow => f.write_str("cooldown `window` must be greater than zero"),
            ConfigError::WindowTooLong { window } => write!(
                f,
                "cooldown `window` of {window:?} is longer than the maximum of {:?}",
                Self::MAX_WINDOW
            ),
            ConfigError::ZeroMaxKeys => f.write_str("cooldown `max_keys` must be at least 1"),
            ConfigError::EmptyName => f.write_str("cooldown `name` must not be empty"),
            #[cfg(feature = "redis")]
            ConfigError::InvalidName { name } => write!(
                f,
                "cooldown `name` {name:?} must not contain `{{` or `}}` (it is the Redis Cluster hash tag)"
            ),
            #[cfg(feature = "redis")]
            ConfigError::MissingRedis => {
                f.write_str("redis cooldown `url` (or `client`) must be set")
            }
            #[cfg(feature = "redis")]
            ConfigError::InvalidRedisUrl { reason } => {
                write!(f, "redis cooldown `url` is invalid: {reason}")
            }
            #[cfg(feature = "redis")]
            ConfigError::InvalidClusterUrls { reason } => {
                write!(f, "redis cooldown `cluster_urls` are invalid: {reason}")
            }
            #[cfg(feature = "redis")]
            ConfigError::InvalidPrefix { prefix } => write!(
                f,
                "redis cooldown `prefix` {prefix:?} must not contain `{{` or `}}` (the name is the Redis Cluster hash tag)"
            ),
            #[cfg(feature = "redis")]
            ConfigError::ZeroTimeout => {
                f.write_str("redis cooldown `timeout` must be greater than zero")
            }
            #[cfg(feature = "redis")]
            ConfigError::ZeroReservationTimeout => {
                f.write_str("redis cooldown `reservation_timeout` must be greater than zero")
            }
            #[cfg(feature = "redis")]
            ConfigError::DurationOutOfRange {
                field,
                value,
                min,
                max,
            } => write!(
                f,
                "redis cooldown `{field}` of {value:?} is outside {min:?}..={max:?}"
            ),
            #[cfg(feature = "redis")]
            ConfigError::NoRuntime => f.write_str(
                "redis cooldown `build()` must be called inside a tokio runtime (`runtime`)",
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
