//! A box's outbound policy: its allow-list (`allow_net`, BoxLite's syntax) and the addresses no
//! box reaches unless one of its IP rules lists them (rule 3 of `network`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::lock;
use crate::error::{Error, Result};

/// How long an address a name resolved to stays reachable, at least: programs keep what they
/// resolved for longer than short TTLs say.
const LEARNED_MINIMUM: Duration = Duration::from_secs(300);
/// How long at most, whatever the TTL said.
const LEARNED_MAXIMUM: Duration = Duration::from_secs(24 * 3600);
/// Most addresses a box's policy keeps learned, and most names per address: a box resolving
/// endless distinct names cannot grow the runtime without bound (the oldest go first).
const LEARNED_ADDRESSES: usize = 4096;
const NAMES_PER_ADDRESS: usize = 16;

/// One `allow_net` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// An IP or a CIDR block: the address and the prefix length.
    Block(IpAddr, u8),
    /// A host name, lowercase, without a trailing dot.
    Name(String),
    /// `*.suffix`: any name below the suffix (not the suffix itself).
    Below(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    target: Target,
    /// `host:port`: the rule allows that port only.
    port: Option<u16>,
}

/// Which ports of an address are reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ports {
    Any,
    Only(Vec<u16>),
}

impl Ports {
    fn allows(&self, port: u16) -> bool {
        match self {
            Ports::Any => true,
            Ports::Only(ports) => ports.contains(&port),
        }
    }

    fn widen(&mut self, port: Option<u16>) {
        match (&mut *self, port) {
            (_, None) => *self = Ports::Any,
            (Ports::Only(ports), Some(port)) if !ports.contains(&port) => ports.push(port),
            _ => {}
        }
    }
}

/// Addresses the resolver returned for allowed names: the names, and until when.
type Learned = HashMap<IpAddr, (Vec<String>, Instant)>;

/// The box's allow-list and what its resolver learned from answering it.
#[derive(Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Nothing is allowed (a box whose network was turned off while it runs).
    closed: bool,
    /// The ports reachable at a learned address are the ones the rules allow its names (looked
    /// up at each check, so that a changed list applies at once). Shared with the policies that
    /// replace this one, so that nothing learned meanwhile is lost.
    learned: Arc<Mutex<Learned>>,
}

impl Policy {
    /// Parses `allow_net`; an empty list allows every name and every address but the ones no
    /// box reaches unlisted. A bad entry is an `InvalidArgument` error naming it.
    pub fn parse(allow_net: &[String]) -> Result<Self> {
        let rules = allow_net.iter().map(|entry| parse_rule(entry)).collect::<Result<_>>()?;
        Ok(Self { rules, closed: false, learned: Arc::default() })
    }

    /// A policy that allows nothing (but what IP rules would: it has none).
    pub fn closed() -> Self {
        Self { rules: Vec::new(), closed: true, learned: Arc::default() }
    }

    /// This policy with the rules of `allow_net`, keeping what the resolver learned: an address
    /// of a name the new list still allows stays reachable, as the program that resolved it
    /// expects.
    pub fn replaced(&self, allow_net: Option<&[String]>) -> Result<Self> {
        let replacement = allow_net.map_or_else(|| Ok(Self::closed()), Self::parse)?;
        Ok(Self { learned: Arc::clone(&self.learned), ..replacement })
    }

    /// Whether the list is empty (everything allowed).
    fn open(&self) -> bool {
        self.rules.is_empty() && !self.closed
    }

    /// Whether the box's resolver answers for `name` (one the list names, or any when the list
    /// is empty); the others do not resolve.
    pub fn resolves(&self, name: &str) -> bool {
        self.open() || self.name_ports(name).is_some()
    }

    /// The ports the rules that match `name` allow, if any does.
    fn name_ports(&self, name: &str) -> Option<Ports> {
        let name = normalize_name(name);
        let mut ports: Option<Ports> = None;
        for rule in &self.rules {
            let matches = match &rule.target {
                Target::Name(listed) => *listed == name,
                Target::Below(suffix) => name.len() > suffix.len() + 1 && name.ends_with(suffix.as_str()) && name.as_bytes()[name.len() - suffix.len() - 1] == b'.',
                Target::Block(..) => false,
            };
            if matches {
                match &mut ports {
                    Some(ports) => ports.widen(rule.port),
                    None => ports = Some(rule.port.map_or(Ports::Any, |port| Ports::Only(vec![port]))),
                }
            }
        }
        ports
    }

    /// Records what the resolver answered for `name`: those addresses become reachable on the
    /// ports `name`'s rules allow, for `ttl` (bounded by [`LEARNED_MINIMUM`] and
    /// [`LEARNED_MAXIMUM`]).
    pub fn learn(&self, name: &str, addresses: &[(IpAddr, u32)]) {
        // An open list looks at no learned address; a closed one allows none.
        if self.open() || self.closed || addresses.is_empty() {
            return;
        }
        let name = normalize_name(name);
        let now = Instant::now();
        let mut learned = lock(&self.learned);
        if learned.len() + addresses.len() > LEARNED_ADDRESSES {
            learned.retain(|_, (_, until)| *until > now);
        }
        while learned.len() + addresses.len() > LEARNED_ADDRESSES {
            let Some(oldest) = learned.iter().min_by_key(|(_, (_, until))| *until).map(|(address, _)| *address) else { break };
            learned.remove(&oldest);
        }
        for (address, ttl) in addresses {
            let until = now + Duration::from_secs(u64::from(*ttl)).clamp(LEARNED_MINIMUM, LEARNED_MAXIMUM);
            let (names, known_until) = learned.entry(canonical(*address)).or_insert_with(|| (Vec::new(), until));
            if !names.contains(&name) {
                if names.len() == NAMES_PER_ADDRESS {
                    names.remove(0);
                }
                names.push(name.clone());
            }
            *known_until = (*known_until).max(until);
        }
    }

    /// Whether the box may connect to `destination`; the error says why not.
    pub fn check(&self, destination: SocketAddr) -> std::result::Result<(), String> {
        let address = canonical(destination.ip());
        let port = destination.port();
        let listed = self.rules.iter().any(|rule| match rule.target {
            Target::Block(block, length) => in_block(address, block, length) && rule.port.is_none_or(|only| only == port),
            _ => false,
        });
        if listed {
            return Ok(());
        }
        if let Some(reason) = unreachable_unlisted(address) {
            return Err(format!("{destination} is {reason}, which boxes reach only when allow_net lists it"));
        }
        if self.open() {
            return Ok(());
        }
        let learned = lock(&self.learned);
        let allowed = learned.get(&address).filter(|(_, until)| *until > Instant::now()).is_some_and(|(names, _)| {
            names.iter().filter_map(|name| self.name_ports(name)).any(|ports| ports.allows(port))
        });
        if allowed {
            Ok(())
        } else {
            Err(format!("{destination} is not on the box's allow_net (nor an address an allowed name resolved to)"))
        }
    }
}

/// Why no box reaches `address` unless its IP rules list it: the host's own addresses (its
/// loopback services), link-local (cloud metadata), the box's own link, and addresses that name
/// no single host.
fn unreachable_unlisted(address: IpAddr) -> Option<&'static str> {
    let reason = match address {
        IpAddr::V4(v4) if v4.is_loopback() || v4.is_unspecified() || v4.octets()[0] == 0 => "the host's loopback",
        IpAddr::V4(v4) if v4.is_link_local() => "link-local (cloud metadata)",
        IpAddr::V4(v4) if in_block(IpAddr::V4(v4), IpAddr::V4(Ipv4Addr::from(boxlite_protocol::network::ADDRESS)), 24) => "the box's own link",
        IpAddr::V4(v4) if v4.is_multicast() || v4.is_broadcast() || v4.octets()[0] >= 240 => "not a single host",
        IpAddr::V6(v6) if v6.is_loopback() || v6.is_unspecified() => "the host's loopback",
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => "link-local",
        IpAddr::V6(v6) if v6.is_multicast() => "not a single host",
        _ if is_host_address(address) => "one of the host's own addresses",
        _ => return None,
    };
    Some(reason)
}

/// Whether `address` is one of the host's: binding a socket to it works only then.
fn is_host_address(address: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(address, 0)).is_ok()
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

fn in_block(address: IpAddr, block: IpAddr, length: u8) -> bool {
    match (address, block) {
        (IpAddr::V4(address), IpAddr::V4(block)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(length)).unwrap_or(0);
            u32::from(address) & mask == u32::from(block) & mask
        }
        (IpAddr::V6(address), IpAddr::V6(block)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(length)).unwrap_or(0);
            u128::from(address) & mask == u128::from(block) & mask
        }
        _ => false,
    }
}

fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn parse_rule(entry: &str) -> Result<Rule> {
    let invalid = |why: &str| Error::InvalidArgument(format!("bad allow_net entry {entry:?}: {why}"));
    let trimmed = entry.trim();
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    // `[v6]:port`, `v4:port`, `name:port`; a bare IPv6 address has colons of its own.
    let (host, port) = if let Some(rest) = trimmed.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| invalid("an opening [ without its ]"))?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(invalid("text after ]")),
        };
        (host, port)
    } else if trimmed.matches(':').count() == 1 {
        let (host, port) = trimmed.split_once(':').unwrap_or((trimmed, ""));
        (host, Some(port))
    } else {
        (trimmed, None)
    };
    let port = port
        .map(|port| port.parse::<u16>().ok().filter(|port| *port > 0).ok_or_else(|| invalid("the port must be a number from 1 to 65535")))
        .transpose()?;
    let target = if let Some((address, length)) = host.split_once('/') {
        let address: IpAddr = address.parse().map_err(|_| invalid("a CIDR block needs an IP address before the /"))?;
        let maximum = if address.is_ipv4() { 32 } else { 128 };
        let length = length.parse::<u8>().ok().filter(|length| *length <= maximum).ok_or_else(|| invalid(&format!("the prefix length must be a number from 0 to {maximum}")))?;
        Target::Block(address, length)
    } else if let Ok(address) = host.parse::<IpAddr>() {
        Target::Block(canonical(address), if canonical(address).is_ipv4() { 32 } else { 128 })
    } else if let Some(suffix) = host.strip_prefix("*.") {
        check_name(suffix).map_err(|why| invalid(&why))?;
        Target::Below(normalize_name(suffix))
    } else {
        check_name(host).map_err(|why| invalid(&why))?;
        Target::Name(normalize_name(host))
    };
    Ok(Rule { target, port })
}

/// A host name: dot-separated labels of letters, digits, `-` and `_`, each 1–63 long, 253 in
/// all; not all digits (that would be a mistyped address).
pub(super) fn check_name(name: &str) -> std::result::Result<(), String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err("a host name must be 1 to 253 characters".to_string());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each part of a host name must be 1 to 63 characters".to_string());
        }
        if !label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_') || label.starts_with('-') || label.ends_with('-') {
            return Err("a host name has letters, digits, '-' and '_' only (a wildcard only as a leading \"*.\")".to_string());
        }
    }
    if name.split('.').all(|label| label.bytes().all(|byte| byte.is_ascii_digit())) {
        return Err("not an IP address, nor a host name".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> Policy {
        Policy::parse(&entries.iter().map(ToString::to_string).collect::<Vec<_>>()).expect("valid allow_net")
    }

    fn address(text: &str) -> SocketAddr {
        text.parse().expect("socket address")
    }

    #[test]
    fn entries_parse_in_every_form() {
        let parsed = policy(&["198.51.100.7", "203.0.113.0/24", "example.com", "*.example.org", "api.example.net:443", "[2001:db8::1]:80", "2001:db8::/32", "10.1.2.3:22"]);
        assert_eq!(parsed.rules.len(), 8);
        assert_eq!(parsed.rules[4], Rule { target: Target::Name("api.example.net".to_string()), port: Some(443) });
        assert_eq!(parsed.rules[5].port, Some(80));
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in ["", "1.2.3.4/33", "exa mple.com", "*.", "host:0", "host:http", "a..b", "-a.com", "1.2.3", "::1/129", "[::1"] {
            let error = Policy::parse(&[bad.to_string()]).expect_err(bad).to_string();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn ip_rules_and_blocks() {
        let rules = policy(&["198.51.100.7", "203.0.113.0/24", "10.9.9.9:22"]);
        assert!(rules.check(address("198.51.100.7:443")).is_ok());
        assert!(rules.check(address("198.51.100.8:443")).is_err());
        assert!(rules.check(address("203.0.113.200:80")).is_ok());
        assert!(rules.check(address("10.9.9.9:22")).is_ok());
        assert!(rules.check(address("10.9.9.9:23")).is_err());
        assert!(rules.check(address("[::ffff:198.51.100.7]:443")).is_ok());
    }

    #[test]
    fn unlisted_host_and_metadata_are_refused_even_when_all_is_allowed() {
        let open = policy(&[]);
        assert!(open.check(address("198.51.100.9:80")).is_ok());
        for refused in ["127.0.0.1:5432", "169.254.169.254:80", "[::1]:80", "[::ffff:127.0.0.1]:80", "10.0.2.2:80", "0.0.0.0:80", "[fe80::1]:80"] {
            assert!(open.check(address(refused)).is_err(), "{refused}");
        }
        assert!(policy(&["169.254.169.254"]).check(address("169.254.169.254:80")).is_ok());
    }

    #[test]
    fn names_resolve_only_when_listed_and_reach_only_their_answers() {
        let rules = policy(&["example.com", "*.example.org", "api.example.net:443"]);
        assert!(rules.resolves("EXAMPLE.com."));
        assert!(rules.resolves("a.b.example.org"));
        assert!(!rules.resolves("example.org"));
        assert!(!rules.resolves("badexample.org"));
        assert!(!rules.resolves("evil.com"));
        assert!(rules.check(address("198.51.100.7:443")).is_err());
        rules.learn("example.com", &[("198.51.100.7".parse().expect("ip"), 5)]);
        assert!(rules.check(address("198.51.100.7:443")).is_ok());
        assert!(rules.check(address("198.51.100.8:443")).is_err());
        rules.learn("api.example.net", &[("203.0.113.5".parse().expect("ip"), 60)]);
        assert!(rules.check(address("203.0.113.5:443")).is_ok());
        assert!(rules.check(address("203.0.113.5:80")).is_err());
        rules.learn("evil.com", &[("203.0.113.66".parse().expect("ip"), 60)]);
        assert!(rules.check(address("203.0.113.66:443")).is_err());
    }

    #[test]
    fn a_replaced_list_applies_to_what_was_learned() {
        let rules = policy(&["example.com", "api.example.net:443"]);
        rules.learn("example.com", &[("198.51.100.7".parse().expect("ip"), 60)]);
        rules.learn("api.example.net", &[("203.0.113.5".parse().expect("ip"), 60)]);
        let replaced = rules.replaced(Some(&["api.example.net".to_string()])).expect("valid");
        assert!(replaced.check(address("198.51.100.7:443")).is_err(), "example.com is no longer listed");
        assert!(replaced.check(address("203.0.113.5:80")).is_ok(), "api.example.net now on every port");
        assert!(!replaced.resolves("example.com"));
        let closed = replaced.replaced(None).expect("valid");
        assert!(closed.check(address("203.0.113.5:80")).is_err() && !closed.resolves("api.example.net"));
        assert!(closed.check(address("198.51.100.99:80")).is_err());
    }
}
