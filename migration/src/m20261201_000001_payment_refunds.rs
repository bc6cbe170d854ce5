//! Refunds: a payment that succeeded for an order that did not confirm is refunded, and its record says
//! so (`status = REFUNDED`, with the refund's id, reason and time).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PaymentRecords {
    Table,
    RefundId,
    RefundReason,
    RefundedAt,
}

/// Length of a UUID in text form.
const ID: u32 = 36;
/// Length of short codes.
const CODE: u32 = 64;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let refunded_at = match manager.get_database_backend() {
            // UTC with microseconds, as every timestamp of the schema (see the first migration).
            DbBackend::MySql => ColumnDef::new(PaymentRecords::RefundedAt)
                .custom(Alias::new("DATETIME(6)"))
                .null()
                .to_owned(),
            _ => ColumnDef::new(PaymentRecords::RefundedAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
        };
        // SQLite changes one column per statement.
        let columns = [
            ColumnDef::new(PaymentRecords::RefundId)
                .string_len(ID)
                .null()
                .to_owned(),
            ColumnDef::new(PaymentRecords::RefundReason)
                .string_len(CODE)
                .null()
                .to_owned(),
            refunded_at,
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(PaymentRecords::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            PaymentRecords::RefundedAt,
            PaymentRecords::RefundReason,
            PaymentRecords::RefundId,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(PaymentRecords::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
