//! The ordersaga engine: the actors, the bus and the mailbox middleware. Everything durable lives in the
//! database; the actors are the moving parts around it. Routes reach all of it through [`Engine`].
//!
//! | room | what |
//! | --- | --- |
//! | [`engine`] | starting the actors, and the façade the HTTP layer calls |
//! | [`placement`] | how an HTTP order becomes a saga: the placement transaction and its group commit |
//! | [`saga`] | the state machine, the step that persists a transition, the registry, the per-order actor |
//! | [`mailbox`] | the middleware every consumer passes through: inbox, retries, dead letters |
//! | [`consumers`] | one actor per consumer: inventory, payment, notification |
//! | [`outbox`] | events written with the transaction that causes them, and the relay that publishes them |
//! | [`bus`] | the transports: in-process, RabbitMQ |
//! | [`catalog`] | the product catalog: its writes, and the check an order passes at placement |
//! | [`cache`] | the read cache of products and stock: in memory, or on Redis shared by every node |
//! | [`read`] | the queries behind the API and the dashboards, one file per aggregate |
//! | [`auth`] | identities, tokens, passwords |
//! | [`archive`] | moving old terminal orders to `orders_archive` |
//! | [`envelope`], [`topology`] | the event contract and the queues it travels through |
//! | [`ids`], [`codes`] | identifiers parsed once at the edge; statuses as enums |

pub mod admission;
pub mod archive;
pub mod auth;
pub mod bus;
pub mod cache;
pub mod catalog;
pub mod codes;
pub mod config;
pub mod consumers;
pub mod db;
pub mod engine;
pub mod envelope;
pub mod faults;
pub mod ids;
pub mod mailbox;
pub mod outbox;
pub mod placement;
pub mod read;
pub mod saga;
pub mod stop;
pub mod topology;
pub mod trace;

pub use engine::{Engine, EngineConfig};
