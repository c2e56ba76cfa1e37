//! The tests' own minimal HTTP client, and what they ask with it.

use super::World;

/// An HTTP response as a test reads it.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), to
/// `base` (`http://HOST:PORT`). The test's own minimal client: it lets
/// tests send what a real client would not.
pub fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpReply {
    use std::io::{Read, Write};
    let host = base.strip_prefix("http://").expect("http:// URL");
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    // A Host of the test's own replaces the address.
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {host}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).unwrap();
    let mut all = Vec::new();
    // A transfer the server cuts ends in a reset: keep what came.
    let _ = conn.read_to_end(&mut all);
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&all)));
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = all[split + 4..].to_vec();
    let headers: Vec<(String, String)> = headers;
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    HttpReply {
        status,
        headers,
        body,
    }
}

/// The body of a `Transfer-Encoding: chunked` answer (as far as it came).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else { break };
        raw = &raw[eol + 2..];
        if size == 0 || raw.len() < size {
            out.extend_from_slice(&raw[..size.min(raw.len())]);
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or_default();
    }
    out
}

/// Waits until `GET base+path` answers `status` (a narinfo appears as the
/// index replicates), at most `secs`.
pub fn wait_for_status(base: &str, path: &str, status: u16, secs: u64) -> HttpReply {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let r = http(base, "GET", path, &[]);
        if r.status == status || std::time::Instant::now() > until {
            assert_eq!(
                r.status,
                status,
                "GET {path}: {:?}",
                String::from_utf8_lossy(&r.body)
            );
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// GETs `name`'s narinfo (once it answers 200, at most 30 s) and NAR
/// through `api`, asserting both answer 200; returns the NAR.
pub fn fetch_nar(api: &str, w: &World, name: &str) -> Vec<u8> {
    let hash = w.path(name).info.store_path.hash_part().to_owned();
    let r = wait_for_status(api, &format!("/{hash}.narinfo"), 200, 30);
    let url = hypernar_feed::format::narinfo::NarInfo::parse(&r.body)
        .unwrap()
        .url;
    let nar = http(api, "GET", &format!("/{url}"), &[]);
    assert_eq!(nar.status, 200, "{name}");
    nar.body
}

/// The NAR of `name` as the node at `base` serves it: its narinfo once it
/// answers 200 (at most 20 s), then the URL the narinfo names.
pub fn nar_of(base: &str, w: &World, name: &str) -> HttpReply {
    let hash = w.path(name).info.store_path.hash_part().to_owned();
    let r = wait_for_status(base, &format!("/{hash}.narinfo"), 200, 20);
    let url = hypernar_feed::format::narinfo::NarInfo::parse(&r.body)
        .unwrap()
        .url;
    http(base, "GET", &format!("/{url}"), &[])
}
