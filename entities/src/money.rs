//! Exact decimal money, stored as its canonical text form.
//!
//! SQLite has no exact decimal type (sea-orm reads SQLite decimals through `f64`), so money is kept as
//! text in every database: exact everywhere, and still castable to `numeric` in SQL when an operator
//! wants to add it up.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use sea_orm::DeriveValueType;
use serde::{Deserialize, Serialize};

/// An exact decimal amount of money.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, DeriveValueType,
)]
#[sea_orm(value_type = "String")]
#[serde(transparent)]
pub struct Money(pub Decimal);

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
}
