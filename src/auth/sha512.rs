//! SHA-512 (FIPS 180-4 §6.4), streaming, for SHA512-CRYPT.
//!
//! Guarantees: the digest of a message does not depend on how it is split
//! across [`Sha512::update`] calls; any length up to 2^64 − 1 octets is
//! hashed correctly (the 128-bit length field of FIPS 180-4 §5.1.2 is
//! kept in full). No allocation, no panics. Not constant-time in the
//! message length, which is fine for its one use (the password length is
//! not secret from the client that sent it).

use std::fmt;

/// Length of a SHA-512 digest in octets.
pub const DIGEST_LEN: usize = 64;

/// Length of a SHA-512 message block in octets (FIPS 180-4 §1, Figure 1).
pub const BLOCK_LEN: usize = 128;

/// FIPS 180-4 §5.3.5: the initial hash value H(0), the first 64 bits of the
/// fractional parts of the square roots of the first eight primes.
const INITIAL_STATE: [u64; 8] = [
    0x6a09e667f3bcc908,
    0xbb67ae8584caa73b,
    0x3c6ef372fe94f82b,
    0xa54ff53a5f1d36f1,
    0x510e527fade682d1,
    0x9b05688c2b3e6c1f,
    0x1f83d9abfb41bd6b,
    0x5be0cd19137e2179,
];

/// FIPS 180-4 §4.2.3: the constants K0..K79, the first 64 bits of the
/// fractional parts of the cube roots of the first eighty primes.
const K: [u64; 80] = [
    0x428a2f98d728ae22,
    0x7137449123ef65cd,
    0xb5c0fbcfec4d3b2f,
    0xe9b5dba58189dbbc,
    0x3956c25bf348b538,
    0x59f111f1b605d019,
    0x923f82a4af194f9b,
    0xab1c5ed5da6d8118,
    0xd807aa98a3030242,
    0x12835b0145706fbe,
    0x243185be4ee4b28c,
    0x550c7dc3d5ffb4e2,
    0x72be5d74f27b896f,
    0x80deb1fe3b1696b1,
    0x9bdc06a725c71235,
    0xc19bf174cf692694,
    0xe49b69c19ef14ad2,
    0xefbe4786384f25e3,
    0x0fc19dc68b8cd5b5,
    0x240ca1cc77ac9c65,
    0x2de92c6f592b0275,
    0x4a7484aa6ea6e483,
    0x5cb0a9dcbd41fbd4,
    0x76f988da831153b5,
    0x983e5152ee66dfab,
    0xa831c66d2db43210,
    0xb00327c898fb213f,
    0xbf597fc7beef0ee4,
    0xc6e00bf33da88fc2,
    0xd5a79147930aa725,
    0x06ca6351e003826f,
    0x142929670a0e6e70,
    0x27b70a8546d22ffc,
    0x2e1b21385c26c926,
    0x4d2c6dfc5ac42aed,
    0x53380d139d95b3df,
    0x650a73548baf63de,
    0x766a0abb3c77b2a8,
    0x81c2c92e47edaee6,
    0x92722c851482353b,
    0xa2bfe8a14cf10364,
    0xa81a664bbc423001,
    0xc24b8b70d0f89791,
    0xc76c51a30654be30,
    0xd192e819d6ef5218,
    0xd69906245565a910,
    0xf40e35855771202a,
    0x106aa07032bbd1b8,
    0x19a4c116b8d2d0c8,
    0x1e376c085141ab53,
    0x2748774cdf8eeb99,
    0x34b0bcb5e19b48a8,
    0x391c0cb3c5c95a63,
    0x4ed8aa4ae3418acb,
    0x5b9cca4f7763e373,
    0x682e6ff3d6b2b8a3,
    0x748f82ee5defb2fc,
    0x78a5636f43172f60,
    0x84c87814a1f0ab72,
    0x8cc702081a6439ec,
    0x90befffa23631e28,
    0xa4506cebde82bde9,
    0xbef9a3f7b2c67915,
    0xc67178f2e372532b,
    0xca273eceea26619c,
    0xd186b8c721c0c207,
    0xeada7dd6cde0eb1e,
    0xf57d4f7fee6ed178,
    0x06f067aa72176fba,
    0x0a637dc5a2c898a6,
    0x113f9804bef90dae,
    0x1b710b35131c471b,
    0x28db77f523047d84,
    0x32caab7b40c72493,
    0x3c9ebe0a15c9bebc,
    0x431d67c49c100d4c,
    0x4cc5d4becb3e42b6,
    0x597f299cfc657e2a,
    0x5fcb6fab3ad6faec,
    0x6c44198c4a475817,
];

/// A SHA-512 computation in progress: feed it with [`Sha512::update`], then
/// take the digest with [`Sha512::finalize`].
#[derive(Clone)]
pub struct Sha512 {
    /// The intermediate hash value H(i).
    state: [u64; 8],
    /// The partial block not yet compressed.
    buffer: [u8; BLOCK_LEN],
    /// How many octets of `buffer` are filled; always below `BLOCK_LEN`.
    buffered: usize,
    /// The message length so far, in octets.
    length: u128,
}

impl fmt::Debug for Sha512 {
    // The buffer holds message bytes (password material in SHA512-CRYPT):
    // never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sha512")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl Default for Sha512 {
    fn default() -> Sha512 {
        Sha512::new()
    }
}

impl Sha512 {
    /// A computation over the empty message so far.
    pub fn new() -> Sha512 {
        Sha512 {
            state: INITIAL_STATE,
            buffer: [0; BLOCK_LEN],
            buffered: 0,
            length: 0,
        }
    }

    /// Appends `data` to the message.
    pub fn update(&mut self, mut data: &[u8]) {
        self.length += data.len() as u128;
        if self.buffered > 0 {
            let take = data.len().min(BLOCK_LEN - self.buffered);
            self.buffer[self.buffered..self.buffered + take].copy_from_slice(&data[..take]);
            self.buffered += take;
            data = &data[take..];
            if self.buffered < BLOCK_LEN {
                return;
            }
            let block = self.buffer;
            self.compress(&block);
            self.buffered = 0;
        }
        let mut blocks = data.chunks_exact(BLOCK_LEN);
        for block in &mut blocks {
            self.compress(block);
        }
        let rest = blocks.remainder();
        self.buffer[..rest.len()].copy_from_slice(rest);
        self.buffered = rest.len();
    }

    /// Pads the message (FIPS 180-4 §5.1.2) and returns its digest.
    pub fn finalize(mut self) -> [u8; DIGEST_LEN] {
        let bit_length = self.length.wrapping_mul(8);
        // A 1 bit, zeros up to 112 mod 128 octets, then the 128-bit length.
        let mut padding = [0u8; 2 * BLOCK_LEN];
        padding[0] = 0x80;
        let zeros = if self.buffered < BLOCK_LEN - 16 {
            BLOCK_LEN - 16 - self.buffered - 1
        } else {
            2 * BLOCK_LEN - 16 - self.buffered - 1
        };
        let end = 1 + zeros;
        padding[end..end + 16].copy_from_slice(&bit_length.to_be_bytes());
        self.update(&padding[..end + 16]);
        debug_assert_eq!(self.buffered, 0, "padding ends on a block boundary");
        let mut digest = [0u8; DIGEST_LEN];
        for (out, word) in digest.chunks_exact_mut(8).zip(self.state) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }

    /// FIPS 180-4 §6.4.2: one block of the hash computation.
    fn compress(&mut self, block: &[u8]) {
        // Step 1: the message schedule W0..W79.
        let mut w = [0u64; 80];
        for (t, word) in block.chunks_exact(8).enumerate() {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            w[t] = u64::from_be_bytes(bytes);
        }
        for t in 16..80 {
            w[t] = small_sigma1(w[t - 2])
                .wrapping_add(w[t - 7])
                .wrapping_add(small_sigma0(w[t - 15]))
                .wrapping_add(w[t - 16]);
        }
        // Steps 2-4: the eight working variables through 80 rounds.
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = self.state;
        for t in 0..80 {
            let t1 = h
                .wrapping_add(big_sigma1(e))
                .wrapping_add(ch(e, f, g))
                .wrapping_add(K[t])
                .wrapping_add(w[t]);
            let t2 = big_sigma0(a).wrapping_add(maj(a, b, c));
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (state, value) in self.state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *state = state.wrapping_add(value);
        }
    }
}

/// The SHA-512 digest of `data` in one call.
pub fn digest(data: &[u8]) -> [u8; DIGEST_LEN] {
    let mut hash = Sha512::new();
    hash.update(data);
    hash.finalize()
}

// FIPS 180-4 §4.1.3: the six logical functions of SHA-384/512.

fn ch(x: u64, y: u64, z: u64) -> u64 {
    (x & y) ^ (!x & z)
}

fn maj(x: u64, y: u64, z: u64) -> u64 {
    (x & y) ^ (x & z) ^ (y & z)
}

fn big_sigma0(x: u64) -> u64 {
    x.rotate_right(28) ^ x.rotate_right(34) ^ x.rotate_right(39)
}

fn big_sigma1(x: u64) -> u64 {
    x.rotate_right(14) ^ x.rotate_right(18) ^ x.rotate_right(41)
}

fn small_sigma0(x: u64) -> u64 {
    x.rotate_right(1) ^ x.rotate_right(8) ^ (x >> 7)
}

fn small_sigma1(x: u64) -> u64 {
    x.rotate_right(19) ^ x.rotate_right(61) ^ (x >> 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(digest: [u8; DIGEST_LEN]) -> String {
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The FIPS 180-4 / NIST example for a 896-bit (two-block) message.
    const TWO_BLOCK_MESSAGE: &[u8] = b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";

    #[test]
    fn abc_matches_nist_example() {
        assert_eq!(
            hex(digest(b"abc")),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn empty_message_matches_nist_example() {
        assert_eq!(
            hex(digest(b"")),
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
             47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
    }

    #[test]
    fn two_block_message_matches_nist_example() {
        assert_eq!(TWO_BLOCK_MESSAGE.len() * 8, 896);
        assert_eq!(
            hex(digest(TWO_BLOCK_MESSAGE)),
            "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018\
             501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"
        );
    }

    #[test]
    fn one_million_a_matches_nist_example() {
        let mut hash = Sha512::new();
        let chunk = [b'a'; 1000];
        for _ in 0..1000 {
            hash.update(&chunk);
        }
        assert_eq!(
            hex(hash.finalize()),
            "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb\
             de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b"
        );
    }

    #[test]
    fn padding_boundaries_match_sha512sum() {
        // Lengths around the 112-octet point where the length field no
        // longer fits in the last block; digests from coreutils sha512sum.
        let cases = [
            (
                111,
                "fa9121c7b32b9e01733d034cfc78cbf67f926c7ed83e82200ef86818196921760b4beff48404df811b953828274461673c68d04e297b0eb7b2b4d60fc6b566a2",
            ),
            (
                112,
                "c01d080efd492776a1c43bd23dd99d0a2e626d481e16782e75d54c2503b5dc32bd05f0f1ba33e568b88fd2d970929b719ecbb152f58f130a407c8830604b70ca",
            ),
            (
                127,
                "828613968b501dc00a97e08c73b118aa8876c26b8aac93df128502ab360f91bab50a51e088769a5c1eff4782ace147dce3642554199876374291f5d921629502",
            ),
            (
                128,
                "b73d1929aa615934e61a871596b3f3b33359f42b8175602e89f7e06e5f658a243667807ed300314b95cacdd579f3e33abdfbe351909519a846d465c59582f321",
            ),
            (
                129,
                "4f681e0bd53cda4b5a2041cc8a06f2eabde44fb16c951fbd5b87702f07aeab611565b19c47fde30587177ebb852e3971bbd8d3fd30da18d71037dfbd98420429",
            ),
            (
                239,
                "52c853cb8d907f3d4d6b889beb027985d7c273486d75f8baf26f80d24e90c74c6c3de3e22131582380a7d14d43f2941a31385439cd6ddc469f628015e50bf286",
            ),
        ];
        for (len, expected) in cases {
            assert_eq!(hex(digest(&vec![b'a'; len])), expected, "length {len}");
        }
    }

    #[test]
    fn digest_does_not_depend_on_how_input_is_split() {
        let whole = digest(TWO_BLOCK_MESSAGE);
        for cut in 0..=TWO_BLOCK_MESSAGE.len() {
            let mut hash = Sha512::new();
            hash.update(&TWO_BLOCK_MESSAGE[..cut]);
            hash.update(&TWO_BLOCK_MESSAGE[cut..]);
            assert_eq!(hash.finalize(), whole, "cut at {cut}");
        }
        let mut bytewise = Sha512::new();
        for b in TWO_BLOCK_MESSAGE {
            bytewise.update(std::slice::from_ref(b));
        }
        assert_eq!(bytewise.finalize(), whole);
    }

    #[test]
    fn empty_updates_change_nothing() {
        let mut hash = Sha512::new();
        hash.update(b"");
        hash.update(b"ab");
        hash.update(b"");
        hash.update(b"c");
        assert_eq!(hash.finalize(), digest(b"abc"));
    }

    #[test]
    fn debug_does_not_show_message_bytes() {
        let mut hash = Sha512::new();
        hash.update(b"hunter2");
        let shown = format!("{hash:?}");
        assert!(!shown.contains("buffer"), "{shown}");
        assert!(shown.contains("length: 7"), "{shown}");
    }
}
