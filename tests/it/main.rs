//! End-to-end tests across processes: the real `auto-client` binary with real plugin libraries,
//! reporting over HTTP to the real `auto-server` on loopback.

mod agent;
mod contract;
mod deploy;
mod diskfull;
mod salt;
mod ssh;
mod support;
