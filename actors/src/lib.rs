//! The ordersaga engine: the actors, the bus and the mailbox middleware.
//!
//! Everything durable lives in the database; the actors are the moving parts around it.

pub mod auth;
pub mod config;
pub mod db;
pub mod engine;
pub mod inventory;

pub use engine::{Engine, EngineConfig};
