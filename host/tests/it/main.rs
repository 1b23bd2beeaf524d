//! Integration tests of the `auto-client` binary with real plugin libraries (one test binary).

mod collectors;
mod loading;
mod support;
mod worker;
