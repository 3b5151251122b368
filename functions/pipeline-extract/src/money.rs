//! Exact money: whole cents in an `i64`, never a float.
//!
//! Quotes carry amounts from a few cents to tens of millions; an `i64` of cents holds ±92 trillion units, and every
//! amount a document prints has at most two decimal places, so nothing is ever rounded. The JSON form is a decimal
//! string with exactly two places (`"1234.50"`), as the fixtures and downstream consumers expect.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of money in cents (hundredths of the currency unit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

/// Why a decimal string is not an amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not `[-]digits[.d[d]]`.
    #[error("not a decimal amount")]
    Syntax,
    /// More than two decimal places: we never round.
    #[error("more than two decimal places")]
    Precision,
    /// Beyond what cents in an `i64` hold.
    #[error("amount too large")]
    Overflow,
}

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(0);

    /// From a number of cents.
    pub const fn from_cents(cents: i64) -> Self {
        Money(cents)
    }

    /// The number of cents.
    pub const fn cents(self) -> i64 {
        self.0
    }

    /// Whether the amount is below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// From whole units and up to two decimal digits, as the document printed them (`units` digits only, `frac`
    /// zero to two digits). The sign is applied by the caller.
    pub fn from_parts(units: &str, frac: &str) -> Result<Self, MoneyError> {
        if units.is_empty() || !units.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::Syntax);
        }
        if frac.len() > 2 {
            return Err(MoneyError::Precision);
        }
        let units: i64 = if units.len() > 16 {
            return Err(MoneyError::Overflow);
        } else {
            units.parse().map_err(|_| MoneyError::Overflow)?
        };
        let frac_cents: i64 = match frac.len() {
            0 => 0,
            1 => i64::from(frac.as_bytes()[0] - b'0') * 10,
            _ => frac.parse().map_err(|_| MoneyError::Syntax)?,
        };
        units.checked_mul(100).and_then(|c| c.checked_add(frac_cents)).map(Money).ok_or(MoneyError::Overflow)
    }

    /// The negated amount.
    pub fn checked_neg(self) -> Option<Self> {
        self.0.checked_neg().map(Money)
    }

    /// Sum that reports overflow instead of wrapping.
    pub fn checked_add(self, other: Money) -> Option<Self> {
        self.0.checked_add(other.0).map(Money)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    /// Parses the canonical form (`-1234.5`, `1234.56`, `12`): an optional minus, digits, an optional point and
    /// one or two digits. Document amounts go through [`crate::rules::NumberFormat`] instead.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (neg, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (units, frac) = match body.split_once('.') {
            Some((u, f)) if !f.is_empty() => (u, f),
            Some(_) => return Err(MoneyError::Syntax),
            None => (body, ""),
        };
        let m = Money::from_parts(units, frac)?;
        if neg { m.checked_neg().ok_or(MoneyError::Overflow) } else { Ok(m) }
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_two_places() {
        assert_eq!(Money::from_cents(123456).to_string(), "1234.56");
        assert_eq!(Money::from_cents(5).to_string(), "0.05");
        assert_eq!(Money::from_cents(0).to_string(), "0.00");
        assert_eq!(Money::from_cents(-150).to_string(), "-1.50");
        assert_eq!(Money::from_cents(i64::MIN).to_string(), "-92233720368547758.08");
    }

    #[test]
    fn parses_the_canonical_form() {
        assert_eq!("1234.56".parse(), Ok(Money::from_cents(123456)));
        assert_eq!("1234.5".parse(), Ok(Money::from_cents(123450)));
        assert_eq!("12".parse(), Ok(Money::from_cents(1200)));
        assert_eq!("-0.01".parse(), Ok(Money::from_cents(-1)));
        assert_eq!("1.234".parse::<Money>(), Err(MoneyError::Precision));
        for bad in ["", "-", "1.", ".5", "1,00", "1 000", "+1", "1e3", "0x10", "١٢"] {
            assert_eq!(bad.parse::<Money>(), Err(MoneyError::Syntax), "{bad:?}");
        }
        assert_eq!("99999999999999999".parse::<Money>(), Err(MoneyError::Overflow));
        assert_eq!("92233720368547758".parse::<Money>(), Err(MoneyError::Overflow));
    }

    #[test]
    fn json_is_a_decimal_string() {
        let m = Money::from_cents(93874075);
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"938740.75\"");
        assert_eq!(serde_json::from_str::<Money>("\"938740.75\"").unwrap(), m);
        assert!(serde_json::from_str::<Money>("938740.75").is_err(), "numbers are not accepted, only strings");
    }
}
