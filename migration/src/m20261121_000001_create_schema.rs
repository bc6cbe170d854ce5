//! The whole schema of DESIGN.md's Persistence section.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Length of a UUID in text form.
const ID: u32 = 36;
/// Length of SKU ids, user ids, states and other short codes.
const CODE: u32 = 64;
/// Length of a decimal amount in text form.
const MONEY: u32 = 40;

/// Column builders that give the same shape on every backend.
struct Cols(DbBackend);

impl Cols {
    fn id(&self, name: impl IntoIden) -> ColumnDef {
        ColumnDef::new(name).string_len(ID).not_null().to_owned()
    }
    fn code(&self, name: impl IntoIden) -> ColumnDef {
        ColumnDef::new(name).string_len(CODE).not_null().to_owned()
    }
    fn money(&self, name: impl IntoIden) -> ColumnDef {
        ColumnDef::new(name).string_len(MONEY).not_null().to_owned()
    }
    fn text(&self, name: impl IntoIden) -> ColumnDef {
        ColumnDef::new(name).text().not_null().to_owned()
    }
    fn auto_pk(&self, name: impl IntoIden) -> ColumnDef {
        ColumnDef::new(name)
            .big_integer()
            .not_null()
            .auto_increment()
            .primary_key()
            .to_owned()
    }
    /// A UTC timestamp with microseconds. MySQL's `TIMESTAMP` keeps whole seconds and shifts with the
    /// session time zone, so MySQL gets `DATETIME(6)` holding UTC.
    fn ts(&self, name: impl IntoIden) -> ColumnDef {
        let mut col = ColumnDef::new(name);
        match self.0 {
            DbBackend::MySql => col.custom(Alias::new("DATETIME(6)")),
            _ => col.timestamp_with_time_zone(),
        };
        col.not_null().to_owned()
    }
    fn ts_null(&self, name: impl IntoIden) -> ColumnDef {
        let mut col = self.ts(name);
        col.null();
        col
    }
}

fn null(mut col: ColumnDef) -> ColumnDef {
    col.null();
    col
}

fn index(name: &str, table: impl IntoIden, cols: &[&'static str]) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(table);
    for col in cols {
        idx.col(Alias::new(*col));
    }
    idx.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let c = Cols(manager.get_database_backend());

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(c.id(Users::Id).primary_key())
                    .col(c.code(Users::Username).unique_key())
                    .col(ColumnDef::new(Users::PasswordHash).string_len(255).not_null())
                    .col(ColumnDef::new(Users::Roles).string_len(255).not_null())
                    .col(c.ts(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .col(c.code(Products::SkuId).primary_key())
                    .col(ColumnDef::new(Products::Name).string_len(255).not_null())
                    .col(c.ts(Products::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Stocks::Table)
                    .col(c.code(Stocks::SkuId).primary_key())
                    .col(ColumnDef::new(Stocks::AvailableQty).big_integer().not_null())
                    .col(
                        ColumnDef::new(Stocks::ReservedQty)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Stocks::Version)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(c.ts(Stocks::UpdatedAt))
                    .check(Expr::col(Stocks::AvailableQty).gte(0))
                    .check(Expr::col(Stocks::ReservedQty).gte(0))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .col(c.id(Orders::Id).primary_key())
                    .col(c.code(Orders::UserId))
                    .col(c.code(Orders::Status))
                    .col(c.money(Orders::TotalAmount))
                    .col(null(c.code(Orders::FailureReason)))
                    .col(ColumnDef::new(Orders::IdempotencyKey).string_len(255).not_null())
                    .col(c.code(Orders::RequestHash))
                    .col(c.code(Orders::TraceId))
                    .col(c.ts(Orders::CreatedAt))
                    .col(c.ts(Orders::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_orders_user_idempotency_key",
                    Orders::Table,
                    &["user_id", "idempotency_key"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_orders_status_updated_at",
                Orders::Table,
                &["status", "updated_at"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OrderItems::Table)
                    .col(c.auto_pk(OrderItems::Id))
                    .col(c.id(OrderItems::OrderId))
                    .col(ColumnDef::new(OrderItems::LineNo).integer().not_null())
                    .col(c.code(OrderItems::SkuId))
                    .col(ColumnDef::new(OrderItems::Quantity).integer().not_null())
                    .col(c.money(OrderItems::Price))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("ix_order_items_order_id", OrderItems::Table, &["order_id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OrdersArchive::Table)
                    .col(c.id(OrdersArchive::Id).primary_key())
                    .col(c.code(OrdersArchive::UserId))
                    .col(c.code(OrdersArchive::Status))
                    .col(c.money(OrdersArchive::TotalAmount))
                    .col(null(c.code(OrdersArchive::FailureReason)))
                    .col(
                        ColumnDef::new(OrdersArchive::IdempotencyKey)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(c.code(OrdersArchive::RequestHash))
                    .col(c.code(OrdersArchive::TraceId))
                    .col(c.text(OrdersArchive::Items))
                    .col(c.ts(OrdersArchive::CreatedAt))
                    .col(c.ts(OrdersArchive::UpdatedAt))
                    .col(c.ts(OrdersArchive::ArchivedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SagaInstances::Table)
                    .col(c.id(SagaInstances::OrderId).primary_key())
                    .col(c.code(SagaInstances::State))
                    .col(ColumnDef::new(SagaInstances::Version).big_integer().not_null())
                    .col(c.code(SagaInstances::UserId))
                    .col(null(c.id(SagaInstances::ReservationId)))
                    .col(null(c.id(SagaInstances::PaymentId)))
                    .col(null(c.code(SagaInstances::FailureReason)))
                    .col(c.code(SagaInstances::TraceId))
                    .col(c.text(SagaInstances::Identity))
                    .col(c.ts(SagaInstances::StartedAt))
                    .col(c.ts(SagaInstances::UpdatedAt))
                    .col(c.ts_null(SagaInstances::CompletedAt))
                    .col(c.ts_null(SagaInstances::DeadlineAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_saga_instances_state_updated_at",
                SagaInstances::Table,
                &["state", "updated_at"],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_saga_instances_updated_at",
                SagaInstances::Table,
                &["updated_at"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SagaHistory::Table)
                    .col(c.auto_pk(SagaHistory::Id))
                    .col(c.id(SagaHistory::OrderId))
                    .col(ColumnDef::new(SagaHistory::Seq).integer().not_null())
                    .col(c.ts(SagaHistory::At))
                    .col(c.code(SagaHistory::EventType))
                    .col(null(c.id(SagaHistory::EventId)))
                    .col(null(c.code(SagaHistory::RoutingKey)))
                    .col(null(c.code(SagaHistory::FromState)))
                    .col(c.code(SagaHistory::ToState))
                    .col(ColumnDef::new(SagaHistory::Detail).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_saga_history_order_seq",
                    SagaHistory::Table,
                    &["order_id", "seq"],
                )
                .unique()
                .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OutboxEvents::Table)
                    .col(c.auto_pk(OutboxEvents::Id))
                    .col(c.id(OutboxEvents::EventId).unique_key())
                    .col(c.code(OutboxEvents::EventType))
                    .col(c.code(OutboxEvents::RoutingKey))
                    .col(c.code(OutboxEvents::AggregateId))
                    .col(c.text(OutboxEvents::Payload))
                    .col(c.ts(OutboxEvents::CreatedAt))
                    .col(c.ts_null(OutboxEvents::PublishedAt))
                    .col(null(c.code(OutboxEvents::ClaimedBy)))
                    .col(c.ts_null(OutboxEvents::ClaimedAt))
                    .col(
                        ColumnDef::new(OutboxEvents::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_outbox_events_published_at_id",
                OutboxEvents::Table,
                &["published_at", "id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ConsumedMessages::Table)
                    .col(c.id(ConsumedMessages::MessageId))
                    .col(c.code(ConsumedMessages::Consumer))
                    .col(c.ts(ConsumedMessages::ConsumedAt))
                    .primary_key(
                        Index::create()
                            .col(ConsumedMessages::MessageId)
                            .col(ConsumedMessages::Consumer),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DeadLetters::Table)
                    .col(c.id(DeadLetters::Id).primary_key())
                    .col(ColumnDef::new(DeadLetters::MessageId).string_len(255).not_null())
                    .col(c.code(DeadLetters::Consumer))
                    .col(ColumnDef::new(DeadLetters::RoutingKey).string_len(255).not_null())
                    .col(ColumnDef::new(DeadLetters::EventType).string_len(255).not_null())
                    .col(c.text(DeadLetters::Payload))
                    .col(c.text(DeadLetters::Reason))
                    .col(ColumnDef::new(DeadLetters::Attempts).integer().not_null())
                    .col(null(c.code(DeadLetters::TraceId)))
                    .col(c.code(DeadLetters::Status))
                    .col(c.ts(DeadLetters::CreatedAt))
                    .col(c.ts(DeadLetters::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_dead_letters_status_created_at",
                DeadLetters::Table,
                &["status", "created_at"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(InventoryReservations::Table)
                    .col(c.id(InventoryReservations::Id).primary_key())
                    .col(c.id(InventoryReservations::OrderId).unique_key())
                    .col(c.code(InventoryReservations::Status))
                    .col(c.ts(InventoryReservations::CreatedAt))
                    .col(c.ts(InventoryReservations::UpdatedAt))
                    .col(c.ts_null(InventoryReservations::ReleasedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(InventoryReservationItems::Table)
                    .col(c.auto_pk(InventoryReservationItems::Id))
                    .col(c.id(InventoryReservationItems::ReservationId))
                    .col(c.code(InventoryReservationItems::SkuId))
                    .col(
                        ColumnDef::new(InventoryReservationItems::Quantity)
                            .integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_inventory_reservation_items_reservation_sku",
                    InventoryReservationItems::Table,
                    &["reservation_id", "sku_id"],
                )
                .unique()
                .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(InventoryReleaseEvents::Table)
                    .col(c.id(InventoryReleaseEvents::Id).primary_key())
                    .col(c.id(InventoryReleaseEvents::OrderId))
                    .col(c.id(InventoryReleaseEvents::ReservationId))
                    .col(c.code(InventoryReleaseEvents::Reason))
                    .col(c.text(InventoryReleaseEvents::ReleasedItems))
                    .col(c.code(InventoryReleaseEvents::TraceId))
                    .col(c.ts(InventoryReleaseEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_inventory_release_events_reservation",
                    InventoryReleaseEvents::Table,
                    &["reservation_id"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_inventory_release_events_created_at_id",
                InventoryReleaseEvents::Table,
                &["created_at", "id"],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_inventory_release_events_order_created_at",
                InventoryReleaseEvents::Table,
                &["order_id", "created_at"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PaymentRecords::Table)
                    .col(c.id(PaymentRecords::Id).primary_key())
                    .col(c.id(PaymentRecords::OrderId).unique_key())
                    .col(c.money(PaymentRecords::Amount))
                    .col(c.code(PaymentRecords::Status))
                    .col(null(c.code(PaymentRecords::Reason)))
                    .col(c.ts(PaymentRecords::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .col(c.auto_pk(Notifications::Id))
                    .col(c.id(Notifications::EventId).unique_key())
                    .col(c.id(Notifications::OrderId))
                    .col(c.code(Notifications::UserId))
                    .col(c.code(Notifications::Kind))
                    .col(c.text(Notifications::Message))
                    .col(c.ts(Notifications::CreatedAt))
                    .to_owned(),
            )
            .await?;

        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables: [DynIden; 16] = [
            Notifications::Table.into_iden(),
            PaymentRecords::Table.into_iden(),
            InventoryReleaseEvents::Table.into_iden(),
            InventoryReservationItems::Table.into_iden(),
            InventoryReservations::Table.into_iden(),
            DeadLetters::Table.into_iden(),
            ConsumedMessages::Table.into_iden(),
            OutboxEvents::Table.into_iden(),
            SagaHistory::Table.into_iden(),
            SagaInstances::Table.into_iden(),
            OrdersArchive::Table.into_iden(),
            OrderItems::Table.into_iden(),
            Orders::Table.into_iden(),
            Stocks::Table.into_iden(),
            Products::Table.into_iden(),
            Users::Table.into_iden(),
        ];
        for table in tables {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    PasswordHash,
    Roles,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Products {
    Table,
    SkuId,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Stocks {
    Table,
    SkuId,
    AvailableQty,
    ReservedQty,
    Version,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    UserId,
    Status,
    TotalAmount,
    FailureReason,
    IdempotencyKey,
    RequestHash,
    TraceId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrderItems {
    Table,
    Id,
    OrderId,
    LineNo,
    SkuId,
    Quantity,
    Price,
}

#[derive(DeriveIden)]
enum OrdersArchive {
    Table,
    Id,
    UserId,
    Status,
    TotalAmount,
    FailureReason,
    IdempotencyKey,
    RequestHash,
    TraceId,
    Items,
    CreatedAt,
    UpdatedAt,
    ArchivedAt,
}

#[derive(DeriveIden)]
enum SagaInstances {
    Table,
    OrderId,
    State,
    Version,
    UserId,
    ReservationId,
    PaymentId,
    FailureReason,
    TraceId,
    Identity,
    StartedAt,
    UpdatedAt,
    CompletedAt,
    DeadlineAt,
}

#[derive(DeriveIden)]
enum SagaHistory {
    Table,
    Id,
    OrderId,
    Seq,
    At,
    EventType,
    EventId,
    RoutingKey,
    FromState,
    ToState,
    Detail,
}

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    Id,
    EventId,
    EventType,
    RoutingKey,
    AggregateId,
    Payload,
    CreatedAt,
    PublishedAt,
    ClaimedBy,
    ClaimedAt,
    Attempts,
}

#[derive(DeriveIden)]
enum ConsumedMessages {
    Table,
    MessageId,
    Consumer,
    ConsumedAt,
}

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    Id,
    MessageId,
    Consumer,
    RoutingKey,
    EventType,
    Payload,
    Reason,
    Attempts,
    TraceId,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum InventoryReservations {
    Table,
    Id,
    OrderId,
    Status,
    CreatedAt,
    UpdatedAt,
    ReleasedAt,
}

#[derive(DeriveIden)]
enum InventoryReservationItems {
    Table,
    Id,
    ReservationId,
    SkuId,
    Quantity,
}

#[derive(DeriveIden)]
enum InventoryReleaseEvents {
    Table,
    Id,
    OrderId,
    ReservationId,
    Reason,
    ReleasedItems,
    TraceId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum PaymentRecords {
    Table,
    Id,
    OrderId,
    Amount,
    Status,
    Reason,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    EventId,
    OrderId,
    UserId,
    Kind,
    Message,
    CreatedAt,
}
