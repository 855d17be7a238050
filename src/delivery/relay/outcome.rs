//! What a transfer reports: one [`Delivery`] per recipient, in a
//! [`TransferOutcome`], or a [`TransferError`] when there is no outcome.

use std::fmt;

use crate::queue::delivery::Delivery;

/// The outcome of one [`Connection::send`](super::Connection::send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOutcome {
    /// One result per recipient passed in, in the same order.
    pub results: Vec<Delivery>,
}

/// Why [`Connection::send`](super::Connection::send) produced no outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferError {
    /// The cancel check said stop. Nothing was delivered: either no MAIL
    /// was sent, or the connection was closed without the final dot and is
    /// no longer usable.
    Cancelled,
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::Cancelled => f.write_str("transfer cancelled"),
        }
    }
}

impl std::error::Error for TransferError {}
