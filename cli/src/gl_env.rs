//! The environment Mesa's EGL (wgpu's GL backend) needs to start without printing errors, as
//! `scripts/setup.sh` sets it for the tests: without `XDG_RUNTIME_DIR` it prints `error:
//! XDG_RUNTIME_DIR is invalid or not set in the environment` on every start (in containers,
//! over ssh, under cron), and without a DRM device it first tries a hardware driver and logs
//! `DRI2: failed to load driver`.

/// Sets both, where unset, before the process starts any thread (the environment is not
/// thread-safe): [`runtime_dir`] and [`software_gl`].
pub fn prepare() {
    runtime_dir();
    software_gl();
}

/// Without a DRM device (`/dev/dri`) Mesa's EGL can only be software (llvmpipe), the same
/// adapters either way: `LIBGL_ALWAYS_SOFTWARE` (read by Mesa only) skips the hardware
/// attempt. Left alone where a DRM device exists or the variable is set.
fn software_gl() {
    if cfg!(target_os = "linux")
        && !std::path::Path::new("/dev/dri").exists()
        && std::env::var_os("LIBGL_ALWAYS_SOFTWARE").is_none()
    {
        // SAFETY: called first thing in `main`, before any thread exists.
        unsafe { std::env::set_var("LIBGL_ALWAYS_SOFTWARE", "1") };
    }
}

/// Points `XDG_RUNTIME_DIR` at `$TMPDIR/sparq-runtime-UID` (made mode 0700 if missing) when it
/// is unset or not a directory. Leaves it alone when that directory is not safely ours.
fn runtime_dir() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let set =
            std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
        if set {
            return;
        }
        // /proc/self belongs to the process's user: its uid without a libc call.
        let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
            return;
        };
        let dir = std::env::temp_dir().join(format!("sparq-runtime-{uid}"));
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        // Another user could have made it first in a shared /tmp: only a directory of ours,
        // closed to others, is a runtime directory.
        let ours = std::fs::symlink_metadata(&dir)
            .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.permissions().mode() & 0o077 == 0);
        if ours {
            // SAFETY: called first thing in `main`, before any thread exists.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}
