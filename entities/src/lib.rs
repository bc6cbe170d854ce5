//! sea-orm entities of ordersaga: one module per table, plus [`prelude`].
//!
//! Identifiers are UUIDs kept as text and money is exact decimal kept as text ([`Money`]), so that one
//! schema reads the same on SQLite, PostgreSQL and MySQL/MariaDB. Timestamps are UTC.

pub mod consumed_messages;
pub mod dead_letters;
pub mod inventory_release_events;
pub mod inventory_reservation_items;
pub mod inventory_reservations;
pub mod money;
pub mod notifications;
pub mod order_items;
pub mod orders;
pub mod orders_archive;
pub mod outbox_events;
pub mod payment_records;
pub mod prelude;
pub mod products;
pub mod saga_history;
pub mod saga_instances;
pub mod stocks;
pub mod users;

pub use money::Money;
