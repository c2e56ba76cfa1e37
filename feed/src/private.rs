//! A data directory only its owner can read.
//!
//! What a data directory holds is secret from other local users: writable
//! feeds' `oplog` headers carry their ed25519 secret (hypercore 0.16 keeps
//! it there), an audience feed's blocks are the keys it released, and
//! `recent` says which store paths this machine used. So every directory
//! in it is created 0700 and every file 0600 (temporary files too), an
//! existing directory is tightened when it is opened, and one owned by
//! another user is refused: its owner could have planted files or links
//! for us (as root) to follow.
//!
//! [`tighten`] is a pure walk over what is on disk that changes only
//! permission bits; it never follows a symbolic link (chmod would act on
//! its target) and never deletes anything.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every directory in a data directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in a data directory.
pub const FILE_MODE: u32 = 0o600;

/// Why a data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrivateError {
    #[error(
        "{path} belongs to uid {owner}, not to this user (uid {me}): refusing to use it, \
         since its owner could have planted files in it. Use a data directory of your own \
         (--data), or run as its owner"
    )]
    Foreign { path: PathBuf, owner: u32, me: u32 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> PrivateError + '_ {
    move |source| PrivateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Sets this process's umask to 077, so whatever it creates without an
/// explicit mode (a socket, a directory a library makes) is its owner's
/// only. What is meant to be public (a web-seed copy) sets its modes itself.
pub fn owner_only_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Creates `dir` and any missing parents with mode 0700 (existing ones are
/// left as they are).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Opens `path` for reading and writing, creating it with mode 0600 if it
/// is missing; a symbolic link there is not followed (ELOOP).
pub fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Creates a new temporary file at `path` with mode 0600, replacing a stale
/// one a crash left (its name is unlinked first, never followed: a link
/// planted there is removed, not written through).
pub fn create_temp(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Makes `data_dir` ready: created 0700 if missing; otherwise refused if
/// another user owns it, and tightened. Returns how many entries were
/// tightened.
pub fn prepare(data_dir: &Path) -> Result<usize, PrivateError> {
    match std::fs::symlink_metadata(data_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_dir_all(data_dir).map_err(io_at(data_dir))?;
            return Ok(0);
        }
        Err(e) => return Err(io_at(data_dir)(e)),
        Ok(_) => {}
    }
    // The directory itself may be reached through a link the user made
    // (`--data ~/cache` → another disk): follow that one, and only that.
    let meta = std::fs::metadata(data_dir).map_err(io_at(data_dir))?;
    check_owner(data_dir, &meta)?;
    tighten(data_dir)
}

fn check_owner(path: &Path, meta: &std::fs::Metadata) -> Result<(), PrivateError> {
    let me = euid();
    if meta.uid() != me {
        return Err(PrivateError::Foreign {
            path: path.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    Ok(())
}

/// Removes group and other permission bits from `root` and everything
/// under it (directories to at most 0700, files to at most 0600); refuses
/// any entry another user owns. Links are neither followed nor changed.
pub fn tighten(root: &Path) -> Result<usize, PrivateError> {
    let mut changed = 0;
    let mut stack = vec![root.to_owned()];
    let mut first = true;
    while let Some(dir) = stack.pop() {
        let meta = if first {
            std::fs::metadata(&dir)
        } else {
            std::fs::symlink_metadata(&dir)
        }
        .map_err(io_at(&dir))?;
        first = false;
        changed += tighten_one(&dir, &meta)?;
        let entries = std::fs::read_dir(&dir).map_err(io_at(&dir))?;
        for entry in entries {
            let entry = entry.map_err(io_at(&dir))?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).map_err(io_at(&path))?;
            if meta.file_type().is_dir() {
                stack.push(path);
            } else if !meta.file_type().is_symlink() {
                changed += tighten_one(&path, &meta)?;
            }
        }
    }
    Ok(changed)
}

/// `meta` is the entry's own metadata (a link is never passed here).
fn tighten_one(path: &Path, meta: &std::fs::Metadata) -> Result<usize, PrivateError> {
    check_owner(path, meta)?;
    let mode = meta.permissions().mode() & 0o7777;
    let want = if meta.is_dir() {
        mode & DIR_MODE
    } else {
        mode & FILE_MODE
    };
    if want == mode {
        return Ok(0);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(want)).map_err(io_at(path))?;
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_loose_tree_is_tightened_and_links_are_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("feeds/abc")).unwrap();
        std::fs::write(data.join("feeds/abc/oplog"), b"secret").unwrap();
        std::fs::write(data.join("recent"), b"paths").unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"not ours to change").unwrap();
        for (p, m) in [
            (data.clone(), 0o755),
            (data.join("feeds"), 0o775),
            (data.join("feeds/abc"), 0o755),
            (data.join("feeds/abc/oplog"), 0o644),
            (data.join("recent"), 0o666),
            (outside.clone(), 0o644),
        ] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
        }
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();
        assert_eq!(prepare(&data).unwrap(), 5);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("feeds")), 0o700);
        assert_eq!(mode(&data.join("feeds/abc")), 0o700);
        assert_eq!(mode(&data.join("feeds/abc/oplog")), 0o600);
        assert_eq!(mode(&data.join("recent")), 0o600);
        assert_eq!(mode(&outside), 0o644, "a link's target is not changed");
        assert_eq!(prepare(&data).unwrap(), 0, "nothing left to tighten");
        // Tighter modes stay as they are.
        std::fs::set_permissions(data.join("recent"), std::fs::Permissions::from_mode(0o400))
            .unwrap();
        assert_eq!(prepare(&data).unwrap(), 0);
        assert_eq!(mode(&data.join("recent")), 0o400);
    }

    #[test]
    fn a_missing_directory_is_created_private_with_its_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("state/hypernar");
        assert_eq!(prepare(&data).unwrap(), 0);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&tmp.path().join("state")), 0o700);
    }

    #[test]
    fn temp_files_are_private_replace_stale_ones_and_never_write_through_links() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let temp = tmp.path().join("x.tmp");
        std::os::unix::fs::symlink(&target, &temp).unwrap();
        use std::io::Write;
        create_temp(&temp).unwrap().write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert_eq!(std::fs::read(&temp).unwrap(), b"new");
        assert_eq!(mode(&temp), 0o600);
        // open_rw refuses a link outright.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open_rw(&link).is_err());
        let f = tmp.path().join("f");
        open_rw(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        if euid() != 0 {
            return; // only root can hand a directory to another user
        }
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).unwrap();
        rustix::fs::chown(
            &data,
            Some(rustix::fs::Uid::from_raw(65534)),
            Some(rustix::fs::Gid::from_raw(65534)),
        )
        .unwrap();
        let err = prepare(&data).unwrap_err();
        assert!(
            matches!(err, PrivateError::Foreign { owner: 65534, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("--data"));
    }
}
