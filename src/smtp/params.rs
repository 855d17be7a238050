//! Parameters of MAIL and RCPT that the session parses and the queue
//! keeps: RFC 1652/6152 `BODY=`, RFC 3461 `RET=`, `NOTIFY=` and `ORCPT=`.

/// RFC 3461 §4.3 `RET=`: what a failure DSN returns of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// `RET=FULL`: the whole message.
    Full,
    /// `RET=HDRS`: only its header section.
    Hdrs,
}

/// RFC 1652 / RFC 6152 `BODY=`: the declared body type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    /// `BODY=7BIT` or no parameter.
    #[default]
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// RFC 3461 §4.1 `NOTIFY=`: which events the sender wants a DSN for.
///
/// `None` in [`Recipient::notify`] means the parameter was absent, which
/// RFC 3461 §4.1 says to treat as `FAILURE` (and, at our discretion, `DELAY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    /// `SUCCESS`: a `delivered` or `relayed` DSN is wanted.
    pub success: bool,
    /// `FAILURE`: a `failed` DSN is wanted.
    pub failure: bool,
    /// `DELAY`: a `delayed` DSN is wanted.
    pub delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`: no DSN of any kind.
    pub const NEVER: Notify = Notify {
        success: false,
        failure: false,
        delay: false,
    };
}

/// RFC 3461 §4.2 `ORCPT=addr-type;xtext`, kept decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orcpt {
    /// The address type, e.g. `rfc822` (case preserved as received).
    pub addr_type: String,
    /// The decoded original recipient address: printable ASCII, or, for
    /// the `utf-8` type, UTF-8 without control characters.
    pub address: String,
}

impl Orcpt {
    /// Whether the address type is RFC 6533's `utf-8` (address types are
    /// case-insensitive), whose value is encoded by
    /// [`super::utf8_addr`] rather than by xtext.
    pub fn is_utf8(&self) -> bool {
        self.addr_type.eq_ignore_ascii_case("utf-8")
    }
}
