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

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

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
