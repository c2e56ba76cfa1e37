//! Which `Host:` the API answers: the DNS-rebinding guard.
//!
//! A web page the user visits can make the browser send requests to
//! `http://attacker.example:7470/` after pointing that name at 127.0.0.1;
//! the browser then treats the answers as the attacker's own origin and lets
//! the page read them (status page, metrics, decrypted NARs of private
//! audiences). Such a request always carries the attacker's *name* in
//! `Host:`. So the API answers only hosts no stranger controls the DNS of:
//! an IP address literal (any: reaching it is already what `--http-allow`
//! decides), `localhost` and `*.localhost` (which browsers resolve to
//! loopback themselves), and the names the operator lists
//! (`serve --http-host`). Everything else gets 421 and no body of ours. The
//! port is not looked at: rebinding does not change it. No answer carries
//! CORS headers, so no other origin may read one.

use std::net::IpAddr;

/// The names the operator allows besides IP literals and `localhost`.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    names: Vec<String>,
}

/// Why a host is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostRefused {
    #[error("Host {0:?} is not loopback, an IP address or a name given with --http-host")]
    Unknown(String),
    #[error("the Host header is not a valid host[:port]")]
    Malformed,
    #[error("the Host header and the request target name different hosts")]
    Conflict,
}

impl HostPolicy {
    /// A policy allowing `names` (as `serve --http-host` gives them), case
    /// and a trailing dot ignored.
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        HostPolicy {
            names: names
                .into_iter()
                .map(|n| normalise(n.as_ref()))
                .filter(|n| !n.is_empty())
                .collect(),
        }
    }

    /// Whether a request with this `Host:` header value (`None`: absent,
    /// as from an HTTP/1.0 client; a browser always sends one) and this
    /// request-target authority (absolute-form, rare) may be answered.
    pub fn check(&self, header: Option<&[u8]>, target: Option<&str>) -> Result<(), HostRefused> {
        let header = match header {
            Some(raw) => Some(host_of(
                std::str::from_utf8(raw).map_err(|_| HostRefused::Malformed)?,
            )?),
            None => None,
        };
        let target = target.map(host_of).transpose()?;
        if let (Some(h), Some(t)) = (&header, &target) {
            if h != t {
                return Err(HostRefused::Conflict);
            }
        }
        match header.or(target) {
            None => Ok(()),
            Some(host) if self.allows(&host) => Ok(()),
            Some(host) => Err(HostRefused::Unknown(host)),
        }
    }

    fn allows(&self, host: &str) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok()
            || host == "localhost"
            || host.ends_with(".localhost")
            || self.names.iter().any(|n| n == host)
    }
}

fn normalise(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The host part of `host[:port]` (`[v6]:port` for IPv6), normalised.
fn host_of(value: &str) -> Result<String, HostRefused> {
    let authority: http::uri::Authority =
        value.trim().parse().map_err(|_| HostRefused::Malformed)?;
    // userinfo@host is not a Host header, and the http crate takes any
    // text after the colon as a port.
    if authority.as_str().contains('@') {
        return Err(HostRefused::Malformed);
    }
    let port = authority.as_str()[authority.host().len()..].strip_prefix(':');
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(HostRefused::Malformed);
    }
    let host = normalise(authority.host());
    if host.is_empty() {
        return Err(HostRefused::Malformed);
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(p: &HostPolicy, host: &str) -> Result<(), HostRefused> {
        p.check(Some(host.as_bytes()), None)
    }

    #[test]
    fn ip_literals_and_localhost_pass_names_do_not() {
        let p = HostPolicy::default();
        for ok in [
            "127.0.0.1",
            "127.0.0.1:7470",
            "192.168.1.20:7470",
            "[::1]:7470",
            "[::1]",
            "localhost",
            "LOCALHOST:7470",
            "localhost.:7470",
            "cache.localhost:7470",
        ] {
            assert_eq!(check(&p, ok), Ok(()), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:7470",
            "127.0.0.1.nip.io",
            "localhost.attacker.example",
            "x",
            "hypernar",
        ] {
            assert!(
                matches!(check(&p, bad), Err(HostRefused::Unknown(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn operator_names_pass_in_any_case_with_any_port() {
        let p = HostPolicy::new(["Cache.LAN.", "", "hypernar"]);
        assert_eq!(check(&p, "cache.lan:7470"), Ok(()));
        assert_eq!(check(&p, "CACHE.lan"), Ok(()));
        assert_eq!(check(&p, "hypernar"), Ok(()));
        assert!(check(&p, "other.lan").is_err());
        assert!(check(&p, "cache.lan.attacker.example").is_err());
    }

    #[test]
    fn malformed_and_conflicting_hosts_are_refused() {
        let p = HostPolicy::default();
        for bad in ["", " ", "a b", "user@127.0.0.1", "127.0.0.1:port", "[::1"] {
            assert_eq!(check(&p, bad), Err(HostRefused::Malformed), "{bad:?}");
        }
        assert_eq!(
            p.check(Some(&[0xff, b'a']), None),
            Err(HostRefused::Malformed)
        );
        assert_eq!(
            p.check(Some(b"127.0.0.1:7470"), Some("attacker.example:7470")),
            Err(HostRefused::Conflict)
        );
        assert!(matches!(
            p.check(None, Some("attacker.example")),
            Err(HostRefused::Unknown(_))
        ));
        assert_eq!(p.check(None, Some("127.0.0.1:7470")), Ok(()));
        assert_eq!(p.check(None, None), Ok(()));
    }
}
