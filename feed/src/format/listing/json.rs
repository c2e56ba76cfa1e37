//! A listing as the JSON Nix writes next to a NAR (`<hash>.ls`), produced
//! a chunk at a time: a listing of 2^21 entries makes well over 100 MiB of
//! JSON, which an HTTP answer should not hold whole per request. The walk
//! keeps only a stack of the directories being written (as deep as the
//! tree), so a chunk costs its own size. Pure.

use std::ops::Deref;

use super::{Kind, Listing};

/// Bytes a chunk grows to before it is handed out (the last may be
/// shorter; one entry may take it a little past).
pub const CHUNK: usize = 64 << 10;

/// The JSON of a listing, as an iterator of chunks that concatenate to
/// [`Listing::to_nix_json`]. `L` is a `&Listing` or an `Arc<Listing>`.
#[derive(Debug)]
pub struct NixJson<L> {
    listing: L,
    /// Directories being written, each with the next of its entries.
    open: Vec<(u32, usize)>,
    started: bool,
    done: bool,
}

impl<L: Deref<Target = Listing>> NixJson<L> {
    pub fn new(listing: L) -> Self {
        NixJson {
            listing,
            open: Vec::new(),
            started: false,
            done: false,
        }
    }

    fn entry(&mut self, index: u32, out: &mut String) {
        use std::fmt::Write as _;
        match &self.listing.entries[index as usize].kind {
            Kind::Directory { .. } => {
                out.push_str(r#"{"type":"directory","entries":{"#);
                self.open.push((index, 0));
            }
            Kind::Regular {
                executable,
                size,
                offset,
            } => {
                let _ = write!(out, r#"{{"type":"regular","size":{size}"#);
                if *executable {
                    out.push_str(r#","executable":true"#);
                }
                let _ = write!(out, r#","narOffset":{offset}}}"#);
            }
            Kind::Symlink { target } => {
                out.push_str(r#"{"type":"symlink","target":"#);
                json_string(out, target);
                out.push('}');
            }
        }
    }
}

impl<L: Deref<Target = Listing>> Iterator for NixJson<L> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        let mut out = String::new();
        if !self.started {
            self.started = true;
            out.push_str(r#"{"version":1,"root":"#);
            self.entry(0, &mut out);
        }
        while out.len() < CHUNK {
            let Some(&mut (dir, next)) = self.open.last_mut() else {
                out.push('}');
                self.done = true;
                break;
            };
            let Kind::Directory { children } = &self.listing.entries[dir as usize].kind else {
                unreachable!("only directories are opened")
            };
            match children.get(next).copied() {
                Some(child) => {
                    if next > 0 {
                        out.push(',');
                    }
                    if let Some(top) = self.open.last_mut() {
                        top.1 += 1;
                    }
                    json_string(&mut out, &self.listing.entries[child as usize].name);
                    out.push(':');
                    self.entry(child, &mut out);
                }
                None => {
                    out.push_str("}}");
                    self.open.pop();
                }
            }
        }
        Some(out)
    }
}

fn json_string(out: &mut String, bytes: &[u8]) {
    let s = String::from_utf8_lossy(bytes);
    out.push_str(&serde_json::to_string(&*s).expect("strings serialize"));
}
