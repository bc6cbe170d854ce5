//! ordersaga: an actor-based order saga engine.
//!
//! This crate is the service around the engine (crate `actors`): configuration, start-up, the HTTP API,
//! and the command line (`serve`, `migrate`, `archive`, `loadtest`).

pub mod affinity;
pub mod archive;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod database;
pub mod deadline;
pub mod error;
pub mod extract;
pub mod loadtest;
pub mod observability;
pub mod openapi;
pub mod routes;
pub mod runtime;
pub mod startup;
pub mod state;
pub mod throttle;
