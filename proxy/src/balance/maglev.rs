//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table in which each
//! endpoint owns an almost equal share and a membership change moves few entries.

/// Table size: a prime well above 100 × the largest expected endpoint count.
pub(crate) const TABLE_SIZE: usize = 65_537;

/// FNV-1a, stable across runs and processes (Maglev tables must agree after a restart).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A filled Maglev table of endpoint indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    /// Builds the table for endpoints named by `keys` (e.g. their address); `None` if there are none.
    pub(crate) fn new<K: AsRef<[u8]>>(keys: &[K]) -> Option<Self> {
        let n = keys.len();
        if n == 0 {
            return None;
        }
        let m = TABLE_SIZE as u64;
        let perms: Vec<(u64, u64)> = keys
            .iter()
            .map(|k| {
                let h = fnv1a(k.as_ref());
                let h2 = fnv1a(&h.to_le_bytes());
                (h % m, h2 % (m - 1) + 1)
            })
            .collect();
        let mut next = vec![0u64; n];
        let mut table = vec![u32::MAX; TABLE_SIZE];
        let mut filled = 0;
        'fill: loop {
            for (i, (offset, skip)) in perms.iter().enumerate() {
                let mut c = (offset + next[i] * skip) % m;
                while table[c as usize] != u32::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                table[c as usize] = u32::try_from(i).unwrap_or(u32::MAX);
                next[i] += 1;
                filled += 1;
                if filled == TABLE_SIZE {
                    break 'fill;
                }
            }
        }
        Some(Self { table })
    }

    /// The endpoint index for a hash.
    pub(crate) fn lookup(&self, hash: u64) -> usize {
        let i = (hash % TABLE_SIZE as u64) as usize;
        self.table.get(i).map_or(0, |e| *e as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("10.0.{}.{}:80", i / 250, i % 250))
            .collect()
    }

    #[test]
    fn shares_are_nearly_equal() {
        let m = Maglev::new(&keys(10)).unwrap();
        let mut counts = [0usize; 10];
        for e in &m.table {
            counts[*e as usize] += 1;
        }
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*hi - *lo <= TABLE_SIZE / 100, "{counts:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn removing_one_endpoint_moves_little(n in 3usize..30, gone in 0usize..30) {
            let gone = gone % n;
            let all = keys(n);
            let mut fewer = all.clone();
            fewer.remove(gone);
            let (a, b) = (Maglev::new(&all).unwrap(), Maglev::new(&fewer).unwrap());
            let moved = (0..TABLE_SIZE as u64)
                .filter(|h| {
                    let before = &all[a.lookup(*h)];
                    before != &all[gone] && before != &fewer[b.lookup(*h)]
                })
                .count();
            // Entries of surviving endpoints mostly stay put (the paper reports a few percent).
            prop_assert!(moved < TABLE_SIZE / 5, "moved {moved}");
        }
    }
}
