//! Bump allocator over [`HEAP`], reset wholesale between sequences.
//!
//! `dealloc` and `realloc` only give memory back (or grow in place) for the most recent
//! allocation, which is what a growing `Vec` needs; everything else is reclaimed by
//! [`reset`]. Running out yields a null pointer, which Rust turns into a panic
//! ("memory allocation of N bytes failed"), catchable by [`crate::recovery::try_run`].

use crate::layout::HEAP;
use crate::sync::RacyCell;
use core::alloc::{GlobalAlloc, Layout};

/// Next free byte of the arena.
static NEXT: RacyCell<usize> = RacyCell::new(HEAP.start);

struct Bump;

#[global_allocator]
static ALLOCATOR: Bump = Bump;

// Safe because every block handed out lies inside HEAP, is aligned as requested, and is
// never handed out again until `reset`, whose caller vouches that no block is live.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let start = (NEXT.load() + layout.align() - 1) & !(layout.align() - 1);
        match start.checked_add(layout.size()) {
            Some(end) if end <= HEAP.end => {
                NEXT.store(end);
                start as *mut u8
            }
            _ => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ptr as usize + layout.size() == NEXT.load() {
            NEXT.store(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = ptr as usize;
        if start + layout.size() == NEXT.load() && new_size <= HEAP.end - start {
            NEXT.store(start + new_size);
            return ptr;
        }
        // Safe because the new layout keeps the (valid) alignment of the old one.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // Safe because GlobalAlloc's contract is forwarded unchanged.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // Safe because both blocks are live, at least min(size) long and disjoint
            // (the new block starts at or after the old block's end).
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// Frees everything: the next allocation starts at the beginning of [`HEAP`].
///
/// # Safety
/// No allocation may be live: every `Vec`/`Box`/... allocated since the last reset must
/// have been dropped or leaked and never touched again.
pub unsafe fn reset() {
    NEXT.store(HEAP.start);
}

/// Where the next allocation would start: a mark to [`release`] back to.
pub fn mark() -> usize {
    NEXT.load()
}

/// Frees everything allocated after `mark` (from [`mark`]).
///
/// # Safety
/// No allocation made after `mark` may be live.
pub unsafe fn release(mark: usize) {
    if (HEAP.start..=NEXT.load()).contains(&mark) {
        NEXT.store(mark);
    }
}

/// Bytes handed out since the last [`reset`].
pub fn used() -> usize {
    NEXT.load() - HEAP.start
}

/// Total arena size in bytes.
pub const fn capacity() -> usize {
    HEAP.end - HEAP.start
}
