//! What the fuzz targets share: an allocator that enforces libFuzzer's `-malloc_limit_mb`
//! itself, since libFuzzer checks single allocations only through a sanitizer's malloc hooks
//! and the targets build without one (`--sanitizer none`; the code under test is safe
//! Rust, and the instrumentation alone is about twice as fast).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

/// The largest single allocation a target may make (`-malloc_limit_mb=512`).
pub const MALLOC_LIMIT: usize = 512 << 20;

/// The system allocator, aborting (a crash libFuzzer reports, with the input saved) on an
/// allocation over [`MALLOC_LIMIT`].
pub struct Limited;

fn over(size: usize) -> ! {
    // No allocation here: the message is a fixed string and the size written digit by digit.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = size;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"==sparq-fuzz== malloc limit exceeded: an allocation of ");
    let _ = err.write_all(&digits[i..]);
    let _ = err.write_all(b" bytes (limit 512 MiB)\n");
    std::process::abort()
}

// SAFETY: forwards to the system allocator unchanged; only refuses sizes over the limit.
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MALLOC_LIMIT {
            over(layout.size())
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MALLOC_LIMIT {
            over(layout.size())
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MALLOC_LIMIT {
            over(new_size)
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Installs [`Limited`] as the target's allocator.
#[macro_export]
macro_rules! limit_allocations {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::Limited = $crate::Limited;
    };
}
