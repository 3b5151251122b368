//! Durations as policies write them: `30m`, `12h`, `3d`, `2w`.
//!
//! One whole number and one unit keeps the files readable and unambiguous (no `1d12h`, no months of varying
//! length); the value round-trips to the same text so that reports quote what the author wrote.

use std::fmt;
use std::str::FromStr;

use chrono::TimeDelta;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The unit of a [`Duration`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// `m`
    Minutes,
    /// `h`
    Hours,
    /// `d`
    Days,
    /// `w`
    Weeks,
}

impl Unit {
    fn suffix(self) -> char {
        match self {
            Unit::Minutes => 'm',
            Unit::Hours => 'h',
            Unit::Days => 'd',
            Unit::Weeks => 'w',
        }
    }
}

/// A policy duration: a whole number of minutes, hours, days or weeks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Duration {
    amount: u32,
    unit: Unit,
    delta: TimeDelta,
}

const HINT: &str = "(use 30m, 12h, 3d or 2w)";

impl Duration {
    /// A duration of `amount` `unit`s.
    pub fn new(amount: u32, unit: Unit) -> Self {
        let n = i64::from(amount);
        // Cannot overflow: u32::MAX weeks is far below TimeDelta's range of about 292 million years.
        let delta = match unit {
            Unit::Minutes => TimeDelta::minutes(n),
            Unit::Hours => TimeDelta::hours(n),
            Unit::Days => TimeDelta::days(n),
            Unit::Weeks => TimeDelta::weeks(n),
        };
        Self { amount, unit, delta }
    }

    /// Whole minutes.
    pub fn minutes(n: u32) -> Self {
        Self::new(n, Unit::Minutes)
    }

    /// Whole hours.
    pub fn hours(n: u32) -> Self {
        Self::new(n, Unit::Hours)
    }

    /// Whole days.
    pub fn days(n: u32) -> Self {
        Self::new(n, Unit::Days)
    }

    /// Whole weeks.
    pub fn weeks(n: u32) -> Self {
        Self::new(n, Unit::Weeks)
    }

    /// The length, for clock arithmetic.
    pub fn as_delta(&self) -> TimeDelta {
        self.delta
    }
}

impl From<Duration> for TimeDelta {
    fn from(d: Duration) -> Self {
        d.delta
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a duration {HINT}");
        let t = s.trim();
        let split = t.len().checked_sub(1).filter(|&i| t.is_char_boundary(i)).ok_or_else(bad)?;
        let (digits, suffix) = t.split_at(split);
        let unit = match suffix {
            "m" => Unit::Minutes,
            "h" => Unit::Hours,
            "d" => Unit::Days,
            "w" => Unit::Weeks,
            _ => return Err(bad()),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let amount = digits.parse::<u32>().map_err(|_| format!("{s:?} is too long a duration"))?;
        Ok(Self::new(amount, unit))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.unit.suffix())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a duration {HINT}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_unit_parses_to_its_length_and_prints_back() {
        // GIVEN the four units WHEN parsed THEN each has its length and prints as written
        for (text, delta) in [
            ("30m", TimeDelta::minutes(30)),
            ("12h", TimeDelta::hours(12)),
            ("3d", TimeDelta::days(3)),
            ("2w", TimeDelta::weeks(2)),
            ("0d", TimeDelta::zero()),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.as_delta(), delta, "{text}");
            assert_eq!(d.to_string(), text);
        }
    }

    #[test]
    fn malformed_durations_are_refused_with_a_hint() {
        // GIVEN text that is not one number and one unit
        for text in ["3x", "", "d", "1d12h", "-1d", "1.5d", "3 d", "é", "99999999999d"] {
            // WHEN parsed THEN it is an error that says what to write
            let err = text.parse::<Duration>().unwrap_err();
            assert!(err.contains("duration"), "{text}: {err}");
        }
        assert_eq!("3x".parse::<Duration>().unwrap_err(), "\"3x\" is not a duration (use 30m, 12h, 3d or 2w)");
    }
}
