//! The ordersaga engine: the actors, the bus and the mailbox middleware.
//!
//! Everything durable lives in the database; the actors are the moving parts around it.

pub mod archive;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod config;
pub mod db;
pub mod dead_letters;
pub mod engine;
pub mod envelope;
pub mod faults;
pub mod inventory;
pub mod machine;
pub mod mailbox;
pub mod notification;
pub mod orders;
pub mod outbox;
pub mod payment;
pub mod saga;
pub mod topology;

pub use engine::{Engine, EngineConfig};
