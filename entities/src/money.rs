//! Exact decimal money, stored as its canonical text form.
//!
//! SQLite has no exact decimal type (sea-orm reads SQLite decimals through `f64`), so money is kept as
//! text in every database: exact everywhere, and still castable to `numeric` in SQL when an operator
//! wants to add it up.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use sea_orm::DeriveValueType;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An exact decimal amount of money. In JSON it is a number written exactly (`19.90`); a string
/// (`"19.90"`) is accepted on input too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, DeriveValueType)]
#[sea_orm(value_type = "String")]
pub struct Money(pub Decimal);

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        rust_decimal::serde::arbitrary_precision::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <Decimal as Deserialize>::deserialize(deserializer).map(Money)
    }
}

/// Most digits after the decimal point an amount may have.
pub const MAX_SCALE: u32 = 4;
/// Most digits before the decimal point an amount may have.
pub const MAX_WHOLE_DIGITS: usize = 15;

/// Why a text is not an amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmountError {
    /// Not digits with an optional fraction (a sign, an exponent, separators, spaces, leading zeros…).
    Format,
    /// More than [`MAX_SCALE`] digits after the point: it would have to be rounded.
    Scale,
    /// More than [`MAX_WHOLE_DIGITS`] digits before the point.
    TooLarge,
}

impl fmt::Display for AmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmountError::Format => write!(
                f,
                "must be a decimal amount: digits, optionally a point and up to {MAX_SCALE} digits (no sign, exponent or separators)"
            ),
            AmountError::Scale => write!(f, "has more than {MAX_SCALE} digits after the point"),
            AmountError::TooLarge => write!(f, "has more than {MAX_WHOLE_DIGITS} digits before the point"),
        }
    }
}

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Reads an amount as clients send it: `0`, `19`, `19.9`, `19.90`, `0.0001`. Nothing is rounded:
    /// digits past [`MAX_SCALE`] are refused, and so are signs, exponents (`1e-2`), separators (`1_000`,
    /// `1,000`), spaces and leading zeros (`007`).
    pub fn parse_amount(text: &str) -> Result<Money, AmountError> {
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (text, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (whole.len() > 1 && whole.starts_with('0')) {
            return Err(AmountError::Format);
        }
        if let Some(fraction) = fraction {
            if !digits(fraction) {
                return Err(AmountError::Format);
            }
            if fraction.len() > MAX_SCALE as usize {
                return Err(AmountError::Scale);
            }
        }
        if whole.len() > MAX_WHOLE_DIGITS {
            return Err(AmountError::TooLarge);
        }
        // At most 19 digits in all: well inside what a decimal holds exactly.
        Decimal::from_str_exact(text)
            .map(Money)
            .map_err(|_| AmountError::Format)
    }

    /// `self × quantity`, exactly, or `None` if it cannot be held exactly.
    pub fn times(self, quantity: i64) -> Option<Money> {
        self.0.checked_mul(Decimal::from(quantity)).map(Money)
    }

    /// `self + other`, exactly, or `None` if it cannot be held exactly.
    pub fn plus(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// The amount with trailing zeros removed (`19.90` → `19.9`), the form that is stored and compared.
    pub fn normalized(self) -> Money {
        Money(self.0.normalize())
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Money {
    type Err = rust_decimal::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decimal::from_str_exact(s).map(Money)
    }
}

impl From<Decimal> for Money {
    fn from(d: Decimal) -> Self {
        Money(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_read_exactly_or_refused() {
        for (text, shown) in [
            ("0", "0"),
            ("19", "19"),
            ("19.9", "19.9"),
            ("19.90", "19.90"),
            ("0.0001", "0.0001"),
            ("999999999999999.9999", "999999999999999.9999"),
        ] {
            assert_eq!(
                Money::parse_amount(text).map(|m| m.to_string()),
                Ok(shown.to_owned()),
                "{text}"
            );
        }
        for (text, why) in [
            ("0.123456789012345678901234567890", AmountError::Scale),
            ("0.00000000000000000000000000001", AmountError::Scale),
            ("0.12345", AmountError::Scale),
            ("1e-29", AmountError::Format),
            ("1E2", AmountError::Format),
            ("1_000", AmountError::Format),
            ("1,000", AmountError::Format),
            ("-1", AmountError::Format),
            ("+1", AmountError::Format),
            (" 1", AmountError::Format),
            ("007", AmountError::Format),
            (".5", AmountError::Format),
            ("5.", AmountError::Format),
            ("", AmountError::Format),
            ("NaN", AmountError::Format),
            ("1234567890123456", AmountError::TooLarge),
        ] {
            assert_eq!(Money::parse_amount(text), Err(why), "{text}");
        }
    }

    #[test]
    fn sums_of_products_are_exact() {
        let price = Money::parse_amount("9999.9999").unwrap();
        let line = price.times(999_999).unwrap();
        assert_eq!(line.to_string(), "9999989900.0001");
        let mut total = Money::ZERO;
        for _ in 0..100 {
            total = total.plus(line).unwrap();
        }
        assert_eq!(total.to_string(), "999998990000.0100");
        assert_eq!(Money(Decimal::MAX).plus(Money(Decimal::ONE)), None);
    }

    #[test]
    fn round_trips_through_text_exactly() {
        let m: Money = "19.90".parse().unwrap_or_default();
        assert_eq!(m.to_string(), "19.90");
        let sum = Money(m.0 * Decimal::from(3));
        assert_eq!(sum.to_string(), "59.70");
    }

    #[test]
    fn json_numbers_are_exact_both_ways() {
        let m: Money = serde_json::from_str("0.1000000000000000055511151231").unwrap();
        assert_eq!(m.to_string(), "0.1000000000000000055511151231");
        assert_eq!(
            serde_json::to_string(&Money("19.90".parse().unwrap())).unwrap(),
            "19.90"
        );
        let from_string: Money = serde_json::from_str("\"12.5\"").unwrap();
        assert_eq!(from_string.to_string(), "12.5");
    }
}
