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

    /// `self × quantity`, exactly (at `self`'s scale), or `None` if it cannot be held exactly.
    pub fn times(self, quantity: i64) -> Option<Money> {
        let product = self.0.checked_mul(Decimal::from(quantity))?;
        // `checked_mul` rounds a product whose digits do not fit (it drops decimals to make room)
        // instead of failing: a scale smaller than `self`'s is such a rounding.
        (product.scale() == self.0.scale()).then_some(Money(product))
    }

    /// `self + other`, exactly (at the larger of the two scales), or `None` if it cannot be held exactly.
    pub fn plus(self, other: Money) -> Option<Money> {
        let sum = self.0.checked_add(other.0)?;
        // `checked_add` rounds a sum whose digits do not fit at that scale instead of failing.
        (sum.scale() == self.0.scale().max(other.0.scale())).then_some(Money(sum))
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
    fn sums_and_products_that_would_be_rounded_are_refused() {
        // 28 significant digits and 3 decimals: one more whole digit leaves no room for the decimals,
        // and `rust_decimal` would answer 79228162514264337593543950.35 (rounded) for the sum.
        let big: Money = "79228162514264337593543949.351".parse().unwrap();
        assert_eq!(Money(Decimal::ONE).plus(big), None);
        assert_eq!(big.plus(Money(Decimal::ONE)), None);
        let price: Money = "16628914567978176170034.6".parse().unwrap();
        assert_eq!(price.times(478_731), None);
        // What fits is exact, at the terms' scale.
        assert_eq!(
            Money::parse_amount("0.10")
                .unwrap()
                .plus(Money::parse_amount("19.9").unwrap())
                .map(|m| m.to_string()),
            Some("20.00".to_owned())
        );
        assert_eq!(
            Money::parse_amount("19.90")
                .unwrap()
                .times(3)
                .map(|m| m.to_string()),
            Some("59.70".to_owned())
        );
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

    /// Property tests of the amount parser, the formatter and the arithmetic of order totals, against
    /// `docs/api.md`: an amount is digits, optionally a point and at most four digits after it; nothing
    /// is rounded; a total is Σ quantity × price, exact.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Every amount an order or the catalog can carry: up to 15 digits before the point, 0–4 after.
        fn amount() -> impl Strategy<Value = Money> {
            (0u32..=MAX_SCALE).prop_flat_map(|scale| {
                let bound = 10i128.pow(MAX_WHOLE_DIGITS as u32 + scale);
                (0..bound).prop_map(move |mantissa| Money(Decimal::from_i128_with_scale(mantissa, scale)))
            })
        }

        /// The text of an amount, as clients write it.
        fn amount_text() -> impl Strategy<Value = String> {
            amount().prop_map(|m| m.to_string())
        }

        /// What `docs/api.md` calls an amount, written independently of the parser.
        fn is_amount(text: &str) -> bool {
            let (whole, fraction) = match text.split_once('.') {
                Some((w, f)) => (w, Some(f)),
                None => (text, None),
            };
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            digits(whole)
                && (whole == "0" || !whole.starts_with('0'))
                && whole.len() <= MAX_WHOLE_DIGITS
                && fraction.is_none_or(|f| digits(f) && f.len() <= MAX_SCALE as usize)
        }

        /// A decimal of any size and scale.
        fn any_decimal() -> impl Strategy<Value = Decimal> {
            let max = 2i128.pow(96) - 1;
            (
                prop_oneof![-max..=max, (max - 1000)..=max, -1_000_000i128..1_000_000],
                0u32..=28,
            )
                .prop_map(|(mantissa, scale)| Decimal::from_i128_with_scale(mantissa, scale))
        }

        /// `d`'s mantissa at `scale` (≥ its own), if an i128 holds it.
        fn mantissa_at(d: Decimal, scale: u32) -> Option<i128> {
            d.mantissa()
                .checked_mul(10i128.checked_pow(scale.checked_sub(d.scale())?)?)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn format_then_parse_is_the_identity(m in amount()) {
                let text = m.to_string();
                prop_assert!(is_amount(&text), "{text}");
                let parsed = Money::parse_amount(&text);
                prop_assert_eq!(parsed, Ok(m));
                // The same digits, trailing zeros included: nothing rounded or reformatted.
                prop_assert_eq!(parsed.map(|p| p.to_string()), Ok(text.clone()));
                // And through JSON, as a number and as a string.
                let json = serde_json::to_string(&m).unwrap();
                prop_assert_eq!(&json, &text);
                let back: Money = serde_json::from_str(&json).unwrap();
                prop_assert_eq!(back.to_string(), text.clone());
                let quoted: Money = serde_json::from_str(&format!("\"{text}\"")).unwrap();
                prop_assert_eq!(quoted, m);
            }

            #[test]
            fn more_than_four_decimals_are_refused(whole in amount_text(), extra in "[0-9]{5,30}") {
                let whole = whole.split('.').next().unwrap_or_default().to_owned();
                prop_assert_eq!(Money::parse_amount(&format!("{whole}.{extra}")), Err(AmountError::Scale));
            }

            #[test]
            fn signs_are_refused(text in amount_text(), sign in prop::sample::select(vec!["-", "+", "\u{2212}", "--"])) {
                prop_assert_eq!(Money::parse_amount(&format!("{sign}{text}")), Err(AmountError::Format));
            }

            #[test]
            fn exponents_are_refused(
                text in amount_text(),
                e in prop::sample::select(vec!["e", "E"]),
                sign in prop::sample::select(vec!["", "+", "-"]),
                power in 0u32..400,
            ) {
                prop_assert_eq!(Money::parse_amount(&format!("{text}{e}{sign}{power}")), Err(AmountError::Format));
            }

            #[test]
            fn whitespace_anywhere_is_refused(
                text in amount_text(),
                at in any::<prop::sample::Index>(),
                space in prop::sample::select(vec![" ", "\t", "\n", "\r", "\u{a0}", "\u{2009}", "\u{3000}", "\u{feff}"]),
            ) {
                let at = at.index(text.len() + 1);
                let spaced = format!("{}{space}{}", &text[..at], &text[at..]);
                prop_assert_eq!(Money::parse_amount(&spaced), Err(AmountError::Format), "{:?}", spaced);
            }

            #[test]
            fn huge_amounts_are_refused(whole in "[1-9][0-9]{15,60}", fraction in "(\\.[0-9]{1,4})?") {
                prop_assert_eq!(Money::parse_amount(&format!("{whole}{fraction}")), Err(AmountError::TooLarge));
            }

            #[test]
            fn non_ascii_digits_are_refused(
                text in amount_text(),
                at in any::<prop::sample::Index>(),
                digit in prop::sample::select(vec!['٣', '۳', '३', '৩', '３', '𝟑', '³', '③', '〡']),
            ) {
                let digits: Vec<usize> = text.char_indices().filter(|(_, c)| c.is_ascii_digit()).map(|(i, _)| i).collect();
                let i = digits[at.index(digits.len())];
                let changed = format!("{}{digit}{}", &text[..i], &text[i + 1..]);
                prop_assert_eq!(Money::parse_amount(&changed), Err(AmountError::Format), "{}", changed);
            }

            #[test]
            fn any_text_is_refused_or_read_exactly(text in prop_oneof![any::<String>(), "[-+0-9.eE _,]{0,24}"]) {
                match Money::parse_amount(&text) {
                    Ok(m) => {
                        prop_assert!(is_amount(&text), "{:?} accepted", text);
                        prop_assert_eq!(m.to_string(), text);
                    }
                    Err(_) => prop_assert!(!is_amount(&text), "{:?} refused", text),
                }
            }

            /// The saga's total of an order: every order the API accepts (1–100 lines, quantity 1…10⁶,
            /// price 0…10⁹ with at most four decimals) has an exact total, Σ quantity × price.
            #[test]
            fn order_totals_are_exact(
                lines in prop::collection::vec((0i64..=10_000_000_000_000, 1i64..=1_000_000), 1..=100),
            ) {
                // Prices as ten-thousandths, at most 10⁹.
                let mut total = Some(Money::ZERO);
                let mut exact: i128 = 0;
                for (ten_thousandths, quantity) in &lines {
                    let price = Money(Decimal::new(*ten_thousandths, 4));
                    total = total.and_then(|t| t.plus(price.times(*quantity)?));
                    exact += i128::from(*ten_thousandths) * i128::from(*quantity);
                }
                prop_assert_eq!(total, Some(Money(Decimal::from_i128_with_scale(exact, 4))));
            }

            /// Sums and products never round: either the exact result at the terms' scale, or `None`.
            #[test]
            fn sums_are_exact_or_refused(a in any_decimal(), b in any_decimal()) {
                let scale = a.scale().max(b.scale());
                if let (Some(x), Some(y)) = (mantissa_at(a, scale), mantissa_at(b, scale))
                    && let Some(exact) = x.checked_add(y)
                {
                    match Money(a).plus(Money(b)) {
                        Some(sum) => prop_assert_eq!(mantissa_at(sum.0, scale), Some(exact), "{} + {} = {}", a, b, sum),
                        None => prop_assert!(
                            Decimal::try_from_i128_with_scale(exact, scale).is_err(),
                            "{} + {} refused", a, b
                        ),
                    }
                }
            }

            #[test]
            fn products_are_exact_or_refused(a in any_decimal(), quantity in prop_oneof![any::<i64>(), -1_000_000i64..=1_000_000]) {
                if let Some(exact) = a.mantissa().checked_mul(i128::from(quantity)) {
                    match Money(a).times(quantity) {
                        Some(product) => prop_assert_eq!(
                            mantissa_at(product.0, a.scale()), Some(exact), "{} × {} = {}", a, quantity, product
                        ),
                        None => prop_assert!(
                            Decimal::try_from_i128_with_scale(exact, a.scale()).is_err(),
                            "{} × {} refused", a, quantity
                        ),
                    }
                }
            }
        }
    }
}
