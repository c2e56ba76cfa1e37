//! Which blocks of a feed a hub replicates in full, wanted or not.

/// Blocks of a feed replicated in full: every block from `from`, up to
/// `to` if set, that any peer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EagerRange {
    pub from: u64,
    pub to: Option<u64>,
}

impl EagerRange {
    /// The whole feed, as it grows.
    pub const ALL: EagerRange = EagerRange { from: 0, to: None };

    /// Whether block `i` is in the range.
    pub fn contains(&self, i: u64) -> bool {
        i >= self.from && self.to.is_none_or(|t| i < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_holds_from_its_start_to_before_its_end() {
        let head = EagerRange {
            from: 0,
            to: Some(2),
        };
        assert!(head.contains(0) && head.contains(1) && !head.contains(2));
        let tail = EagerRange { from: 5, to: None };
        assert!(!tail.contains(4) && tail.contains(5) && tail.contains(u64::MAX));
        assert!(EagerRange::ALL.contains(0));
    }
}
