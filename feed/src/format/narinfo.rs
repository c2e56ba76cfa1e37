//! Narinfo files: parsing what an upstream binary cache serves, and rendering
//! what hypernar serves to Nix.
//!
//! Parsing is strict where a wrong value would mislead (hashes, sizes, store
//! paths) and lenient where Nix is (unknown keys are kept aside, not errors).

use std::fmt::{self, Write as _};

use base64::Engine as _;

use super::nixbase32;
use super::storepath::{StorePath, StorePathError};

/// Largest narinfo accepted from anywhere. Real ones are a few hundred bytes;
/// a path with thousands of references stays well below this.
pub const MAX_NARINFO_LEN: usize = 1 << 20;

/// A SHA-256 NAR hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct NarHash(pub [u8; 32]);

impl NarHash {
    /// Parses `sha256:<nix32>`, `sha256:<hex>` or SRI `sha256-<base64>`.
    pub fn parse(s: &str) -> Result<Self, NarInfoError> {
        let bad = || NarInfoError::Hash(s.to_owned());
        if let Some(b64) = s.strip_prefix("sha256-") {
            let v = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| bad())?;
            return Ok(NarHash(v.try_into().map_err(|_| bad())?));
        }
        let digest = s.strip_prefix("sha256:").ok_or_else(bad)?;
        match digest.len() {
            52 => Ok(NarHash(nixbase32::decode(digest).map_err(|_| bad())?)),
            64 => {
                let v = hex::decode(digest).map_err(|_| bad())?;
                Ok(NarHash(v.try_into().map_err(|_| bad())?))
            }
            _ => Err(bad()),
        }
    }

    /// Nix's canonical text form, `sha256:<nix32>`.
    pub fn to_nix(&self) -> String {
        format!("sha256:{}", nixbase32::encode(&self.0))
    }
}

/// Computes a [`NarHash`] over bytes fed in pieces.
///
/// Backed by ring's SHA-256 (OpenSSL's assembly: the SHA extensions where
/// the CPU has them, AVX otherwise), not the `sha2` crate: on a CPU without
/// SHA-NI ring hashes at about 1.7 × the speed of `sha2`'s portable code
/// (262 against 149 MB/s on the 2.5 GHz Xeon of docs/benchmarks.md), and
/// every NAR a node hands out or publishes passes through one of these.
/// Tests check it against `sha2`.
#[derive(Clone)]
pub struct NarHasher(ring::digest::Context);

impl NarHasher {
    pub fn new() -> Self {
        NarHasher(ring::digest::Context::new(&ring::digest::SHA256))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> NarHash {
        let digest = self.0.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        NarHash(out)
    }

    /// The hash of `bytes` in one piece.
    pub fn digest(bytes: &[u8]) -> NarHash {
        let mut h = NarHasher::new();
        h.update(bytes);
        h.finish()
    }
}

impl Default for NarHasher {
    fn default() -> Self {
        NarHasher::new()
    }
}

impl fmt::Debug for NarHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NarHasher")
    }
}

impl fmt::Display for NarHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_nix())
    }
}

impl fmt::Debug for NarHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NarHash({})", self.to_nix())
    }
}

/// Compression of a NAR file in a binary cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Bzip2,
}

impl Compression {
    /// Parses the `Compression:` value.
    pub fn parse(s: &str) -> Result<Self, NarInfoError> {
        Ok(match s {
            "none" | "" => Compression::None,
            "xz" => Compression::Xz,
            "zstd" => Compression::Zstd,
            "bzip2" => Compression::Bzip2,
            other => return Err(NarInfoError::Compression(other.to_owned())),
        })
    }

    /// Wraps a NAR file compressed this way in its decompressor.
    pub fn decoder<'a>(
        self,
        file: Box<dyn std::io::Read + Send + 'a>,
    ) -> std::io::Result<Box<dyn std::io::Read + Send + 'a>> {
        Ok(match self {
            Compression::None => file,
            Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(file)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file)?),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(file)),
        })
    }

    /// The value Nix writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
        }
    }
}

/// A parsed narinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    pub store_path: StorePath,
    pub url: String,
    pub compression: Compression,
    pub file_hash: Option<NarHash>,
    pub file_size: Option<u64>,
    pub nar_hash: NarHash,
    pub nar_size: u64,
    /// Base names (`<hash>-<name>`), as Nix writes them.
    pub references: Vec<StorePath>,
    pub deriver: Option<String>,
    /// `Sig:` values verbatim (`keyname:base64`).
    pub sigs: Vec<String>,
    pub ca: Option<String>,
}

/// Why a narinfo was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NarInfoError {
    #[error("narinfo is {0} bytes, over the {MAX_NARINFO_LEN}-byte limit")]
    TooLarge(usize),
    #[error("narinfo is not UTF-8")]
    NotUtf8,
    #[error("narinfo line {0} has no `Key: value` form")]
    Line(usize),
    #[error(
        "narinfo line {0} has no space after its colon: Nix reads a value from the second \
         character after the colon, so it would read another value than we do"
    )]
    NoSpace(usize),
    #[error("narinfo line {0} holds a control character (a carriage return, a tab, ...)")]
    Control(usize),
    #[error("narinfo lacks the required field {0}")]
    Missing(&'static str),
    #[error("narinfo repeats the field {0}")]
    Repeated(String),
    #[error("narinfo has a malformed hash {0:?} (want sha256:<nix32>)")]
    Hash(String),
    #[error("narinfo has a malformed size {0:?}")]
    Size(String),
    #[error("narinfo names an unknown compression {0:?}")]
    Compression(String),
    #[error("narinfo has a malformed URL {0:?}")]
    Url(String),
    #[error("narinfo names a bad store path: {0}")]
    StorePath(#[from] StorePathError),
}

impl NarInfo {
    /// Parses narinfo text. Unknown keys are ignored, as Nix does. Each
    /// line is read as Nix reads it (`nar-info.cc`): the key up to the
    /// first colon, the value from the second character after it to the
    /// end of the line, verbatim. Where Nix would read something else than
    /// a plain reading (no space after the colon: `NarSize:12345` is 2345 to
    /// Nix), or a value holds a control character (a CR of CRLF line ends,
    /// which Nix keeps in the value), the narinfo is refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, NarInfoError> {
        if bytes.len() > MAX_NARINFO_LEN {
            return Err(NarInfoError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| NarInfoError::NotUtf8)?;
        let mut store_path = None;
        let mut url = None;
        let mut compression = None;
        let mut file_hash = None;
        let mut file_size = None;
        let mut nar_hash = None;
        let mut nar_size = None;
        let mut references = None;
        let mut deriver = None;
        let mut ca = None;
        let mut sigs = Vec::new();

        fn once<T>(slot: &mut Option<T>, key: &str, v: T) -> Result<(), NarInfoError> {
            if slot.replace(v).is_some() {
                return Err(NarInfoError::Repeated(key.to_owned()));
            }
            Ok(())
        }
        let size = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| NarInfoError::Size(v.to_owned()))
        };

        for (n, line) in text.split('\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            if line.chars().any(char::is_control) {
                return Err(NarInfoError::Control(n + 1));
            }
            let (key, value) = line.split_once(':').ok_or(NarInfoError::Line(n + 1))?;
            let value = value
                .strip_prefix(' ')
                .ok_or(NarInfoError::NoSpace(n + 1))?;
            match key {
                "StorePath" => once(&mut store_path, key, StorePath::parse(value)?)?,
                "URL" => {
                    if value.is_empty() || value.contains("..") || value.starts_with('/') {
                        return Err(NarInfoError::Url(value.to_owned()));
                    }
                    once(&mut url, key, value.to_owned())?
                }
                "Compression" => once(&mut compression, key, Compression::parse(value)?)?,
                "FileHash" => once(&mut file_hash, key, NarHash::parse(value)?)?,
                "FileSize" => once(&mut file_size, key, size(value)?)?,
                "NarHash" => once(&mut nar_hash, key, NarHash::parse(value)?)?,
                "NarSize" => once(&mut nar_size, key, size(value)?)?,
                "References" => {
                    let refs = value
                        .split_ascii_whitespace()
                        .map(StorePath::from_base_name)
                        .collect::<Result<Vec<_>, _>>()?;
                    once(&mut references, key, refs)?
                }
                "Deriver" if value != "unknown-deriver" => {
                    once(&mut deriver, key, value.to_owned())?
                }
                "Sig" => sigs.push(value.to_owned()),
                "CA" => once(&mut ca, key, value.to_owned())?,
                _ => {}
            }
        }
        Ok(NarInfo {
            store_path: store_path.ok_or(NarInfoError::Missing("StorePath"))?,
            url: url.ok_or(NarInfoError::Missing("URL"))?,
            // Nix assumes bzip2 when the field is absent.
            compression: compression.unwrap_or(Compression::Bzip2),
            file_hash,
            file_size,
            nar_hash: nar_hash.ok_or(NarInfoError::Missing("NarHash"))?,
            nar_size: nar_size.ok_or(NarInfoError::Missing("NarSize"))?,
            references: references.unwrap_or_default(),
            deriver,
            sigs,
            ca,
        })
    }

    /// Renders narinfo text. `Compression:` is always written (Nix assumes
    /// bzip2 otherwise).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "StorePath: {}", self.store_path);
        let _ = writeln!(s, "URL: {}", self.url);
        let _ = writeln!(s, "Compression: {}", self.compression.as_str());
        if let Some(h) = &self.file_hash {
            let _ = writeln!(s, "FileHash: {h}");
        }
        if let Some(n) = self.file_size {
            let _ = writeln!(s, "FileSize: {n}");
        }
        let _ = writeln!(s, "NarHash: {}", self.nar_hash);
        let _ = writeln!(s, "NarSize: {}", self.nar_size);
        let refs: Vec<&str> = self.references.iter().map(|r| r.base_name()).collect();
        let _ = writeln!(s, "References: {}", refs.join(" "));
        if let Some(d) = &self.deriver {
            let _ = writeln!(s, "Deriver: {d}");
        }
        for sig in &self.sigs {
            let _ = writeln!(s, "Sig: {sig}");
        }
        if let Some(ca) = &self.ca {
            let _ = writeln!(s, "CA: {ca}");
        }
        s
    }

    /// What Nix signs: `1;<storePath>;<narHash>;<narSize>;<refs,comma-separated full paths>`.
    pub fn fingerprint(&self) -> String {
        fingerprint(
            &self.store_path,
            &self.nar_hash,
            self.nar_size,
            &self.references,
        )
    }
}

/// The NAR URL (relative to the cache root) of a path: its hash part and
/// its NarHash, both as Nix writes them.
pub fn nar_url(hash: &str, nar_hash: &NarHash) -> String {
    let nix32 = nar_hash.to_nix();
    let nix32 = nix32.strip_prefix("sha256:").unwrap_or(&nix32);
    format!("nar/{hash}-{nix32}.nar")
}

/// Nix's signature fingerprint over a path's identity and contents.
pub fn fingerprint(path: &StorePath, hash: &NarHash, size: u64, refs: &[StorePath]) -> String {
    let refs: Vec<&str> = refs.iter().map(|r| r.as_str()).collect();
    format!("1;{path};{};{size};{}", hash.to_nix(), refs.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nar_hasher_gives_the_known_sha256_of_empty_and_abc() {
        // FIPS 180-2 test vectors.
        assert_eq!(
            hex::encode(NarHasher::digest(b"").0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(NarHasher::digest(b"abc").0),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    const REAL: &str = "StorePath: /nix/store/yzpnsva739ix5g71hc0yfpy1szrpa0hm-hn-b
URL: nar/0k51iy4knpbbd7lbisdcns1inl2zddqnhg9ajrjap56xffcgabjl.nar.xz
Compression: xz
FileHash: sha256:0k51iy4knpbbd7lbisdcns1inl2zddqnhg9ajrjap56xffcgabjl
FileSize: 1000628
NarHash: sha256:1j6f8p98pc0n6xwmpmmcrazwdrwl9hj57g4hshp9q8iiay5m0zf0
NarSize: 1000520
References: dvy33zhzyzyqssgblsj9zn6xikj3y7w8-hn-a
Deriver: vvhsdcyd68w12wzi7xplankvp865fmsm-hn-b.drv
Sig: test1:ZtvryDxbqhxp3t5JOJj/T3W7/E7TatJwdDzDbhL/ApbeN6bO4ynvL9FkYhMZ6aHa0NrC6T/LX0F6Dws+lTlDCg==
";

    #[test]
    fn parses_what_nix_writes_and_renders_it_back() {
        let info = NarInfo::parse(REAL.as_bytes()).unwrap();
        assert_eq!(info.nar_size, 1000520);
        assert_eq!(info.compression, Compression::Xz);
        assert_eq!(info.references.len(), 1);
        assert_eq!(info.sigs.len(), 1);
        assert_eq!(info.render(), REAL);
        assert_eq!(
            info.fingerprint(),
            "1;/nix/store/yzpnsva739ix5g71hc0yfpy1szrpa0hm-hn-b;\
             sha256:1j6f8p98pc0n6xwmpmmcrazwdrwl9hj57g4hshp9q8iiay5m0zf0;1000520;\
             /nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-hn-a"
        );
    }

    #[test]
    fn empty_references_and_default_compression() {
        let text = "StorePath: /nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-hn-a\nURL: nar/x.nar\n\
                    NarHash: sha256:10gfil2hnkwbm413m9l0j9hlwnyjy9nbyywyphjxqsmrzqycqjvd\nNarSize: 1576\nReferences: \n";
        let info = NarInfo::parse(text.as_bytes()).unwrap();
        assert!(info.references.is_empty());
        assert_eq!(info.compression, Compression::Bzip2);
    }

    #[test]
    fn hash_forms_agree() {
        let a =
            NarHash::parse("sha256:1j6f8p98pc0n6xwmpmmcrazwdrwl9hj57g4hshp9q8iiay5m0zf0").unwrap();
        let hex_form = format!("sha256:{}", hex::encode(a.0));
        let sri = format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(a.0)
        );
        assert_eq!(NarHash::parse(&hex_form).unwrap(), a);
        assert_eq!(NarHash::parse(&sri).unwrap(), a);
    }

    #[test]
    fn refuses_malformed() {
        type Check = fn(&NarInfoError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("URL: x\n", |e| matches!(e, NarInfoError::Missing("StorePath"))),
            ("garbage line\n", |e| matches!(e, NarInfoError::Line(1))),
            (
                "StorePath: /nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-a\nStorePath: /nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-a\n",
                |e| matches!(e, NarInfoError::Repeated(_)),
            ),
            ("NarHash: md5:abc\n", |e| matches!(e, NarInfoError::Hash(_))),
            ("NarSize: -1\n", |e| matches!(e, NarInfoError::Size(_))),
            ("Compression: lz4\n", |e| matches!(e, NarInfoError::Compression(_))),
            ("URL: ../../etc/passwd\n", |e| matches!(e, NarInfoError::Url(_))),
            ("References: notapath\n", |e| matches!(e, NarInfoError::StorePath(_))),
            // Nix reads `NarSize:12345` as 2345: refused, not read as 12345.
            ("NarSize:12345\n", |e| matches!(e, NarInfoError::NoSpace(1))),
            ("URL: x\nSig:k:abc\n", |e| matches!(e, NarInfoError::NoSpace(2))),
            // Nix keeps a CR in the value; a control character could
            // smuggle a line into what we render.
            ("NarSize: 12345\r\n", |e| matches!(e, NarInfoError::Control(1))),
            ("Sig: k:a\tb\n", |e| matches!(e, NarInfoError::Control(1))),
            ("Deriver: a\u{1b}[2Jb.drv\n", |e| matches!(e, NarInfoError::Control(1))),
            ("CA: \0\n", |e| matches!(e, NarInfoError::Control(1))),
            ("CA: x\u{7f}\n", |e| matches!(e, NarInfoError::Control(1))),
            ("CA: x\u{85}\n", |e| matches!(e, NarInfoError::Control(1))),
            // And the value is what follows ": ", verbatim, as for Nix.
            ("NarSize:  12345\n", |e| matches!(e, NarInfoError::Size(_))),
            ("NarSize: 12345 \n", |e| matches!(e, NarInfoError::Size(_))),
        ];
        for (text, check) in cases {
            let err = NarInfo::parse(text.as_bytes()).unwrap_err();
            assert!(check(&err), "{text:?} gave {err:?}");
        }
        assert!(matches!(
            NarInfo::parse(&vec![b'a'; MAX_NARINFO_LEN + 1]),
            Err(NarInfoError::TooLarge(_))
        ));
        assert!(matches!(
            NarInfo::parse(&[0xff, 0xfe]),
            Err(NarInfoError::NotUtf8)
        ));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn store_path() -> impl Strategy<Value = StorePath> {
            (
                proptest::array::uniform20(any::<u8>()),
                "[a-zA-Z0-9+_?=][a-zA-Z0-9+._?=-]{0,40}",
            )
                .prop_map(|(h, name)| {
                    StorePath::from_base_name(&format!("{}-{name}", nixbase32::encode(&h)))
                        .expect("generated paths are valid")
                })
        }

        fn hash() -> impl Strategy<Value = NarHash> {
            proptest::array::uniform32(any::<u8>()).prop_map(NarHash)
        }

        /// A value as it stands after `Key: ` on a line: printable, no
        /// line break, no surrounding blanks.
        fn value() -> impl Strategy<Value = String> {
            "[!-~]([ -~]{0,60}[!-~])?"
        }

        fn narinfo() -> impl Strategy<Value = NarInfo> {
            let compression = prop_oneof![
                Just(Compression::None),
                Just(Compression::Xz),
                Just(Compression::Zstd),
                Just(Compression::Bzip2),
            ];
            let url = "nar/[a-z0-9]{1,52}\\.nar(\\.xz|\\.zst)?";
            (
                (store_path(), url, compression, proptest::option::of(hash())),
                (
                    proptest::option::of(any::<u64>()),
                    hash(),
                    any::<u64>(),
                    proptest::collection::vec(store_path(), 0..5),
                ),
                (
                    proptest::option::of(
                        value().prop_filter("Nix's placeholder", |d| d != "unknown-deriver"),
                    ),
                    proptest::collection::vec(value(), 0..4),
                    proptest::option::of(value()),
                ),
            )
                .prop_map(
                    |(
                        (store_path, url, compression, file_hash),
                        (file_size, nar_hash, nar_size, references),
                        (deriver, sigs, ca),
                    )| NarInfo {
                        store_path,
                        url,
                        compression,
                        file_hash,
                        file_size,
                        nar_hash,
                        nar_size,
                        references,
                        deriver,
                        sigs,
                        ca,
                    },
                )
        }

        proptest! {
            #[test]
            fn nar_hasher_agrees_with_sha2_however_the_bytes_are_cut(
                bytes in proptest::collection::vec(any::<u8>(), 0..5000),
                cuts in proptest::collection::vec(0usize..5000, 0..6),
            ) {
                use sha2::Digest as _;
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
                cuts.sort_unstable();
                let mut h = NarHasher::new();
                let mut at = 0;
                for c in cuts.into_iter().chain([bytes.len()]) {
                    h.update(&bytes[at..c]);
                    at = c;
                }
                let want: [u8; 32] = sha2::Sha256::digest(&bytes).into();
                prop_assert_eq!(h.finish(), NarHash(want));
                prop_assert_eq!(NarHasher::digest(&bytes), NarHash(want));
            }

            #[test]
            fn render_then_parse_gives_back_every_field(info in narinfo()) {
                let text = info.render();
                prop_assert_eq!(NarInfo::parse(text.as_bytes()).unwrap(), info);
            }

            #[test]
            fn arbitrary_bytes_give_a_narinfo_or_an_error_never_a_panic(
                bytes in proptest::collection::vec(any::<u8>(), 0..2048)
            ) {
                let _ = NarInfo::parse(&bytes);
            }

            #[test]
            fn arbitrary_key_value_lines_give_a_narinfo_or_an_error(
                lines in proptest::collection::vec(
                    (
                        prop_oneof![
                            Just("StorePath"), Just("URL"), Just("Compression"),
                            Just("FileHash"), Just("FileSize"), Just("NarHash"),
                            Just("NarSize"), Just("References"), Just("Deriver"),
                            Just("Sig"), Just("CA"), Just("Other"),
                        ],
                        "[ -~]{0,80}",
                    ),
                    0..16,
                )
            ) {
                let text: String = lines.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
                if let Ok(info) = NarInfo::parse(text.as_bytes()) {
                    // Whatever parses renders to something that parses the same.
                    prop_assert_eq!(NarInfo::parse(info.render().as_bytes()).unwrap(), info);
                }
            }
        }
    }
}
