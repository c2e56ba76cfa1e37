//! The NAR scanner: a push parser that checks the NAR grammar and builds
//! the [`Listing`] as the bytes go by (the publisher feeds it each segment
//! as it seals it). Bounded: see the limits in [`super`].

use super::*;

/// Where the scanner is in the NAR grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Magic,
    NodeOpen,
    TypeKey,
    TypeValue,
    RegularAttr,
    ExecutableValue,
    ContentsKey,
    Size,
    Contents { left: u64 },
    Padding,
    TargetKey,
    Target,
    NodeClose,
    EntryClose,
    DirectoryNext,
    EntryOpen,
    NameKey,
    Name,
    NodeKey,
    End,
}

impl State {
    /// Longest string this state accepts.
    fn max_len(self) -> u64 {
        match self {
            State::Name => MAX_NAME_LEN as u64,
            State::Target => MAX_TARGET_LEN as u64,
            _ => 16,
        }
    }
}

/// Computes a NAR's listing from its bytes as they stream past, in any
/// pieces, keeping only the listing and at most one token (≤ 4 KiB); file
/// contents are counted, not kept. Checks the NAR's grammar as Nix's own
/// reader does: tokens in order, zero padding, directory entries sorted.
#[derive(Debug)]
pub struct NarScanner {
    builder: Builder,
    state: State,
    /// Bytes of the current token piece.
    buf: Vec<u8>,
    /// How many bytes the current piece needs.
    want: usize,
    /// The length of the string being read, once its length is read.
    body: Option<u64>,
    name: Option<Vec<u8>>,
    executable: bool,
    pos: u64,
    error: Option<ListingError>,
}

impl Default for NarScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl NarScanner {
    pub fn new() -> Self {
        NarScanner {
            builder: Builder::new(),
            state: State::Magic,
            buf: Vec::with_capacity(16),
            want: 8,
            body: None,
            name: None,
            executable: false,
            pos: 0,
            error: None,
        }
    }

    fn fail(&self, what: &'static str) -> ListingError {
        ListingError::Nar {
            pos: self.pos,
            what,
        }
    }

    /// Takes in the next bytes of the NAR. After an error, every call
    /// returns it again.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), ListingError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        while !data.is_empty() {
            if self.state == State::End {
                let e = self.fail("bytes after the end of the archive");
                self.error = Some(e.clone());
                return Err(e);
            }
            if let State::Contents { left } = self.state {
                let k = left.min(data.len() as u64);
                data = &data[k as usize..];
                self.pos += k;
                if k == left {
                    self.after_contents();
                } else {
                    self.state = State::Contents { left: left - k };
                }
                continue;
            }
            let k = (self.want - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..k]);
            data = &data[k..];
            self.pos += k as u64;
            if self.buf.len() == self.want {
                if let Err(e) = self.piece() {
                    self.error = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The listing, once the whole NAR has been fed.
    pub fn finish(self) -> Result<Listing, ListingError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.state != State::End {
            return Err(self.fail("the NAR ends early"));
        }
        let pos = self.pos;
        let listing = self
            .builder
            .finish()
            .map_err(|what| ListingError::Nar { pos, what })?;
        debug_assert_eq!(
            listing.nar_size, pos,
            "the builder counts what the scanner read"
        );
        Ok(listing)
    }

    fn after_contents(&mut self) {
        let pad = (self.pos.next_multiple_of(8) - self.pos) as usize;
        self.buf.clear();
        if pad == 0 {
            self.state = State::NodeClose;
            self.want = 8;
        } else {
            self.state = State::Padding;
            self.want = pad;
        }
    }

    /// A complete piece is in `buf`: a length, a string's padded bytes, a
    /// file size, or a file's padding.
    fn piece(&mut self) -> Result<(), ListingError> {
        if self.state == State::Padding {
            if self.buf.iter().any(|&b| b != 0) {
                return Err(self.fail("padding is not zero"));
            }
            self.buf.clear();
            self.state = State::NodeClose;
            self.want = 8;
            return Ok(());
        }
        let text = match self.body {
            None => {
                let n = u64::from_le_bytes(self.buf[..8].try_into().expect("8 bytes"));
                self.buf.clear();
                if self.state == State::Size {
                    return self.size(n);
                }
                if n > self.state.max_len() {
                    return Err(self.fail("a string is longer than allowed here"));
                }
                if n > 0 {
                    self.body = Some(n);
                    self.want = n.next_multiple_of(8) as usize;
                    return Ok(());
                }
                Vec::new()
            }
            Some(n) => {
                if self.buf[n as usize..].iter().any(|&b| b != 0) {
                    return Err(self.fail("padding is not zero"));
                }
                self.buf.truncate(n as usize);
                self.body = None;
                std::mem::replace(&mut self.buf, Vec::with_capacity(16))
            }
        };
        self.want = 8;
        self.string(text)
    }

    fn size(&mut self, size: u64) -> Result<(), ListingError> {
        let name = self.name.take();
        let pos = self.pos;
        self.builder
            .file(name, self.executable, size)
            .map_err(|what| ListingError::Nar { pos, what })?;
        if size == 0 {
            self.after_contents();
        } else {
            self.state = State::Contents { left: size };
        }
        Ok(())
    }

    fn expect(&mut self, s: &[u8], want: &[u8], next: State) -> Result<(), ListingError> {
        if s != want {
            return Err(self.fail(match self.state {
                State::Magic => "it does not start with nix-archive-1",
                _ => "a token is not the one the grammar expects",
            }));
        }
        self.state = next;
        Ok(())
    }

    fn string(&mut self, s: Vec<u8>) -> Result<(), ListingError> {
        let pos = self.pos;
        let at = |what| ListingError::Nar { pos, what };
        match self.state {
            State::Magic => self.expect(&s, NAR_MAGIC, State::NodeOpen),
            State::NodeOpen => self.expect(&s, b"(", State::TypeKey),
            State::TypeKey => self.expect(&s, b"type", State::TypeValue),
            State::TypeValue => match s.as_slice() {
                b"regular" => {
                    self.state = State::RegularAttr;
                    Ok(())
                }
                b"symlink" => {
                    self.state = State::TargetKey;
                    Ok(())
                }
                b"directory" => {
                    let name = self.name.take();
                    self.builder.open_dir(name).map_err(at)?;
                    self.state = State::DirectoryNext;
                    Ok(())
                }
                _ => Err(at("an unknown node type")),
            },
            State::RegularAttr => match s.as_slice() {
                b"executable" => {
                    self.state = State::ExecutableValue;
                    Ok(())
                }
                b"contents" => {
                    self.executable = false;
                    self.state = State::Size;
                    Ok(())
                }
                _ => Err(at("a regular file has an unknown attribute")),
            },
            State::ExecutableValue => {
                self.executable = true;
                self.expect(&s, b"", State::ContentsKey)
            }
            State::ContentsKey => self.expect(&s, b"contents", State::Size),
            State::TargetKey => self.expect(&s, b"target", State::Target),
            State::Target => {
                let name = self.name.take();
                self.builder.symlink(name, s).map_err(at)?;
                self.state = State::NodeClose;
                Ok(())
            }
            State::NodeClose => {
                // The builder closed the node when it began it; here only
                // the grammar moves on.
                let next = self.after_node();
                self.expect(&s, b")", next)
            }
            State::EntryClose => self.expect(&s, b")", State::DirectoryNext),
            State::DirectoryNext => match s.as_slice() {
                b"entry" => {
                    self.state = State::EntryOpen;
                    Ok(())
                }
                b")" => {
                    self.builder.close_dir().map_err(at)?;
                    self.state = self.after_node();
                    Ok(())
                }
                _ => Err(at("a directory holds something other than entries")),
            },
            State::EntryOpen => self.expect(&s, b"(", State::NameKey),
            State::NameKey => self.expect(&s, b"name", State::Name),
            State::Name => {
                check_name(&s).map_err(at)?;
                self.name = Some(s);
                self.state = State::NodeKey;
                Ok(())
            }
            State::NodeKey => self.expect(&s, b"node", State::NodeOpen),
            State::Size | State::Contents { .. } | State::Padding | State::End => {
                unreachable!("handled before strings")
            }
        }
    }

    /// Where the grammar goes once a node is closed.
    fn after_node(&self) -> State {
        if self.builder.depth() == 0 {
            State::End
        } else {
            State::EntryClose
        }
    }
}

/// The listing of a whole NAR in memory.
pub fn scan(nar: &[u8]) -> Result<Listing, ListingError> {
    let mut s = NarScanner::new();
    s.feed(nar)?;
    s.finish()
}
