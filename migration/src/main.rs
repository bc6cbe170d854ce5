//! A small migration CLI: `migration [up|down|status|fresh]` against `DATABASE_URL`
//! (or `ORDERSAGA_DATABASE_URL`). `ordersaga migrate` does `up` with the full configuration.

use migration::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::Database;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(message) = run().await {
        eprintln!("migration: {message}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let command = std::env::args().nth(1).unwrap_or_else(|| "up".to_owned());
    let url = std::env::var("DATABASE_URL")
        .or_else(|_| std::env::var("ORDERSAGA_DATABASE_URL"))
        .map_err(|_| "set DATABASE_URL (or ORDERSAGA_DATABASE_URL) to the database to migrate".to_owned())?;
    let db = Database::connect(&url)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let result = match command.as_str() {
        "up" => Migrator::up(&db, None).await,
        "down" => Migrator::down(&db, Some(1)).await,
        "status" => Migrator::status(&db).await,
        "fresh" => Migrator::fresh(&db).await,
        other => {
            return Err(format!(
                "unknown command `{other}`; expected up, down, status or fresh"
            ));
        }
    };
    result.map_err(|e| e.to_string())
}
