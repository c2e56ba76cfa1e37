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
//! two) and keeps the connection up while it answers; after
//! [`GIVE_UP_AFTER`] failed connects in a row (the peer left the LAN) it is
//! dropped, to be dialled again when it announces itself again.
//!
//! Anyone on the LAN can announce anything, so what is dialled is bounded:
//! at most [`MAX_DISCOVERED`] addresses at once, and at most [`MAX_PER_IP`]
//! of one IP address (one host announcing hundreds of services cannot
//! crowd out real neighbours). More are ignored, said once in the log.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use tracing::{debug, info, warn};

use crate::dialset::{may_dial, DialSet, Reach, Refused};
use crate::swarm::Swarm;

/// The DNS-SD service type hypernar nodes announce and browse.
pub const SERVICE: &str = "_hypernar._tcp.local.";
/// Most LAN peers a node dials at once.
pub const MAX_DISCOVERED: usize = 64;
/// Most LAN peers of one IP address a node dials at once.
pub const MAX_PER_IP: usize = 4;
/// A LAN peer is dropped after this many failed connects in a row.
pub const GIVE_UP_AFTER: u32 = 5;

/// A running announcement and browse; both end when this is dropped.
/// [`Mdns::run`] dials what the browse finds.
pub struct Mdns {
    daemon: ServiceDaemon,
    id: String,
    found: mdns_sd::Receiver<ServiceEvent>,
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

/// Announces this node (listening on `port`) on the LAN and starts
/// browsing for the others. The mDNS daemon runs on its own thread.
pub fn start(port: u16) -> Result<Mdns, mdns_sd::Error> {
    let id = format!("{:016x}", rand::random::<u64>());
    let daemon = ServiceDaemon::new()?;
    let host = format!("{id}.local.");
    let no_properties: &[(&str, &str)] = &[];
    let info = ServiceInfo::new(SERVICE, &id, &host, "", port, no_properties)?.enable_addr_auto();
    daemon.register(info)?;
    let found = daemon.browse(SERVICE)?;
    info!(id, port, "announcing this node on the local network (mDNS)");
    Ok(Mdns { daemon, id, found })
}

impl Mdns {
    /// The discovery service: dials the hypernar nodes found on the LAN
    /// until `shutdown`, and then ends the announcement (dropping `self`).
    pub async fn run(self, node: Swarm, shutdown: tokio_util::sync::CancellationToken) {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = self.browse(&node) => {}
        }
    }

    async fn browse(&self, node: &Swarm) {
        let dialled = Arc::new(Mutex::new(DialSet::new(MAX_DISCOVERED, MAX_PER_IP)));
        let own = self.id.clone();
        let (mut told_full, mut told_ip) = (false, false);
        while let Ok(event) = self.found.recv_async().await {
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
            // One address per peer, in a range a LAN may name: IPv4 if it
            // has one.
            let mut addrs: Vec<SocketAddr> = s
                .addresses
                .iter()
                .map(|a| SocketAddr::new(a.to_ip_addr(), s.port))
                .filter(|a| may_dial(*a, Reach::Lan))
                .collect();
            addrs.sort_by_key(|a| (a.is_ipv6(), *a));
            let Some(addr) = addrs.into_iter().next() else {
                debug!(name = %s.fullname, "no address a LAN peer may have (loopback, link-local); ignored");
                continue;
            };
            let taken = dialled.lock().expect("dialled lock").take(addr);
            match taken {
                Ok(()) => {}
                Err(Refused::Already | Refused::HeldBack) => continue,
                Err(Refused::Full) => {
                    if !std::mem::replace(&mut told_full, true) {
                        warn!(%addr, "more than {MAX_DISCOVERED} peers found on the local network; not dialling more until some go");
                    }
                    continue;
                }
                Err(Refused::IpFull) => {
                    if !std::mem::replace(&mut told_ip, true) {
                        warn!(%addr, "more than {MAX_PER_IP} peers announced by one address on the local network; not dialling more of it (said once)");
                    }
                    continue;
                }
            }
            info!(peer = %addr, id = theirs, "found on the local network");
            let (n, d) = (node.clone(), dialled.clone());
            node.spawn(async move {
                let why = n
                    .dial_while_reachable(addr.to_string(), GIVE_UP_AFTER, None)
                    .await;
                let mut d = d.lock().expect("dialled lock");
                d.release(addr);
                if why == crate::swarm::GaveUp::NotHypernar {
                    d.hold_back(addr, std::time::Instant::now());
                }
                drop(d);
                debug!(peer = %addr, "a LAN peer stopped answering; dialled again if it announces itself again");
            });
        }
    }
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
