//! What the fuzz targets hold accepted input to, written from `docs/api.md` rather than from the
//! product's code: an input the product accepts must pass these checks too.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// An amount as `docs/api.md` defines it: digits without a leading zero (`0` alone is fine), optionally
/// a point and one to four digits. No sign, exponent, separator, space or non-ASCII digit.
pub fn is_amount_text(text: &str) -> bool {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let ascii_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    ascii_digits(whole)
        && (whole == "0" || !whole.starts_with('0'))
        && whole.len() <= 15
        && fraction.is_none_or(|f| ascii_digits(f) && f.len() <= 4)
}

/// A SKU id: 1–64 of `A-Za-z0-9-_.`, starting with a letter or a digit.
pub fn is_sku_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
}

/// An order id as the API writes it: a UUID, lower case, hyphenated.
pub fn is_canonical_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
        })
}

/// Whether `token`'s third part is the HMAC-SHA256 under `secret` of its first two parts, computed
/// here with the `hmac` crate (not through the JWT library the product verifies with).
pub fn hmac_signed(token: &str, secret: &[u8]) -> bool {
    let Some((message, signature)) = token.rsplit_once('.') else {
        return false;
    };
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(message.as_bytes());
    mac.verify_slice(&signature).is_ok()
}

/// The JSON of a token's part (`0` header, `1` claims), if it decodes. Bytes that are not UTF-8 are
/// read as U+FFFD: the JWT library skips the values of claims it does not know without checking them,
/// so a genuinely signed token may carry such bytes there.
pub fn token_part(token: &str, index: usize) -> Option<serde_json::Value> {
    let part = token.split('.').nth(index)?;
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_str(&String::from_utf8_lossy(&bytes)).ok()
}

/// Whether claims are acceptable as `docs/api.md` says: a non-blank `sub`, the issuer `iss`, an `exp`
/// not past (with `leeway` seconds), an `nbf` (if any) not ahead, and `aud` when one is required.
pub fn claims_acceptable(claims: &serde_json::Value, iss: &str, aud: Option<&str>, leeway: i64) -> bool {
    let now = chrono::Utc::now().timestamp();
    let sub_ok = claims["sub"].as_str().is_some_and(|s| !s.trim().is_empty());
    let iss_ok = claims["iss"].as_str() == Some(iss);
    let exp_ok = claims["exp"].as_i64().is_some_and(|exp| exp >= now - leeway);
    let nbf_ok = claims
        .get("nbf")
        .is_none_or(|nbf| nbf.as_i64().is_some_and(|nbf| nbf <= now + leeway));
    let aud_ok = match aud {
        None => true,
        Some(aud) => match &claims["aud"] {
            serde_json::Value::String(s) => s == aud,
            serde_json::Value::Array(all) => all.iter().any(|a| a.as_str() == Some(aud)),
            _ => false,
        },
    };
    sub_ok && iss_ok && exp_ok && nbf_ok && aud_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        for ok in ["0", "19", "19.9", "19.90", "0.0001", "999999999999999.9999"] {
            assert!(is_amount_text(ok), "{ok}");
        }
        for bad in [
            "", "-1", "+1", "1e2", "007", ".5", "5.", "1.23456", " 1", "١", "1_0",
        ] {
            assert!(!is_amount_text(bad), "{bad}");
        }
    }

    #[test]
    fn ids() {
        assert!(is_sku_id("SKU-001"));
        assert!(!is_sku_id("-x"));
        assert!(is_canonical_uuid("6f9619ff-8b86-d011-b42d-00c04fc964ff"));
        assert!(!is_canonical_uuid("6F9619FF-8B86-D011-B42D-00C04FC964FF"));
    }
}
