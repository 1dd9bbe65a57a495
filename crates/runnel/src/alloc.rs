//! The process allocator: the system allocator, except that very large blocks are
//! reserved with `mmap(MAP_NORESERVE)`.
//!
//! Why: `kafka-protocol` pre-allocates arrays from lengths read off the wire, so a
//! 14-byte request claiming 2^31 elements asks for tens of GiB before decoding finds the
//! frame too short. With the system allocator that aborts the process. A MAP_NORESERVE
//! mapping costs nothing until its pages are touched; decoding then fails cleanly on the
//! short frame and the mapping is returned. Real allocations of this size (beyond any
//! frame we accept) never happen otherwise.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large bypass the system allocator.
const HUGE: usize = 1 << 30;

pub struct Allocator;

unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= HUGE && layout.align() <= page_size() {
            return map(layout.size());
        }
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= HUGE && layout.align() <= page_size() {
            libc::munmap(ptr.cast(), layout.size());
            return;
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= HUGE && layout.align() <= page_size() {
            return map(layout.size()); // anonymous mappings are zeroed
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_huge = layout.size() >= HUGE && layout.align() <= page_size();
        let new_huge = new_size >= HUGE && layout.align() <= page_size();
        if !old_huge && !new_huge {
            return System.realloc(ptr, layout, new_size);
        }
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

fn page_size() -> usize {
    4096
}

unsafe fn map(size: usize) -> *mut u8 {
    let p = libc::mmap(
        std::ptr::null_mut(),
        size,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
        0,
    );
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_absurd_reservation_costs_nothing() {
        // 64 GiB of capacity: would abort under the system allocator on this machine.
        let v: Vec<u64> = Vec::with_capacity(8 << 30);
        assert!(v.capacity() >= 8 << 30);
    }
}
