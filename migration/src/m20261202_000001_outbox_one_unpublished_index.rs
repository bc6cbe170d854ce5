//! The outbox keeps one index on `published_at`: `(published_at, claimed_by, id)` answers everything
//! `(published_at, id)` did (the unpublished rows, oldest first), and every outbox row is written to
//! each index twice (its insert, its publication), so the second one only cost writes.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    PublishedAt,
    Id,
}

const NAME: &str = "ix_outbox_events_published_at_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(NAME).table(OutboxEvents::Table).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NAME)
                    .table(OutboxEvents::Table)
                    .col(OutboxEvents::PublishedAt)
                    .col(OutboxEvents::Id)
                    .to_owned(),
            )
            .await
    }
}
