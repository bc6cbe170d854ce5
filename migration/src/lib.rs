//! Schema migrations of ordersaga: one set that runs on SQLite, PostgreSQL and MySQL/MariaDB.

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_create_schema;
mod m20261201_000001_payment_refunds;
mod m20261201_000002_saga_deadline_index;
mod m20261201_000003_outbox_unclaimed_index;
mod m20261201_000004_product_catalog;
mod m20261201_000005_notification_indexes;
mod m20261202_000001_outbox_one_unpublished_index;

/// All migrations, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_schema::Migration),
            Box::new(m20261201_000001_payment_refunds::Migration),
            Box::new(m20261201_000002_saga_deadline_index::Migration),
            Box::new(m20261201_000003_outbox_unclaimed_index::Migration),
            Box::new(m20261201_000004_product_catalog::Migration),
            Box::new(m20261201_000005_notification_indexes::Migration),
            Box::new(m20261202_000001_outbox_one_unpublished_index::Migration),
        ]
    }
}
