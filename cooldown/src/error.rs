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
        }
    }
}

impl std::error::Error for ConfigError {}
