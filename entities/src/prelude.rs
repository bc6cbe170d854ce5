//! The entities under short names.

pub use crate::consumed_messages::Entity as ConsumedMessages;
pub use crate::dead_letters::Entity as DeadLetters;
pub use crate::inventory_release_events::Entity as InventoryReleaseEvents;
pub use crate::inventory_reservation_items::Entity as InventoryReservationItems;
pub use crate::inventory_reservations::Entity as InventoryReservations;
pub use crate::notifications::Entity as Notifications;
pub use crate::order_items::Entity as OrderItems;
pub use crate::orders::Entity as Orders;
pub use crate::orders_archive::Entity as OrdersArchive;
pub use crate::outbox_events::Entity as OutboxEvents;
pub use crate::payment_records::Entity as PaymentRecords;
pub use crate::products::Entity as Products;
pub use crate::saga_history::Entity as SagaHistory;
pub use crate::saga_instances::Entity as SagaInstances;
pub use crate::stocks::Entity as Stocks;
pub use crate::users::Entity as Users;
