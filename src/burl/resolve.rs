//! One BURL fetch as the configuration says: connect to `burl_imap`, protect
//! the connection per `burl_tls` (verifying the server against `burl_ca`
//! or the system's roots), log in as `burl_user`, URLFETCH, stream the
//! content into a sink. Used by the session (a plain BURL is answered after
//! its fetch, RFC 4468 §3.2) and by the workers (an RDLV job fetches as its
//! first processing step).

use std::io::{self, Write};
#[cfg(feature = "tls")]
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "tls")]
use super::client::fetch_with_starttls;
use super::client::{Limits, connect, fetch};
use super::error::FetchError;
use super::fetch::Credentials;
use super::url::AuthorizedUrl;
use crate::config::{Burl, BurlTls};

/// Fetches `url` (already [`super::check`]ed against `settings`) into
/// `sink`; returns the octets fetched.
///
/// # Errors
/// A [`FetchError`]; its reply is the SMTP answer. The sink may hold part
/// of the content: discard it.
pub fn resolve(
    settings: &Burl,
    url: &AuthorizedUrl<'_>,
    sink: &mut dyn Write,
    limits: &Limits,
) -> Result<u64, FetchError> {
    let credentials = Credentials {
        user: settings.user.clone(),
        password: settings
            .password
            .as_ref()
            .map(|p| p.password().to_string())
            .unwrap_or_default(),
    };
    let stream = connect(&settings.host, settings.port, limits.deadline)?;
    match settings.tls {
        BurlTls::None => fetch(stream, &credentials, url, sink, limits),
        #[cfg(feature = "tls")]
        BurlTls::StartTls => {
            let upgrade = |sock: TcpStream| tls::handshake(settings, sock, limits);
            fetch_with_starttls(stream, upgrade, &credentials, url, sink, limits)
        }
        #[cfg(feature = "tls")]
        BurlTls::Tls => {
            let tls = tls::handshake(settings, stream, limits).map_err(FetchError::Tls)?;
            fetch(tls, &credentials, url, sink, limits)
        }
        // The configuration refuses burl_tls other than none without TLS.
        #[cfg(not(feature = "tls"))]
        BurlTls::StartTls | BurlTls::Tls => Err(FetchError::Tls(io::Error::other(
            "this detad was built without TLS",
        ))),
    }
}

/// A sink that refuses further writes once `cancel` is set: a fetch whose
/// job was aborted stops at its next piece of content.
#[derive(Debug)]
pub struct Cancellable<'a, W: Write> {
    /// Where the content goes.
    pub inner: W,
    /// Set when the fetch is no longer wanted.
    pub cancel: &'a AtomicBool,
}

impl<W: Write> Write for Cancellable<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "fetch cancelled",
            ));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(feature = "tls")]
mod tls {
    use std::io;
    use std::net::TcpStream;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::super::client::{Limits, TimedStream};
    use crate::config::Burl;
    use crate::tls::{ClientTls, TlsStream};

    impl TimedStream for TlsStream {
        fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
            self.set_deadline(Some(crate::clock::deadline_after(timeout)));
            self.tcp().set_write_timeout(Some(timeout))
        }
    }

    /// The trust anchors, loaded once per `burl_ca` (the system bundle
    /// takes milliseconds to parse).
    static ANCHORS: Mutex<Option<(Option<PathBuf>, Arc<ClientTls>)>> = Mutex::new(None);

    fn anchors(ca: Option<&PathBuf>) -> io::Result<Arc<ClientTls>> {
        let mut cached = ANCHORS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((path, tls)) = cached.as_ref()
            && path.as_ref() == ca
        {
            return Ok(Arc::clone(tls));
        }
        let tls = Arc::new(ClientTls::new(ca.map(PathBuf::as_path)).map_err(io::Error::other)?);
        *cached = Some((ca.cloned(), Arc::clone(&tls)));
        Ok(tls)
    }

    /// A verified handshake with the configured IMAP server, by the fetch's
    /// deadline.
    pub(super) fn handshake(
        settings: &Burl,
        sock: TcpStream,
        limits: &Limits,
    ) -> io::Result<TlsStream> {
        let tls = anchors(settings.ca.as_ref())?;
        let name = settings
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&settings.host);
        let deadline: Instant = limits.deadline;
        tls.connect(sock, name, deadline).map_err(io::Error::other)
    }
}
