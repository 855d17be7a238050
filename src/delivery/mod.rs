//! Delivery: the worker threads and the transports they run (Maildir,
//! pipe, the smarthost client), each producing a typed
//! [`Delivery`](crate::queue::delivery::Delivery) where the event happens.
//! Layered above the queue: workers take attempts from the queue manager
//! and report to it; they never write an envelope.

pub mod exec;
#[cfg(feature = "burl")]
pub mod fetch;
pub mod maildir;
pub mod pipe;
pub mod relay;
pub mod reports;
pub mod worker;
