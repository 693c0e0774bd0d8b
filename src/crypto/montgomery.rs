//! `base^exponent mod n` for RSA (odd `n`), by Montgomery multiplication on 32-bit limbs
//! and a left-to-right square-and-multiply over the exponent's bits.
//!
//! Why by hand: num-bigint-dig's `modpow` (what the rsa crate computes with) made one
//! RS256 verification cost about 2.8 ms of host CPU in the component (measured with
//! `benches/host_cost.rs`: a warm revoke with an Entra ID caller token at 19x hello, against
//! 3.7x with an API key). Its Montgomery loop reads every limb through `SmallVec` indexing,
//! which the size-optimised build (`opt-level = "z"`) does not inline, and its 4-bit window,
//! built for private exponents, spends about 58 multiplications where the public exponent
//! 65537 needs 17. Here the inner loops run over plain slices, and `R² mod n` comes from
//! doublings and squarings instead of a big-integer division. The same warm revoke with a
//! token then cost 7.9x hello (1,197 µs against the API key's 529 µs), and 617 µs against
//! 293 µs on a faster machine after the cheaper R² below (README, `host_cost`).
//!
//! Not constant-time: the running time depends on the exponent's bits and on the final
//! subtraction. For verification every input is public (a JWKS key, a token's signature).
//! For signing, see [`crate::crypto::signer`] (the exponent is blinded afresh each time, as
//! before; num-bigint-dig's windowed `modpow` was not constant-time either).
//!
//! Numbers cross the interface as unsigned big-endian bytes, as RSA keys and signatures
//! are written; `None` for an even or too-small modulus, or a base not below it.

use zeroize::Zeroize;

/// `base^exponent mod modulus`, big-endian, as long as the modulus (leading zeros kept:
/// the length of an RSA signature block). `None` when `modulus` is even or below 3, or
/// `base >= modulus`.
pub fn modpow(base: &[u8], exponent: &[u8], modulus: &[u8]) -> Option<Vec<u8>> {
    let n = limbs(modulus);
    let k = n.len();
    if n[0] & 1 == 0 || (k == 1 && n[0] < 3) {
        return None;
    }
    let mut x = limbs(base);
    if x.len() > k || (x.len() == k && !less(&x, &n)) {
        return None;
    }
    x.resize(k, 0);
    let m = Modulus::new(n);

    // Into the Montgomery domain: x·R = mont(x, R² mod n).
    let rr = m.r_squared();
    let mut scratch = vec![0u32; 2 * (k + 1)];
    let mut base_m = vec![0u32; k];
    m.mul(&x, &rr, &mut scratch, &mut base_m);
    x.zeroize();

    // Square-and-multiply from the top set bit down: z starts as the base (x·R), so the
    // exponent's leading zeros cost nothing (65537 takes 16 squarings and 1 multiplication).
    let bits = exponent.iter().flat_map(|byte| (0..8).rev().map(move |bit| byte >> bit & 1 == 1));
    let mut bits = bits.skip_while(|set| !set);
    let mut z = match bits.next() {
        Some(_) => base_m.clone(),
        None => m.r_mod_n(), // x^0 = 1, which is R in the Montgomery domain
    };
    let mut t = vec![0u32; k];
    for set in bits {
        m.mul(&z, &z, &mut scratch, &mut t);
        std::mem::swap(&mut z, &mut t);
        if set {
            m.mul(&z, &base_m, &mut scratch, &mut t);
            std::mem::swap(&mut z, &mut t);
        }
    }
    // Out of the Montgomery domain: mont(z, 1) = z·R⁻¹.
    let mut one = vec![0u32; k];
    one[0] = 1;
    m.mul(&z, &one, &mut scratch, &mut t);

    // Big-endian, from the low end up; the result is below n, so nothing is cut off.
    let mut out = vec![0u8; modulus.len()];
    for (byte, value) in out.iter_mut().rev().zip(t.iter().flat_map(|limb| limb.to_le_bytes())) {
        *byte = value;
    }
    for secret in [&mut base_m, &mut z, &mut t, &mut scratch] {
        secret.zeroize();
    }
    Some(out)
}

/// Big-endian bytes as little-endian 32-bit limbs, without high zero limbs (at least one).
fn limbs(bytes: &[u8]) -> Vec<u32> {
    let mut limbs: Vec<u32> = bytes
        .rchunks(4)
        .map(|chunk| chunk.iter().fold(0u32, |limb, &byte| limb << 8 | u32::from(byte)))
        .collect();
    while limbs.len() > 1 && limbs.last() == Some(&0) {
        limbs.pop();
    }
    if limbs.is_empty() {
        limbs.push(0);
    }
    limbs
}

/// `a < b`, for equally long limb slices.
fn less(a: &[u32], b: &[u32]) -> bool {
    a.iter().rev().cmp(b.iter().rev()) == std::cmp::Ordering::Less
}

/// `a -= b` over equally long limb slices; the borrow out.
fn subtract(a: &mut [u32], b: &[u32]) -> bool {
    let mut borrow = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (d, b1) = x.overflowing_sub(y);
        let (d, b2) = d.overflowing_sub(u32::from(borrow));
        *x = d;
        borrow = b1 || b2;
    }
    borrow
}

/// An odd modulus and `-n⁻¹ mod 2³²`, for Montgomery multiplication with `R = 2^(32k)`.
struct Modulus {
    n: Vec<u32>,
    n0_inv: u32,
}

impl Modulus {
    fn new(n: Vec<u32>) -> Modulus {
        // Newton's iteration doubles the correct low bits of n⁻¹ mod 2³² each step: an odd
        // n is its own inverse mod 2³, then 6, 12, 24, 48 bits.
        let mut inverse = n[0];
        for _ in 0..4 {
            inverse = inverse.wrapping_mul(2u32.wrapping_sub(n[0].wrapping_mul(inverse)));
        }
        Modulus { n, n0_inv: inverse.wrapping_neg() }
    }

    /// `out = a·b·R⁻¹ mod n` (a, b < n), FIOS: one limb of `a` at a time, each pass
    /// adding `a[i]·b` and the multiple of `n` that clears the low limb in one sweep,
    /// written a limb lower (the division by 2³²) into the other half of `scratch`
    /// (2k + 2 limbs: two buffers of k + 1 that trade places every pass).
    fn mul(&self, a: &[u32], b: &[u32], scratch: &mut [u32], out: &mut [u32]) {
        // Slices and iterators: indexing a Vec goes through `Index`, which the
        // size-optimised build calls rather than inlines, and every index is a bounds
        // check; in the inner loop these took most of a verification's time (measured).
        let n: &[u32] = &self.n;
        let k = n.len();
        let (mut t, mut u) = scratch[..2 * (k + 1)].split_at_mut(k + 1);
        t.fill(0);
        for &ai in a {
            let ai = u64::from(ai);
            let sum = u64::from(t[0]) + ai * u64::from(b[0]);
            let mut carry_ab = sum >> 32;
            let low = sum as u32;
            let m = u64::from(low.wrapping_mul(self.n0_inv));
            let mut carry_mn = (u64::from(low) + m * u64::from(n[0])) >> 32;
            for (((uj, &tj), &bj), &nj) in u.iter_mut().zip(&t[1..k]).zip(&b[1..]).zip(&n[1..]) {
                let sum = u64::from(tj) + ai * u64::from(bj) + carry_ab;
                carry_ab = sum >> 32;
                let sum = u64::from(sum as u32) + m * u64::from(nj) + carry_mn;
                carry_mn = sum >> 32;
                *uj = sum as u32;
            }
            let top = u64::from(t[k]) + carry_ab + carry_mn;
            u[k - 1] = top as u32;
            u[k] = (top >> 32) as u32;
            std::mem::swap(&mut t, &mut u);
        }
        // t < 2n: one subtraction at most.
        out.copy_from_slice(&t[..k]);
        if t[k] != 0 || !less(out, n) {
            subtract(out, n);
        }
    }

    /// `R mod n`: the modulus's top bit doubled up to `2^(32k)`.
    fn r_mod_n(&self) -> Vec<u32> {
        let k = self.n.len();
        let bits = 32 * k - self.n[k - 1].leading_zeros() as usize;
        // 2^(bits-1) < n (n is odd and has that top bit), then one doubling per bit to R.
        let mut x = vec![0u32; k];
        x[(bits - 1) / 32] = 1 << ((bits - 1) % 32);
        for _ in bits - 1..32 * k {
            self.double(&mut x);
        }
        x
    }

    /// `R² mod n` without a division: `R·2^t mod n` by doublings from `R mod n`, where
    /// `32k = t·2^j`, then `j` Montgomery squarings, each of which turns `R·2^t` into
    /// `R·2^(2t)`. At most 5 squarings: a doubling costs about a hundredth of a
    /// multiplication at RSA sizes, so for 2048 bits 64 doublings and 5 squarings beat
    /// 1 doubling and 11 squarings (measured natively at `opt-level = "z"`: a 2048-bit
    /// `x^65537` went from ~190 to ~159 µs; 3 or 4 squarings were no faster, 2 slower).
    fn r_squared(&self) -> Vec<u32> {
        let k = self.n.len();
        let exponent = 32 * k;
        let squarings = exponent.trailing_zeros().min(5);
        let mut x = self.r_mod_n();
        for _ in 0..exponent >> squarings {
            self.double(&mut x);
        }
        let mut scratch = vec![0u32; 2 * (k + 1)];
        let mut t = vec![0u32; k];
        for _ in 0..squarings {
            self.mul(&x, &x, &mut scratch, &mut t);
            std::mem::swap(&mut x, &mut t);
        }
        x
    }

    /// `x = 2x mod n`, for `x < n`.
    fn double(&self, x: &mut [u32]) {
        let mut carry = 0u32;
        for limb in x.iter_mut() {
            let next = *limb >> 31;
            *limb = *limb << 1 | carry;
            carry = next;
        }
        if carry != 0 || !less(x, &self.n) {
            subtract(x, &self.n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::BigUint;

    /// The reference: num-bigint-dig's `modpow`, padded to the modulus's length.
    fn reference(base: &[u8], exponent: &[u8], modulus: &[u8]) -> Vec<u8> {
        let value = BigUint::from_bytes_be(base).modpow(&BigUint::from_bytes_be(exponent), &BigUint::from_bytes_be(modulus));
        let bytes = value.to_bytes_be();
        let mut out = vec![0u8; modulus.len() - bytes.len().min(modulus.len())];
        out.extend_from_slice(&bytes);
        if value == BigUint::from(0u8) {
            out = vec![0u8; modulus.len()];
        }
        out
    }

    /// A deterministic byte stream (xorshift), so failures reproduce.
    fn bytes(seed: &mut u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                (*seed >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn agrees_with_num_bigint_dig_for_moduli_of_every_shape() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        // Lengths around limb boundaries, RSA sizes, and top bits of every weight.
        for len in [1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 64, 127, 128, 129, 256, 384, 512] {
            for _ in 0..6 {
                let mut modulus = bytes(&mut seed, len);
                *modulus.last_mut().unwrap() |= 1;
                if modulus.iter().all(|&b| b == 0) || (len == 1 && modulus[0] < 3) {
                    continue;
                }
                let n = BigUint::from_bytes_be(&modulus);
                let base = (BigUint::from_bytes_be(&bytes(&mut seed, len)) % &n).to_bytes_be();
                for exponent in [vec![0u8], vec![1], vec![2], vec![3], vec![0x01, 0x00, 0x01], bytes(&mut seed, len.min(64))] {
                    assert_eq!(
                        modpow(&base, &exponent, &modulus),
                        Some(reference(&base, &exponent, &modulus)),
                        "len {len}, modulus {modulus:02x?}, base {base:02x?}, exponent {exponent:02x?}"
                    );
                }
            }
        }
    }

    #[test]
    fn edge_values_and_refusals() {
        let modulus = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc5]; // odd, 9 bytes
        let minus_one = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc4];
        assert_eq!(modpow(&[0], &[1, 0, 1], &modulus), Some(vec![0; 9]), "0^e");
        assert_eq!(modpow(&[1], &[1, 0, 1], &modulus), Some([vec![0; 8], vec![1]].concat()), "1^e");
        assert_eq!(modpow(&minus_one, &[2], &modulus), Some([vec![0; 8], vec![1]].concat()), "(-1)^2");
        assert_eq!(modpow(&minus_one, &[3], &modulus), Some(minus_one.to_vec()), "(-1)^3");
        assert_eq!(modpow(&[0, 0, 7], &[], &modulus), Some([vec![0; 8], vec![1]].concat()), "an empty exponent is 0");
        assert_eq!(modpow(&[0, 0, 5], &[2], &[0, 0, 7]), Some(vec![0, 0, 4]), "leading zeros of the modulus are kept");
        assert_eq!(modpow(&modulus, &[3], &modulus), None, "base = n");
        assert_eq!(modpow(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[3], &modulus), None, "base > n");
        assert_eq!(modpow(&[1], &[3], &[0x10, 0x00]), None, "an even modulus");
        assert_eq!(modpow(&[1], &[3], &[1]), None, "n = 1");
        assert_eq!(modpow(&[], &[3], &[]), None, "no modulus");
    }
}
