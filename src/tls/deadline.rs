//! Deadlines on blocking sockets: before each read (or write) the socket's
//! timeout is set to the time left, so a peer that sends one byte at a time
//! cannot extend the wait; once the deadline has passed, the error is
//! `TimedOut` without touching the socket.

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The time left until `deadline`, or a `TimedOut` error if none is.
pub(super) fn time_left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out());
    }
    Ok(left)
}

/// Sets the read timeout of `sock` for the next read: the time left until
/// `deadline`, or no limit without one.
pub(super) fn arm_read(sock: &TcpStream, deadline: Option<Instant>) -> io::Result<()> {
    let timeout = deadline.map(time_left).transpose()?;
    sock.set_read_timeout(timeout)
}

/// Sets the write timeout of `sock` to the time left until `deadline`.
pub(super) fn arm_write(sock: &TcpStream, deadline: Instant) -> io::Result<()> {
    sock.set_write_timeout(Some(time_left(deadline)?))
}

/// An expired socket timeout: std on Unix reports `SO_RCVTIMEO` and
/// `SO_SNDTIMEO` as `WouldBlock`, elsewhere as `TimedOut`.
pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The one error a missed deadline gives, whatever the socket said.
pub(super) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "deadline passed")
}

/// `e`, with an expired socket timeout made [`timed_out`].
pub(super) fn normalize(e: io::Error) -> io::Error {
    if is_timeout(&e) { timed_out() } else { e }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn past_deadline_is_timed_out_without_a_socket_call() {
        let err = time_left(Instant::now()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn future_deadline_gives_at_most_the_time_left() {
        let left = time_left(Instant::now() + Duration::from_secs(5)).unwrap();
        assert!(left <= Duration::from_secs(5) && left > Duration::from_secs(4));
    }

    #[test]
    fn read_timeout_follows_the_deadline_and_none_clears_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sock = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        arm_read(&sock, Some(Instant::now() + Duration::from_secs(3))).unwrap();
        let set = sock.read_timeout().unwrap().expect("a timeout is set");
        assert!(set <= Duration::from_secs(3) && set > Duration::from_secs(2));
        arm_read(&sock, None).unwrap();
        assert_eq!(sock.read_timeout().unwrap(), None);
    }

    #[test]
    fn would_block_is_normalized_to_timed_out() {
        let e = normalize(io::ErrorKind::WouldBlock.into());
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let e = normalize(io::ErrorKind::ConnectionReset.into());
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    }
}
