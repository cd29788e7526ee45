//! Integration tests: real libtorch, small real or synthetic inputs.
mod attribution;
mod audit;
mod browser;
mod cli;
mod config;
mod dataset;
mod default_model;
mod model;
mod planted_bias;
mod query;
mod report;
mod shard;
mod shortcuts;
mod trust;
mod util;
