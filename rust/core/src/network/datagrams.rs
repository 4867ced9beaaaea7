//! The box's datagrams. The box's interface is a tun device whose descriptor the runtime holds
//! (`boxlite_protocol::network`): every UDP datagram leaving the box arrives here as an IPv4
//! packet, and what the runtime sends the box it writes there as one.
//!
//! A datagram to port 53, to whatever server, is a DNS query, which the box's resolver answers
//! ([`super::dns`]) as from that server. Any other goes where the box's policy allows it (as a
//! TCP connection would: `Policy::check`), from a socket of the host's connected there, one per
//! box port and destination (a *flow*, closed after [`FLOW_IDLE`] without a datagram either
//! way); what comes back on it goes to the box as from that destination. A datagram the policy
//! refuses is answered at once with ICMP "administratively prohibited" from the box's gateway
//! (rule 4: the program sees `EHOSTUNREACH`), one the destination refuses with ICMP "port
//! unreachable" (`ECONNREFUSED`). Fragments (the interface's MTU spares UDP them), IP options
//! and other protocols are dropped.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use boxlite_protocol::network::{DNS_SERVICE_PORT, GATEWAY};

use super::{sockets, Outbound};
use crate::exec::fd::Registered;
use crate::fork::ParentOnly;
use crate::lock;

/// How long a flow lasts without a datagram either way.
const FLOW_IDLE: Duration = Duration::from_secs(60);
/// The largest IPv4 packet.
const MAX_PACKET: usize = 65_535;
/// The largest UDP payload in one.
const MAX_PAYLOAD: usize = MAX_PACKET - IPV4_HEADER - UDP_HEADER;
const IPV4_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_UDP: u8 = 17;
/// ICMP destination unreachable, and two of its codes.
const ICMP_UNREACHABLE: u8 = 3;
const PORT_UNREACHABLE: u8 = 3;
const ADMINISTRATIVELY_PROHIBITED: u8 = 13;

/// Serves the box's datagrams until the task is aborted.
pub(super) async fn serve(interface: ParentOnly<OwnedFd>, outbound: Arc<Outbound>) {
    let interface = match Registered::new(interface) {
        Ok(interface) => Arc::new(Interface(interface)),
        Err(error) => {
            log::warn!("box {} sends no datagrams: its interface cannot be read: {error}", outbound.traffic.box_id);
            return;
        }
    };
    let flows: Arc<Flows> = Arc::default();
    let mut buffer = vec![0u8; MAX_PACKET];
    loop {
        let length = match interface.read(&mut buffer).await {
            Ok(length) => length,
            Err(_) => {
                super::after_failed_accept().await;
                continue;
            }
        };
        let packet = &buffer[..length];
        let Some(datagram) = Datagram::parse(packet) else { continue };
        if datagram.destination.port() == DNS_SERVICE_PORT {
            answer_query(&datagram, &interface, &outbound);
            continue;
        }
        if let Err(reason) = outbound.policy().check(SocketAddr::V4(datagram.destination)) {
            log::debug!("box {}: datagram refused: {reason}", outbound.traffic.box_id);
            interface.write(&unreachable(ADMINISTRATIVELY_PROHIBITED, packet));
            continue;
        }
        send(&datagram, &flows, &interface, &outbound);
    }
}

/// The box's interface: the box's packets are read from it, and what it is sent is written to it.
struct Interface(Registered);

impl Interface {
    /// One packet (the descriptor is non-blocking: the shim opened it so).
    async fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.0.readable().await?;
            // SAFETY: read(2) into a buffer we own, at most its length.
            let read = ready.try_io(|fd| match unsafe { libc::read(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) } {
                -1 => Err(io::Error::last_os_error()),
                length => Ok(length.unsigned_abs()),
            });
            if let Ok(result) = read {
                return result;
            }
        }
    }

    /// Gives the box one packet. One the device cannot take now is dropped, as a network would.
    fn write(&self, packet: &[u8]) {
        // SAFETY: write(2) of a buffer we own; a tun device takes one packet per write.
        unsafe { libc::write(self.0.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
    }
}

/// A UDP datagram the box sent, in the packet that carried it.
struct Datagram<'a> {
    source: SocketAddrV4,
    destination: SocketAddrV4,
    payload: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// The datagram `packet` carries, if it is a whole IPv4 UDP one without options.
    fn parse(packet: &'a [u8]) -> Option<Self> {
        let header = packet.get(..IPV4_HEADER)?;
        let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let fragmented = u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0;
        if header[0] != 0x45 || header[9] != IPPROTO_UDP || fragmented || total > packet.len() {
            return None;
        }
        let udp = packet.get(IPV4_HEADER..total)?;
        let length = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
        let address = |at: usize| Ipv4Addr::new(header[at], header[at + 1], header[at + 2], header[at + 3]);
        let port = |at: usize| u16::from_be_bytes([udp[at], udp[at + 1]]);
        Some(Self {
            source: SocketAddrV4::new(address(12), port(0)),
            destination: SocketAddrV4::new(address(16), port(2)),
            payload: udp.get(UDP_HEADER..length)?,
        })
    }
}

/// The IPv4 packet that carries `payload` from `source` to `destination` (at most
/// [`MAX_PAYLOAD`] bytes of it).
fn datagram_packet(source: SocketAddrV4, destination: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
    let udp_length = (UDP_HEADER + payload.len()) as u16;
    let mut packet = ipv4_header(*source.ip(), *destination.ip(), IPPROTO_UDP, UDP_HEADER + payload.len());
    packet.extend_from_slice(&source.port().to_be_bytes());
    packet.extend_from_slice(&destination.port().to_be_bytes());
    packet.extend_from_slice(&udp_length.to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    let pseudo_header = [&source.ip().octets()[..], &destination.ip().octets()[..], &[0, IPPROTO_UDP], &udp_length.to_be_bytes()[..]].concat();
    // A computed zero is sent as all ones: zero means "no checksum".
    let checksum = match checksum(&[&pseudo_header, &packet[IPV4_HEADER..]]) {
        0 => 0xffff,
        sum => sum,
    };
    packet[IPV4_HEADER + 6..IPV4_HEADER + 8].copy_from_slice(&checksum.to_be_bytes());
    packet
}

/// ICMP destination unreachable with `code`, from the box's gateway to the sender of `packet`
/// (an IPv4 packet the box sent), quoting its header and first eight bytes as RFC 792 asks.
fn unreachable(code: u8, packet: &[u8]) -> Vec<u8> {
    let quoted = &packet[..packet.len().min(IPV4_HEADER + UDP_HEADER)];
    let sender = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let mut reply = ipv4_header(Ipv4Addr::from(GATEWAY), sender, IPPROTO_ICMP, 8 + quoted.len());
    reply.extend_from_slice(&[ICMP_UNREACHABLE, code, 0, 0, 0, 0, 0, 0]);
    reply.extend_from_slice(quoted);
    let sum = checksum(&[&reply[IPV4_HEADER..]]);
    reply[IPV4_HEADER + 2..IPV4_HEADER + 4].copy_from_slice(&sum.to_be_bytes());
    reply
}

/// An IPv4 header without options for `length` bytes after it, its checksum filled in.
fn ipv4_header(source: Ipv4Addr, destination: Ipv4Addr, protocol: u8, length: usize) -> Vec<u8> {
    let total = (IPV4_HEADER + length) as u16;
    let mut header = Vec::with_capacity(IPV4_HEADER + length);
    // Version 4, five words; no TOS; the length; id 0 and "don't fragment"; TTL 64.
    header.extend_from_slice(&[0x45, 0]);
    header.extend_from_slice(&total.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0]);
    header.extend_from_slice(&source.octets());
    header.extend_from_slice(&destination.octets());
    let sum = checksum(&[&header]);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
    header
}

/// The Internet checksum (RFC 1071) of `parts` one after the other; only the last may have an
/// odd length.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for pair in part.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Has the resolver answer a query, as from the server it was sent to.
fn answer_query(datagram: &Datagram<'_>, interface: &Arc<Interface>, outbound: &Arc<Outbound>) {
    let Ok(slot) = Arc::clone(&outbound.traffic.queries).try_acquire_owned() else { return };
    let (query, server, asker) = (datagram.payload.to_vec(), datagram.destination, datagram.source);
    let (interface, outbound) = (Arc::clone(interface), Arc::clone(outbound));
    tokio::spawn(async move {
        let _slot = slot;
        if let Some(answer) = super::dns::answer(&query, &outbound, false).await {
            interface.write(&datagram_packet(server, asker, &answer));
        }
    });
}

/// The box's flows, by its port and the destination.
type Flows = Mutex<HashMap<(u16, SocketAddrV4), Arc<Flow>>>;

/// The host's socket of one flow (the runtime's process's alone: `crate::fork`), and when a
/// datagram last went either way.
struct Flow {
    socket: ParentOnly<UdpSocket>,
    last: Mutex<Instant>,
}

impl Flow {
    fn touch(&self) {
        *lock(&self.last) = Instant::now();
    }

    fn socket(&self) -> io::Result<&UdpSocket> {
        self.socket.get().ok_or_else(crate::fork::forked_away)
    }
}

/// Sends an allowed datagram on its flow, opening the flow if it has none. A flow takes one of
/// the box's relays (`RELAYS_PER_BOX`): past them the datagram is dropped.
fn send(datagram: &Datagram<'_>, flows: &Arc<Flows>, interface: &Arc<Interface>, outbound: &Arc<Outbound>) {
    let key = (datagram.source.port(), datagram.destination);
    let existing = lock(flows).get(&key).cloned();
    let flow = match existing {
        Some(flow) => flow,
        None => {
            let Ok(slot) = Arc::clone(&outbound.traffic.relays).try_acquire_owned() else {
                log::debug!("box {}: datagram dropped: {} relayed at once already", outbound.traffic.box_id, super::RELAYS_PER_BOX);
                return;
            };
            let flow = match sockets::datagrams_to(SocketAddr::V4(datagram.destination)) {
                Ok(socket) => Arc::new(Flow { socket, last: Mutex::new(Instant::now()) }),
                Err(error) => {
                    log::debug!("box {}: no flow to {}: {error}", outbound.traffic.box_id, datagram.destination);
                    return;
                }
            };
            lock(flows).insert(key, Arc::clone(&flow));
            let (flows, interface, outbound, answered, box_end) = (Arc::clone(flows), Arc::clone(interface), Arc::clone(outbound), Arc::clone(&flow), datagram.source);
            tokio::spawn(async move {
                relay_answers(&answered, box_end, key.1, &interface, &outbound).await;
                lock(&flows).remove(&key);
                drop(slot);
            });
            flow
        }
    };
    flow.touch();
    if let Ok(sent) = flow.socket().and_then(|socket| send_now(socket, datagram.payload)) {
        outbound.traffic.bytes_sent.fetch_add(sent as u64, Ordering::Relaxed);
    }
}

/// Sends `payload` on `socket` without waiting: a datagram the socket has no room for is
/// dropped. Not tokio's `try_send`, which sends nothing until the reactor has seen the new
/// socket writable, and would drop a flow's first datagram.
fn send_now(socket: &UdpSocket, payload: &[u8]) -> io::Result<usize> {
    // SAFETY: send(2) of a buffer we own on a socket we own; it does not block.
    match unsafe { libc::send(socket.as_raw_fd(), payload.as_ptr().cast(), payload.len(), libc::MSG_DONTWAIT) } {
        -1 => Err(io::Error::last_os_error()),
        sent => Ok(sent.unsigned_abs()),
    }
}

/// Gives the box what comes back on a flow, as from `destination` to `box_end`, until the flow
/// idles for [`FLOW_IDLE`].
async fn relay_answers(flow: &Flow, box_end: SocketAddrV4, destination: SocketAddrV4, interface: &Interface, outbound: &Outbound) {
    let Ok(socket) = flow.socket() else { return };
    let mut buffer = vec![0u8; MAX_PAYLOAD];
    loop {
        let idle_for = lock(&flow.last).elapsed();
        if idle_for >= FLOW_IDLE {
            return;
        }
        match tokio::time::timeout(FLOW_IDLE - idle_for, socket.recv(&mut buffer)).await {
            Ok(Ok(length)) => {
                flow.touch();
                outbound.traffic.bytes_received.fetch_add(length as u64, Ordering::Relaxed);
                interface.write(&datagram_packet(destination, box_end, &buffer[..length]));
            }
            Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused => {
                interface.write(&unreachable(PORT_UNREACHABLE, &datagram_packet(box_end, destination, &[])));
            }
            Ok(Err(_)) | Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> SocketAddrV4 {
        text.parse().expect("address")
    }

    #[test]
    fn a_datagram_packet_parses_back_with_valid_checksums() {
        let packet = datagram_packet(address("10.0.2.15:40000"), address("198.51.100.10:7"), b"ping!");
        assert_eq!(packet.len(), IPV4_HEADER + UDP_HEADER + 5);
        assert_eq!(checksum(&[&packet[..IPV4_HEADER]]), 0, "the header sums to all ones");
        let pseudo_header = [&[10, 0, 2, 15][..], &[198, 51, 100, 10], &[0, IPPROTO_UDP], &13u16.to_be_bytes()].concat();
        assert_eq!(checksum(&[&pseudo_header, &packet[IPV4_HEADER..]]), 0, "so does the datagram with its pseudo-header");
        let parsed = Datagram::parse(&packet).expect("a datagram");
        assert_eq!((parsed.source, parsed.destination, parsed.payload), (address("10.0.2.15:40000"), address("198.51.100.10:7"), &b"ping!"[..]));
    }

    #[test]
    fn the_checksum_is_rfc_1071s() {
        // RFC 1071's example: 0x0001 0xf203 0xf4f5 0xf6f7 sums to 0xddf2; sent inverted.
        assert_eq!(checksum(&[&[0x00, 0x01, 0xf2, 0x03], &[0xf4, 0xf5, 0xf6, 0xf7]]), !0xddf2);
        assert_eq!(checksum(&[&[0xab]]), !0xab00, "an odd byte is padded with a zero");
    }

    #[test]
    fn fragments_options_other_protocols_and_short_packets_are_not_datagrams() {
        let packet = datagram_packet(address("10.0.2.15:1"), address("198.51.100.10:7"), b"x");
        let with = |at: usize, byte: u8| {
            let mut changed = packet.clone();
            changed[at] = byte;
            changed
        };
        assert!(Datagram::parse(&with(6, 0x20)).is_none(), "more fragments");
        assert!(Datagram::parse(&with(7, 1)).is_none(), "a later fragment");
        assert!(Datagram::parse(&with(0, 0x46)).is_none(), "options");
        assert!(Datagram::parse(&with(9, 6)).is_none(), "TCP");
        assert!(Datagram::parse(&packet[..packet.len() - 1]).is_none(), "shorter than it says");
        assert!(Datagram::parse(&with(IPV4_HEADER + 5, 100)).is_none(), "a UDP length past the packet");
    }

    #[test]
    fn an_unreachable_quotes_the_refused_packets_head_and_goes_back_to_its_sender() {
        let refused = datagram_packet(address("10.0.2.15:40000"), address("169.254.169.254:80"), &[7; 100]);
        let reply = unreachable(ADMINISTRATIVELY_PROHIBITED, &refused);
        assert_eq!(reply.len(), IPV4_HEADER + 8 + IPV4_HEADER + UDP_HEADER);
        assert_eq!((&reply[12..16], &reply[16..20], reply[9]), (&GATEWAY[..], &[10, 0, 2, 15][..], IPPROTO_ICMP));
        assert_eq!((reply[IPV4_HEADER], reply[IPV4_HEADER + 1]), (ICMP_UNREACHABLE, ADMINISTRATIVELY_PROHIBITED));
        assert_eq!(checksum(&[&reply[IPV4_HEADER..]]), 0);
        assert_eq!(&reply[IPV4_HEADER + 8..], &refused[..IPV4_HEADER + UDP_HEADER]);
    }
}
