//! IPv4 CIDR blocks (`10.96.0.0/12`): parsing, containment and the n-th address.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: an address with its host bits cleared and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: u32,
    prefix: u8,
}

impl Cidr {
    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// The prefix length (0..=32).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// Whether `ip` lies inside the block.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == self.network
    }

    /// Whether the two blocks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let m = self.mask() & other.mask();
        self.network & m == other.network & m
    }

    /// The `n`-th address of the block (`nth(1)` is the first usable one), if inside it.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let size: u64 = 1u64 << (32 - u32::from(self.prefix));
        if u64::from(n) >= size {
            return None;
        }
        Some(Ipv4Addr::from(self.network | n))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not an IPv4 CIDR (expected A.B.C.D/N)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("`{prefix}` is not a prefix length 0..=32"))?;
        let cidr = Cidr { network: 0, prefix };
        let network = u32::from(addr) & cidr.mask();
        if network != u32::from(addr) {
            return Err(format!(
                "`{s}` has host bits set (the network is {}/{prefix})",
                Ipv4Addr::from(network)
            ));
        }
        Ok(Cidr { network, prefix })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn parses_and_computes() {
        let c: Cidr = "10.96.0.0/12".parse().unwrap();
        assert_eq!(c.nth(1), Some(Ipv4Addr::new(10, 96, 0, 1)));
        assert!(c.contains(Ipv4Addr::new(10, 111, 255, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 112, 0, 0)));
        let pods: Cidr = "10.244.0.0/16".parse().unwrap();
        assert!(!c.overlaps(&pods));
        assert!(c.overlaps(&"10.100.0.0/16".parse().unwrap()));
        assert!(
            "10.96.0.1/12"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("host bits")
        );
        assert!("10.96.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
        assert_eq!("10.0.0.0/30".parse::<Cidr>().unwrap().nth(4), None);
    }
}
