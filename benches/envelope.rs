//! Event envelopes: encoding to and decoding from the JSON of the bus, and the HMAC-SHA256 signature
//! (`x-signature`) the RabbitMQ transport adds to each body and checks on receipt.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use actors::auth::Identity;
use actors::envelope::{
    Envelope, Event, InventoryReleased, OrderCreated, OrderLine, SkuQuantity, sign, verify_signature,
};
use entities::Money;

fn money(text: &str) -> Money {
    Money(rust_decimal::Decimal::from_str_exact(text).unwrap_or_default())
}

fn identity() -> Identity {
    Identity {
        user_id: "lt-3f9a1c2e-u07".to_owned(),
        roles: vec!["buyer".to_owned()],
    }
}

fn order_created(lines: usize) -> Envelope {
    let items: Vec<OrderLine> = (0..lines)
        .map(|i| OrderLine {
            sku_id: format!("LT-3f9a1c2e-{i:03}"),
            quantity: 2,
            price: money("19.90"),
        })
        .collect();
    Envelope::new(
        Event::OrderCreated(OrderCreated {
            order_id: "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a".to_owned(),
            user_id: "lt-3f9a1c2e-u07".to_owned(),
            items,
            total_amount: money("39.80"),
        }),
        "6b1f0e7c-2d3a-4f58-9e61-0a2b3c4d5e6f",
        identity(),
    )
}

fn inventory_released() -> Envelope {
    Envelope::new(
        Event::InventoryReleased(InventoryReleased {
            release_id: "c3d4e5f6-0718-4293-a4b5-c6d7e8f90a1b".to_owned(),
            order_id: "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a".to_owned(),
            reservation_id: "7a1f0c9e-3b2d-4c55-9a0e-5f1d2c3b4a59".to_owned(),
            reason: "PAYMENT_FAILED".to_owned(),
            released_items: vec![SkuQuantity {
                sku_id: "LT-3f9a1c2e-007".to_owned(),
                quantity: 2,
            }],
        }),
        "6b1f0e7c-2d3a-4f58-9e61-0a2b3c4d5e6f",
        identity(),
    )
}

fn envelopes(c: &mut Criterion) {
    for (name, envelope) in [
        ("OrderCreated 1 line", order_created(1)),
        ("OrderCreated 10 lines", order_created(10)),
        ("InventoryReleased", inventory_released()),
    ] {
        let text = envelope.encode().unwrap_or_default();
        let mut group = c.benchmark_group(format!("envelope/{name}"));
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function("encode", |b| b.iter(|| black_box(&envelope).encode()));
        group.bench_function("decode", |b| {
            b.iter(|| Envelope::decode(black_box(text.as_bytes())))
        });
        let key = b"a-signing-key-of-thirty-two-bytes!";
        let signature = sign(key, text.as_bytes());
        group.bench_function("sign", |b| {
            b.iter(|| sign(black_box(key), black_box(text.as_bytes())))
        });
        group.bench_function("verify signature", |b| {
            b.iter(|| verify_signature(black_box(key), black_box(text.as_bytes()), black_box(&signature)))
        });
        group.finish();
    }
}

criterion_group!(benches, envelopes);
criterion_main!(benches);
