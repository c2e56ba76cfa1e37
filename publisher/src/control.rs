//! The control message: a job (`hypernar publish`, `hypernar set`) handed
//! to the `hypernar serve` that holds the data directory, and what comes
//! back.
//!
//! The wire is a stream of frames, each `u32le(length) || postcard(body)`,
//! a body at most [`MAX_FRAME`] bytes (checked before allocation). The
//! client sends one [`Request`]; the server answers with [`Reply`] frames,
//! the last of which is [`Reply::Exit`]. Every request carries
//! [`VERSION`]; a server that speaks another version answers with an error
//! saying so instead of guessing.

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The version of the control messages this build speaks.
pub const VERSION: u16 = 8;
/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 64 << 10;

/// A publish job: every `hypernar publish` flag, with paths made absolute
/// (the serve runs in another working directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishJob {
    pub key_file: PathBuf,
    pub data_dir: PathBuf,
    pub from: String,
    /// `--sign-key` (absolute): a Nix secret key signing local paths.
    pub sign_key: Option<PathBuf>,
    pub paths: Vec<String>,
    pub closure: bool,
    pub all: bool,
    pub release: bool,
    pub jobs: Option<u32>,
    pub segment_size: u32,
    pub zstd_level: i32,
    /// `-v` count: 1 adds a line per path published.
    pub verbose: u8,
    /// Keep a web-seed copy of the feeds in this directory (absolute).
    pub web_seed: Option<PathBuf>,
    /// Where that copy is hosted, recorded in the index (`none`: withdraw);
    /// empty leaves the index as it is.
    pub web_seed_urls: Vec<String>,
    /// Tail entries that make a run of the index (`--run-tail`).
    pub run_tail: u64,
    /// Blocks a data feed holds before the next (`--data-feed-blocks`).
    pub data_feed_blocks: u64,
}

/// What `hypernar set` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetAction {
    Add,
    Remove,
    List,
}

/// A `hypernar set` command, with paths made absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetJob {
    pub key_file: PathBuf,
    pub data_dir: PathBuf,
    pub action: SetAction,
    pub name: String,
    /// `--publisher`, as given.
    pub publisher: Option<String>,
    /// Store paths, as given.
    pub paths: Vec<String>,
    /// Channel names (`--channel`), as given.
    pub channels: Vec<String>,
}

/// A `hypernar follow` run, with paths made absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowJob {
    pub key_file: PathBuf,
    pub data_dir: PathBuf,
    /// (name, URL) of each channel.
    pub channels: Vec<(String, String)>,
    pub upstream: String,
    /// `--trusted-public-key`s, as given (empty: cache.nixos.org-1).
    pub trusted_keys: Vec<String>,
    pub allow_older: bool,
    pub once: bool,
    pub interval_secs: u64,
    pub jobs: Option<u32>,
    /// Requests a second to the upstream, in thousandths (an integer: a
    /// float's NaN would not compare equal to itself).
    pub max_upstream_millirequests: Option<u64>,
    pub max_upstream_rate: Option<u64>,
    pub release: bool,
    pub run_tail: u64,
}

/// Any job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Job {
    Publish(PublishJob),
    Set(SetJob),
    Follow(FollowJob),
    /// `hypernar status`: the serve's state as text, or as one JSON object
    /// (`--json`; absent from older clients: text).
    Status {
        data_dir: PathBuf,
        #[serde(default)]
        json: bool,
    },
}

impl Job {
    /// The data directory the job is for.
    pub fn data_dir(&self) -> &std::path::Path {
        match self {
            Job::Publish(j) => &j.data_dir,
            Job::Set(j) => &j.data_dir,
            Job::Follow(j) => &j.data_dir,
            Job::Status { data_dir, .. } => data_dir,
        }
    }
}

/// What the client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub version: u16,
    pub job: Job,
}

/// What the server answers, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// A line for the client's standard output (what the command produces).
    Out(String),
    /// A line for the client's standard error (errors, per-path failures).
    Err(String),
    /// The command's exit code; the last frame.
    Exit(u8),
}

/// Errors reading a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("control frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(u64),
    #[error("malformed control message: {0}")]
    Decode(#[from] postcard::Error),
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
}

/// Encodes one message as a frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = postcard::to_stdvec(msg).expect("control messages serialize");
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// The body length a frame header announces, checked against the limit.
pub fn frame_len(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(header) as u64;
    if len > MAX_FRAME as u64 {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len as usize)
}

/// Decodes a frame body.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, FrameError> {
    Ok(postcard::from_bytes(body)?)
}

/// Decodes a whole frame (header and body), as a fuzz target would see
/// bytes from the socket: the request, or why not.
pub fn decode_request_frame(bytes: &[u8]) -> Result<Request, FrameError> {
    let header: [u8; 4] = bytes
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| FrameError::Io(io::ErrorKind::UnexpectedEof.into()))?;
    let len = frame_len(header)?;
    let body = bytes
        .get(4..4 + len)
        .ok_or_else(|| FrameError::Io(io::ErrorKind::UnexpectedEof.into()))?;
    decode(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> PublishJob {
        PublishJob {
            key_file: "/k".into(),
            data_dir: "/d".into(),
            from: "file:///c".into(),
            sign_key: Some("/s".into()),
            paths: vec!["abc".into()],
            closure: true,
            all: false,
            release: true,
            jobs: Some(3),
            segment_size: 1 << 18,
            zstd_level: 3,
            verbose: 2,
            web_seed: None,
            web_seed_urls: vec![],
            run_tail: 7,
            data_feed_blocks: 9,
        }
    }

    #[test]
    fn every_field_round_trips() {
        let req = Request {
            version: VERSION,
            job: Job::Publish(job()),
        };
        assert_eq!(decode_request_frame(&encode(&req)).unwrap(), req);
        let req = Request {
            version: VERSION,
            job: Job::Set(SetJob {
                key_file: "/k".into(),
                data_dir: "/d".into(),
                action: SetAction::Remove,
                name: "lab".into(),
                publisher: Some("hypernar1:x".into()),
                paths: vec!["/nix/store/a".into(), "b".into()],
                channels: vec!["nixos-unstable".into()],
            }),
        };
        assert_eq!(decode_request_frame(&encode(&req)).unwrap(), req);
        let req = Request {
            version: VERSION,
            job: Job::Follow(FollowJob {
                key_file: "/k".into(),
                data_dir: "/d".into(),
                channels: vec![("c".into(), "http://x/c".into())],
                upstream: "http://x/cache".into(),
                trusted_keys: vec!["k-1:AAAA".into()],
                allow_older: true,
                once: true,
                interval_secs: 600,
                jobs: Some(2),
                max_upstream_millirequests: Some(2500),
                max_upstream_rate: Some(1 << 20),
                release: false,
                run_tail: 4,
            }),
        };
        assert_eq!(decode_request_frame(&encode(&req)).unwrap(), req);
        for reply in [
            Reply::Out("x".into()),
            Reply::Err("y".into()),
            Reply::Exit(7),
        ] {
            let frame = encode(&reply);
            let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
            assert_eq!(decode::<Reply>(&frame[4..4 + len]).unwrap(), reply);
        }
    }

    #[test]
    fn oversized_truncated_and_garbage_frames_are_errors() {
        assert!(matches!(
            frame_len(u32::MAX.to_le_bytes()),
            Err(FrameError::TooLarge(_))
        ));
        assert!(frame_len((MAX_FRAME as u32).to_le_bytes()).is_ok());
        let frame = encode(&Request {
            version: VERSION,
            job: Job::Publish(job()),
        });
        for cut in 0..frame.len() {
            assert!(decode_request_frame(&frame[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_request_frame(&[3, 0, 0, 0, 0xff, 0xff, 0xff]).is_err());
    }
}
