//! A tiny deterministic random source. The generator's output must be byte-identical for a seed
//! across platforms and dependency upgrades, so it does not borrow a library's unstable stream.

/// SplitMix64: small, fast, and good enough for synthetic data.
#[derive(Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// An independent stream for one purpose, so adding draws to one table never shifts another.
    pub(crate) fn derive(seed: u64, stream: &str) -> Self {
        Self::new(
            seed ^ mix(stream.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            })),
        )
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Picks by weight from `(item, weight)` pairs.
    pub(crate) fn weighted<'a, T>(&mut self, items: &'a [(T, f64)]) -> &'a T {
        let total: f64 = items.iter().map(|(_, w)| w).sum();
        let mut x = self.unit() * total;
        for (item, w) in items {
            if x < *w {
                return item;
            }
            x -= w;
        }
        &items[items.len() - 1].0
    }
}

/// The SplitMix64 finaliser, also used as a hash of cell coordinates.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Splits `total` into parts proportional to `weights`, exactly (largest remainders by order).
pub(crate) fn apportion(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    let mut acc = 0.0;
    let mut prev = 0u64;
    weights
        .iter()
        .map(|w| {
            acc += w;
            let upto = ((acc / sum) * total as f64).round() as u64;
            let upto = upto.min(total);
            let n = upto - prev.min(upto);
            prev = prev.max(upto);
            n
        })
        .collect::<Vec<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            if i + 1 == weights.len() {
                n + total - prev
            } else {
                n
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_is_exact() {
        for total in [0u64, 1, 7, 1000, 123_457] {
            let parts = apportion(total, &[0.24, 0.19, 0.19, 0.11, 0.09, 0.09, 0.09]);
            assert_eq!(parts.iter().sum::<u64>(), total);
        }
    }

    #[test]
    fn streams_are_stable() {
        let mut a = Rng::derive(7, "x");
        let mut b = Rng::derive(7, "x");
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(
            Rng::derive(7, "y").next_u64(),
            Rng::derive(7, "x").next_u64()
        );
    }
}
