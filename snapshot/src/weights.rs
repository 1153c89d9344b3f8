//! Weighted choice among backend groups, shared by the proxy and the eBPF selection tables: an
//! interleaved slot table, so 90/10 is exact per 10 picks.

/// Most slots a table has; larger weight sums are scaled down to it.
pub const MAX_SLOTS: u64 = 1000;

/// Group indices laid out so that every run of `len()` consecutive picks matches the weights.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotTable {
    slots: Vec<u16>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl SlotTable {
    /// Builds the table for `weights` (index = group); all-zero weights give an empty table.
    pub fn new(weights: &[u32]) -> Self {
        let weights: Vec<u64> = weights
            .iter()
            .take(usize::from(u16::MAX))
            .map(|w| u64::from(*w))
            .collect();
        let total: u64 = weights.iter().sum();
        if total == 0 {
            return Self::default();
        }
        let divisor = weights.iter().fold(0, |g, w| gcd(g, *w));
        let mut counts: Vec<u64> = weights.iter().map(|w| w / divisor).collect();
        let sum: u64 = counts.iter().sum();
        if sum > MAX_SLOTS {
            counts = largest_remainder(&weights, total);
        }
        Self {
            slots: interleave(&counts),
        }
    }

    /// Number of slots (0 when no group has weight).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no group can be picked.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Group index of every slot, in order.
    pub fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().map(|g| usize::from(*g))
    }

    /// The group in slot `n % len()`.
    pub fn pick(&self, n: u64) -> Option<usize> {
        let len = u64::try_from(self.slots.len()).ok().filter(|l| *l > 0)?;
        let i = usize::try_from(n % len).ok()?;
        self.slots.get(i).map(|g| usize::from(*g))
    }
}

/// Scales `weights` to `MAX_SLOTS` slots, handing leftover slots to the largest remainders.
fn largest_remainder(weights: &[u64], total: u64) -> Vec<u64> {
    let mut counts: Vec<u64> = weights.iter().map(|w| w * MAX_SLOTS / total).collect();
    let mut rest: Vec<(u64, usize)> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| (w * MAX_SLOTS % total, i))
        .collect();
    rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let missing = MAX_SLOTS - counts.iter().sum::<u64>();
    for (_, i) in rest.into_iter().take(usize::try_from(missing).unwrap_or(0)) {
        counts[i] += 1;
    }
    counts
}

/// Smooth weighted round-robin (nginx's) over `counts`, one full cycle.
fn interleave(counts: &[u64]) -> Vec<u16> {
    let total: i64 = counts.iter().map(|c| i64::try_from(*c).unwrap_or(0)).sum();
    let mut current = vec![0i64; counts.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, c) in counts.iter().enumerate() {
            current[i] += i64::try_from(*c).unwrap_or(0);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(u16::try_from(best).unwrap_or(0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shares(t: &SlotTable, groups: usize) -> Vec<usize> {
        let mut n = vec![0; groups];
        for i in 0..t.len() as u64 {
            n[t.pick(i).unwrap()] += 1;
        }
        n
    }

    #[test]
    fn ninety_ten_is_exact_and_interleaved() {
        let t = SlotTable::new(&[90, 10]);
        assert_eq!(t.len(), 10);
        assert_eq!(shares(&t, 2), vec![9, 1]);
        let t = SlotTable::new(&[1, 1]);
        assert_eq!((t.pick(0), t.pick(1)), (Some(0), Some(1)));
    }

    #[test]
    fn zero_weights() {
        assert!(SlotTable::new(&[0, 0]).is_empty());
        assert_eq!(SlotTable::new(&[0]).pick(3), None);
        assert_eq!(shares(&SlotTable::new(&[0, 5]), 2), vec![0, 1]);
    }

    proptest! {
        #[test]
        fn slots_follow_weights(weights in proptest::collection::vec(0u32..1_000_000, 1..20)) {
            let t = SlotTable::new(&weights);
            let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
            if total == 0 {
                prop_assert!(t.is_empty());
                return Ok(());
            }
            prop_assert!(t.len() as u64 <= MAX_SLOTS);
            let got = shares(&t, weights.len());
            for (w, n) in weights.iter().zip(&got) {
                let want = f64::from(*w) / total as f64;
                let have = *n as f64 / t.len() as f64;
                prop_assert!((want - have).abs() <= 1.0 / t.len() as f64 + 1e-9, "w={w} want={want} have={have}");
                if *w == 0 { prop_assert_eq!(*n, 0); }
            }
        }

        #[test]
        fn any_window_is_balanced(a in 1u32..50, b in 1u32..50, start in 0u64..1000) {
            // Smooth interleaving: any len-long window of picks has the exact counts.
            let t = SlotTable::new(&[a, b]);
            let mut n = [0usize; 2];
            for i in start..start + t.len() as u64 { n[t.pick(i).unwrap()] += 1; }
            let g = gcd(u64::from(a), u64::from(b));
            prop_assert_eq!(n[0] as u64, u64::from(a) / g);
        }
    }
}
