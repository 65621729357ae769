//! Sizes checked before anything is allocated: a product of dimensions that must not
//! overflow, host buffers against the memory the machine has, device buffers against the
//! device's limits ([`Gpu::check_binding`]). A size that comes from a request or a file is
//! checked here first, so that a hostile number is a typed error, never an abort in the
//! allocator or a process killed for memory.

use super::Gpu;
use crate::error::{InputError, Result};

/// The host bound where `/proc/meminfo` is absent or unreadable: 16 GiB.
pub const FIXED_HOST_BOUND: u64 = 16 << 30;

/// Bytes of host memory one request may allocate, with where the figure comes from: the
/// machine's available memory (`MemAvailable` of `/proc/meminfo`) where present, else
/// [`FIXED_HOST_BOUND`].
pub fn host_memory_bound() -> (u64, &'static str) {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_available(&t))
        .map_or((FIXED_HOST_BOUND, "a fixed cap of 16 GiB"), |b| {
            (b, "MemAvailable of /proc/meminfo")
        })
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Bytes of `dims` elements of `elem_bytes` each, or [`InputError::Overflow`] naming `what`.
pub fn byte_size(what: &str, dims: &[usize], elem_bytes: usize) -> Result<u64> {
    dims.iter()
        .try_fold(elem_bytes as u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| {
            InputError::Overflow {
                what: what.to_string(),
            }
            .into()
        })
}

/// Refuses a host allocation of `bytes` over [`host_memory_bound`]
/// ([`InputError::HostMemory`] naming `what`).
pub fn check_host(what: &str, bytes: u64) -> Result<()> {
    let (limit, source_of_limit) = host_memory_bound();
    if bytes > limit {
        return Err(InputError::HostMemory {
            what: what.to_string(),
            bytes,
            limit,
            source_of_limit,
        }
        .into());
    }
    Ok(())
}

impl Gpu {
    /// Refuses a buffer of `dims` elements of `elem_bytes` each that overflows or that one
    /// storage binding of this device cannot hold; returns its bytes.
    pub fn check_tensor(&self, what: &str, dims: &[usize], elem_bytes: usize) -> Result<u64> {
        let bytes = byte_size(what, dims, elem_bytes)?;
        self.check_binding(what, bytes)?;
        Ok(bytes)
    }

    /// Refuses a benchmark's `n × k` f32 weight shape run at up to `max_m` activation rows
    /// before any of it is allocated: the size must not overflow; `host_copies` f32 copies
    /// of the weights (the random floats, their packed and pruned forms, and the device's
    /// copy where the device is the host) must fit [`host_memory_bound`]; one weight row
    /// must fit one storage binding (a layer splits its weights over bindings by rows, so
    /// the whole matrix need not); and the activations `max_m × k` and results `max_m × n`,
    /// each one binding, must fit it.
    pub fn check_layer_shape(
        &self,
        (n, k): (usize, usize),
        max_m: usize,
        host_copies: usize,
    ) -> Result<()> {
        let shape = format!("weight shape {n}x{k}");
        let w = byte_size(&shape, &[n, k, host_copies.max(1)], 4)?;
        check_host(&format!("{shape} ({} f32 copies)", host_copies.max(1)), w)?;
        self.check_tensor(&format!("one row of {shape} (f32)"), &[k], 4)?;
        let m = max_m.max(1);
        self.check_tensor(&format!("activations {m}x{k} of {shape}"), &[m, k], 4)?;
        self.check_tensor(&format!("results {m}x{n} of {shape}"), &[m, n], 4)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_read_in_kib() {
        let t = "MemTotal:  100 kB\nMemFree:  10 kB\nMemAvailable:   23 kB\n";
        assert_eq!(mem_available(t), Some(23 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn sizes_overflow_as_typed_errors() {
        assert_eq!(byte_size("x", &[3, 5], 4).unwrap(), 60);
        let e = byte_size(
            "w 999999999999x999999999999",
            &[999_999_999_999, 999_999_999_999],
            4,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            crate::Error::Input(InputError::Overflow { ref what }) if what.contains("999999999999x")
        ));
        assert!(matches!(
            check_host("h", u64::MAX).unwrap_err(),
            crate::Error::Input(InputError::HostMemory {
                bytes: u64::MAX,
                ..
            })
        ));
        check_host("h", 1).unwrap();
    }
}
