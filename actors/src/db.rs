//! Database helpers shared by every actor: write transactions, time, and error classification.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, RuntimeErr, SqlErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};

/// Begins a transaction that will write. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`),
/// so two writers queue on the busy timeout instead of failing when a reader upgrades.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    if db.get_database_backend() == DbBackend::Sqlite {
        db.begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await
    } else {
        db.begin().await
    }
}

/// The current time at the precision every supported database keeps (microseconds), so that a value
/// read back equals the value written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A new random identifier (UUID v4, text form).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether the error is a unique-key violation (the insert that decides idempotency lost).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
        || matches!(err, DbErr::RecordNotInserted)
}

/// Whether trying the same work again later may succeed: lost connections, pool exhaustion, deadlocks,
/// serialization failures, lock timeouts and a busy SQLite.
pub fn is_transient(err: &DbErr) -> bool {
    use sea_orm::sqlx;
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
            sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                matches!(
                    code.as_ref(),
                    // PostgreSQL: serialization failure, deadlock, lock not available, too many connections,
                    // admin shutdown
                    "40001" | "40P01" | "55P03" | "53300" | "57P01"
                    // MySQL/MariaDB: lock wait timeout, deadlock
                    | "1205" | "1213" | "HY000"
                    // SQLite: BUSY, LOCKED, BUSY_SNAPSHOT, LOCKED_SHAREDCACHE, BUSY_RECOVERY
                    | "5" | "6" | "517" | "262" | "261"
                ) || mysql_transient(db.as_ref())
            }
            _ => false,
        },
        _ => false,
    }
}

fn mysql_transient(db: &dyn sea_orm::sqlx::error::DatabaseError) -> bool {
    db.try_downcast_ref::<sea_orm::sqlx::mysql::MySqlDatabaseError>()
        .map(|e| matches!(e.number(), 1205 | 1213 | 1020))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_has_microsecond_precision() {
        let t = now();
        assert_eq!(t.timestamp_subsec_nanos() % 1_000, 0);
    }

    #[test]
    fn unique_violations_are_not_transient() {
        assert!(!is_transient(&DbErr::RecordNotInserted));
        assert!(is_unique_violation(&DbErr::RecordNotInserted));
        assert!(is_transient(&DbErr::Conn(RuntimeErr::Internal("gone".into()))));
    }
}

/// Writes that travel together: on SQLite they go to the database in one round trip (one call with
/// several statements), elsewhere one after the other. Each statement should change one row per row it
/// names, so the caller can compare [`Writes::execute`]'s total with what it expects: a version-checked
/// update that matched nothing shows as a shortfall.
#[derive(Default)]
pub struct Writes {
    statements: Vec<sea_orm::Statement>,
}

impl Writes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a statement built for `backend`.
    pub fn push(&mut self, backend: DbBackend, query: &impl sea_orm::QueryTrait) {
        self.statements.push(query.build(backend));
    }

    /// Runs the statements in order; answers the rows they changed in all.
    pub async fn execute(self, db: &impl sea_orm::ConnectionTrait) -> Result<u64, DbErr> {
        let backend = db.get_database_backend();
        if backend != DbBackend::Sqlite || self.statements.len() < 2 {
            let mut rows = 0;
            for statement in self.statements {
                rows += db.execute_raw(statement).await?.rows_affected();
            }
            return Ok(rows);
        }
        let mut sql = String::new();
        let mut values = Vec::new();
        for statement in self.statements {
            if !sql.is_empty() {
                sql.push_str(";\n");
            }
            sql.push_str(&statement.sql);
            if let Some(v) = statement.values {
                values.extend(v.0);
            }
        }
        let result = db
            .execute_raw(sea_orm::Statement::from_sql_and_values(backend, sql, values))
            .await?;
        Ok(result.rows_affected())
    }
}
