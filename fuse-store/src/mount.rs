//! Mounting the view: where it may be mounted (as root, only where no one
//! else can swap the mount point), clearing a stale mount of ours, and the
//! mount options (read-only, `nosuid`, `nodev`, `noexec`, who may read).

use std::io;
use std::path::Path;
use std::sync::Arc;

use fuser::{Config, MountOption, SessionACL};
use tracing::{debug, warn};

use crate::{mountinfo, Access, Backing, Options, View};

/// Why the view could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(
        "the mount point {0} does not exist: create an empty directory there first (mkdir -p {0})"
    )]
    Missing(String),
    #[error(
        "{0} is already a mount point (a running `hypernar mount`, or another file system): \
         unmount it first (fusermount3 -u {0}) or pick another empty directory"
    )]
    Busy(String),
    #[error("{0}: the mount point is not an empty directory ({1})")]
    MountPoint(String, String),
    #[error(
        "cannot mount on {at}: {source} (is FUSE available? /dev/fuse must exist, and non-root \
         users need fusermount3 from the fuse3 package)"
    )]
    Fuse {
        at: String,
        #[source]
        source: io::Error,
    },
}

/// A mounted view; unmounted when dropped.
#[derive(Debug)]
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    at: std::path::PathBuf,
}

impl Mounted {
    pub fn path(&self) -> &Path {
        &self.at
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            debug!(at = %self.at.display(), "unmounting");
            drop(s);
        }
    }
}

/// Clears a mount left at `at` by a process that died (its `stat` then
/// fails with "transport endpoint is not connected"); returns whether one
/// was there. Only a hypernar view is cleared: another dead file system there (or a
/// path whose mount is not ours) is left alone, and mounting then fails as
/// busy.
pub fn clear_stale_mount(at: &Path) -> bool {
    // The kernel may still answer `stat` from its cache; listing asks the
    // (dead) filesystem.
    let dead = |r: io::Result<()>| r.is_err_and(|e| e.raw_os_error() == Some(libc_enotconn()));
    if !(dead(std::fs::metadata(at).map(drop)) || dead(std::fs::read_dir(at).map(drop))) {
        return false;
    }
    match mountinfo::entry_at(at) {
        Some(e) if e.is_hypernar() => {}
        other => {
            warn!(at = %at.display(), mounted = ?other.map(|e| e.fstype), "a dead mount that is not a hypernar view is there; leaving it alone");
            return false;
        }
    }
    warn!(at = %at.display(), "a stale mount from an earlier run is there; unmounting it");
    for cmd in [
        vec!["fusermount3", "-u", "-z"],
        vec!["fusermount", "-u", "-z"],
        vec!["umount", "-l"],
    ] {
        let ok = std::process::Command::new(cmd[0])
            .args(&cmd[1..])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            break;
        }
    }
    true
}

/// As root, a mount point someone else controls could be swapped for a
/// link to anywhere between our checks and the mount (or the lazy unmount
/// of a stale one): the mount point must be a directory root owns, not a
/// link, under directories only root can change (or sticky ones, as
/// /tmp).
fn safe_for_root(at: &Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(meta) = std::fs::symlink_metadata(at) else {
        return Ok(()); // missing: said below
    };
    if meta.file_type().is_symlink() {
        return Err("it is a symbolic link: name the directory itself".into());
    }
    if meta.uid() != 0 {
        return Err(format!(
            "it belongs to uid {}: as root, mount only on a directory root owns",
            meta.uid()
        ));
    }
    let parent = match at.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => Path::new(".").to_owned(),
    };
    let parent = std::fs::canonicalize(&parent).map_err(|e| e.to_string())?;
    for dir in parent.ancestors() {
        let m = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mode = m.permissions().mode();
        let others_write = mode & 0o022 != 0 && mode & 0o1000 == 0;
        if m.uid() != 0 || others_write {
            return Err(format!(
                "{} can be changed by another user (owner uid {}, mode {:o}): as root, mount \
                 only under directories root alone controls",
                dir.display(),
                m.uid(),
                mode & 0o7777
            ));
        }
    }
    Ok(())
}

/// Whether something is mounted on `at` (per /proc/self/mountinfo).
fn is_mount_point(at: &Path) -> bool {
    mountinfo::entry_at(at).is_some()
}

/// `ENOTCONN` on Linux.
const fn libc_enotconn() -> i32 {
    107
}

/// Mounts the view of `source` on `at` (an empty directory; a stale mount
/// there is cleared first) in background threads.
pub fn mount(source: Arc<dyn Backing>, at: &Path, opts: &Options) -> Result<Mounted, MountError> {
    let shown = at.display().to_string();
    if hypernar_feed::private::euid() == 0 {
        if let Err(why) = safe_for_root(at) {
            return Err(MountError::MountPoint(shown, why));
        }
    }
    clear_stale_mount(at);
    if is_mount_point(at) {
        return Err(MountError::Busy(shown));
    }
    match std::fs::read_dir(at) {
        Ok(mut d) => {
            if d.next().is_some() {
                return Err(MountError::MountPoint(shown, "it is not empty".into()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(MountError::Missing(shown)),
        Err(e) => return Err(MountError::MountPoint(shown, e.to_string())),
    }
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoExec,
        MountOption::NoAtime,
        MountOption::DefaultPermissions,
        MountOption::FSName("hypernar".into()),
        MountOption::Subtype("hypernar".into()),
    ];
    config.acl = match opts.access {
        Access::Owner => SessionACL::Owner,
        Access::RootAndOwner => SessionACL::RootAndOwner,
        Access::Everyone => SessionACL::All,
    };
    config.n_threads = Some(opts.threads.max(1));
    let view = View::new(source, opts);
    let session = fuser::spawn_mount(view, at, &config)
        .map_err(|source| MountError::Fuse { at: shown, source })?;
    Ok(Mounted {
        session: Some(session),
        at: at.to_path_buf(),
    })
}
