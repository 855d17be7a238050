//! The SMTP protocol core: sans-IO. No sockets, files, threads or clocks
//! here; the server's drivers feed it bytes and time and do what it says.
//! It imports nothing from the rest of the crate.

pub mod address;
pub mod command;
pub mod data;
pub mod params;
pub mod reply;
pub mod reply_parser;
pub mod session;
pub mod status;
pub mod utf8_addr;
pub mod xtext;
