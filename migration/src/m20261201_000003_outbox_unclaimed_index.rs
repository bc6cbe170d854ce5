//! The relay's index: unclaimed rows are found by a seek on `(published_at, claimed_by, id)`, however
//! many rows are claimed and waiting (a million payments in flight, say).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    PublishedAt,
    ClaimedBy,
    Id,
}

const NAME: &str = "ix_outbox_events_published_at_claimed_by_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NAME)
                    .table(OutboxEvents::Table)
                    .col(OutboxEvents::PublishedAt)
                    .col(OutboxEvents::ClaimedBy)
                    .col(OutboxEvents::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(NAME).table(OutboxEvents::Table).to_owned())
            .await
    }
}
