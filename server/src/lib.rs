//! `auto-server` as a library: everything the binary (`main.rs`: the command line, the serve
//! loop) runs, so that each part has unit tests of its own (`cargo test -p auto-server --lib`) and
//! the integration tests can name its types. See ARCHITECTURE.md for the map.

// the OpenAPI document is one large `json!` literal
#![recursion_limit = "256"]

pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod db;
pub mod error;
pub mod guests;
pub mod history;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod report;
pub mod retention;
pub mod search;
pub mod store;
pub mod ui;
pub mod users;
pub mod webhooks;
