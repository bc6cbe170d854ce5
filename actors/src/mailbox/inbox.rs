//! The inbox (`consumed_messages`): one row per (message, consumer) whose effects are committed. Claiming
//! it in the same transaction as the effects is what makes every message's effects happen once.

use std::collections::{BTreeSet, HashSet};

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use crate::db;

/// Claims `(message_id, consumer)` in the inbox; `false` when it was claimed before (a duplicate).
pub async fn claim(txn: &impl ConnectionTrait, message_id: &str, consumer: &str) -> Result<bool, DbErr> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        DbBackend::MySql => {
            "INSERT IGNORE INTO consumed_messages (message_id, consumer, consumed_at) VALUES (?, ?, ?)"
        }
        DbBackend::Postgres => {
            "INSERT INTO consumed_messages (message_id, consumer, consumed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        }
        _ => {
            "INSERT INTO consumed_messages (message_id, consumer, consumed_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
        }
    };
    let result = txn
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [message_id.into(), consumer.into(), db::now().into()],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Claims many messages for one consumer; answers the ids claimed now (the others were claimed before).
/// One statement where the database can say which rows it inserted (`RETURNING`: SQLite, PostgreSQL);
/// one per message on MySQL/MariaDB.
pub async fn claim_many(
    txn: &impl ConnectionTrait,
    message_ids: &[&str],
    consumer: &str,
) -> Result<HashSet<String>, DbErr> {
    let backend = txn.get_database_backend();
    let mut claimed = HashSet::new();
    if backend == DbBackend::MySql {
        for id in message_ids {
            if !claimed.contains(*id) && claim(txn, id, consumer).await? {
                claimed.insert((*id).to_owned());
            }
        }
        return Ok(claimed);
    }
    let unique: BTreeSet<&str> = message_ids.iter().copied().collect();
    if unique.is_empty() {
        return Ok(claimed);
    }
    let now = db::now();
    let mut sql = String::from("INSERT INTO consumed_messages (message_id, consumer, consumed_at) VALUES ");
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(unique.len() * 3);
    for (i, id) in unique.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        match backend {
            DbBackend::Postgres => {
                let n = i * 3;
                sql.push_str(&format!("(${}, ${}, ${})", n + 1, n + 2, n + 3));
            }
            _ => sql.push_str("(?, ?, ?)"),
        }
        values.push((*id).into());
        values.push(consumer.into());
        values.push(now.into());
    }
    sql.push_str(" ON CONFLICT DO NOTHING RETURNING message_id");
    for row in txn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
    {
        claimed.insert(row.try_get::<String>("", "message_id")?);
    }
    Ok(claimed)
}
