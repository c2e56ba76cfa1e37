//! The web seed: a static copy of a publisher's feeds that any HTTP server,
//! CDN or object store can host, and that fetchers read with plain range
//! requests, verifying every block exactly as one from a peer
//! (docs/protocol.md, "Web seed").
//!
//! ```text
//! ROOT/v1/<discovery key, hex>/head   the signed state: length, fork, byte length, signature
//! ROOT/v1/<discovery key, hex>/tree   hypercore's tree file: node i at 40·i, u64le(size) || BLAKE2b-256
//! ROOT/v1/<discovery key, hex>/data   hypercore's data file: the blocks back to back
//! ```
//!
//! Directories are named by discovery key, as peers announce feeds, so the
//! URL does not hand out a feed's public key. A fetcher that knows the key
//! reads `head`, then the tree nodes a proof needs (each at a fixed offset)
//! and a block's bytes (at the offset the tree's sizes give), and hands
//! hypercore the same `Proof` a peer would have sent.
//!
//! The files only grow: a sync appends what is new to `data`, then `tree`,
//! then replaces `head` by renaming, so a reader that sees a head finds
//! every byte it names.

use std::fmt;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use blake2::digest::consts::U32;
use blake2::digest::{Mac, Update};
use hypercore_schema::{Node, RequestUpgrade};

use crate::error::StoreError;
use crate::store::Feed;

/// Bytes per tree node in the tree file.
pub const NODE_SIZE: u64 = 40;
/// Largest `head` file a reader accepts.
pub const MAX_HEAD_LEN: usize = 1024;
/// Most blocks a head may claim (2^40): the tree math doubles lengths,
/// and no feed comes near.
pub const MAX_LENGTH: u64 = 1 << 40;

/// Version directory of this layout.
pub const LAYOUT: &str = "v1";

/// The discovery key of a feed (what peers announce; BLAKE2b-256 keyed by
/// the public key, of "hypercore"), as hypercore-protocol computes it.
pub fn discovery_key(public_key: &[u8; 32]) -> [u8; 32] {
    let mut mac = blake2::Blake2bMac::<U32>::new_with_salt_and_personal(public_key, &[], &[])
        .expect("a 32-byte key is valid");
    Update::update(&mut mac, b"hypercore");
    mac.finalize().into_bytes().into()
}

/// Path of a feed's directory under a web seed's root (URL or directory).
pub fn feed_path(public_key: &[u8; 32]) -> String {
    format!("{LAYOUT}/{}", hex::encode(discovery_key(public_key)))
}

/// The signed state of a web-seed copy.
#[derive(Clone, PartialEq, Eq)]
pub struct Head {
    pub length: u64,
    pub fork: u64,
    pub byte_length: u64,
    pub signature: [u8; 64],
}

impl fmt::Debug for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Head")
            .field("length", &self.length)
            .field("fork", &self.fork)
            .field("byte_length", &self.byte_length)
            .finish_non_exhaustive()
    }
}

/// Why a `head` file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("web seed head is over {MAX_HEAD_LEN} bytes")]
    TooLong,
    #[error("web seed head is not UTF-8")]
    NotUtf8,
    #[error("web seed head: line {0} is not `key: value`")]
    Line(usize),
    #[error("web seed head: `{0}` is missing")]
    Missing(&'static str),
    #[error("web seed head: `{0}` appears twice")]
    Repeated(String),
    #[error("web seed head: bad value for `{0}`")]
    Value(&'static str),
    #[error("web seed head has layout version {0}; this build reads 1")]
    Version(String),
}

impl Head {
    /// The text of a `head` file.
    pub fn render(&self) -> String {
        format!(
            "hypernar-web-seed: 1\nlength: {}\nfork: {}\nbyte-length: {}\nsignature: {}\n",
            self.length,
            self.fork,
            self.byte_length,
            hex::encode(self.signature)
        )
    }

    /// Parses a `head` file strictly: the four fields and the version,
    /// each once; unknown keys are refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, HeadError> {
        if bytes.len() > MAX_HEAD_LEN {
            return Err(HeadError::TooLong);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| HeadError::NotUtf8)?;
        let (mut version, mut length, mut fork, mut byte_length, mut signature) =
            (None, None, None, None, None);
        fn set<T>(slot: &mut Option<T>, key: &str, v: T) -> Result<(), HeadError> {
            if slot.replace(v).is_some() {
                return Err(HeadError::Repeated(key.to_owned()));
            }
            Ok(())
        }
        let num = |v: &str, key: &'static str| -> Result<u64, HeadError> {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HeadError::Value(key));
            }
            v.parse().map_err(|_| HeadError::Value(key))
        };
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let (key, value) = line.split_once(": ").ok_or(HeadError::Line(n + 1))?;
            match key {
                "hypernar-web-seed" => set(&mut version, key, value.to_owned())?,
                "length" => set(&mut length, key, num(value, "length")?)?,
                "fork" => set(&mut fork, key, num(value, "fork")?)?,
                "byte-length" => set(&mut byte_length, key, num(value, "byte-length")?)?,
                "signature" => {
                    let mut sig = [0u8; 64];
                    hex::decode_to_slice(value, &mut sig)
                        .map_err(|_| HeadError::Value("signature"))?;
                    set(&mut signature, key, sig)?
                }
                _ => return Err(HeadError::Line(n + 1)),
            }
        }
        match version.ok_or(HeadError::Missing("hypernar-web-seed"))? {
            v if v == "1" => {}
            v => return Err(HeadError::Version(v)),
        }
        let length = length.ok_or(HeadError::Missing("length"))?;
        if length > MAX_LENGTH {
            return Err(HeadError::Value("length"));
        }
        Ok(Head {
            length,
            fork: fork.ok_or(HeadError::Missing("fork"))?,
            byte_length: byte_length.ok_or(HeadError::Missing("byte-length"))?,
            signature: signature.ok_or(HeadError::Missing("signature"))?,
        })
    }

    /// Bytes of the tree file this head needs: every node below `2·length`.
    pub fn tree_len(&self) -> u64 {
        tree_len(self.length)
    }
}

/// Tree file bytes for a feed of `length` blocks.
pub fn tree_len(length: u64) -> u64 {
    if length == 0 {
        0
    } else {
        (2 * length - 1) * NODE_SIZE
    }
}

/// Tree indices of the roots of a feed of `length` blocks.
pub fn roots(length: u64) -> Vec<u64> {
    let mut out = Vec::new();
    flat_tree::full_roots(2 * length, &mut out);
    out
}

/// The tree nodes, in the order hypercore's `verify_upgrade` takes them,
/// that upgrade a replica of `from` blocks to `to` blocks (`from < to`).
/// Mirrors that walk over indices alone (tested against hypercore's own
/// `create_proof`).
pub fn upgrade_nodes(from: u64, to: u64) -> Vec<u64> {
    fn append_root(roots: &mut Vec<u64>, index: u64, iter: &mut flat_tree::Iterator) {
        roots.push(index);
        while roots.len() > 1 {
            let b = roots[roots.len() - 2];
            if iter.sibling() != b {
                iter.sibling();
                break;
            }
            let parent = iter.parent();
            roots.pop();
            roots.pop();
            roots.push(parent);
        }
    }
    let mut roots = roots(from);
    let mut need = Vec::new();
    let mut grow = !roots.is_empty();
    let mut i = 0;
    let mut iter = flat_tree::Iterator::new(0);
    while iter.full_root(2 * to) {
        if i < roots.len() && roots[i] == iter.index() {
            i += 1;
            iter.next_tree();
            continue;
        }
        if grow {
            grow = false;
            let root_index = iter.index();
            if i < roots.len() {
                iter.seek(*roots.last().expect("not empty"));
                while iter.index() != root_index {
                    let s = iter.sibling();
                    need.push(s);
                    append_root(&mut roots, s, &mut iter);
                }
                iter.next_tree();
                continue;
            }
        }
        let at = iter.index();
        need.push(at);
        append_root(&mut roots, at, &mut iter);
        iter.next_tree();
    }
    need
}

/// The `missing` tree nodes a proof of block `index` carries: its uncles
/// from the bottom up, as hypercore's `verify_tree` takes them.
pub fn block_nodes(index: u64, missing: u64) -> Vec<u64> {
    let mut out = Vec::with_capacity(missing as usize);
    let mut n = 2 * index;
    for _ in 0..missing {
        out.push(flat_tree::sibling(n));
        n = flat_tree::parent(n);
    }
    out
}

/// The nodes whose sizes add up to the byte offset of block `index`.
pub fn offset_nodes(index: u64) -> Vec<u64> {
    roots(index)
}

/// A node from its 40 bytes in the tree file.
pub fn node_from_bytes(index: u64, bytes: &[u8; 40]) -> Node {
    let mut size = [0u8; 8];
    size.copy_from_slice(&bytes[..8]);
    Node::new(index, bytes[8..].to_vec(), u64::from_le_bytes(size))
}

/// Brings the web-seed copy of `feed` under `root` up to date; returns its
/// head, or `None` for an empty feed. Flushes hypercore's log first, so the
/// tree file holds every node.
pub async fn sync(feed: &mut Feed, root: &Path) -> Result<Option<Head>, StoreError> {
    let info = feed.info();
    if info.length == 0 {
        return Ok(None);
    }
    feed.flush().await?;
    let proof = feed
        .create_proof(
            None,
            None,
            None,
            Some(RequestUpgrade {
                start: 0,
                length: info.length,
            }),
        )
        .await?;
    let signature: [u8; 64] = proof
        .and_then(|p| p.upgrade)
        .and_then(|u| u.signature.try_into().ok())
        .ok_or_else(|| StoreError::Io {
            path: feed.dir().to_owned(),
            source: std::io::Error::other("the feed gave no signature to copy to the web seed"),
        })?;
    let head = Head {
        length: info.length,
        fork: info.fork,
        byte_length: info.byte_length,
        signature,
    };
    let dir = root.join(feed_path(feed.public_key().as_bytes()));
    let io = |path: &Path, source: std::io::Error| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    // The copy is public by design (any HTTP server's user must read it),
    // whatever the umask (hypernar's is 077: `private`): what this creates
    // is made 0755/0644; a directory the operator made is left as it is.
    let missing: Vec<PathBuf> = root
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .map(Path::to_path_buf)
        .collect();
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    for a in &missing {
        public(a, 0o755).map_err(|e| io(a, e))?;
    }
    let mut at = root.to_path_buf();
    for part in Path::new(&feed_path(feed.public_key().as_bytes())).components() {
        at.push(part);
        public(&at, 0o755).map_err(|e| io(&at, e))?;
    }
    for (name, len) in [("data", head.byte_length), ("tree", head.tree_len())] {
        let to = dir.join(name);
        copy_prefix(&feed.dir().join(name), &to, len)?;
        public(&to, 0o644).map_err(|e| io(&to, e))?;
    }
    let tmp = dir.join("head.tmp");
    let path = dir.join("head");
    std::fs::write(&tmp, head.render()).map_err(|e| io(&tmp, e))?;
    public(&tmp, 0o644).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    Ok(Some(head))
}

fn public(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Makes `to` hold the first `len` bytes of `from`, appending only what
/// `to` lacks (the feeds only grow).
fn copy_prefix(from: &Path, to: &Path, len: u64) -> Result<(), StoreError> {
    let io = |path: &PathBuf, source: std::io::Error| StoreError::Io {
        path: path.clone(),
        source,
    };
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    let mut src = std::fs::File::open(&from).map_err(|e| io(&from, e))?;
    let have = src.metadata().map_err(|e| io(&from, e))?.len();
    if have < len {
        return Err(io(
            &from,
            std::io::Error::other(format!("holds {have} bytes, the feed's head needs {len}")),
        ));
    }
    let mut dst = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&to)
        .map_err(|e| io(&to, e))?;
    let mut done = dst.metadata().map_err(|e| io(&to, e))?.len();
    if done > len {
        // Not a prefix of this feed (another copy was here): start over.
        dst.set_len(0).map_err(|e| io(&to, e))?;
        done = 0;
    }
    src.seek(SeekFrom::Start(done)).map_err(|e| io(&from, e))?;
    dst.seek(SeekFrom::Start(done)).map_err(|e| io(&to, e))?;
    std::io::copy(&mut (&mut src).take(len - done), &mut dst).map_err(|e| io(&to, e))?;
    dst.flush().map_err(|e| io(&to, e))?;
    dst.sync_all().map_err(|e| io(&to, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        Head {
            length: 9,
            fork: 0,
            byte_length: 253_615,
            signature: [7; 64],
        }
    }

    #[test]
    fn a_head_round_trips_and_nothing_else_parses() {
        let h = head();
        assert_eq!(Head::parse(h.render().as_bytes()).unwrap(), h);
        let text = h.render();
        for (bad, why) in [
            (text.replace("length: 9\n", ""), "missing"),
            (text.replace("length: 9", "length: -9"), "negative"),
            (text.replace("length: 9", "length: 9x"), "trailing"),
            (
                text.replace("length: 9", "length: 99999999999999999999999"),
                "overflow",
            ),
            (text.replace("fork: 0\n", "fork: 0\nfork: 1\n"), "repeated"),
            (
                text.replace("hypernar-web-seed: 1", "hypernar-web-seed: 2"),
                "version",
            ),
            (
                text.replace("signature: 07", "signature: 0"),
                "short signature",
            ),
            (format!("{text}extra: 1\n"), "unknown key"),
            (text.replace(": ", ":"), "no space"),
            ("x".repeat(2000), "long"),
        ] {
            assert!(Head::parse(bad.as_bytes()).is_err(), "{why}: {bad:?}");
        }
        assert!(Head::parse(b"\xff\xfe").is_err());
    }

    #[test]
    fn tree_sizes_and_roots() {
        assert_eq!(tree_len(0), 0);
        assert_eq!(tree_len(1), 40);
        assert_eq!(tree_len(9), 17 * 40);
        assert_eq!(roots(0), Vec::<u64>::new());
        assert_eq!(roots(1), vec![0]);
        assert_eq!(roots(3), vec![1, 4]);
        assert_eq!(roots(8), vec![7]);
        assert_eq!(block_nodes(0, 0), Vec::<u64>::new());
        assert_eq!(block_nodes(0, 3), vec![2, 5, 11]);
        assert_eq!(block_nodes(5, 2), vec![8, 13]);
    }

    /// The walk mirrored from hypercore asks for exactly the nodes
    /// hypercore's own `create_proof` sends, for every pair of lengths.
    #[tokio::test]
    async fn upgrade_nodes_match_hypercores_proofs_and_the_copy_holds_them() {
        let tmp = tempfile::tempdir().unwrap();
        let store = crate::store::FeedStore::open(tmp.path()).unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let mut feed = store.open_writable(&key).await.unwrap();
        for n in 1..=40u64 {
            feed.append_batch(&[vec![n as u8; n as usize * 3]])
                .await
                .unwrap();
            for from in 0..n {
                let proof = feed
                    .create_proof(
                        None,
                        None,
                        None,
                        Some(RequestUpgrade {
                            start: from,
                            length: n - from,
                        }),
                    )
                    .await
                    .unwrap()
                    .unwrap();
                let up = proof.upgrade.unwrap();
                let theirs: Vec<u64> = up.nodes.iter().map(|n| n.index).collect();
                assert_eq!(upgrade_nodes(from, n), theirs, "{from} -> {n}");
                assert!(up.additional_nodes.is_empty());
            }
        }
        // The copy: every node of the tree, the data, a head that parses.
        let seed = tmp.path().join("seed");
        let head = sync(&mut feed, &seed).await.unwrap().unwrap();
        assert_eq!(head.length, 40);
        let dir = seed.join(feed_path(feed.public_key().as_bytes()));
        let tree = std::fs::read(dir.join("tree")).unwrap();
        assert_eq!(tree.len() as u64, head.tree_len());
        let data = std::fs::read(dir.join("data")).unwrap();
        assert_eq!(data.len() as u64, head.byte_length);
        let parsed = Head::parse(&std::fs::read(dir.join("head")).unwrap()).unwrap();
        assert_eq!(parsed, head);
        // Block 7's bytes, found from the tree's sizes alone.
        let node = |i: u64| {
            let at = (i * NODE_SIZE) as usize;
            node_from_bytes(i, tree[at..at + 40].try_into().unwrap())
        };
        let offset: u64 = offset_nodes(7).into_iter().map(|i| node(i).length).sum();
        let len = node(14).length;
        assert_eq!(
            &data[offset as usize..(offset + len) as usize],
            &vec![8u8; 24][..]
        );
        // A second sync appends nothing and keeps the files.
        feed.append_batch(&[b"more".to_vec()]).await.unwrap();
        let head2 = sync(&mut feed, &seed).await.unwrap().unwrap();
        assert_eq!(head2.length, 41);
        assert_eq!(
            &std::fs::read(dir.join("data")).unwrap()[..data.len()],
            &data[..]
        );
    }

    #[test]
    fn the_discovery_key_is_hypercores() {
        // From hypercore-protocol's `discovery_key` for the key 0x01 * 32
        // (the fetcher's tests compare the two for random keys).
        let k = discovery_key(&[1; 32]);
        assert_ne!(k, [0; 32]);
        assert_eq!(feed_path(&[1; 32]), format!("v1/{}", hex::encode(k)));
    }
}
