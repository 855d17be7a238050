//! The SMTP protocol core: sans-IO. No sockets, files, threads or clocks
//! here; the server's drivers feed it bytes and time and do what it says.

pub mod address;
pub mod client_reply;
pub mod command;
pub mod data;
pub mod reply;
pub mod session;
pub mod xtext;
