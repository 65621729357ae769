//! Files sparq writes, whole or not at all.
//!
//! [`write_atomic`] writes into a hidden temporary file beside the target
//! (`.NAME.partial-XXXXXX`), fsyncs it, renames it over the target and fsyncs the directory:
//! a reader (or a process that mapped the old file) sees the old file or the complete new
//! one, and a write that fails or is killed never leaves a truncated file at the target's
//! name. Plain `std::io` only, so that [`crate::error`] can build on it; callers turn the
//! `io::Error` into one that names the requested path.

use std::io::{BufWriter, Write};
use std::path::Path;

/// Writes the file at `path` through `write`, atomically (see the [module docs](self)).
///
/// The new file gets the permissions a plain `File::create` would (0666 less the umask),
/// not the 0600 of a temporary file. On any error the temporary file is removed and `path`
/// is left as it was (the old file, or none).
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let prefix = format!(".{}.partial-", name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The mode goes to open(2), which applies the umask, as File::create does.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    // Dropping `tmp` on an early return removes the temporary file.
    let tmp = builder.tempfile_in(dir).map_err(without_path)?;
    {
        let mut out = BufWriter::with_capacity(1 << 20, tmp.as_file());
        write(&mut out)?;
        out.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| without_path(e.error))?;
    // The rename is durable only once the directory entry is.
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// `e` without the temporary file's path that `tempfile` appends to its message (` at path
/// "..."`; its error type is private and hides the OS error): the caller names the requested
/// path, and the temporary name means nothing to a user.
fn without_path(e: std::io::Error) -> std::io::Error {
    let msg = e.to_string();
    match msg.rfind(" at path \"") {
        Some(i) if e.get_ref().is_some() => std::io::Error::new(e.kind(), &msg[..i]),
        _ => e,
    }
}

/// Whether `a` and `b` name the same existing file (after symlinks; hard links count): the
/// same device and inode on unix, the same canonical path elsewhere. `false` when either is
/// missing.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_the_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        std::fs::write(&path, b"old").unwrap();
        write_atomic(&path, |w| w.write_all(b"new contents")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        assert_eq!(entries(dir.path()), ["out.bin"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        std::fs::write(&path, b"old").unwrap();
        let e = write_atomic(&path, |w| {
            w.write_all(&[7; 3 << 20])?;
            Err(std::io::Error::other("half way"))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "half way");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["out.bin"]);
    }

    #[test]
    fn a_missing_directory_or_a_directory_target_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_atomic(&dir.path().join("no/such/f"), |_| Ok(())).is_err());
        std::fs::create_dir(dir.path().join("d")).unwrap();
        assert!(write_atomic(&dir.path().join("d"), |_| Ok(())).is_err());
        assert_eq!(entries(dir.path()), ["d"]);
        assert!(write_atomic(Path::new("/"), |_| Ok(())).is_err());
    }

    #[test]
    fn same_file_sees_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"x").unwrap();
        std::fs::write(&b, b"x").unwrap();
        assert!(same_file(&a, &a));
        assert!(!same_file(&a, &b));
        assert!(!same_file(&a, &dir.path().join("missing")));
        let hard = dir.path().join("hard");
        std::fs::hard_link(&a, &hard).unwrap();
        assert!(same_file(&a, &hard));
        #[cfg(unix)]
        {
            let soft = dir.path().join("soft");
            std::os::unix::fs::symlink(&a, &soft).unwrap();
            assert!(same_file(&soft, &a));
        }
    }
}
