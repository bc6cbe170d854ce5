//! Group commit on a database with one writer connection (SQLite's default pool of one).
//!
//! SQLite commits one transaction at a time, and with `synchronous = FULL` each commit is a sync of the
//! WAL. A saga's steps are small transactions of different queues (the reservation, the saga's step,
//! the payment, …), so with few sagas in flight most of the writer's time went to those syncs. Here the
//! units of work that queue for the writer one behind the other share one transaction: each runs in a
//! savepoint of it, so a unit that fails rolls back its own work only, and the transaction commits once
//! no other unit is waiting for the writer, or the group has reached its bounds ([`MAX_UNITS`],
//! [`MAX_HOLD`]). A unit's [`Write::commit`] returns only once the group's commit is durable, so
//! nothing that follows a commit (the relay, the after-commit hooks, the answer to a client) sees work
//! that could still be lost. A group's commit that fails fails every unit in it, as if each unit's own
//! commit had failed.
//!
//! On a server database (a pool of several connections, each committing on its own, the server
//! grouping the log flushes itself) a unit is a plain transaction.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sea_orm::{DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, RuntimeErr, TransactionTrait};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

/// Most units of work in one group.
pub const MAX_UNITS: usize = 64;
/// Longest a group stays open from its first unit: it bounds how long a finished unit waits for the
/// units after it, and how long work outside the group (reads on the writer's pool) waits for the
/// connection.
pub const MAX_HOLD: Duration = Duration::from_millis(10);

/// Begins the node's units of write work: in a shared group on a one-connection SQLite pool, as plain
/// transactions elsewhere. Clones share the group.
#[derive(Clone)]
pub struct Writer {
    db: DatabaseConnection,
    group: Option<Arc<Group>>,
}

struct Group {
    open: Arc<Mutex<Open>>,
    /// Units waiting for the writer (for `open`'s lock): while there are some, a finished unit leaves the
    /// group open for them.
    queued: AtomicUsize,
}

/// The group being filled, behind the writer's lock: whoever holds the lock runs statements on the
/// connection.
#[derive(Default)]
struct Open {
    txn: Option<DatabaseTransaction>,
    /// Counts the groups; a unit waiting for its group's commit knows its group by it.
    generation: u64,
    units: usize,
    since: Option<Instant>,
    /// The units whose work is in the group, waiting for its commit.
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
}

impl Open {
    fn is_full(&self) -> bool {
        self.units >= MAX_UNITS || self.since.is_some_and(|since| since.elapsed() >= MAX_HOLD)
    }

    /// Commits the group (if one is open) and tells its units how it went.
    async fn close(&mut self) {
        let Some(txn) = self.txn.take() else {
            self.abandon();
            return;
        };
        let units = self.units;
        let result = txn.commit().await.map_err(|e| e.to_string());
        if result.is_ok() {
            metrics::counter!("database_group_commits_total").increment(1);
            metrics::counter!("database_grouped_units_total").increment(units as u64);
        }
        for waiter in self.waiters.drain(..) {
            // A unit that stopped waiting has nothing to be told.
            let _ = waiter.send(result.clone());
        }
        self.next();
    }

    /// The group's transaction is gone without a commit (its commit was interrupted): its units fail.
    fn abandon(&mut self) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(Err("the group's commit did not finish".into()));
        }
        self.next();
    }

    /// Nothing of anyone's is in the group: its transaction is rolled back and the connection goes back
    /// to the pool.
    fn let_go(&mut self) {
        drop(self.txn.take());
        self.next();
    }

    fn next(&mut self) {
        self.generation += 1;
        self.units = 0;
        self.since = None;
    }
}

impl Group {
    /// Whether a unit that has ended commits the group now: nobody waits to join it, or it is full.
    fn closes_now(&self, open: &Open) -> bool {
        self.queued.load(Ordering::Acquire) == 0 || open.is_full()
    }
}

/// Counts a unit as waiting for the writer while it exists.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Queued(count)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Writer {
    /// Groups units when `db` is SQLite with a pool of one connection (the embedded default): there the
    /// one connection serializes the work anyway.
    pub fn new(db: DatabaseConnection) -> Self {
        let one_connection = db.get_database_backend() == DbBackend::Sqlite
            && db.get_sqlite_connection_pool().options().get_max_connections() == 1;
        let group = one_connection.then(|| {
            Arc::new(Group {
                open: Arc::new(Mutex::new(Open::default())),
                queued: AtomicUsize::new(0),
            })
        });
        Writer { db, group }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Begins a unit of write work. Its transaction ([`Write::txn`]) is used as any other; the unit ends
    /// with [`Write::commit`] or [`Write::rollback`] (dropped, it rolls back).
    pub async fn begin(&self) -> Result<Write, DbErr> {
        let Some(group) = &self.group else {
            let txn = super::begin_write(&self.db).await?;
            return Ok(Write {
                txn: Arc::new(txn),
                unit: None,
            });
        };
        let mut open = loop {
            let open = {
                let _queued = Queued::new(&group.queued);
                group.open.clone().lock_owned().await
            };
            if open.txn.is_some() && open.is_full() {
                close_detached(open).await;
                continue;
            }
            break open;
        };
        if open.txn.is_none() {
            open.txn = Some(super::begin_write(&self.db).await?);
            open.since = Some(Instant::now());
        }
        let began = match open.txn.as_ref() {
            Some(txn) => txn.begin().await,
            None => Err(DbErr::Custom("the group has no transaction".into())),
        };
        let savepoint = match began {
            Ok(savepoint) => savepoint,
            Err(e) => {
                // The connection is in trouble: what the group holds is committed (or fails) now.
                close_detached(open).await;
                return Err(e);
            }
        };
        open.units += 1;
        let txn = Arc::new(savepoint);
        Ok(Write {
            unit: Some(Unit {
                savepoint: Arc::downgrade(&txn),
                open: Some(open),
                group: group.clone(),
            }),
            txn,
        })
    }
}

/// A unit of write work: a transaction of its own, or a savepoint in a group.
pub struct Write {
    // Declared first: dropped before the unit, so that a unit dropped unfinished finds its savepoint gone.
    txn: Arc<DatabaseTransaction>,
    unit: Option<Unit>,
}

/// A unit's place in its group: the writer's lock, held until the unit ends.
struct Unit {
    savepoint: Weak<DatabaseTransaction>,
    open: Option<OwnedMutexGuard<Open>>,
    group: Arc<Group>,
}

impl Write {
    /// The unit's transaction, to run statements in and to hand to the actors that apply messages. The
    /// clones must be gone when the unit commits.
    pub fn txn(&self) -> &Arc<DatabaseTransaction> {
        &self.txn
    }

    /// Commits the unit's work; returns once it is durable (for a grouped unit, once its group has
    /// committed).
    pub async fn commit(self) -> Result<(), DbErr> {
        let Write { txn, unit } = self;
        let txn = sole(txn)?;
        let Some(mut unit) = unit else {
            return txn.commit().await;
        };
        // Releases the savepoint: the work joins the group's.
        txn.commit().await?;
        let Some(mut open) = unit.open.take() else {
            return Err(lost());
        };
        let (tell, told) = oneshot::channel();
        open.waiters.push(tell);
        let generation = open.generation;
        if unit.group.closes_now(&open) {
            close_detached(open).await;
        } else {
            drop(open);
        }
        settled(&unit.group, told, generation).await
    }

    /// Rolls the unit's work back; the group's other units are not touched.
    pub async fn rollback(self) -> Result<(), DbErr> {
        let Write { txn, unit } = self;
        let txn = sole(txn)?;
        let Some(mut unit) = unit else {
            return txn.rollback().await;
        };
        let rolled_back = txn.rollback().await;
        if let Some(mut open) = unit.open.take() {
            if open.waiters.is_empty() {
                open.let_go();
            } else if unit.group.closes_now(&open) {
                // Nobody to leave the group open for: what the others wrote is committed now.
                close_detached(open).await;
            }
        }
        rolled_back
    }
}

/// The unit's transaction, once the clones handed out are gone.
fn sole(txn: Arc<DatabaseTransaction>) -> Result<DatabaseTransaction, DbErr> {
    Arc::try_unwrap(txn).map_err(|_| DbErr::Custom("a consumer kept the transaction".into()))
}

fn lost() -> DbErr {
    DbErr::Custom("the unit of work has already ended".into())
}

/// Waits for the group of `generation` to commit. The unit that closes a group tells the others; a unit
/// that has waited [`MAX_HOLD`] without news takes the writer and commits its group itself (the units
/// after it may have been given up).
async fn settled(
    group: &Group,
    mut told: oneshot::Receiver<Result<(), String>>,
    generation: u64,
) -> Result<(), DbErr> {
    loop {
        match tokio::time::timeout(MAX_HOLD, &mut told).await {
            Ok(Ok(Ok(()))) => return Ok(()),
            Ok(Ok(Err(e))) => return Err(group_failed(&e)),
            Ok(Err(_)) => return Err(group_failed("the group was dropped")),
            Err(_) => {
                let open = group.open.clone().lock_owned().await;
                if open.generation == generation {
                    close_detached(open).await;
                }
            }
        }
    }
}

/// Commits the group on a task of its own, and lets the writer go once it has. The unit that closes a
/// group may be given up meanwhile (its future dropped: a timeout, a broker consumer stopped with its
/// connection); the commit goes on without it, so the other units' work is neither cut short nor
/// reported failed when it committed.
async fn close_detached(mut open: OwnedMutexGuard<Open>) {
    let closing = tokio::spawn(async move { open.close().await });
    // An error here is the task's panic; the group's units then learn it from their dropped senders.
    let _ = closing.await;
}

/// The error a unit gets for its group's failed commit: nothing of the group was written, as when a
/// connection is lost at commit, and the unit may run again.
fn group_failed(reason: &str) -> DbErr {
    DbErr::Conn(RuntimeErr::Internal(format!("the group commit failed: {reason}")))
}

impl Drop for Unit {
    /// A unit that ended without `commit` or `rollback` (an error, a timeout): its savepoint rolls back
    /// when its transaction is dropped. The others' work in the group is committed, and the writer let
    /// go, once nothing holds the savepoint any more (an actor may still be applying a message in it).
    fn drop(&mut self) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        let savepoint = std::mem::take(&mut self.savepoint);
        if savepoint.strong_count() == 0 && open.waiters.is_empty() {
            open.let_go();
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to finish on: the group is dropped, its units fail and run again.
            open.abandon();
            return;
        };
        runtime.spawn(async move {
            let deadline = Instant::now() + super::work_timeout();
            while savepoint.strong_count() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            open.close().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::sqlx::sqlite::SqliteJournalMode;
    use sea_orm::{ConnectOptions, ConnectionTrait, Database, Statement};

    /// A SQLite file with table `t`: the writer's pool of one connection, and a second pool to read what
    /// was committed.
    async fn sqlite(name: &str) -> (DatabaseConnection, DatabaseConnection, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("ordersaga-group-{name}-{}.db", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let open = |max: u32| {
            let mut options = ConnectOptions::new(url.clone());
            options.max_connections(max).sqlx_logging(false);
            options.map_sqlx_sqlite_opts(|o| o.journal_mode(SqliteJournalMode::Wal));
            Database::connect(options)
        };
        let writer = open(1).await.expect("the test database opens");
        writer
            .execute_unprepared("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .await
            .expect("the table is created");
        let reader = open(2).await.expect("the reader opens");
        (writer, reader, path)
    }

    async fn insert(write: &Write, key: &str) -> Result<(), DbErr> {
        let sql =
            Statement::from_sql_and_values(DbBackend::Sqlite, "INSERT INTO t (k) VALUES (?)", [key.into()]);
        write.txn().execute_raw(sql).await.map(|_| ())
    }

    async fn keys(db: &DatabaseConnection) -> Vec<String> {
        let sql = Statement::from_string(DbBackend::Sqlite, "SELECT k FROM t ORDER BY k");
        let rows = db.query_all_raw(sql).await.expect("the table reads");
        rows.iter()
            .map(|row| row.try_get::<String>("", "k").expect("k is text"))
            .collect()
    }

    /// Waits until `n` units wait for the writer.
    async fn until_queued(writer: &Writer, n: usize) {
        let group = writer.group.as_ref().expect("SQLite with one connection groups");
        tokio::time::timeout(Duration::from_secs(10), async {
            while group.queued.load(Ordering::Acquire) < n {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the units queue for the writer");
    }

    async fn commits(writer: &Writer) -> u64 {
        writer
            .group
            .as_ref()
            .expect("grouped")
            .open
            .lock()
            .await
            .generation
    }

    #[tokio::test]
    async fn units_queued_for_the_writer_share_one_commit_and_each_is_readable_when_its_commit_returns() {
        let (db, reader, path) = sqlite("share").await;
        let writer = Writer::new(db);
        let first = writer.begin().await.expect("a unit begins");
        let mut tasks = Vec::new();
        for i in 0..7 {
            let (writer, reader) = (writer.clone(), reader.clone());
            tasks.push(tokio::spawn(async move {
                let key = format!("k{i}");
                let write = writer.begin().await?;
                insert(&write, &key).await?;
                write.commit().await?;
                Ok::<_, DbErr>(keys(&reader).await.contains(&key))
            }));
        }
        until_queued(&writer, 7).await;
        insert(&first, "first").await.expect("the insert runs");
        first.commit().await.expect("the first unit commits");
        assert!(keys(&reader).await.contains(&"first".to_owned()));
        for task in tasks {
            let seen = task.await.expect("the task ends").expect("the unit commits");
            assert!(seen, "a unit's row is committed when its commit returns");
        }
        assert_eq!(keys(&reader).await.len(), 8);
        assert_eq!(commits(&writer).await, 1, "eight units, one commit");
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn a_unit_that_fails_rolls_back_its_own_work_only() {
        let (db, reader, path) = sqlite("fail").await;
        let writer = Writer::new(db);
        let first = writer.begin().await.expect("a unit begins");
        let failing = {
            let writer = writer.clone();
            tokio::spawn(async move {
                let write = writer.begin().await?;
                insert(&write, "b").await?;
                // The key the first unit wrote: the unit fails, and is dropped unfinished.
                insert(&write, "a").await
            })
        };
        let last = {
            let writer = writer.clone();
            tokio::spawn(async move {
                until_queued(&writer, 1).await;
                let write = writer.begin().await?;
                insert(&write, "c").await?;
                write.commit().await
            })
        };
        until_queued(&writer, 2).await;
        insert(&first, "a").await.expect("the insert runs");
        let committed = tokio::spawn(first.commit());
        let failed = failing.await.expect("the task ends");
        assert!(
            failed.is_err_and(|e| super::super::is_unique_violation(&e)),
            "the second unit meets the first's key"
        );
        last.await.expect("the task ends").expect("the last unit commits");
        committed
            .await
            .expect("the task ends")
            .expect("the first unit commits");
        assert_eq!(keys(&reader).await, ["a", "c"]);
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn a_unit_given_up_lets_the_writer_go_and_the_group_commits_without_it() {
        let (db, reader, path) = sqlite("given-up").await;
        let writer = Writer::new(db.clone());
        let first = writer.begin().await.expect("a unit begins");
        let given_up = {
            let writer = writer.clone();
            tokio::spawn(async move {
                let write = writer.begin().await?;
                insert(&write, "b").await?;
                // Ends without commit or rollback, as work dropped at its timeout does.
                drop(write);
                Ok::<_, DbErr>(())
            })
        };
        until_queued(&writer, 1).await;
        insert(&first, "a").await.expect("the insert runs");
        first.commit().await.expect("the first unit's group commits");
        given_up.await.expect("the task ends").expect("the unit ran");
        assert_eq!(keys(&reader).await, ["a"]);
        // Nothing holds the one connection: work outside any unit gets it.
        let read = tokio::time::timeout(Duration::from_secs(5), keys(&db)).await;
        assert_eq!(read.expect("the writer's pool is free"), ["a"]);
        // A unit alone, given up: its group is rolled back and the connection freed at once.
        let alone = writer.begin().await.expect("a unit begins");
        insert(&alone, "z").await.expect("the insert runs");
        drop(alone);
        let read = tokio::time::timeout(Duration::from_secs(5), keys(&db)).await;
        assert_eq!(read.expect("the writer's pool is free"), ["a"]);
        let _ = std::fs::remove_file(path);
    }
}
