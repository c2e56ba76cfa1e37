//! Zero-configuration peers on the local network: DNS-SD over multicast
//! DNS (RFC 6762/6763, the `mdns-sd` crate), service `_hypernar._tcp`.
//!
//! A node announces only that it is there and its port: its instance name
//! and host name are a random 64-bit id drawn at each start, with no TXT
//! record — never a store path, a feed key or a discovery key. Whoever is
//! on the LAN learns that a hypernar node runs at that address; what it
//! holds is found the usual way, by opening feeds whose keys one knows.
//!
//! Every node browses for the others. Of two nodes that find each other,
//! the one with the smaller id dials (so a pair makes one connection, not
//! two) and keeps the connection up like a `--peer`. At most
//! [`MAX_DISCOVERED`] addresses are dialled; more are ignored (logged).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use tracing::{debug, info, warn};

use crate::node::Node;

/// The DNS-SD service type hypernar nodes announce and browse.
pub const SERVICE: &str = "_hypernar._tcp.local.";
/// Most LAN peers a node dials.
pub const MAX_DISCOVERED: usize = 64;

/// A running announcement and browse; both end when this is dropped.
pub struct Mdns {
    daemon: ServiceDaemon,
    id: String,
}

impl std::fmt::Debug for Mdns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mdns")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for Mdns {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}

impl Mdns {
    /// This node's random id on the LAN.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The instance id of a service's full name (`<id>._hypernar._tcp.local.`).
fn instance(fullname: &str) -> Option<&str> {
    let id = fullname.strip_suffix(SERVICE)?.strip_suffix('.')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// Whether this node should dial a peer it found: only the smaller id of
/// a pair dials, and never itself.
fn should_dial(own: &str, theirs: &str) -> bool {
    own < theirs
}

/// Announces this node (listening on `port`) and dials the hypernar nodes
/// found on the LAN. The mDNS daemon runs on its own thread.
pub fn start(node: &Node, port: u16) -> Result<Mdns, mdns_sd::Error> {
    let id = format!("{:016x}", rand::random::<u64>());
    let daemon = ServiceDaemon::new()?;
    let host = format!("{id}.local.");
    let no_properties: &[(&str, &str)] = &[];
    let info = ServiceInfo::new(SERVICE, &id, &host, "", port, no_properties)?.enable_addr_auto();
    daemon.register(info)?;
    let found = daemon.browse(SERVICE)?;
    info!(id, port, "announcing this node on the local network (mDNS)");
    let dialled: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
    let (own, task_node) = (id.clone(), node.clone());
    node.spawn(async move {
        while let Ok(event) = found.recv_async().await {
            let ServiceEvent::ServiceResolved(s) = event else {
                continue;
            };
            let Some(theirs) = instance(&s.fullname) else {
                debug!(name = %s.fullname, "not a hypernar instance name; ignored");
                continue;
            };
            if !should_dial(&own, theirs) {
                continue;
            }
            // One address per peer: IPv4 if it has one.
            let mut addrs: Vec<IpAddr> = s.addresses.iter().map(|a| a.to_ip_addr()).collect();
            addrs.sort_by_key(|a| (a.is_ipv6(), *a));
            let Some(ip) = addrs.into_iter().find(|a| !a.is_unspecified()) else {
                continue;
            };
            let addr = SocketAddr::new(ip, s.port);
            let mut d = dialled.lock().expect("dialled lock");
            if d.contains(&addr) {
                continue;
            }
            if d.len() >= MAX_DISCOVERED {
                warn!(%addr, "more than {MAX_DISCOVERED} peers found on the local network; not dialling more");
                continue;
            }
            d.insert(addr);
            drop(d);
            info!(peer = %addr, id = theirs, "found on the local network");
            task_node.dial(addr.to_string());
        }
    });
    Ok(Mdns { daemon, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_sixteen_hex_digits_of_our_service() {
        assert_eq!(
            instance("0123456789abcdef._hypernar._tcp.local."),
            Some("0123456789abcdef")
        );
        for bad in [
            "0123456789abcdef._http._tcp.local.",
            "0123456789abcde._hypernar._tcp.local.",
            "0123456789abcdeg._hypernar._tcp.local.",
            "x.0123456789abcdef._hypernar._tcp.local.",
            "._hypernar._tcp.local.",
            "",
        ] {
            assert_eq!(instance(bad), None, "{bad}");
        }
    }

    #[test]
    fn of_a_pair_exactly_one_dials_and_never_itself() {
        let (a, b) = ("0000000000000001", "00000000000000ff");
        assert!(should_dial(a, b));
        assert!(!should_dial(b, a));
        assert!(!should_dial(a, a));
    }
}
