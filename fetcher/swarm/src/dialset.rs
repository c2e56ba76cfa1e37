//! Addresses a node dials because someone told it of them (mDNS
//! announcements, DHT lookups): at most so many at once, and at most so
//! many of one IP address, so that one host announcing (or one DHT node
//! answering with) hundreds of addresses gets a few dials and cannot crowd
//! out real peers, nor make the node a tool against one victim; which
//! address ranges may be dialled at all ([`may_dial`]); and which addresses
//! were found not to be hypernar nodes ([`Quarantine`]). Pure.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Where an address was learned, which decides the ranges it may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Announced on the local network (mDNS): private and IPv4 link-local
    /// addresses are what a LAN has (169.254/16 on a direct cable or a
    /// zeroconf LAN); loopback, IPv6 link-local (which cannot be dialled
    /// without its interface) and the cloud metadata address 169.254.169.254
    /// are refused (a LAN host naming them would make the node dial this
    /// machine's own services).
    Lan,
    /// Found on the DHT, which anyone can write to: public addresses only.
    Internet,
    /// Found on the DHT with `serve --dht-allow-local`: private and
    /// loopback too (a DHT on one site, or on one machine in tests).
    Anywhere,
}

/// Whether an address learned as `reach` may be dialled. Never port 0, an
/// unspecified, multicast or broadcast address.
pub fn may_dial(addr: SocketAddr, reach: Reach) -> bool {
    if addr.port() == 0 {
        return false;
    }
    let ip = match addr.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    // (never, this machine or unroutable, a LAN's own)
    let (never, local, lan) = match ip {
        IpAddr::V4(v4) => (
            v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
            v4.is_loopback() || v4 == Ipv4Addr::new(169, 254, 169, 254),
            is_private_v4(v4) || v4.is_link_local(),
        ),
        IpAddr::V6(v6) => (
            v6.is_unspecified() || v6.is_multicast(),
            v6.is_loopback() || is_link_local_v6(v6),
            (v6.segments()[0] & 0xfe00) == 0xfc00,
        ),
    };
    match reach {
        _ if never => false,
        Reach::Anywhere => true,
        Reach::Lan => !local,
        Reach::Internet => !local && !lan,
    }
}

/// RFC 1918, shared address space (100.64/10) and the benchmarking range
/// (198.18/15, which the tests use).
fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private() || (a == 100 && (64..128).contains(&b)) || (a == 198 && (b & 0xfe) == 18)
}

fn is_link_local_v6(ip: Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xffc0) == 0xfe80
}

/// How long an address that accepted TCP but never completed a handshake
/// is not dialled again, however often it is announced.
/// A hypernar node at its connection cap closes new connections on arrival
/// too, so this is not long.
pub const QUARANTINE: Duration = Duration::from_secs(10 * 60);
/// Most addresses remembered so (the oldest are forgotten first).
pub const QUARANTINE_MAX: usize = 1024;

/// Addresses found not to be hypernar nodes: without this, every DHT
/// lookup or mDNS announcement would start another round of dials.
#[derive(Debug, Default)]
pub struct Quarantine {
    until: HashMap<SocketAddr, Instant>,
}

impl Quarantine {
    /// `addr` is not a hypernar node, as of `now`.
    pub fn add(&mut self, addr: SocketAddr, now: Instant) {
        self.until.retain(|_, t| *t > now);
        if self.until.len() >= QUARANTINE_MAX {
            if let Some(oldest) = self.until.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a) {
                self.until.remove(&oldest);
            }
        }
        self.until.insert(addr, now + QUARANTINE);
    }

    /// Whether `addr` is still held back at `now`.
    pub fn holds(&self, addr: SocketAddr, now: Instant) -> bool {
        self.until.get(&addr).is_some_and(|t| *t > now)
    }
}

/// Why an address is not dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Already being dialled.
    Already,
    /// As many as allowed are.
    Full,
    /// As many of its IP address as allowed are.
    IpFull,
    /// It answered TCP but is no hypernar node, a short while ago
    /// ([`DialSet::hold_back`]).
    HeldBack,
}

/// The addresses being dialled, within the bounds.
#[derive(Debug)]
pub struct DialSet {
    max: usize,
    max_per_ip: usize,
    addrs: HashSet<SocketAddr>,
    per_ip: HashMap<IpAddr, usize>,
    not_hypernar: Quarantine,
}

impl DialSet {
    pub fn new(max: usize, max_per_ip: usize) -> Self {
        DialSet {
            max,
            max_per_ip,
            addrs: HashSet::new(),
            per_ip: HashMap::new(),
            not_hypernar: Quarantine::default(),
        }
    }

    /// Marks `addr` dialled if it may be, now.
    pub fn take(&mut self, addr: SocketAddr) -> Result<(), Refused> {
        self.take_at(addr, Instant::now())
    }

    /// Marks `addr` dialled if it may be at `now`.
    pub fn take_at(&mut self, addr: SocketAddr, now: Instant) -> Result<(), Refused> {
        if self.not_hypernar.holds(addr, now) {
            return Err(Refused::HeldBack);
        }
        if self.addrs.contains(&addr) {
            return Err(Refused::Already);
        }
        if self.addrs.len() >= self.max {
            return Err(Refused::Full);
        }
        let n = self.per_ip.entry(addr.ip()).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Refused::IpFull);
        }
        *n += 1;
        self.addrs.insert(addr);
        Ok(())
    }

    /// `addr` is no longer dialled (nothing if it was not).
    pub fn release(&mut self, addr: SocketAddr) {
        if self.addrs.remove(&addr) {
            if let Some(n) = self.per_ip.get_mut(&addr.ip()) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&addr.ip());
                }
            }
        }
    }

    /// `addr` answered TCP but never completed a handshake: not dialled
    /// again for [`QUARANTINE`] from `now`.
    pub fn hold_back(&mut self, addr: SocketAddr, now: Instant) {
        self.not_hypernar.add(addr, now);
    }

    /// How many are dialled.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learned_addresses_are_dialled_only_in_the_ranges_their_source_may_name() {
        let table: &[(&str, [bool; 3])] = &[
            // address            Lan    Internet Anywhere
            ("8.8.8.8:49737", [true, true, true]),
            ("[2001:db8::1]:49737", [true, true, true]),
            ("192.168.1.9:49737", [true, false, true]),
            ("10.0.0.1:49737", [true, false, true]),
            ("172.16.0.1:49737", [true, false, true]),
            ("100.64.0.1:49737", [true, false, true]),
            ("198.18.0.1:49737", [true, false, true]),
            ("[fd00::1]:49737", [true, false, true]),
            ("127.0.0.1:49737", [false, false, true]),
            ("[::1]:49737", [false, false, true]),
            ("[::ffff:127.0.0.1]:49737", [false, false, true]),
            ("169.254.169.254:80", [false, false, true]),
            ("169.254.7.9:49737", [true, false, true]),
            ("[fe80::1]:49737", [false, false, true]),
            ("0.0.0.0:49737", [false, false, false]),
            ("224.0.0.251:5353", [false, false, false]),
            ("255.255.255.255:49737", [false, false, false]),
            ("8.8.8.8:0", [false, false, false]),
        ];
        for (addr, want) in table {
            let addr: SocketAddr = addr.parse().unwrap();
            let got = [Reach::Lan, Reach::Internet, Reach::Anywhere].map(|r| may_dial(addr, r));
            assert_eq!(got, *want, "{addr}");
        }
    }

    #[test]
    fn an_address_held_back_is_refused_until_its_time_is_up() {
        let t0 = Instant::now();
        let a = SocketAddr::from(([198, 18, 7, 1], 1));
        let mut d = DialSet::new(MAX, PER_IP);
        assert_eq!(d.take_at(a, t0), Ok(()));
        d.release(a);
        d.hold_back(a, t0);
        assert_eq!(d.take_at(a, t0 + QUARANTINE / 2), Err(Refused::HeldBack));
        assert_eq!(d.take_at(a, t0 + QUARANTINE), Ok(()));
    }

    #[test]
    fn quarantined_addresses_wait_their_time_and_memory_is_bounded() {
        let t0 = Instant::now();
        let at = |i: u32| SocketAddr::from((Ipv4Addr::from(0xc612_0000 + i), 1));
        let mut q = Quarantine::default();
        q.add(at(0), t0);
        assert!(q.holds(at(0), t0 + QUARANTINE - Duration::from_secs(1)));
        assert!(!q.holds(at(0), t0 + QUARANTINE));
        assert!(!q.holds(at(1), t0));
        for i in 1..=QUARANTINE_MAX as u32 {
            q.add(at(i), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(q.until.len(), QUARANTINE_MAX);
        assert!(
            !q.holds(at(0), t0 + Duration::from_secs(2)),
            "the oldest went first"
        );
        assert!(q.holds(at(QUARANTINE_MAX as u32), t0 + Duration::from_secs(2)));
    }

    const MAX: usize = 64;
    const PER_IP: usize = 4;

    #[test]
    fn dials_are_bounded_in_all_and_per_address_and_come_back_when_released() {
        let at = |ip: u8, port: u16| SocketAddr::from(([198, 18, 7, ip], port));
        let mut d = DialSet::new(MAX, PER_IP);
        for port in 0..PER_IP as u16 {
            assert_eq!(d.take(at(1, port)), Ok(()));
        }
        assert_eq!(d.take(at(1, 0)), Err(Refused::Already));
        assert_eq!(d.take(at(1, 999)), Err(Refused::IpFull));
        d.release(at(1, 0));
        d.release(at(1, 0));
        assert_eq!(d.take(at(1, 999)), Ok(()));
        assert_eq!(d.take(at(1, 0)), Err(Refused::IpFull));
        let mut ip = 2;
        while d.len() < MAX {
            assert_eq!(d.take(at(ip, 1)), Ok(()));
            ip += 1;
        }
        assert_eq!(d.take(at(250, 1)), Err(Refused::Full));
        d.release(at(2, 1));
        assert_eq!(d.take(at(250, 1)), Ok(()));
        // Releasing what was never taken changes nothing.
        d.release(at(251, 1));
        assert_eq!(d.len(), MAX);
        assert_eq!(d.per_ip.values().sum::<usize>(), MAX);
        assert!(d.per_ip.values().all(|n| (1..=PER_IP).contains(n)));
    }
}
