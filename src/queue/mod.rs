//! The queue: the spool files and their codec, the schedule, the limits,
//! the DSN decisions and reports, and the queue manager that owns every
//! message. Layered above the protocol core ([`crate::smtp`]) and the
//! configuration; below delivery, the network side and the command line.

pub mod aliases;
pub mod bounce;
pub mod codec;
pub mod control;
pub mod crc32;
pub mod delivery;
pub mod dsn;
pub mod envelope;
pub mod limits;
pub mod lock;
pub mod manager;
pub mod offline;
pub mod schedule;
pub mod spool;
