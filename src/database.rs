//! Connecting to the configured database and migrating it.

use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous as Sync};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use crate::config::{DatabaseKind, Settings, SqliteSynchronous};

/// How long a SQLite writer waits for the write lock before giving up (the error is then transient).
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the connection pool. SQLite gets WAL, the configured `synchronous`, a busy timeout and foreign
/// keys; the file is created if missing. SQLite has one writer at a time, and a writer that finds the
/// lock taken sleeps and polls, so later writers can overtake it; with a single pooled connection (the
/// SQLite default) database work queues in arrival order instead.
pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let options = options(settings)?;
    let db = Database::connect(options).await.with_context(|| {
        format!(
            "cannot connect to the database ({})",
            redact(&settings.database_url)
        )
    })?;
    Ok(statement_stats::attach(db, settings))
}

/// SQLite: a pool of read-only connections for the API's reads, beside the one writer connection, so
/// that a read does not queue behind the engine's transactions (in WAL mode a reader sees the last
/// commit while the writer goes on). `None` on a server database (its one pool serves both), for an
/// in-memory SQLite database (another connection would see another database), or with
/// `database.sqlite_readers = 0`; the reads then use the writer's pool. Connections open when first
/// needed.
pub async fn connect_readers(settings: &Settings) -> anyhow::Result<Option<DatabaseConnection>> {
    let url = settings.database_url.as_str();
    let readers = settings.database.sqlite_readers;
    if settings.database_kind()? != DatabaseKind::Sqlite
        || readers == 0
        || url.contains(":memory:")
        || url.contains("mode=memory")
    {
        return Ok(None);
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(readers)
        .min_connections(0)
        .connect_lazy(true)
        .connect_timeout(Duration::from_secs(settings.database.connect_timeout_seconds))
        .acquire_timeout(Duration::from_secs(settings.database.connect_timeout_seconds))
        .sqlx_logging(false);
    options.map_sqlx_sqlite_opts(|o| o.read_only(true).busy_timeout(SQLITE_BUSY_TIMEOUT));
    let db = Database::connect(options)
        .await
        .with_context(|| format!("cannot set up the SQLite readers ({})", redact(url)))?;
    Ok(Some(statement_stats::attach(db, settings)))
}

/// Creates the pool without connecting: connections are opened when first needed, so a server database
/// that is down does not stop the start.
pub async fn connect_lazy(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let mut options = options(settings)?;
    options.connect_lazy(true);
    let db = Database::connect(options).await.with_context(|| {
        format!(
            "cannot set up the database pool ({})",
            redact(&settings.database_url)
        )
    })?;
    Ok(statement_stats::attach(db, settings))
}

fn options(settings: &Settings) -> anyhow::Result<ConnectOptions> {
    let kind = settings.database_kind()?;
    let mut options = ConnectOptions::new(settings.database_url.clone());
    let max = settings.database.max_connections.unwrap_or(match kind {
        DatabaseKind::Sqlite => 1,
        _ => 16,
    });
    options
        .max_connections(max)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(settings.database.connect_timeout_seconds))
        .acquire_timeout(Duration::from_secs(settings.database.connect_timeout_seconds))
        .sqlx_logging(false);
    // A node cut off by the network mid-transaction keeps its sessions open on the server, and their
    // locks with them, for as long as the cut lasts: the server hears nothing, and its TCP keepalive
    // (hours) does not help. The node gives any unit of work up after `database.work_timeout_seconds`,
    // so a transaction idle for twice that has been abandoned: the server ends it, and the other nodes'
    // work on the same rows (stock, sagas) goes on.
    let idle_in_transaction = settings.database.work_timeout_seconds.saturating_mul(2).max(1);
    match kind {
        DatabaseKind::Postgres => {
            let ms = idle_in_transaction.saturating_mul(1000).to_string();
            options.map_sqlx_postgres_opts(move |o| {
                o.options([("idle_in_transaction_session_timeout", ms.as_str())])
            });
        }
        DatabaseKind::MySql => {
            // MariaDB's `idle_transaction_timeout`; MySQL has no such variable and answers an error,
            // which leaves the session as it was.
            let set = format!("SET SESSION idle_transaction_timeout = {idle_in_transaction}");
            options.map_sqlx_mysql_pool_opts(move |pool| {
                let set = set.clone();
                pool.after_connect(move |conn, _| {
                    let set = set.clone();
                    Box::pin(async move {
                        use sea_orm::sqlx::Executor;
                        // A number we formatted, nothing from outside.
                        let sql = sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(set));
                        if let Err(e) = conn.execute(sql).await {
                            tracing::debug!(error = %e, "the server has no idle_transaction_timeout");
                        }
                        Ok(())
                    })
                })
            });
        }
        DatabaseKind::Sqlite => {}
    }
    if kind == DatabaseKind::Sqlite {
        let synchronous = match settings.sqlite_synchronous {
            SqliteSynchronous::Full => Sync::Full,
            SqliteSynchronous::Normal => Sync::Normal,
        };
        options.map_sqlx_sqlite_opts(move |o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
                .create_if_missing(true)
        });
    }
    Ok(options)
}

/// A profiling aid: with `database.statement_stats_file` set, every statement the node sends is counted
/// by its shape (its first words), with the time it took, and `FILE` is rewritten every two seconds as a
/// tab-separated table (`count`, `total_ms`, `shape`), most frequent first (the time is from the call to
/// the answer, so it includes the wait for the connection's thread). `docs/profiling/measure.py
/// --statements` divides the counts by the sagas of a run. Unset (the default), nothing is attached.
mod statement_stats {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    use std::time::Duration;

    use sea_orm::DatabaseConnection;

    use crate::config::Settings;

    /// Count and total time per statement shape.
    type Table = Mutex<HashMap<String, (u64, Duration)>>;

    static TABLE: OnceLock<Table> = OnceLock::new();

    pub fn attach(mut db: DatabaseConnection, settings: &Settings) -> DatabaseConnection {
        let Some(path) = settings.database.statement_stats_file.clone() else {
            return db;
        };
        let mut first = false;
        let table = TABLE.get_or_init(|| {
            first = true;
            Table::default()
        });
        db.set_metric_callback(move |info| {
            let shape = shape(&info.statement.sql);
            if let Ok(mut table) = table.lock() {
                let entry = table.entry(shape).or_default();
                entry.0 += 1;
                entry.1 += info.elapsed;
            }
        });
        if !first {
            // Another pool of the node (the SQLite readers) counts into the same table.
            return db;
        }
        let spawned = std::thread::Builder::new()
            .name("statement-stats".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(2));
                    let mut rows: Vec<(String, u64, Duration)> = match table.lock() {
                        Ok(table) => table.iter().map(|(k, (n, t))| (k.clone(), *n, *t)).collect(),
                        Err(_) => return,
                    };
                    rows.sort_by_key(|row| std::cmp::Reverse(row.1));
                    let text: String = rows
                        .iter()
                        .map(|(shape, n, t)| format!("{n}\t{:.1}\t{shape}\n", t.as_secs_f64() * 1000.0))
                        .collect();
                    if let Err(e) = std::fs::write(&path, text) {
                        tracing::warn!(error = %e, path = %path.display(), "cannot write the statement statistics; they stop");
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the statement statistics");
        }
        db
    }

    /// A statement's first words, with the values of a multi-row `VALUES` or an `IN` list left out.
    fn shape(sql: &str) -> String {
        let mut end = sql.len().min(90);
        for marker in [" VALUES ", " IN ("] {
            if let Some(at) = sql.find(marker) {
                end = end.min(at + marker.len());
            }
        }
        let mut cut = end;
        while !sql.is_char_boundary(cut) {
            cut -= 1;
        }
        sql[..cut].split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None)
        .await
        .context("migrating the database failed")
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme_end], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("sqlite://x.db?mode=rwc"), "sqlite://x.db?mode=rwc");
    }
}
