//! [`RetryBudgetBuilder`]: validates a retry budget.

use crate::budget::RetryBudget;
use crate::error::ConfigError;

/// The most floor retries per second a budget accepts (one per microsecond).
const MAX_MIN_PER_SECOND: u32 = 1_000_000;

/// Builds a [`RetryBudget`].
///
/// # Default
/// | setting | default | allowed |
/// |---|---|---|
/// | `ratio` | 0.2 (Finagle's `percentCanRetry`) | finite, `0..=1000` |
/// | `min_per_second` | 10 (Finagle's `minRetriesPerSec`) | `0..=1000000` (0: no floor) |
/// | `max_tokens` | 100 | `1..=u32::MAX` |
///
/// # Examples
/// ```
/// use seawall_retry::RetryBudgetBuilder;
///
/// let budget = RetryBudgetBuilder::new().ratio(0.1).max_tokens(20).build()?;
/// assert_eq!(budget.tokens(), 0.0); // a budget starts empty
/// # Ok::<(), seawall_retry::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct RetryBudgetBuilder {
    pub(crate) ratio: f64,
    pub(crate) min_per_second: u32,
    pub(crate) max_tokens: u32,
}

impl Default for RetryBudgetBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryBudgetBuilder {
    /// A builder with the defaults (see the table above).
    ///
    /// # Examples
    /// ```
    /// let budget = seawall_retry::RetryBudgetBuilder::new().build()?;
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn new() -> Self {
        RetryBudgetBuilder {
            ratio: 0.2,
            min_per_second: 10,
            max_tokens: 100,
        }
    }

    /// Tokens deposited per call: the long-run ratio of retries to calls (0.2 = 20 %).
    ///
    /// # Examples
    /// ```
    /// let budget = seawall_retry::RetryBudget::builder().ratio(0.5).build()?;
    /// budget.deposit();
    /// assert_eq!(budget.tokens(), 0.5);
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Retries per second always allowed, whatever the bucket holds (0 disables the floor).
    ///
    /// # Examples
    /// ```
    /// let budget = seawall_retry::RetryBudget::builder().min_per_second(0).build()?;
    /// assert!(!budget.try_withdraw()); // empty, and no floor
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn min_per_second(mut self, min_per_second: u32) -> Self {
        self.min_per_second = min_per_second;
        self
    }

    /// The most tokens the bucket saves up during healthy periods: the largest burst of
    /// retries (beyond the floor) an outage can set off.
    ///
    /// # Examples
    /// ```
    /// let budget = seawall_retry::RetryBudget::builder().ratio(1.0).max_tokens(2).build()?;
    /// (0..10).for_each(|_| budget.deposit());
    /// assert_eq!(budget.tokens(), 2.0);
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Validates and builds the budget.
    ///
    /// # Errors
    /// A [`ConfigError`] for `ratio` (NaN, infinite, negative or above 1000),
    /// `min_per_second` (above 1 000 000) or `max_tokens` (0).
    ///
    /// # Panics
    /// Never.
    ///
    /// # Examples
    /// ```
    /// let err = seawall_retry::RetryBudget::builder().ratio(-1.0).build().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid `ratio`: must be a finite number in 0..=1000, got -1");
    /// ```
    pub fn build(&self) -> Result<RetryBudget, ConfigError> {
        if !(self.ratio.is_finite() && (0.0..=1000.0).contains(&self.ratio)) {
            return Err(ConfigError::new(
                "ratio",
                format!("must be a finite number in 0..=1000, got {}", self.ratio),
            ));
        }
        if self.min_per_second > MAX_MIN_PER_SECOND {
            return Err(ConfigError::new(
                "min_per_second",
                format!(
                    "must be in 0..={MAX_MIN_PER_SECOND}, got {}",
                    self.min_per_second
                ),
            ));
        }
        if self.max_tokens == 0 {
            return Err(ConfigError::new("max_tokens", "must be at least 1, got 0"));
        }
        Ok(RetryBudget::from_valid(
            self.ratio,
            self.min_per_second,
            self.max_tokens,
        ))
    }
}
