//! A bitmap of sequence numbers: which messages of one producer were acknowledged or received.
//!
//! One bit per message, so 10 million messages cost 1.25 MB. Growth is bounded by
//! [`MAX_TRACKED_SEQ`]; beyond it, inserts are refused and the caller reports truncation.

/// Highest sequence number tracked per producer (2^28 messages = 32 MiB of bits).
pub const MAX_TRACKED_SEQ: u64 = 1 << 28;

/// A growable set of `u64` sequence numbers below [`MAX_TRACKED_SEQ`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqSet {
    words: Vec<u64>,
    /// Invariant: equals the number of set bits in `words`.
    len: u64,
}

/// Outcome of [`SeqSet::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    New,
    Duplicate,
    /// Above [`MAX_TRACKED_SEQ`]; not recorded.
    Untracked,
}

impl SeqSet {
    pub fn new() -> SeqSet {
        SeqSet::default()
    }

    /// Adds `seq`.
    pub fn insert(&mut self, seq: u64) -> Insert {
        if seq >= MAX_TRACKED_SEQ {
            return Insert::Untracked;
        }
        let word = (seq / 64) as usize;
        if word >= self.words.len() {
            // Grow geometrically so a long run does not reallocate per message.
            let new_len = (word + 1).max(self.words.len() * 2).max(1024);
            let cap = (MAX_TRACKED_SEQ / 64) as usize;
            self.words.resize(new_len.min(cap), 0);
        }
        let bit = 1u64 << (seq % 64);
        if self.words[word] & bit != 0 {
            Insert::Duplicate
        } else {
            self.words[word] |= bit;
            self.len += 1;
            Insert::New
        }
    }

    pub fn contains(&self, seq: u64) -> bool {
        let word = (seq / 64) as usize;
        self.words
            .get(word)
            .is_some_and(|w| w & (1u64 << (seq % 64)) != 0)
    }

    /// Number of distinct members.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds every member of `other`; returns how many were already present (overlap).
    pub fn union_with(&mut self, other: &SeqSet) -> u64 {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        let mut overlap = 0;
        for (mine, theirs) in self.words.iter_mut().zip(&other.words) {
            overlap += u64::from((*mine & *theirs).count_ones());
            let added = u64::from((!*mine & *theirs).count_ones());
            *mine |= *theirs;
            self.len += added;
        }
        overlap
    }

    /// Members of `self` not in `other`.
    pub fn count_not_in(&self, other: &SeqSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let theirs = other.words.get(i).copied().unwrap_or(0);
                u64::from((w & !theirs).count_ones())
            })
            .sum()
    }

    /// Asserts the cached length matches the bits.
    pub fn check_invariants(&self) {
        let bits: u64 = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
        assert_eq!(bits, self.len, "SeqSet length out of sync with its bits");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_detects_duplicates_and_bounds() {
        let mut s = SeqSet::new();
        assert_eq!(s.insert(5), Insert::New);
        assert_eq!(s.insert(5), Insert::Duplicate);
        assert_eq!(s.insert(100_000), Insert::New);
        assert_eq!(s.insert(MAX_TRACKED_SEQ), Insert::Untracked);
        assert_eq!(s.len(), 2);
        assert!(s.contains(100_000) && !s.contains(6) && !s.contains(u64::MAX));
        s.check_invariants();
    }

    #[test]
    fn union_and_difference() {
        let mut a = SeqSet::new();
        let mut b = SeqSet::new();
        for i in 0..1000 {
            a.insert(i);
        }
        for i in 500..5000 {
            b.insert(i);
        }
        assert_eq!(a.count_not_in(&b), 500);
        assert_eq!(b.count_not_in(&a), 4000);
        let overlap = a.union_with(&b);
        assert_eq!(overlap, 500);
        assert_eq!(a.len(), 5000);
        a.check_invariants();
    }
}
