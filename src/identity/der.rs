//! The few DER structures the certificate credential reads: an X.509 certificate's RSA
//! public key and `notAfter`, and an RSA private key in PKCS#8 or PKCS#1.
//!
//! Hand-written, and only a reader: the `der`, `pkcs8`, `pkcs1` and `spki` crates that rsa
//! offers for this cost the component about 20 KiB of generic decoding code (measured in
//! the wasm32-wasip2 release build), for four fixed structures that need a tag-length-value
//! walk and nothing else. Nothing here is cryptography: it finds byte strings; the rsa
//! crate and SHA-256 do the rest, and what a malformed input can do is be refused (every
//! length is checked against what is left; no recursion; no allocation).
//!
//! Structures (RFC 5280 section 4.1, RFC 5958, RFC 8017 appendix A.1):
//! - `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
//!   serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter }, subject,
//!   subjectPublicKeyInfo SEQUENCE { algorithm, BIT STRING { RSAPublicKey } }, ... }, ... }`
//! - `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`
//! - `PrivateKeyInfo ::= SEQUENCE { version, algorithm, privateKey OCTET STRING { RSAPrivateKey }, ... }`
//! - `RSAPrivateKey ::= SEQUENCE { version, modulus, publicExponent, privateExponent,
//!   prime1, prime2, exponent1, exponent2, coefficient }` (two primes: version 0).

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OBJECT_IDENTIFIER: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0]`, constructed: the certificate's explicit version.
const VERSION_TAG: u8 = 0xa0;
/// The contents of the OID `rsaEncryption` (1.2.840.113549.1.1.1).
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// An RSA public key as two unsigned big-endian integers (no leading zero bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey<'a> {
    pub n: &'a [u8],
    pub e: &'a [u8],
}

/// An RSA private key's integers, unsigned big-endian; the CRT values are left out (the
/// rsa crate computes and checks its own).
#[derive(Debug)]
pub struct PrivateKey<'a> {
    pub n: &'a [u8],
    pub e: &'a [u8],
    pub d: &'a [u8],
    pub p: &'a [u8],
    pub q: &'a [u8],
}

/// A cursor over a run of DER elements.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The next element: its tag and contents. Single-byte tags; definite lengths of up
    /// to four bytes, which must fit in what is left.
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (digits, after) = rest.split_at(count);
            rest = after;
            digits.iter().fold(0usize, |n, &d| n << 8 | usize::from(d))
        };
        if length > rest.len() {
            return None;
        }
        let (contents, after) = rest.split_at(length);
        self.0 = after;
        Some((tag, contents))
    }

    /// The next element's contents if it has this tag.
    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        self.next().filter(|(t, _)| *t == tag).map(|(_, contents)| contents)
    }

    /// The next element, an unsigned INTEGER, without its leading zero bytes.
    fn unsigned(&mut self) -> Option<&'a [u8]> {
        let value = self.expect(INTEGER)?;
        if value.first().is_none_or(|b| b & 0x80 != 0) {
            return None; // empty or negative
        }
        let start = value.iter().position(|&b| b != 0).unwrap_or(value.len());
        Some(&value[start..])
    }
}

/// The contents of the one SEQUENCE that `der` is.
fn sequence(der: &[u8]) -> Option<Reader<'_>> {
    let mut outer = Reader(der);
    let contents = outer.expect(SEQUENCE)?;
    outer.0.is_empty().then_some(Reader(contents))
}

/// An X.509 certificate's RSA public key and `notAfter` (Unix seconds).
pub fn certificate(der: &[u8]) -> Option<(PublicKey<'_>, u64)> {
    let mut certificate = sequence(der)?;
    let mut tbs = Reader(certificate.expect(SEQUENCE)?);
    let mut first = tbs.next()?;
    if first.0 == VERSION_TAG {
        first = tbs.next()?;
    }
    (first.0 == INTEGER).then_some(())?; // serialNumber
    tbs.expect(SEQUENCE)?; // signature
    tbs.expect(SEQUENCE)?; // issuer
    let mut validity = Reader(tbs.expect(SEQUENCE)?);
    validity.next()?; // notBefore
    let not_after = match validity.next()? {
        (UTC_TIME, text) => time(text, 2)?,
        (GENERALIZED_TIME, text) => time(text, 4)?,
        _ => return None,
    };
    tbs.expect(SEQUENCE)?; // subject
    let mut spki = Reader(tbs.expect(SEQUENCE)?);
    rsa_algorithm(spki.expect(SEQUENCE)?)?;
    let (&unused_bits, key) = spki.expect(BIT_STRING)?.split_first()?;
    if unused_bits != 0 {
        return None;
    }
    let mut key = sequence(key)?;
    let public = PublicKey { n: key.unsigned()?, e: key.unsigned()? };
    Some((public, not_after))
}

/// A PKCS#8 `PrivateKeyInfo` holding an RSA key.
pub fn pkcs8_private_key(der: &[u8]) -> Option<PrivateKey<'_>> {
    let mut info = sequence(der)?;
    info.unsigned()?; // version 0 or 1
    rsa_algorithm(info.expect(SEQUENCE)?)?;
    pkcs1_private_key(info.expect(OCTET_STRING)?)
}

/// A PKCS#1 `RSAPrivateKey` of two primes.
pub fn pkcs1_private_key(der: &[u8]) -> Option<PrivateKey<'_>> {
    let mut key = sequence(der)?;
    if key.unsigned()? != b"" {
        return None; // version 1: more than two primes
    }
    Some(PrivateKey { n: key.unsigned()?, e: key.unsigned()?, d: key.unsigned()?, p: key.unsigned()?, q: key.unsigned()? })
}

/// `AlgorithmIdentifier` contents naming `rsaEncryption` (parameters NULL or absent).
fn rsa_algorithm(contents: &[u8]) -> Option<()> {
    (Reader(contents).expect(OBJECT_IDENTIFIER)? == RSA_ENCRYPTION).then_some(())
}

/// `UTCTime` (`YYMMDDHHMMSSZ`, 1950-2049) or `GeneralizedTime` (`YYYYMMDDHHMMSSZ`) in
/// Unix seconds; `year_digits` says which.
fn time(text: &[u8], year_digits: usize) -> Option<u64> {
    let digits = text.strip_suffix(b"Z")?;
    if digits.len() != year_digits + 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| digits[range].iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let mut year = number(0..year_digits);
    if year_digits == 2 {
        year += if year < 50 { 2000 } else { 1900 };
    }
    let at = |i: usize| number(year_digits + i..year_digits + i + 2);
    let (month, day, hour, minute, second) = (at(0), at(2), at(4), at(6), at(8));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 || year < 1970 {
        return None;
    }
    // Days from 1970-01-01 to the civil date (the proleptic Gregorian calendar).
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y / 400;
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked_and_long_forms_read() {
        assert_eq!(Reader(&[0x04, 0x02, 0xaa, 0xbb]).next(), Some((0x04, &[0xaa, 0xbb][..])));
        assert_eq!(Reader(&[0x04, 0x81, 0x01, 0xaa]).next(), Some((0x04, &[0xaa][..])));
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend([7u8; 256]);
        assert_eq!(Reader(&long).next().unwrap().1.len(), 256);
        for bad in [&[0x04, 0x03, 0xaa][..], &[0x04], &[0x04, 0x80], &[0x04, 0x85, 1, 1, 1, 1, 1], &[0x1f, 0x01, 0x00], &[0x04, 0x82, 0x01]] {
            assert_eq!(Reader(bad).next(), None, "{bad:?}");
        }
    }

    #[test]
    fn integers_are_unsigned_without_leading_zeros() {
        assert_eq!(Reader(&[0x02, 0x03, 0x00, 0x80, 0x01]).unsigned(), Some(&[0x80, 0x01][..]));
        assert_eq!(Reader(&[0x02, 0x01, 0x00]).unsigned(), Some(&[][..]));
        assert_eq!(Reader(&[0x02, 0x01, 0x80]).unsigned(), None, "negative");
        assert_eq!(Reader(&[0x02, 0x00]).unsigned(), None, "empty");
        assert_eq!(Reader(&[0x04, 0x01, 0x01]).unsigned(), None, "not an INTEGER");
    }

    #[test]
    fn times_are_read_as_unix_seconds() {
        assert_eq!(time(b"700101000000Z", 2), Some(0));
        assert_eq!(time(b"491231235959Z", 2), Some(2_524_607_999));
        assert_eq!(time(b"20240229120000Z", 4), Some(1_709_208_000));
        assert_eq!(time(b"99991231235959Z", 4), Some(253_402_300_799));
        for bad in [&b"700101000000"[..], b"7001010000Z", b"701301000000Z", b"700100000000Z", b"70010100000aZ", b"19691231235959Z"] {
            let digits = if bad.len() > 14 { 4 } else { 2 };
            assert_eq!(time(bad, digits), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn trailing_bytes_and_other_algorithms_are_refused() {
        let key = crate::test_keys::private_key_pem(crate::test_keys::signer());
        let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = <base64ct::Base64 as base64ct::Encoding>::decode_vec(&body).unwrap();
        assert!(pkcs8_private_key(&der).is_some());
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(pkcs8_private_key(&trailing).is_none());
        // The rsaEncryption OID changed in its last arc (an EC or other key).
        let at = der.windows(RSA_ENCRYPTION.len()).position(|w| w == RSA_ENCRYPTION).unwrap();
        let mut other = der.clone();
        other[at + RSA_ENCRYPTION.len() - 1] = 0x0a;
        assert!(pkcs8_private_key(&other).is_none());
        for cut in [1, 10, der.len() / 2, der.len() - 1] {
            assert!(pkcs8_private_key(&der[..cut]).is_none(), "{cut}");
        }
    }
}
