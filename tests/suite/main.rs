//! Integration tests: real libtorch, small real or synthetic inputs.
mod attribution;
mod audit;
mod browser;
mod cli;
mod config;
mod dataset;
mod default_model;
mod model;
mod onnx;
mod onnx_kaggle;
mod planted_bias;
mod query;
mod reliability;
mod report;
mod shard;
mod trust;
mod util;
