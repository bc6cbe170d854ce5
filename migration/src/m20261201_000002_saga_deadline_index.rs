//! The deadline index: sagas waiting for a payment without an actor in memory are woken from it, soonest
//! deadline first.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SagaInstances {
    Table,
    State,
    DeadlineAt,
}

const NAME: &str = "ix_saga_instances_state_deadline_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NAME)
                    .table(SagaInstances::Table)
                    .col(SagaInstances::State)
                    .col(SagaInstances::DeadlineAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(NAME).table(SagaInstances::Table).to_owned())
            .await
    }
}
