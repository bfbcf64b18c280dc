//! A small seeded RNG (SplitMix64) owned by the core: deterministic for a seed, no global state.

/// SplitMix64 (Steele, Lea, Flood 2014): fast, statistically sound for ids and shuffles.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// Seeds the generator.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (returns 0 for n = 0), by multiply-and-shift (Lemire 2019) rather
    /// than a 64-bit division: the allocator draws one per agent per cycle.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Fisher–Yates shuffle, front to back (see [`SplitMix64::shuffle_step`]).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for k in 0..v.len() {
            self.shuffle_step(v, k);
        }
    }

    /// One step of a front-to-back Fisher–Yates shuffle: swaps a uniformly chosen element of
    /// `v[k..]` into `v[k]`. Steps `0..k` make `v[..k]` the first `k` elements of a uniform
    /// random order, so a caller that stops early draws only for what it visited.
    pub fn shuffle_step<T>(&mut self, v: &mut [T], k: usize) {
        if k + 1 < v.len() {
            let j = k + self.below((v.len() - k) as u64) as usize;
            v.swap(k, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(7);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = SplitMix64::new(7);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = SplitMix64::new(8);
            (0..4).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut v: Vec<u32> = (0..10).collect();
        SplitMix64::new(1).shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    }
}
