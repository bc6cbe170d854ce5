//! Black-box tests over HTTP. Each test runs on SQLite, and on PostgreSQL and MariaDB when
//! `ORDERSAGA_TEST_POSTGRES` / `ORDERSAGA_TEST_MYSQL` name an admin URL (with
//! `ORDERSAGA_REQUIRE_SERVICES=1` a missing service fails the test instead of skipping it).
//! Every test gets its own database, dropped afterwards. `TEST_LOG=1` shows the application's logs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod fixtures;
mod helpers;

mod archive;
mod audit;
mod auth;
mod bad_input;
mod broker;
mod campaign;
mod catalog;
mod config;
mod crash;
mod dashboards;
mod dead_letters;
mod health;
mod idempotency;
mod identity;
mod loadtest;
mod netns;
mod notifications;
mod observability;
mod openapi;
mod orders;
#[cfg(feature = "otlp")]
mod otlp;
mod outage;
mod partition;
mod problems;
mod sagas;
mod seed_flows;
mod shutdown;
mod stocks;
