//! [`NoReserveHuge`]: a `GlobalAlloc` that is the system allocator, except that blocks of
//! [`HUGE`] bytes or more are reserved with `mmap(MAP_NORESERVE)` and grown or shrunk with
//! `mremap`.
//!
//! Why it lives here: `kafka-protocol` pre-allocates arrays from lengths read off the wire
//! (`Vec::with_capacity(n)` before a single element is decoded), so a 14-byte request
//! claiming 2^31 (or, compact, 2^32) elements asks for tens or hundreds of GiB before
//! decoding finds the frame too short. Under the system allocator the kernel's overcommit
//! heuristic refuses such a request and Rust aborts the process. [`crate::walk`] now refuses
//! such frames before `kafka-protocol` sees them, so the library is safe without this
//! allocator; the broker binary still installs it as defence in depth, for a request the
//! walker's schema might someday describe differently from the decoder (after a
//! `kafka-protocol` upgrade, say): a `MAP_NORESERVE` mapping is address space only — no
//! page is committed until touched — so such a reservation succeeds, decoding fails cleanly
//! on the short frame, and the mapping is returned. The fuzz target and this crate's tests
//! run under it too, because they also run `kafka-protocol` without the walk to compare.
//!
//! It does no I/O: it only asks the kernel for address space.
//!
//! Contract and limits:
//! - Blocks below [`HUGE`], or aligned to more than [`MMAP_ALIGN`], go to [`System`]
//!   unchanged. [`HUGE`] is at glibc's largest mmap threshold, so the blocks we take over
//!   are ones glibc would have served with a fresh `mmap` anyway.
//! - A huge block is page-aligned and, from `alloc_zeroed`, zero (fresh anonymous pages).
//! - `realloc` between two huge sizes moves page tables (`mremap`), it never copies or
//!   touches the bytes, so growing a barely-used reservation stays free. Crossing the
//!   threshold in either direction copies only the smaller side (< [`HUGE`] bytes).
//! - It cannot help where the kernel refuses address space itself:
//!   `vm.overcommit_memory = 2` (where `MAP_NORESERVE` is ignored) or a small
//!   `RLIMIT_AS` (`ulimit -v`). There a null is returned and Rust aborts as before.
//! - On targets other than Linux and Android everything goes to [`System`].

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large (and aligned to at most [`MMAP_ALIGN`]) are mapped with
/// `MAP_NORESERVE` instead of going to the system allocator.
pub const HUGE: usize = 32 << 20;

/// The alignment `mmap` always provides: the smallest page size of any target we build
/// for (real pages may be larger, which only aligns better).
pub const MMAP_ALIGN: usize = 4096;

/// The process allocator for anything that decodes Kafka requests. See the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReserveHuge;

/// Whether a block of `size` bytes aligned to `align` is (or would be) one of ours.
#[inline]
fn is_huge(size: usize, align: usize) -> bool {
    cfg!(any(target_os = "linux", target_os = "android")) && size >= HUGE && align <= MMAP_ALIGN
}

unsafe impl GlobalAlloc for NoReserveHuge {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout.size(), layout.align()) {
            return sys::map(layout.size());
        }
        System.alloc(layout)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout.size(), layout.align()) {
            // Fresh anonymous pages read as zero; not writing them keeps them uncommitted.
            return sys::map(layout.size());
        }
        System.alloc_zeroed(layout)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(layout.size(), layout.align()) {
            sys::unmap(ptr, layout.size());
            return;
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        let old_huge = is_huge(layout.size(), align);
        let new_huge = is_huge(new_size, align);
        match (old_huge, new_huge) {
            (false, false) => System.realloc(ptr, layout, new_size),
            (true, true) => sys::remap(ptr, layout.size(), new_size),
            _ => {
                // Crossing the threshold: the side below it is < HUGE bytes, so this copy
                // is bounded and never walks a whole reservation.
                // SAFETY: the caller guarantees `new_size`, rounded up to `align`, does not
                // overflow isize (GlobalAlloc::realloc contract); `align` came from a Layout.
                let new_layout = Layout::from_size_align_unchecked(new_size, align);
                let new = self.alloc(new_layout);
                if !new.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new
            }
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod sys {
    /// A fresh private anonymous `MAP_NORESERVE` mapping, or null.
    pub unsafe fn map(size: usize) -> *mut u8 {
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

    pub unsafe fn unmap(ptr: *mut u8, size: usize) {
        let rc = libc::munmap(ptr.cast(), size);
        debug_assert_eq!(rc, 0, "munmap of a block we mapped failed");
    }

    /// Resizes a mapping made by [`map`], moving it if needed; the new tail (if any) is
    /// fresh, untouched, `MAP_NORESERVE` (the flag belongs to the mapping). Null on
    /// failure, in which case the old mapping is left as it was (realloc's contract).
    pub unsafe fn remap(ptr: *mut u8, old: usize, new: usize) -> *mut u8 {
        let p = libc::mremap(ptr.cast(), old, new, libc::MREMAP_MAYMOVE);
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod sys {
    // `is_huge` is always false here; these are never called.
    pub unsafe fn map(_: usize) -> *mut u8 {
        std::ptr::null_mut()
    }
    pub unsafe fn unmap(_: *mut u8, _: usize) {}
    pub unsafe fn remap(_: *mut u8, _: usize, _: usize) -> *mut u8 {
        std::ptr::null_mut()
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    //! These run under `NoReserveHuge` (counted) as the global allocator (see lib.rs), and
    //! also call it directly.
    use super::*;

    /// Resident set size of this process, in bytes.
    fn rss() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    #[test]
    fn an_absurd_reservation_costs_nothing() {
        // 64 GiB, then 512 GiB of capacity: aborts under the system allocator.
        let v: Vec<u64> = Vec::with_capacity(8 << 30);
        assert!(v.capacity() >= 8 << 30);
        let v: Vec<[u8; 128]> = Vec::with_capacity(u32::MAX as usize);
        assert!(v.capacity() >= u32::MAX as usize);
        let z = vec![0u8; 1 << 34]; // alloc_zeroed, 16 GiB: reads as zero, never touched
        assert_eq!((z[0], z[(1 << 34) - 1]), (0, 0));
    }

    #[test]
    fn growing_a_reservation_does_not_touch_it() {
        let before = rss();
        let mut v: Vec<u8> = Vec::with_capacity(8 << 30);
        v.extend_from_slice(b"head");
        v.reserve_exact(16 << 30); // huge -> huge: mremap, no 8 GiB copy
        assert!(v.capacity() >= 16 << 30);
        assert_eq!(&v[..], b"head");
        v.shrink_to_fit(); // huge -> small: copies 4 bytes
        assert_eq!(&v[..], b"head");
        assert!(rss() < before + (256 << 20), "rss grew from {before} to {}", rss());
    }

    #[test]
    fn realloc_across_the_threshold_keeps_contents() {
        let a = NoReserveHuge;
        unsafe {
            let small = Layout::from_size_align(1000, 8).unwrap();
            let p = a.alloc(small);
            assert!(!p.is_null());
            for i in 0..1000 {
                *p.add(i) = i as u8;
            }
            // small -> huge
            let p = a.realloc(p, small, HUGE + 1);
            assert!(!p.is_null() && p as usize % MMAP_ALIGN == 0);
            assert!((0..1000).all(|i| *p.add(i) == i as u8));
            *p.add(HUGE) = 0xAB;
            // huge -> bigger huge
            let l1 = Layout::from_size_align(HUGE + 1, 8).unwrap();
            let p = a.realloc(p, l1, 3 * HUGE);
            assert!(!p.is_null());
            assert!((0..1000).all(|i| *p.add(i) == i as u8));
            assert_eq!(*p.add(HUGE), 0xAB);
            assert_eq!(*p.add(3 * HUGE - 1), 0, "grown tail is fresh zero pages");
            // huge -> smaller huge
            let l2 = Layout::from_size_align(3 * HUGE, 8).unwrap();
            let p = a.realloc(p, l2, HUGE + 1);
            assert!(!p.is_null());
            assert_eq!(*p.add(HUGE), 0xAB);
            // huge -> small
            let l3 = Layout::from_size_align(HUGE + 1, 8).unwrap();
            let p = a.realloc(p, l3, 500);
            assert!(!p.is_null());
            assert!((0..500).all(|i| *p.add(i) == i as u8));
            a.dealloc(p, Layout::from_size_align(500, 8).unwrap());
        }
    }

    #[test]
    fn alignment_is_honoured_on_both_paths() {
        let a = NoReserveHuge;
        for (size, align) in [(HUGE, 4096), (HUGE, 8192), (HUGE, 1 << 21), (100, 1 << 16), (HUGE * 2, 1)] {
            let l = Layout::from_size_align(size, align).unwrap();
            unsafe {
                let p = a.alloc(l);
                assert!(!p.is_null(), "{size} aligned {align}");
                assert_eq!(p as usize % align, 0, "{size} aligned {align}");
                *p.add(size - 1) = 1;
                // Grow and shrink keep the alignment (big alignments stay with System).
                let q = a.realloc(p, l, size * 2);
                assert!(!q.is_null());
                assert_eq!(q as usize % align, 0);
                assert_eq!(*q.add(size - 1), 1);
                a.dealloc(q, Layout::from_size_align(size * 2, align).unwrap());
            }
        }
    }

    #[test]
    fn alloc_zeroed_is_zero_on_both_paths() {
        let a = NoReserveHuge;
        for size in [64, 4096, HUGE - 1, HUGE, HUGE + 12345] {
            let l = Layout::from_size_align(size, 16).unwrap();
            unsafe {
                let p = a.alloc_zeroed(l);
                assert!(!p.is_null());
                for at in [0, size / 2, size - 1] {
                    assert_eq!(*p.add(at), 0, "byte {at} of {size}");
                }
                a.dealloc(p, l);
            }
        }
    }
}
