//! A small stable hash for deterministic placement.
//!
//! `std`'s `DefaultHasher` may change between Rust releases; placement decisions must not,
//! so policies hash with FNV-1a followed by the SplitMix64 finaliser. Fields are separated
//! by `0xff`, a byte that never occurs in UTF-8, so `("ab","c")` and `("a","bc")` differ.

pub(crate) struct StableHasher(u64);

impl StableHasher {
    pub(crate) fn new(seed: u64) -> Self {
        let mut h = Self(0xcbf2_9ce4_8422_2325);
        h.write(&seed.to_le_bytes());
        h
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub(crate) fn field(mut self, s: &str) -> Self {
        self.write(s.as_bytes());
        self.write(&[0xff]);
        self
    }

    pub(crate) fn finish(&self) -> u64 {
        let mut z = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Maps a hash to the open interval (0, 1).
pub(crate) fn unit_interval(h: u64) -> f64 {
    // 52 bits plus a half: exactly representable, never 0 and never 1, so ln() is
    // finite and non-zero.
    ((h >> 12) as f64 + 0.5) / (1u64 << 52) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED: u64 = 8_690_804_608_476_732_847;

    #[test]
    fn fields_are_separated_and_values_are_stable() {
        let a = StableHasher::new(0).field("ab").field("c").finish();
        let b = StableHasher::new(0).field("a").field("bc").finish();
        assert_ne!(a, b);
        // Pinned value: placement must not change between releases.
        assert_eq!(
            StableHasher::new(7)
                .field("AUTH_test")
                .field("photos")
                .finish(),
            PINNED
        );
        let u = unit_interval(u64::MAX);
        assert!(u > 0.0 && u < 1.0);
        assert!(unit_interval(0) > 0.0);
    }
}
