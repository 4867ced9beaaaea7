//! The box's TCP connections out: each one the box opens arrives here (its rules divert it),
//! with the address the box asked for kept by the kernel (`SO_ORIGINAL_DST`). One to port 53 is
//! DNS over TCP, which the resolver answers (`dns::serve_stream`). The policy decides;
//! an allowed connection is made by the runtime, from the host, and the two are joined. A
//! refused one is reset, so the program in the box fails at once. One to a host the box's
//! secrets go to is the secrets proxy's to complete ([`secrets`]).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use boxlite_protocol::network::DNS_SERVICE_PORT;

use super::{relay, secrets, sockets, Outbound};
use crate::fork::ParentOnly;

/// How long the runtime tries to reach a destination before the box's connection is reset.
pub(super) const CONNECT_WAIT: Duration = Duration::from_secs(30);

/// Serves the box's connections, which come to `listener`, until the task is aborted.
pub(super) async fn serve(listener: ParentOnly<TcpListener>, outbound: Arc<Outbound>) {
    let Some(listener) = listener.get() else { return };
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            super::after_failed_accept().await;
            continue;
        };
        let inbound = ParentOnly::new(inbound);
        if inbound.get().and_then(original_destination).is_some_and(|destination| destination.port() == DNS_SERVICE_PORT) {
            tokio::spawn(super::dns::serve_stream(inbound, Arc::clone(&outbound)));
            continue;
        }
        let Ok(slot) = Arc::clone(&outbound.traffic.relays).try_acquire_owned() else {
            log::debug!("box {}: connection refused: {} relayed at once already", outbound.traffic.box_id, super::RELAYS_PER_BOX);
            outbound.traffic.connections.fetch_add(1, Ordering::Relaxed);
            outbound.traffic.errors.fetch_add(1, Ordering::Relaxed);
            reset(inbound);
            continue;
        };
        let outbound = Arc::clone(&outbound);
        tokio::spawn(async move {
            take_out(inbound, &outbound).await;
            drop(slot);
        });
    }
}

/// Takes one of the box's connections out: to its destination, if the policy allows it.
async fn take_out(inbound: ParentOnly<TcpStream>, outbound: &Outbound) {
    let traffic = &outbound.traffic;
    traffic.connections.fetch_add(1, Ordering::Relaxed);
    let Some(destination) = inbound.get().and_then(original_destination) else {
        reset(inbound);
        return;
    };
    if let Err(reason) = outbound.policy().check(destination) {
        log::debug!("box {}: connection refused: {reason}", traffic.box_id);
        traffic.errors.fetch_add(1, Ordering::Relaxed);
        reset(inbound);
        return;
    }
    if let (Some(secrets), secrets::HTTPS_PORT) = (&outbound.secrets, destination.port()) {
        let claimed = match inbound.get() {
            Some(stream) => secrets.claims(stream).await,
            None => None,
        };
        if let Some(hello) = claimed {
            if let Err(reason) = secrets.complete(inbound, destination, hello, traffic).await {
                log::debug!("box {}: a connection that carries secrets failed: {reason}", traffic.box_id);
                traffic.errors.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
    }
    let connection = match tokio::time::timeout(CONNECT_WAIT, sockets::connect(destination)).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            log::debug!("box {}: could not reach {destination}: {error}", traffic.box_id);
            traffic.errors.fetch_add(1, Ordering::Relaxed);
            reset(inbound);
            return;
        }
        Err(_) => {
            traffic.errors.fetch_add(1, Ordering::Relaxed);
            reset(inbound);
            return;
        }
    };
    let _ = inbound.get().map(|inbound| inbound.set_nodelay(true));
    let _ = connection.get().map(|connection| connection.set_nodelay(true));
    let _ = relay::join(inbound, connection, &traffic.bytes_sent, &traffic.bytes_received).await;
}

/// Closes the connection with a reset, as a refused connection would.
fn reset(stream: ParentOnly<TcpStream>) {
    let _ = stream.get().map(TcpStream::set_zero_linger);
    drop(stream);
}

/// `SO_ORIGINAL_DST` and `IP6T_SO_ORIGINAL_DST` (linux/netfilter_ipv4.h, netfilter_ipv6/ip6_tables.h).
const SO_ORIGINAL_DST: libc::c_int = 80;

/// The address the box connected to, before its rules diverted the connection here.
fn original_destination(stream: &TcpStream) -> Option<SocketAddr> {
    let fd = stream.as_raw_fd();
    match stream.local_addr().ok()? {
        SocketAddr::V4(_) => {
            // SAFETY: zeroed sockaddr_in is valid; getsockopt writes at most `length` bytes.
            let mut address: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            let mut length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: see above; the pointers live through the call.
            let code = unsafe { libc::getsockopt(fd, libc::SOL_IP, SO_ORIGINAL_DST, std::ptr::addr_of_mut!(address).cast(), &mut length) };
            (code == 0).then(|| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr)), u16::from_be(address.sin_port))))
        }
        SocketAddr::V6(_) => {
            // SAFETY: as above, with sockaddr_in6.
            let mut address: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            let mut length = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            // SAFETY: see above.
            let code = unsafe { libc::getsockopt(fd, libc::SOL_IPV6, SO_ORIGINAL_DST, std::ptr::addr_of_mut!(address).cast(), &mut length) };
            (code == 0).then(|| SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(address.sin6_addr.s6_addr), u16::from_be(address.sin6_port), 0, 0)))
        }
    }
}
