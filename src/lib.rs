//! tumor-audit: audits what CNN brain-tumor MRI classifiers look at.
//!
//! Data flow, one module per step:
//! images ([`dataset`]) -> [`preprocess`] -> [`model`] -> [`attribution`] -> [`metrics`] ->
//! display ([`display`]); [`trust`] checks the maps themselves (faithfulness curves, model
//! randomisation); [`split`] makes leak-free dataset splits, [`evaluate`] scores predictions,
//! [`leakage`] checks audited images against the training folder, [`store`] keeps the results in
//! SQLite, [`query`] reads them back (query, export, diff) and [`report`] writes them as HTML
//! ([`output`]: the output folders, built beside their place and renamed into it);
//! [`config`] validates the settings once, [`exit`] names the process exit codes, [`commands`] wires the steps to the CLI ([`cli`]), one file per
//! subcommand; no library module imports from it.
pub mod attribution;
pub mod bench;
pub mod brain_mask;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dataset;
pub mod display;
pub mod error;
pub mod evaluate;
pub mod exit;
pub mod imageops;
pub mod leakage;
pub mod metrics;
pub mod model;
pub mod outline;
pub mod output;
pub mod pipeline;
pub mod plan;
pub mod preprocess;
pub mod query;
pub mod report;
pub mod shard;
pub mod split;
pub mod store;
pub mod trust;

pub use error::{Error, Result};
