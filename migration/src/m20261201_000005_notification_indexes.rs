//! Indexes of `GET /api/notifications`: an order's notifications, a user's, and everyone's, each read
//! newest first.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Notifications {
    Table,
    OrderId,
    UserId,
    CreatedAt,
}

const BY_ORDER: &str = "ix_notifications_order_id_created_at";
const BY_USER: &str = "ix_notifications_user_id_created_at";
const BY_TIME: &str = "ix_notifications_created_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let indexes = [
            (BY_ORDER, Some(Notifications::OrderId)),
            (BY_USER, Some(Notifications::UserId)),
            (BY_TIME, None),
        ];
        for (name, first) in indexes {
            let mut index = Index::create();
            index.name(name).table(Notifications::Table);
            if let Some(first) = first {
                index.col(first);
            }
            manager
                .create_index(index.col(Notifications::CreatedAt).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in [BY_ORDER, BY_USER, BY_TIME] {
            manager
                .drop_index(Index::drop().name(name).table(Notifications::Table).to_owned())
                .await?;
        }
        Ok(())
    }
}
