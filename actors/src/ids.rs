//! Identifiers parsed once, at the edge: the rest of the code takes an [`OrderId`] or a [`SkuId`] and
//! never sees an unchecked string. One parser per kind, one message per kind.

use std::fmt;

/// An order id: a UUID, kept in its canonical lower-case hyphenated form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct OrderId(String);

/// A SKU id: 1–64 characters of letters, digits, `-`, `_` and `.`, starting with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct SkuId(String);

/// Longest SKU id.
pub const MAX_SKU_ID: usize = 64;

/// A value that is not an id of its kind; `Display` says what it must be ("must be …, not `…`"), for
/// the caller to prefix with the field's name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be {expected}, not `{shown}`")]
pub struct IdError {
    expected: &'static str,
    shown: String,
}

impl IdError {
    fn new(expected: &'static str, value: &str) -> Self {
        let mut shown: String = value.chars().take(80).collect();
        if shown.len() < value.len() {
            shown.push('…');
        }
        IdError { expected, shown }
    }
}

impl OrderId {
    pub fn parse(value: &str) -> Result<OrderId, IdError> {
        uuid::Uuid::parse_str(value)
            .map(|id| OrderId(id.hyphenated().to_string()))
            .map_err(|_| IdError::new("an order id (a UUID)", value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl SkuId {
    pub fn parse(value: &str) -> Result<SkuId, IdError> {
        let mut chars = value.chars();
        let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
            && value.len() <= MAX_SKU_ID
            && chars.all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if valid {
            Ok(SkuId(value.to_owned()))
        } else {
            Err(IdError::new(
                "1-64 characters of letters, digits and -_. starting with a letter or digit",
                value,
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SkuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_uuids_in_canonical_form() {
        let id = OrderId::parse("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap();
        assert_eq!(id.as_str(), "6f9619ff-8b86-d011-b42d-00c04fc964ff");
        let err = OrderId::parse("not-an-id").unwrap_err().to_string();
        assert_eq!(err, "must be an order id (a UUID), not `not-an-id`");
    }

    #[test]
    fn sku_ids() {
        for ok in ["SKU-001", "a.b_c-9", &"x".repeat(64)] {
            assert!(SkuId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-SKU", "SKU 1", "SKÜ", &"x".repeat(65)] {
            assert!(SkuId::parse(bad).is_err(), "{bad}");
        }
        let long = "y".repeat(200);
        assert!(SkuId::parse(&long).unwrap_err().to_string().ends_with("…`"));
    }
}
