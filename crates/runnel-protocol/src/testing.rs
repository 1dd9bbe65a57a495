//! Helpers for this crate's tests, its integration tests and the fuzz targets; not an API.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

pub use crate::walk::generate::frame as generated_frame;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// A global allocator that passes everything to `A` and records, per thread, the largest
/// single block asked for (by alloc, alloc_zeroed or realloc), whether or not it was given.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counting<A>(pub A);

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        self.0.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        self.0.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        self.0.realloc(ptr, layout, new_size)
    }
}

/// Runs `f` and returns its result with the largest single allocation this thread asked
/// for while it ran (meaningful only under [`Counting`]).
/// The walker's schema, parsed once per process on first use, is parsed before: what that
/// allocates is no frame's doing.
pub fn largest_allocation_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    crate::walk::covers(kafka_protocol::messages::ApiKey::Produce, 9);
    LARGEST.with(|l| l.set(0));
    let r = f();
    (r, LARGEST.with(|l| l.get()))
}
