//! temp
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, missing_debug_implementations)]
#![warn(missing_docs)]
pub mod config;
pub mod queue;
pub mod smtp;
pub mod time_fmt;
