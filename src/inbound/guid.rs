//! GUIDs in the one shape Entra ID and Graph use: `8-4-4-4-12` hex digits.
//!
//! Hand-written rather than the `uuid` crate because `uuid`'s parser also accepts
//! braces, `urn:uuid:` and the hyphen-less form, which SPEC.md rejects for object
//! ids; with the shape check ours anyway, formatting is the few lines left.

use std::fmt;

/// A GUID, held as 16 bytes and always written lower case with hyphens.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Guid([u8; 16]);

/// Where the hyphens of `8-4-4-4-12` sit.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];
/// Length of the text form.
const TEXT_LEN: usize = 36;

impl Guid {
    /// Parses exactly `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hex digits in any case.
    pub fn parse(text: &str) -> Option<Guid> {
        let bytes = text.as_bytes();
        if bytes.len() != TEXT_LEN {
            return None;
        }
        let mut digits = [0u8; 32];
        let mut n = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if HYPHENS.contains(&i) {
                if b != b'-' {
                    return None;
                }
                continue;
            }
            digits[n] = (b as char).to_digit(16)? as u8;
            n += 1;
        }
        let mut out = [0u8; 16];
        for (i, pair) in digits.chunks(2).enumerate() {
            out[i] = pair[0] << 4 | pair[1];
        }
        Some(Guid(out))
    }

    /// A random (version 4, RFC 9562) GUID from 16 random bytes.
    pub fn from_random_bytes(mut bytes: [u8; 16]) -> Guid {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Guid(bytes)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_case_and_writes_lower_case() {
        let g = Guid::parse("0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9").unwrap();
        assert_eq!(g.to_string(), "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9");
    }

    #[test]
    fn rejects_every_other_shape() {
        for text in [
            "{0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9}",
            "urn:uuid:0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9",
            "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f",
            "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8fg",
            "0a1b2c3d_4e5f-6071-8293-a4b5c6d7e8f9",
            "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9 ",
            "",
        ] {
            assert_eq!(Guid::parse(text), None, "{text}");
        }
    }

    #[test]
    fn random_guids_are_version_4() {
        let g = Guid::from_random_bytes([0xff; 16]).to_string();
        assert_eq!(&g[14..15], "4");
        assert_eq!(&g[19..20], "b");
        assert_eq!(Guid::parse(&g), Some(Guid::from_random_bytes([0xff; 16])));
    }
}
