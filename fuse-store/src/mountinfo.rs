//! What is mounted where, from `/proc/self/mountinfo`: enough to tell
//! whether a directory is a mount point and whether that mount is one of
//! ours (before a stale one is lazily unmounted: as root, `umount -l` on a
//! path someone else chose could take down any file system). The line
//! parser is pure.

use std::path::{Path, PathBuf};

/// One line of mountinfo, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount point, escaped as mountinfo writes it (see [`escape`]).
    pub mount_point: String,
    /// The file system type (`fuse.hypernar` for ours).
    pub fstype: String,
    /// The mount source (`hypernar` for ours).
    pub source: String,
}

impl MountEntry {
    /// Whether this is a hypernar view (FSName and Subtype `hypernar`).
    pub fn is_hypernar(&self) -> bool {
        self.fstype == "fuse.hypernar"
            || (self.fstype.starts_with("fuse") && self.source == "hypernar")
    }
}

/// Parses one mountinfo line: `id parent maj:min root mount-point options
/// [optional fields...] - fstype source super-options`.
pub fn parse_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let mount_point = left.split(' ').nth(4)?.to_owned();
    let mut right = right.split(' ');
    let fstype = right.next()?.to_owned();
    let source = right.next()?.to_owned();
    Some(MountEntry {
        mount_point,
        fstype,
        source,
    })
}

/// A path as mountinfo writes it: space, tab, newline and backslash in
/// octal.
pub fn escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

/// `at` made absolute without looking at `at` itself (a dead FUSE mount
/// cannot be stat'ed): its parent resolved, its own name appended.
fn absolute(at: &Path) -> Option<PathBuf> {
    let name = at.file_name()?;
    let parent = match at.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Some(std::fs::canonicalize(parent).ok()?.join(name))
}

/// The topmost mount on `at` in `mountinfo` (later lines are mounted over
/// earlier ones), if any.
pub fn entry_in(mountinfo: &str, at: &Path) -> Option<MountEntry> {
    let want = escape(&absolute(at)?);
    mountinfo
        .lines()
        .rev()
        .filter_map(parse_line)
        .find(|e| e.mount_point == want)
}

/// The topmost mount on `at`, per this process's mountinfo.
pub fn entry_at(at: &Path) -> Option<MountEntry> {
    entry_in(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        at,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
40 22 0:35 / /tmp/m\\040x rw,nosuid,nodev,relatime shared:20 - fuse.hypernar hypernar ro,user_id=0,group_id=0
41 22 0:36 / /tmp/other rw,relatime - fuse.sshfs me@host:/ rw,user_id=0
42 22 0:37 / /tmp/plain rw,relatime master:3 - tmpfs tmpfs rw
43 42 0:38 / /tmp/plain rw,relatime - fuse hypernar ro
";

    #[test]
    fn lines_are_read_with_and_without_optional_fields() {
        let e = parse_line(INFO.lines().nth(1).unwrap()).unwrap();
        assert_eq!(e.mount_point, "/tmp/m\\040x");
        assert!(e.is_hypernar());
        let e = parse_line(INFO.lines().nth(2).unwrap()).unwrap();
        assert_eq!(
            (e.fstype.as_str(), e.source.as_str()),
            ("fuse.sshfs", "me@host:/")
        );
        assert!(!e.is_hypernar());
        assert_eq!(parse_line("no separator here"), None);
        assert_eq!(parse_line("1 2 3 - ext4"), None);
    }

    #[test]
    fn the_topmost_mount_on_a_path_is_found() {
        let tmp = Path::new("/tmp");
        assert!(entry_in(INFO, &tmp.join("m x")).unwrap().is_hypernar());
        assert!(!entry_in(INFO, &tmp.join("other")).unwrap().is_hypernar());
        // A hypernar view mounted over a tmpfs: the view is on top.
        assert!(entry_in(INFO, &tmp.join("plain")).unwrap().is_hypernar());
        assert_eq!(entry_in(INFO, &tmp.join("nothing")), None);
        assert_eq!(
            escape(Path::new("/a b\\c\td\ne")),
            "/a\\040b\\134c\\011d\\012e"
        );
    }
}
