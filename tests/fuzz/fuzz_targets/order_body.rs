//! The body of `POST /api/orders`: any bytes through what the handler runs on them — the JSON
//! extractor's `serde_json::from_slice::<OrderRequest>` and the line checks (`routes::orders::lines`).
//!
//! Asserts: nothing panics; an accepted body has 1–100 lines, no SKU twice, each SKU id well-formed,
//! each quantity 1…10⁶, each price an amount as `docs/api.md` defines it (digits, at most four
//! decimals), 0…10⁹, kept exactly as the client wrote it, and a total that is Σ quantity × price.

#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use ordersaga::routes::orders::{MAX_LINES, MAX_PRICE, MAX_QUANTITY, OrderRequest, lines};
use ordersaga_fuzz::{is_amount_text, is_sku_id};
use rust_decimal::Decimal;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<OrderRequest>(data) else {
        return;
    };
    let written: Vec<String> = body.items.iter().map(|line| line.price.0.clone()).collect();
    let Ok(accepted) = lines(body.items) else {
        return;
    };
    assert!(
        (1..=MAX_LINES).contains(&accepted.len()),
        "{} lines accepted",
        accepted.len()
    );
    let mut skus = HashSet::new();
    let mut total = Decimal::ZERO;
    for (line, text) in accepted.iter().zip(&written) {
        let sku = line.sku_id.as_str();
        assert!(is_sku_id(sku), "SKU id `{sku}` accepted");
        assert!(skus.insert(sku.to_owned()), "SKU `{sku}` accepted twice");
        assert!(
            (1..=MAX_QUANTITY).contains(&line.quantity),
            "quantity {} accepted",
            line.quantity
        );
        assert!(is_amount_text(text), "price `{text}` accepted");
        assert_eq!(line.price.to_string(), *text, "the price was not kept as written");
        assert!(
            line.price.0 >= Decimal::ZERO && line.price.0 <= Decimal::from(MAX_PRICE),
            "price {} accepted",
            line.price
        );
        assert!(line.price.0.scale() <= 4, "price {} accepted", line.price);
        total += line.price.0 * Decimal::from(line.quantity);
    }
    assert_eq!(
        actors::placement::total(&accepted).map(|m| m.0),
        Some(total),
        "the order's total"
    );
});
