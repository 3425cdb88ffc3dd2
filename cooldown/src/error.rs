//! Configuration errors.

use std::borrow::Cow;
use std::fmt;

/// An invalid builder setting, returned by [`CooldownBuilder::build`](crate::CooldownBuilder::build)
/// (and, with the `redis` feature, by `RedisCooldownBuilder::build`).
///
/// [`field`](Self::field) is the name of the builder setter whose value was rejected,
/// [`reason`](Self::reason) states the allowed range and the value given. It displays as
/// ``invalid `field`: reason``.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seawall_cooldown::Cooldown;
///
/// let err = Cooldown::<String>::builder()
///     .window(Duration::ZERO)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "window");
/// assert!(err.to_string().starts_with("invalid `window`: "));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    reason: Cow<'static, str>,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The builder setter's name, e.g. `"window"`, `"max_keys"`, `"name"` (and for a Redis
    /// cooldown `"url"`, `"nodes"`, `"prefix"`, `"command_timeout"`, `"reservation_timeout"`,
    /// `"retention"`, `"runtime"`).
    ///
    /// # Examples
    ///
    /// ```
    /// let err = seawall_cooldown::Cooldown::<String>::builder()
    ///     .max_keys(0)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "max_keys");
    /// ```
    #[must_use]
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why the value was rejected: the allowed range and the value given.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = seawall_cooldown::Cooldown::<String>::builder()
    ///     .max_keys(0)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.reason().contains("got 0"), "{err}");
    /// ```
    #[must_use]
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
