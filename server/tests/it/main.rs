//! Integration tests: each starts the real `auto-server` binary on 127.0.0.1 (a free port) over a
//! private database and talks HTTP to it. Every case runs on SQLite, and on PostgreSQL when
//! AUTO_TEST_PG_URL is set (with AUTO_TEST_REQUIRE_PG=1 a missing URL fails the PostgreSQL cases).

pub mod support;

mod auth;
mod changes;
mod cli;
mod dashboard;
mod diskfull;
mod fields;
mod guests;
mod identity;
mod limits;
mod metrics;
mod multi;
mod pages;
mod pending;
mod retention;
mod trust;
mod ui;
mod webhooks;
