//! The store's base-32 encoding.
//!
//! Alphabet `0123456789abcdfghijklmnpqrsvwxyz` (digits and lower-case letters without
//! `e`, `o`, `t`, `u`, as Nix uses, so that hashes do not spell words). Bits are taken
//! most significant first, five at a time, from the start of the input: the first
//! character encodes the top five bits of the first byte. 20 bytes (160 bits) give exactly
//! 32 characters.

/// The 32 characters, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Length of the encoding of `bytes` bytes.
pub(crate) const fn encoded_len(bytes: usize) -> usize {
    (bytes * 8).div_ceil(5)
}

/// Encode bytes; the last character is padded with zero bits.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(bytes.len()));
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The value of one character, if it is in the alphabet.
fn value(c: u8) -> Option<u32> {
    (0u32..)
        .zip(ALPHABET)
        .find(|(_, a)| **a == c)
        .map(|(v, _)| v)
}

/// Decode exactly `N` bytes from their encoding. Fails on a wrong length, a character
/// outside the alphabet, or non-zero padding bits.
pub fn decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != encoded_len(N) {
        return None;
    }
    let mut out = [0u8; N];
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut i = 0;
    for c in s.bytes() {
        acc = (acc << 5) | value(c)?;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            if i < N {
                out[i] = u8::try_from((acc >> bits) & 0xff).expect("masked to a byte");
                i += 1;
            }
        }
        acc &= (1 << bits) - 1;
    }
    (acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors() {
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0]), "00");
        assert_eq!(encode(&[0xff]), "zw");
        assert_eq!(encode(&[0xff; 5]), "zzzzzzzz");
        assert_eq!(encode(&[0x00, 0x44, 0x32, 0x14, 0xc7]), "01234567");
        assert_eq!(encoded_len(20), 32);
    }

    #[test]
    fn round_trip() {
        let bytes: [u8; 20] = core::array::from_fn(|i| u8::try_from(i * 37 % 251 + 11).unwrap());
        let s = encode(&bytes);
        assert_eq!(s.len(), 32);
        assert_eq!(decode::<20>(&s), Some(bytes));
        assert_eq!(decode::<20>(&s[1..]), None);
        assert_eq!(decode::<20>(&format!("e{}", &s[1..])), None);
        assert_eq!(decode::<1>("zz"), None, "padding bits must be zero");
    }
}
