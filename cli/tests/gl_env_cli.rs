//! Without `XDG_RUNTIME_DIR` (and, with no DRM device, `LIBGL_ALWAYS_SOFTWARE`) the binary
//! sets what EGL (the GL backend) needs, so that it does not print errors on every start.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sparq");

#[test]
fn a_missing_runtime_dir_gets_a_private_one() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("devices")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("LIBGL_ALWAYS_SOFTWARE")
        .env_remove("RUST_LOG")
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // `devices` writes its table to stdout: EGL's complaints were all stderr had.
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
    assert!(!err.contains("DRI2"), "{err}");
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let dir = tmp.path().join(format!("sparq-runtime-{uid}"));
    let m = std::fs::metadata(&dir).unwrap();
    assert!(m.is_dir());
    assert_eq!(m.permissions().mode() & 0o777, 0o700);
}

#[test]
fn a_runtime_dir_of_another_mode_is_not_used() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let tmp = tempfile::tempdir().unwrap();
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    // Open to others: not a runtime directory, so the binary leaves the variable unset and
    // runs as before (EGL may complain; the command still works).
    let dir = tmp.path().join(format!("sparq-runtime-{uid}"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(BIN)
        .arg("devices")
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o777,
        "the binary must not change a directory it did not make"
    );
}
