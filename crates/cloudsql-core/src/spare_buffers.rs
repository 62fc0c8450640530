//! Spare I/O buffers, a few per thread, so that a connection can hold no buffer while it waits
//! without paying the allocator on every wake-up.
//!
//! The relay and the read-ahead under TLS give their buffer back each time their reader has
//! nothing more, so that an idle connection holds none. Handed to the allocator and taken again
//! on every wake-up, those 16–64 KiB buffers churned glibc's heap (it shrinks and regrows a
//! thread's heap around them): in a bulk read through the local socket, about twice the page
//! faults and 1–4 % more client CPU per MB than with spares (`LOCAL_SOCKET_ONLY=socket cargo
//! bench --bench local_socket` under `perf stat`, 2026-11-30). Kept here instead, a buffer is
//! reused by the next connection on the same thread that needs one; a thread keeps at most
//! [`SPARES_PER_THREAD`] (192 KiB at most), so the spares grow with the runtime's threads that
//! relay, never with the number of connections.

use std::cell::RefCell;

use bytes::BytesMut;

/// Buffers a thread keeps: one for each of a relay's two directions and one for a read-ahead.
const SPARES_PER_THREAD: usize = 3;

thread_local! {
    static SPARES: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `capacity` bytes: the smallest of this thread's spares
/// that is big enough, else a new one.
pub(crate) fn take(capacity: usize) -> BytesMut {
    let spare = SPARES
        .try_with(|spares| {
            let mut spares = spares.try_borrow_mut().ok()?;
            let (i, _) = spares
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= capacity)
                .min_by_key(|(_, b)| b.capacity())?;
            Some(spares.swap_remove(i))
        })
        .ok()
        .flatten();
    spare.unwrap_or_else(|| BytesMut::with_capacity(capacity))
}

/// Keeps `buf` (emptied), which was taken with `capacity`, for this thread's next [`take`]. A
/// thread with all its spares keeps the larger buffers: a small spare cannot serve a large take,
/// and a large one serves both. `buf` is left empty, with no allocation.
pub(crate) fn give_back(buf: &mut BytesMut, capacity: usize) {
    let mut spare = std::mem::take(buf);
    if spare.capacity() == 0 {
        return;
    }
    spare.clear();
    // After reads that consumed the front, the free room is at the back only: this takes the
    // whole allocation back (no copy, no allocation: the buffer is empty and not shared).
    spare.reserve(capacity);
    // A thread being torn down has no spares to keep: the buffer is then simply dropped.
    let _ = SPARES.try_with(|spares| {
        let Ok(mut spares) = spares.try_borrow_mut() else {
            return;
        };
        if spares.len() < SPARES_PER_THREAD {
            spares.push(spare);
        } else if let Some(smallest) = spares
            .iter_mut()
            .min_by_key(|b| b.capacity())
            .filter(|b| b.capacity() < spare.capacity())
        {
            *smallest = spare;
        }
    });
}

#[cfg(test)]
mod tests {
    use bytes::Buf;

    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_whole() {
        let mut buf = take(64 * 1024);
        let address = buf.as_ptr();
        buf.extend_from_slice(&[1u8; 1000]);
        buf.advance(600); // as a reader hands bytes out
        give_back(&mut buf, 64 * 1024);
        assert_eq!(buf.capacity(), 0, "the giver keeps no allocation");
        let again = take(64 * 1024);
        assert!(again.is_empty());
        assert!(again.capacity() >= 64 * 1024);
        assert_eq!(again.as_ptr(), address, "the spare was not reused");
    }

    #[test]
    fn a_thread_keeps_only_a_few_spares() {
        let mut taken: Vec<BytesMut> = (0..SPARES_PER_THREAD + 2).map(|_| take(1024)).collect();
        for buf in &mut taken {
            give_back(buf, 1024);
        }
        let kept = SPARES.with(|s| s.borrow().len());
        assert_eq!(kept, SPARES_PER_THREAD);
    }

    /// Small spares do not crowd out the large ones a read-ahead or a relay's instance side
    /// needs, and a small take does not use up a large spare when a small one will do.
    #[test]
    fn large_spares_are_kept_and_small_takes_use_small_spares() {
        let mut small: Vec<BytesMut> = (0..SPARES_PER_THREAD).map(|_| take(16 * 1024)).collect();
        for buf in &mut small {
            give_back(buf, 16 * 1024);
        }
        let mut large = take(64 * 1024);
        let large_at = large.as_ptr();
        give_back(&mut large, 64 * 1024);
        let capacities: Vec<usize> = SPARES.with(|s| s.borrow().iter().map(BytesMut::capacity).collect());
        assert_eq!(capacities.len(), SPARES_PER_THREAD);
        assert!(
            capacities.iter().any(|&c| c >= 64 * 1024),
            "the large buffer was dropped"
        );
        let small_again = take(16 * 1024);
        assert!(
            small_again.capacity() < 64 * 1024,
            "a small take used up the large spare"
        );
        assert_eq!(take(64 * 1024).as_ptr(), large_at);
    }

    #[test]
    fn a_spare_too_small_is_not_handed_out() {
        let mut small = take(16);
        give_back(&mut small, 16);
        let big = take(64 * 1024);
        assert!(big.capacity() >= 64 * 1024);
    }

    #[test]
    fn spares_stay_on_their_thread() {
        let mut buf = take(4096);
        give_back(&mut buf, 4096);
        let elsewhere = std::thread::spawn(|| SPARES.with(|s| s.borrow().len()))
            .join()
            .unwrap();
        assert_eq!(elsewhere, 0);
    }
}
