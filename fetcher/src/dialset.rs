//! Addresses a node dials because someone told it of them (mDNS
//! announcements, DHT lookups): at most so many at once, and at most so
//! many of one IP address, so that one host announcing (or one DHT node
//! answering with) hundreds of addresses gets a few dials and cannot crowd
//! out real peers, nor make the node a tool against one victim. Pure.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

/// Why an address is not dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Already being dialled.
    Already,
    /// As many as allowed are.
    Full,
    /// As many of its IP address as allowed are.
    IpFull,
}

/// The addresses being dialled, within the bounds.
#[derive(Debug)]
pub struct DialSet {
    max: usize,
    max_per_ip: usize,
    addrs: HashSet<SocketAddr>,
    per_ip: HashMap<IpAddr, usize>,
}

impl DialSet {
    pub fn new(max: usize, max_per_ip: usize) -> Self {
        DialSet {
            max,
            max_per_ip,
            addrs: HashSet::new(),
            per_ip: HashMap::new(),
        }
    }

    /// Marks `addr` dialled if it may be.
    pub fn take(&mut self, addr: SocketAddr) -> Result<(), Refused> {
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
