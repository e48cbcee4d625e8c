//! rapport: a self-hosted relationship-marketing pipeline. Opt-in with progressive
//! profiling, a profile store, segments, campaigns, tracking and response-rate reports.
//!
//! Each module is one concern; `main.rs` is only the command line.

pub mod access;
pub mod bounce;
pub mod campaign;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod event;
pub mod import;
pub mod library;
pub mod mail;
pub mod profile;
pub mod render;
pub mod report;
pub mod schedule;
pub mod segment;
pub mod site;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod track;
pub mod web;
pub mod webhook;
