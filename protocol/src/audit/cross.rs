//! Cross-checking several central nodes' logs: every entry submitted to the federation goes
//! to every central node (DESIGN §6), so an entry present in one log and absent from another
//! is evidence that the other log omitted it (censorship), once the lagging log has had time
//! to include it.
//!
//! Callers pass, per log, `(index, key)` pairs where the key is the entry's
//! [`LedgerEntry::key`](crate::ledger::LedgerEntry::key) (for every entry, the SHA-256 of its
//! bytes). Compare logs up to checkpoints of similar age: entries at the tail of a log that
//! another log has not reached yet are reported too, and are not yet censorship.

use std::collections::HashMap;

use crate::content_id::ContentId;

/// Most logs one cross-check compares (presence is a 64-bit mask).
pub const MAX_LOGS: usize = 64;

/// An entry that some logs hold and others do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The entry key (content id).
    pub key: ContentId,
    /// Logs (by position in the input) that hold it.
    pub present_in: Vec<usize>,
    /// Logs that do not.
    pub absent_from: Vec<usize>,
    /// One log and index where it is: fetch it there with an inclusion proof to show the
    /// entry existed.
    pub found_at: (usize, u64),
}

/// Why a cross-check could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossCheckError {
    #[error("{0} logs given; at most {MAX_LOGS} can be compared")]
    TooManyLogs(usize),
    #[error("log {log}: keys are not in ascending order at index {index}")]
    NotSorted { log: usize, index: u64 },
}

fn split(mask: u64, logs: usize) -> (Vec<usize>, Vec<usize>) {
    (0..logs).partition(|l| mask >> l & 1 == 1)
}

/// Lists the entries missing from at least one log, sorted by key. Memory is one map slot per
/// distinct key (about 80 bytes); use [`cross_check_sorted`] for sorted exports.
pub fn cross_check<I>(logs: Vec<I>) -> Result<Vec<Missing>, CrossCheckError>
where
    I: IntoIterator<Item = (u64, ContentId)>,
{
    let n = logs.len();
    if n > MAX_LOGS {
        return Err(CrossCheckError::TooManyLogs(n));
    }
    let mut seen: HashMap<ContentId, (u64, (usize, u64))> = HashMap::new();
    for (log, keys) in logs.into_iter().enumerate() {
        for (index, key) in keys {
            let slot = seen.entry(key).or_insert((0, (log, index)));
            slot.0 |= 1 << log;
        }
    }
    let all = if n == MAX_LOGS {
        u64::MAX
    } else {
        (1u64 << n) - 1
    };
    let mut missing: Vec<Missing> = seen
        .into_iter()
        .filter(|(_, (mask, _))| *mask != all)
        .map(|(key, (mask, found_at))| {
            let (present_in, absent_from) = split(mask, n);
            Missing {
                key,
                present_in,
                absent_from,
                found_at,
            }
        })
        .collect();
    missing.sort_by_key(|m| m.key);
    Ok(missing)
}

/// The streaming form of [`cross_check`] for logs whose keys come sorted ascending (e.g. a
/// sorted export): memory is one key per log. Yields an error and stops if a log is not
/// sorted.
pub fn cross_check_sorted<I>(logs: Vec<I>) -> Result<SortedCrossCheck<I::IntoIter>, CrossCheckError>
where
    I: IntoIterator<Item = (u64, ContentId)>,
{
    if logs.len() > MAX_LOGS {
        return Err(CrossCheckError::TooManyLogs(logs.len()));
    }
    let mut iters: Vec<I::IntoIter> = logs.into_iter().map(IntoIterator::into_iter).collect();
    let heads = iters.iter_mut().map(Iterator::next).collect();
    Ok(SortedCrossCheck {
        iters,
        heads,
        failed: false,
    })
}

/// Iterator returned by [`cross_check_sorted`].
#[derive(Debug)]
pub struct SortedCrossCheck<It> {
    iters: Vec<It>,
    heads: Vec<Option<(u64, ContentId)>>,
    failed: bool,
}

impl<It: Iterator<Item = (u64, ContentId)>> Iterator for SortedCrossCheck<It> {
    type Item = Result<Missing, CrossCheckError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            let min = self.heads.iter().flatten().map(|(_, k)| *k).min()?;
            let n = self.heads.len();
            let mut mask = 0u64;
            let mut found_at = (0, 0);
            for (log, (head, it)) in self.heads.iter_mut().zip(&mut self.iters).enumerate() {
                let Some((index, key)) = *head else { continue };
                if key != min {
                    continue;
                }
                if mask == 0 {
                    found_at = (log, index);
                }
                mask |= 1 << log;
                // Skip repeats of this key in this log, and check the order.
                loop {
                    *head = it.next();
                    match *head {
                        Some((_, k)) if k == min => continue,
                        Some((i, k)) if k < min => {
                            self.failed = true;
                            return Some(Err(CrossCheckError::NotSorted { log, index: i }));
                        }
                        _ => break,
                    }
                }
            }
            if mask.count_ones() as usize != n {
                let (present_in, absent_from) = split(mask, n);
                return Some(Ok(Missing {
                    key: min,
                    present_in,
                    absent_from,
                    found_at,
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn k(i: u8) -> ContentId {
        ContentId([i; 32])
    }

    #[test]
    fn both_forms_agree() {
        let a = vec![(0, k(1)), (1, k(2)), (2, k(3)), (3, k(5))];
        let b = vec![(0, k(1)), (1, k(3)), (2, k(5))];
        let c = vec![(0, k(1)), (1, k(2)), (2, k(3)), (3, k(4)), (4, k(5))];
        let hashed = cross_check(vec![a.clone(), b.clone(), c.clone()]).unwrap();
        let sorted: Vec<_> = cross_check_sorted(vec![a, b, c])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(hashed, sorted);
        assert_eq!(hashed.len(), 2);
        assert_eq!(hashed[0].key, k(2));
        assert_eq!(hashed[0].absent_from, vec![1]);
        assert_eq!(hashed[0].found_at, (0, 1));
        assert_eq!(hashed[1].key, k(4));
        assert_eq!(hashed[1].present_in, vec![2]);
        assert_eq!(hashed[1].found_at, (2, 3));
    }

    #[test]
    fn unsorted_input_is_refused() {
        let a = vec![(0, k(1)), (1, k(3)), (2, k(2))];
        let mut it = cross_check_sorted(vec![a, vec![]]).unwrap();
        assert!(matches!(it.next(), Some(Ok(_))));
        assert_eq!(
            it.next(),
            Some(Err(CrossCheckError::NotSorted { log: 0, index: 2 }))
        );
        assert_eq!(it.next(), None);
    }
}
