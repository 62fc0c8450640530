//! Random round order for the benches: every round runs its lines in a new random order, so a
//! slow patch of the machine does not always fall on the same line.

use std::hash::{BuildHasher, Hasher};

/// A random number from the standard library's per-hasher random keys (no `rand` needed).
fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

/// Fisher–Yates shuffle of `items`.
pub(crate) fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = (random() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
