//! The server: thread topology, acceptor, session driver, worker pool.

pub mod conn;
pub mod listener;
pub mod shared;
pub mod worker;

pub use listener::{Handle, start};
