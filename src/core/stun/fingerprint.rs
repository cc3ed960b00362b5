//! The FINGERPRINT value (RFC 5389 §15.5): the CRC-32 of ISO/IEC 3309 / ITU-T V.42 (the one
//! Ethernet and zlib use: reflected polynomial 0xEDB88320, initial value and final XOR all ones)
//! over the message up to the attribute, XORed with 0x5354554e ("STUN") so a STUN message
//! carried inside another protocol that also uses this CRC does not pass as that protocol's.

/// RFC 5389 §15.5: the constant XORed into the CRC.
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// The reflected CRC-32 polynomial (IEEE 802.3).
const POLYNOMIAL: u32 = 0xEDB8_8320;

/// The byte-at-a-time lookup table, built at compile time.
const TABLE: [u32; 256] = build_table();

const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 {
                POLYNOMIAL ^ (c >> 1)
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
}

/// The plain CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The FINGERPRINT attribute's value for a message whose bytes (header with the final length,
/// and every attribute before FINGERPRINT) are `bytes`.
pub fn fingerprint(bytes: &[u8]) -> u32 {
    crc32(bytes) ^ FINGERPRINT_XOR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_check_value() {
        // The catalogue check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
