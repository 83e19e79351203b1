//! SplitMix64, the counter-based mixer shared by input generators (bit-identical to the CUDA
//! harnesses' `rdbench_splitmix64`, `kernels/harness/splitmix64.cu`), secret seed streams and
//! bootstrap seeding.

/// The increment SplitMix64 adds before mixing (the golden ratio in 64 bits).
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64: adds [`GOLDEN_GAMMA`] to `z` and mixes the result over all 64 bits.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The odd multiplier that spreads an index over all 64 bits before [`splitmix64_at`] mixes it
/// with the key.
pub const INDEX_MUL: u64 = 0xD1B5_4A32_D192_ED03;

/// Word `index` of the counter-based stream keyed by `key`: `splitmix64(key ^ index *
/// INDEX_MUL)`, what the CUDA harness generators compute per element
/// (`rdbench_splitmix64_at(seed, i)`), so their CPU twins match bit for bit.
pub fn splitmix64_at(key: u64, index: u64) -> u64 {
    splitmix64(key ^ index.wrapping_mul(INDEX_MUL))
}

/// The SplitMix64 stream: `splitmix64(seed)`, `splitmix64(seed + gamma)`, ...
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        let value = splitmix64(self.0);
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // The first outputs of the reference SplitMix64 generator seeded with 0.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        let mut s = SplitMix64(0);
        assert_eq!(s.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(s.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(splitmix64_at(0, 0), splitmix64(0));
        assert_eq!(
            splitmix64_at(7, 3),
            splitmix64(7 ^ 3u64.wrapping_mul(INDEX_MUL))
        );
    }
}
