//! The other JSON bodies the HTTP routes accept, through what their handlers run on them: the JSON
//! extractor's `serde_json::from_slice` into the route's request type, then the route's checks. The first
//! byte picks the route; the rest is the body (for the catalog, the path's SKU, a line feed, the body).
//!
//! Asserts: nothing panics, and what is accepted is what `docs/api.md` promises —
//! - `PUT /api/catalog/products/{skuId}`: a well-formed SKU, a name of 1–255 characters (trimmed, not
//!   blank), a description of at most 4000, a price that is an amount above 0 and at most 10⁹, exact;
//! - `POST /api/stocks`: a well-formed SKU;
//! - `POST /api/stocks/reserve` and `/reservations`: a UUID order id (canonical), 1–100 lines, each a
//!   well-formed SKU and a quantity 1…10⁶;
//! - `POST /api/auth/token`: a user id of 1–64 of `A-Za-z0-9-_.@:`, at most 16 roles of 1–64 of
//!   `A-Za-z0-9-_.:`;
//! - `POST /api/auth/register` and `/login`: a username of 3–64 of `A-Za-z0-9-_.@`, a password of
//!   8–256 bytes;
//! - `POST /api/auth/introspect`: a token that verifies is signed with the node's secret.

#![no_main]

use std::sync::LazyLock;

use actors::auth::{ROLE_BUYER, TokenService};
use actors::ids::SkuId;
use libfuzzer_sys::fuzz_target;
use ordersaga::routes::{auth, catalog, stocks};
use ordersaga_fuzz::{hmac_signed, is_amount_text, is_canonical_uuid, is_sku_id};
use rust_decimal::Decimal;

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret!";

static TOKENS: LazyLock<TokenService> = LazyLock::new(|| TokenService::new(SECRET, "ordersaga", 5, true));

fn user_id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
}

fn role_ok(role: &str) -> bool {
    (1..=64).contains(&role.len())
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

fn catalog_product(data: &[u8]) {
    let Some(split) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let (path, body) = data.split_at(split);
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let Ok(sku) = SkuId::parse(path) else {
        return;
    };
    let Ok(request) = serde_json::from_slice::<catalog::UpsertRequest>(body.get(1..).unwrap_or_default())
    else {
        return;
    };
    let price_text = request.price.0.clone();
    let Ok(product) = catalog::product(sku, request) else {
        return;
    };
    assert!(is_sku_id(product.sku_id.as_str()), "{product:?}");
    let name_chars = product.name.chars().count();
    assert!(
        (1..=255).contains(&name_chars) && product.name.trim() == product.name,
        "name `{}` accepted",
        product.name
    );
    assert!(
        product
            .description
            .as_ref()
            .is_none_or(|d| !d.is_empty() && d.chars().count() <= 4000),
        "description accepted"
    );
    assert!(is_amount_text(&price_text), "price `{price_text}` accepted");
    assert_eq!(
        product.price.to_string(),
        price_text,
        "the price was not kept as written"
    );
    assert!(
        product.price.0 > Decimal::ZERO && product.price.0 <= Decimal::from(1_000_000_000),
        "price {} accepted",
        product.price
    );
}

fn stock_upsert(body: &[u8]) {
    let Ok(request) = serde_json::from_slice::<stocks::UpsertRequest>(body) else {
        return;
    };
    // The quantity's range is the inventory actor's check (it needs no database to refuse, but runs in
    // the actor); the SKU is the route's.
    if let Ok(sku) = SkuId::parse(&request.sku_id) {
        assert!(is_sku_id(sku.as_str()), "SKU `{sku}` accepted");
    }
}

fn reserve(body: &[u8]) {
    let Ok(request) = serde_json::from_slice::<stocks::ReserveRequest>(body) else {
        return;
    };
    let Ok((order_id, items)) = stocks::reserve_lines(request) else {
        return;
    };
    assert!(
        is_canonical_uuid(order_id.as_str()),
        "order id `{order_id}` accepted"
    );
    assert!((1..=100).contains(&items.len()), "{} lines accepted", items.len());
    for item in &items {
        assert!(is_sku_id(&item.sku_id), "SKU `{}` accepted", item.sku_id);
        assert!(
            (1..=1_000_000).contains(&item.quantity),
            "quantity {} accepted",
            item.quantity
        );
    }
}

fn token_request(body: &[u8]) {
    let Ok(request) = serde_json::from_slice::<auth::TokenRequest>(body) else {
        return;
    };
    let roles = request.roles.unwrap_or_else(|| vec![ROLE_BUYER.to_owned()]);
    if actors::auth::validate_user_id(&request.user_id).is_ok() {
        assert!(
            user_id_ok(&request.user_id),
            "user id `{}` accepted",
            request.user_id
        );
    }
    if actors::auth::validate_roles(&roles).is_ok() {
        assert!(roles.len() <= 16, "{} roles accepted", roles.len());
        for role in &roles {
            assert!(role_ok(role), "role `{role}` accepted");
        }
    }
}

fn credentials(body: &[u8]) {
    let Ok(request) = serde_json::from_slice::<auth::Credentials>(body) else {
        return;
    };
    if actors::auth::passwords::validate_credentials(&request.username, &request.password).is_ok() {
        let username = &request.username;
        assert!(
            (3..=64).contains(&username.len())
                && username
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b)),
            "username `{username}` accepted"
        );
        assert!(
            (8..=256).contains(&request.password.len()),
            "a password of {} bytes accepted",
            request.password.len()
        );
    }
}

fn introspect(body: &[u8]) {
    let Ok(request) = serde_json::from_slice::<auth::IntrospectRequest>(body) else {
        return;
    };
    if TOKENS.verify(&request.token).is_ok() {
        assert!(
            hmac_signed(&request.token, SECRET),
            "an unsigned token verified: {}",
            request.token
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    match route % 6 {
        0 => catalog_product(body),
        1 => stock_upsert(body),
        2 => reserve(body),
        3 => token_request(body),
        4 => credentials(body),
        _ => introspect(body),
    }
});
