//! Integration tests: one binary (link once), a module per area. Each test
//! starts the real `strata` binary (and, where needed, a real Prometheus).

mod support;

mod api;
mod blocks;
mod cluster;
mod crash;
mod differential;
mod prometheus_interop;
mod query_frontend;
mod roles;
mod telemetry;
