//! Event envelopes: the contract on the bus (snake_case, as the original event contracts).
//!
//! `{"event_id","event_type","occurred_at","trace_id","identity":{"user_id","roles"},"data":{…},"version":1}`.
//! An event keeps the `trace_id` and `identity` of the event that caused it ([`Envelope::caused`]).

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::auth::Identity;
use crate::db;
use entities::Money;

/// The envelope version this code writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// Routing keys of the topic exchange.
pub mod keys {
    pub const ORDER_CREATED: &str = "order.created";
    pub const INVENTORY_RESERVED: &str = "inventory.reserved";
    pub const INVENTORY_FAILED: &str = "inventory.failed";
    pub const INVENTORY_RELEASE_REQUESTED: &str = "inventory.release.requested";
    pub const INVENTORY_RELEASED: &str = "inventory.released";
    pub const PAYMENT_SUCCEEDED: &str = "payment.succeeded";
    pub const PAYMENT_FAILED: &str = "payment.failed";
    /// The saga asks for a payment to be refunded (it succeeded for an order that will not confirm).
    pub const PAYMENT_REFUND_REQUESTED: &str = "payment.refund.requested";
    pub const PAYMENT_REFUNDED: &str = "payment.refunded";

    /// Every routing key, in the order of the flow.
    pub const ALL: [&str; 9] = [
        ORDER_CREATED,
        INVENTORY_RESERVED,
        INVENTORY_FAILED,
        INVENTORY_RELEASE_REQUESTED,
        INVENTORY_RELEASED,
        PAYMENT_SUCCEEDED,
        PAYMENT_FAILED,
        PAYMENT_REFUND_REQUESTED,
        PAYMENT_REFUNDED,
    ];
}

/// An order line in `OrderCreated`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku_id: String,
    pub quantity: i32,
    pub price: Money,
}

/// A quantity of one SKU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuQuantity {
    pub sku_id: String,
    pub quantity: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    pub order_id: String,
    pub user_id: String,
    pub items: Vec<OrderLine>,
    pub total_amount: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReserved {
    pub order_id: String,
    pub reservation_id: String,
    pub reserved_items: Vec<SkuQuantity>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryFailed {
    pub order_id: String,
    pub reservation_id: Option<String>,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReleaseRequested {
    pub order_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReleased {
    pub release_id: String,
    pub order_id: String,
    pub reservation_id: String,
    pub reason: String,
    pub released_items: Vec<SkuQuantity>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSucceeded {
    pub order_id: String,
    pub payment_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailed {
    pub order_id: String,
    pub payment_id: String,
    pub reason: String,
}

/// `reason`: why the order did not confirm (the saga's failure reason, e.g. `PAYMENT_TIMEOUT`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefundRequested {
    pub order_id: String,
    pub payment_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub order_id: String,
    pub payment_id: String,
    pub refund_id: String,
    pub amount: Money,
    pub reason: String,
}

/// Every event of the flow, with its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    OrderCreated(OrderCreated),
    InventoryReserved(InventoryReserved),
    InventoryFailed(InventoryFailed),
    InventoryReleaseRequested(InventoryReleaseRequested),
    InventoryReleased(InventoryReleased),
    PaymentSucceeded(PaymentSucceeded),
    PaymentFailed(PaymentFailed),
    PaymentRefundRequested(PaymentRefundRequested),
    PaymentRefunded(PaymentRefunded),
}

impl Event {
    /// The `event_type` of the envelope.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::OrderCreated(_) => "OrderCreated",
            Event::InventoryReserved(_) => "InventoryReserved",
            Event::InventoryFailed(_) => "InventoryFailed",
            Event::InventoryReleaseRequested(_) => "InventoryReleaseRequested",
            Event::InventoryReleased(_) => "InventoryReleased",
            Event::PaymentSucceeded(_) => "PaymentSucceeded",
            Event::PaymentFailed(_) => "PaymentFailed",
            Event::PaymentRefundRequested(_) => "PaymentRefundRequested",
            Event::PaymentRefunded(_) => "PaymentRefunded",
        }
    }

    /// The routing key it is published with.
    pub fn routing_key(&self) -> &'static str {
        match self {
            Event::OrderCreated(_) => keys::ORDER_CREATED,
            Event::InventoryReserved(_) => keys::INVENTORY_RESERVED,
            Event::InventoryFailed(_) => keys::INVENTORY_FAILED,
            Event::InventoryReleaseRequested(_) => keys::INVENTORY_RELEASE_REQUESTED,
            Event::InventoryReleased(_) => keys::INVENTORY_RELEASED,
            Event::PaymentSucceeded(_) => keys::PAYMENT_SUCCEEDED,
            Event::PaymentFailed(_) => keys::PAYMENT_FAILED,
            Event::PaymentRefundRequested(_) => keys::PAYMENT_REFUND_REQUESTED,
            Event::PaymentRefunded(_) => keys::PAYMENT_REFUNDED,
        }
    }

    /// The order the event is about.
    pub fn order_id(&self) -> &str {
        match self {
            Event::OrderCreated(e) => &e.order_id,
            Event::InventoryReserved(e) => &e.order_id,
            Event::InventoryFailed(e) => &e.order_id,
            Event::InventoryReleaseRequested(e) => &e.order_id,
            Event::InventoryReleased(e) => &e.order_id,
            Event::PaymentSucceeded(e) => &e.order_id,
            Event::PaymentFailed(e) => &e.order_id,
            Event::PaymentRefundRequested(e) => &e.order_id,
            Event::PaymentRefunded(e) => &e.order_id,
        }
    }

    fn data(&self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            Event::OrderCreated(e) => serde_json::to_value(e),
            Event::InventoryReserved(e) => serde_json::to_value(e),
            Event::InventoryFailed(e) => serde_json::to_value(e),
            Event::InventoryReleaseRequested(e) => serde_json::to_value(e),
            Event::InventoryReleased(e) => serde_json::to_value(e),
            Event::PaymentSucceeded(e) => serde_json::to_value(e),
            Event::PaymentFailed(e) => serde_json::to_value(e),
            Event::PaymentRefundRequested(e) => serde_json::to_value(e),
            Event::PaymentRefunded(e) => serde_json::to_value(e),
        }
    }

    fn from_data(event_type: &str, data: serde_json::Value) -> Result<Event, DecodeError> {
        let bad = |e: serde_json::Error| DecodeError(format!("{event_type} data: {e}"));
        Ok(match event_type {
            "OrderCreated" => Event::OrderCreated(serde_json::from_value(data).map_err(bad)?),
            "InventoryReserved" => Event::InventoryReserved(serde_json::from_value(data).map_err(bad)?),
            "InventoryFailed" => Event::InventoryFailed(serde_json::from_value(data).map_err(bad)?),
            "InventoryReleaseRequested" => {
                Event::InventoryReleaseRequested(serde_json::from_value(data).map_err(bad)?)
            }
            "InventoryReleased" => Event::InventoryReleased(serde_json::from_value(data).map_err(bad)?),
            "PaymentSucceeded" => Event::PaymentSucceeded(serde_json::from_value(data).map_err(bad)?),
            "PaymentFailed" => Event::PaymentFailed(serde_json::from_value(data).map_err(bad)?),
            "PaymentRefundRequested" => {
                Event::PaymentRefundRequested(serde_json::from_value(data).map_err(bad)?)
            }
            "PaymentRefunded" => Event::PaymentRefunded(serde_json::from_value(data).map_err(bad)?),
            other => return Err(DecodeError(format!("unknown event_type `{other}`"))),
        })
    }
}

/// An envelope that cannot be read: a poison message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("undecodable envelope: {0}")]
pub struct DecodeError(pub String);

/// The envelope as it is on the wire.
#[derive(Serialize, Deserialize)]
struct Wire {
    event_id: String,
    event_type: String,
    occurred_at: DateTime<Utc>,
    trace_id: String,
    identity: Identity,
    data: serde_json::Value,
    version: u32,
}

/// One event with its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub trace_id: String,
    pub identity: Identity,
    pub event: Event,
}

impl Envelope {
    /// A new envelope: a fresh `event_id`, now.
    pub fn new(event: Event, trace_id: impl Into<String>, identity: Identity) -> Envelope {
        Envelope {
            event_id: db::new_id(),
            occurred_at: db::now(),
            trace_id: trace_id.into(),
            identity,
            event,
        }
    }

    /// An event caused by this one: same `trace_id` and `identity`.
    pub fn caused(&self, event: Event) -> Envelope {
        Envelope::new(event, self.trace_id.clone(), self.identity.clone())
    }

    pub fn event_type(&self) -> &'static str {
        self.event.event_type()
    }

    pub fn routing_key(&self) -> &'static str {
        self.event.routing_key()
    }

    /// The JSON text of the envelope.
    pub fn encode(&self) -> Result<String, serde_json::Error> {
        let wire = Wire {
            event_id: self.event_id.clone(),
            event_type: self.event.event_type().to_owned(),
            occurred_at: self.occurred_at,
            trace_id: self.trace_id.clone(),
            identity: self.identity.clone(),
            data: self.event.data()?,
            version: ENVELOPE_VERSION,
        };
        serde_json::to_string(&wire)
    }

    /// Reads an envelope; anything unreadable is a [`DecodeError`].
    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        let wire: Wire = serde_json::from_slice(bytes).map_err(|e| DecodeError(e.to_string()))?;
        if wire.version != ENVELOPE_VERSION {
            return Err(DecodeError(format!(
                "unsupported envelope version {}",
                wire.version
            )));
        }
        if wire.event_id.is_empty() || wire.event_id.len() > 255 {
            return Err(DecodeError("event_id must be 1-255 characters".into()));
        }
        let event = Event::from_data(&wire.event_type, wire.data)?;
        Ok(Envelope {
            event_id: wire.event_id,
            occurred_at: wire.occurred_at,
            trace_id: wire.trace_id,
            identity: wire.identity,
            event,
        })
    }
}

/// HMAC-SHA256 of an envelope's bytes, as lowercase hex: the `x-signature` header on the broker.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `signature` (hex) is the HMAC-SHA256 of `body` under `key`, compared in constant time.
pub fn verify_signature(key: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(expected) = decode_hex(signature) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_key_and_the_body() {
        let body = sample().encode().unwrap();
        let signature = sign(b"key-one", body.as_bytes());
        assert_eq!(signature.len(), 64);
        assert!(verify_signature(b"key-one", body.as_bytes(), &signature));
        assert!(!verify_signature(b"key-two", body.as_bytes(), &signature));
        assert!(!verify_signature(
            b"key-one",
            body.replace("u-1", "u-2").as_bytes(),
            &signature
        ));
        assert!(!verify_signature(b"key-one", body.as_bytes(), "zz"));
        assert!(!verify_signature(b"key-one", body.as_bytes(), ""));
    }

    fn sample() -> Envelope {
        Envelope::new(
            Event::OrderCreated(OrderCreated {
                order_id: "o-1".into(),
                user_id: "u-1".into(),
                items: vec![OrderLine {
                    sku_id: "SKU-1".into(),
                    quantity: 2,
                    price: "19.90".parse().unwrap(),
                }],
                total_amount: "39.80".parse().unwrap(),
            }),
            "trace-1",
            Identity {
                user_id: "u-1".into(),
                roles: vec!["buyer".into()],
            },
        )
    }

    #[test]
    fn envelopes_round_trip() {
        let e = sample();
        let text = e.encode().unwrap();
        assert!(text.contains("\"event_type\":\"OrderCreated\""), "{text}");
        assert!(text.contains("\"price\":19.90"), "{text}");
        assert!(
            text.contains("\"identity\":{\"user_id\":\"u-1\",\"roles\":[\"buyer\"]}"),
            "{text}"
        );
        assert_eq!(Envelope::decode(text.as_bytes()).unwrap(), e);
    }

    #[test]
    fn caused_events_keep_trace_and_identity() {
        let e = sample();
        let next = e.caused(Event::PaymentSucceeded(PaymentSucceeded {
            order_id: "o-1".into(),
            payment_id: "p".into(),
        }));
        assert_eq!(next.trace_id, e.trace_id);
        assert_eq!(next.identity, e.identity);
        assert_ne!(next.event_id, e.event_id);
    }

    #[test]
    fn garbage_and_unknown_types_do_not_decode() {
        assert!(Envelope::decode(b"not json").is_err());
        let text = sample().encode().unwrap().replace("OrderCreated", "Nonsense");
        assert!(Envelope::decode(text.as_bytes()).is_err());
        let text = sample()
            .encode()
            .unwrap()
            .replace("\"quantity\":2", "\"quantity\":\"two\"");
        assert!(Envelope::decode(text.as_bytes()).is_err());
    }
}
