//! End-to-end tests of MonkeyCI against real PostgreSQL; each test gets its own database.

mod access;
mod api;
mod artifacts;
mod audit;
mod boundaries;
mod builds;
mod cli;
mod commands;
mod containers;
mod event_log;
mod export;
mod isolation;
mod job_limits;
mod limits;
mod log_horizon;
mod log_order;
mod projections;
mod rebuild;
mod runner;
mod scheduler;
mod secrets;
mod server;
mod sessions;
mod ssh;
mod terraform;
mod triggers;
