//! `DATA/recent`: when each path was last asked for, kept across restarts
//! so that a bounded disk (`serve --max-size`) evicts by real use and not
//! by what happened to be asked since the node started.
//!
//! One line per path, newest first: `<unix milliseconds> <base name>`
//! (`1795000000000 abc…-hello-2.12`). At most [`MAX_ENTRIES`] lines are
//! written (the newest) and at most [`MAX_FILE`] bytes read; a line that
//! does not parse is skipped, so a damaged file costs some history, never
//! the start. The file is replaced whole (written beside it, synced,
//! renamed), so a crash leaves the old or the new one. Losing it loses
//! only the order: paths not in it count as never used.

use std::io::{Read, Write};
use std::path::Path;

use hypernar_feed::format::storepath::StorePath;

/// At most this many paths are remembered (the most recent).
pub const MAX_ENTRIES: usize = 1 << 18;
/// At most this much of the file is read (a line is at most about 235
/// bytes: 20 digits, a space, a 211-byte base name, a newline).
pub const MAX_FILE: u64 = 64 << 20;

/// A path and when it was last used, in milliseconds since the epoch.
pub type Used = (StorePath, u64);

/// The file's text: newest first, at most [`MAX_ENTRIES`] lines.
pub fn render(entries: &[Used]) -> String {
    let mut sorted: Vec<&Used> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.base_name().cmp(b.0.base_name()))
    });
    let mut text = String::new();
    for (path, at) in sorted.into_iter().take(MAX_ENTRIES) {
        text.push_str(&format!("{at} {}\n", path.base_name()));
    }
    text
}

/// The entries of a file's text: lines that parse, at most
/// [`MAX_ENTRIES`]; a path named twice keeps its latest time.
pub fn parse(text: &str) -> Vec<Used> {
    let mut seen = std::collections::HashMap::new();
    for line in text.lines() {
        if seen.len() >= MAX_ENTRIES {
            break;
        }
        let Some((at, name)) = line.split_once(' ') else {
            continue;
        };
        let (Ok(at), Ok(path)) = (at.parse::<u64>(), StorePath::from_base_name(name)) else {
            continue;
        };
        let e = seen.entry(path).or_insert(at);
        *e = (*e).max(at);
    }
    seen.into_iter().collect()
}

/// Reads the file: no file is no history.
pub fn load(path: &Path) -> std::io::Result<Vec<Used>> {
    let mut text = String::new();
    match std::fs::File::open(path) {
        Ok(f) => {
            // Invalid UTF-8 is an error of its own: read bytes, keep lines.
            let mut bytes = Vec::new();
            f.take(MAX_FILE).read_to_end(&mut bytes)?;
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(parse(&text))
}

/// Replaces the file with `entries`.
pub fn store(path: &Path, entries: &[Used]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = hypernar_feed::private::create_temp(&tmp)?;
    f.write_all(render(entries).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: &str) -> StorePath {
        StorePath::from_base_name(&format!("{:0>32}-{n}", 1)).unwrap()
    }

    #[test]
    fn entries_round_trip_newest_first() {
        let entries = vec![(p("old"), 5), (p("new"), 9), (p("mid"), 7)];
        let text = render(&entries);
        assert!(text.starts_with("9 "), "{text}");
        let mut back = parse(&text);
        back.sort_by_key(|e| e.1);
        assert_eq!(back, vec![(p("old"), 5), (p("mid"), 7), (p("new"), 9)]);
    }

    #[test]
    fn damaged_lines_are_skipped_and_a_repeated_path_keeps_its_latest_use() {
        let good = p("good").base_name().to_owned();
        let text = format!(
            "12 {good}\nnot a line\n-3 {good}\n99999999999999999999999 {good}\n7 /nix/store/x\n\n15 {good}\n3 {good} trailing\n"
        );
        assert_eq!(parse(&text), vec![(p("good"), 15)]);
        assert_eq!(parse(""), vec![]);
    }

    #[test]
    fn at_most_max_entries_are_written_and_read() {
        let many: Vec<Used> = (0..MAX_ENTRIES as u64 + 10)
            .map(|i| (p(&format!("n{i}")), i))
            .collect();
        let text = render(&many);
        assert_eq!(text.lines().count(), MAX_ENTRIES);
        // The oldest ten are the ones left out.
        assert!(!text.contains(&format!(" {}\n", p("n9").base_name())));
        assert!(text.contains(&format!(" {}\n", p("n10").base_name())));
        let doubled = format!("{text}{text}");
        assert_eq!(parse(&doubled).len(), MAX_ENTRIES);
    }

    #[test]
    fn a_file_is_replaced_whole_and_a_missing_one_is_no_history() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("recent");
        assert_eq!(load(&f).unwrap(), vec![]);
        store(&f, &[(p("a"), 1)]).unwrap();
        store(&f, &[(p("b"), 2)]).unwrap();
        assert_eq!(load(&f).unwrap(), vec![(p("b"), 2)]);
        assert!(!f.with_extension("tmp").exists());
        std::fs::write(&f, b"3 \xff\xfe\n4 ").unwrap();
        assert_eq!(load(&f).unwrap(), vec![]);
    }
}
