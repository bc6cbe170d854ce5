//! The consumers: one actor per part of the flow, each handling `Apply` inside the mailbox
//! middleware's transaction (and `Prepare`, outside it, where there is slow work to do first).
//!
//! | actor | queues |
//! | --- | --- |
//! | [`inventory::InventoryActor`] | `q.inventory.order-created` (reserve), `q.inventory.release-requested` (release) |
//! | [`payment::PaymentActor`] | `q.payment.inventory-reserved` (charge), `q.payment.refund-requested` (refund) |
//! | [`notification::NotificationActor`] | `q.notification.order-created` |
//!
//! The saga's own queues are consumed by [`crate::saga::SagaRegistry`].

pub mod inventory;
pub mod notification;
pub mod payment;
