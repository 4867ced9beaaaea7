//! The box's resolver: every DNS query the box sends, to whatever server, arrives here (the
//! box's datagrams to port 53 come from `datagrams`, its connections to port 53 from `proxy`). A name the policy does not list gets NXDOMAIN (a sinkhole); a
//! listed one is forwarded to the host's nameservers as it came, and the addresses in the answer
//! become reachable for the box (`Policy::learn`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::RData;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{sockets, Outbound};
use crate::fork::ParentOnly;

/// How long one upstream server gets to answer.
const UPSTREAM_WAIT: Duration = Duration::from_secs(3);
/// How long a DNS connection may stay quiet before it is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// The largest DNS message over UDP (EDNS allows up to this).
const MAX_UDP_MESSAGE: usize = 4096;

/// Answers the queries of one DNS connection over TCP (length-prefixed messages) until the box
/// closes it or it goes quiet.
pub(super) async fn serve_stream(mut stream: ParentOnly<TcpStream>, outbound: Arc<Outbound>) {
    let Ok(_slot) = Arc::clone(&outbound.traffic.queries).try_acquire_owned() else { return };
    while let Some(query) = read_framed(&mut stream).await {
        let Some(answer) = answer(&query, &outbound, true).await else { break };
        let Ok(length) = u16::try_from(answer.len()) else { break };
        if stream.write_all(&length.to_be_bytes()).await.is_err() || stream.write_all(&answer).await.is_err() {
            break;
        }
    }
}

/// One length-prefixed message; nothing when the peer closes or goes quiet for [`TCP_IDLE`].
async fn read_framed(stream: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let read = async {
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).await.ok()?;
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut message).await.ok()?;
        Some(message)
    };
    tokio::time::timeout(TCP_IDLE, read).await.ok().flatten()
}

/// The answer to one query, or nothing for what is not a query. Only a query with one
/// question is answered (every resolver sends those): the policy looks at that question.
pub(super) async fn answer(query: &[u8], outbound: &Outbound, over_tcp: bool) -> Option<Vec<u8>> {
    let message = Message::from_vec(query).ok()?;
    if message.message_type() != MessageType::Query {
        return None;
    }
    let [question] = message.queries() else {
        return refusal(&message, ResponseCode::FormErr);
    };
    let name = question.name().to_ascii();
    let policy = outbound.policy();
    if !policy.resolves(&name) {
        log::debug!("box {}: {name} does not resolve: not on its allow_net", outbound.traffic.box_id);
        return refusal(&message, ResponseCode::NXDomain);
    }
    // Upstream, the query goes with an id of the runtime's, not the box's: an answer the box
    // could forge would have to guess it (and the port).
    let mut upstream_query = query.to_vec();
    let upstream_id: u16 = rand::random();
    upstream_query[..2].copy_from_slice(&upstream_id.to_be_bytes());
    for server in outbound.upstream.iter() {
        let answered = tokio::time::timeout(UPSTREAM_WAIT, forward(&upstream_query, *server, over_tcp)).await;
        let Ok(Some(mut answer)) = answered else { continue };
        let Ok(parsed) = Message::from_vec(&answer) else { continue };
        if parsed.id() != upstream_id || parsed.queries() != message.queries() {
            continue;
        }
        policy.learn(&name, &addresses(&parsed));
        answer[..2].copy_from_slice(&message.id().to_be_bytes());
        return Some(answer);
    }
    refusal(&message, ResponseCode::ServFail)
}

/// The A and AAAA records of an answer (a CNAME chain's included), with their TTLs.
fn addresses(answer: &Message) -> Vec<(IpAddr, u32)> {
    answer
        .answers()
        .iter()
        .filter_map(|record| match record.data() {
            RData::A(address) => Some((IpAddr::V4(address.0), record.ttl())),
            RData::AAAA(address) => Some((IpAddr::V6(address.0), record.ttl())),
            _ => None,
        })
        .collect()
}

/// An answer with no records and `code`.
fn refusal(query: &Message, code: ResponseCode) -> Option<Vec<u8>> {
    let mut response = Message::error_msg(query.id(), query.op_code(), code);
    response.add_queries(query.queries().to_vec());
    response.set_recursion_desired(query.recursion_desired());
    response.set_recursion_available(true);
    response.to_vec().ok()
}

/// Sends the query as it came to `server` and returns its answer.
async fn forward(query: &[u8], server: SocketAddr, over_tcp: bool) -> Option<Vec<u8>> {
    if over_tcp {
        let mut stream = sockets::connect(server).await.ok()?;
        let length = u16::try_from(query.len()).ok()?;
        stream.write_all(&length.to_be_bytes()).await.ok()?;
        stream.write_all(query).await.ok()?;
        return read_framed(&mut stream).await;
    }
    let held = sockets::datagrams_to(server).ok()?;
    let socket = held.get()?;
    socket.send(query).await.ok()?;
    let mut buffer = vec![0u8; MAX_UDP_MESSAGE];
    let length = socket.recv(&mut buffer).await.ok()?;
    buffer.truncate(length);
    Some(buffer)
}

/// The host's nameservers: `servers` (comma-separated addresses, port 53 unless given) when
/// set, else the `nameserver` lines of `resolv_conf` (but link-local ones, which need the
/// host's interface).
pub fn upstream_servers(servers: Option<&str>, resolv_conf: &str) -> Vec<SocketAddr> {
    let parse = |text: &str| -> Option<SocketAddr> { text.parse::<SocketAddr>().ok().or_else(|| text.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))) };
    match servers {
        Some(servers) => servers.split(',').map(str::trim).filter_map(parse).collect(),
        None => resolv_conf
            .lines()
            .filter_map(|line| line.trim().strip_prefix("nameserver"))
            .filter(|rest| !rest.contains('%'))
            .filter_map(|rest| parse(rest.trim()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_come_from_the_setting_or_resolv_conf() {
        let conf = "# comment\nnameserver 192.0.2.53\nsearch example\nnameserver fe80::1%eth0\nnameserver ::1\n";
        assert_eq!(upstream_servers(None, conf), vec!["192.0.2.53:53".parse().expect("addr"), "[::1]:53".parse().expect("addr")]);
        assert_eq!(upstream_servers(Some("198.51.100.53, 203.0.113.1:5353"), conf), vec!["198.51.100.53:53".parse().expect("addr"), "203.0.113.1:5353".parse().expect("addr")]);
    }
}
