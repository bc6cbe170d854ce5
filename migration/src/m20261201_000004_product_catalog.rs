//! The product catalog: a product's description, price and whether it is sold (`active`), and when it
//! last changed. Rows the stock upsert created before keep their name, are active and have no price yet.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Products {
    Table,
    Description,
    Price,
    Active,
    CreatedAt,
    UpdatedAt,
}

/// Length of a decimal amount in text form (as in the first migration).
const MONEY: u32 = 40;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let updated_at = match manager.get_database_backend() {
            // UTC with microseconds, as every timestamp of the schema (see the first migration).
            DbBackend::MySql => ColumnDef::new(Products::UpdatedAt)
                .custom(Alias::new("DATETIME(6)"))
                .null()
                .to_owned(),
            _ => ColumnDef::new(Products::UpdatedAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
        };
        // SQLite changes one column per statement.
        let columns = [
            ColumnDef::new(Products::Description).text().null().to_owned(),
            ColumnDef::new(Products::Price)
                .string_len(MONEY)
                .null()
                .to_owned(),
            ColumnDef::new(Products::Active)
                .boolean()
                .not_null()
                .default(true)
                .to_owned(),
            updated_at,
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Products::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        // Every row has a time of its last change from now on (new rows are written with one).
        manager
            .exec_stmt(
                Query::update()
                    .table(Products::Table)
                    .value(Products::UpdatedAt, Expr::col(Products::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Products::UpdatedAt,
            Products::Active,
            Products::Price,
            Products::Description,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Products::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
