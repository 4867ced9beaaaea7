//! The sockets the runtime makes for a box's traffic: the host's connection for each of the
//! box's connections out (and for its DNS queries over TCP), a datagram flow's socket, a
//! connection into the box. Each is the runtime's process's alone from its making
//! (`crate::fork`), however long its connect takes: a child forked meanwhile holds none, so
//! the far end sees the connection end when the box's does.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::{TcpStream, UdpSocket};

use crate::fork::{forked_away, ParentOnly};

/// A TCP connection from the host to `destination`.
pub(super) async fn connect(destination: SocketAddr) -> io::Result<ParentOnly<TcpStream>> {
    let socket = ParentOnly::make(|| Socket::new(Domain::for_address(destination), Type::STREAM, None))?;
    connect_with(socket, destination).await
}

/// A TCP connection to `destination` made with `socket`, a TCP socket not yet connected (one
/// made in a box's network namespace by its init, for one).
pub(super) async fn connect_with(socket: ParentOnly<Socket>, destination: SocketAddr) -> io::Result<ParentOnly<TcpStream>> {
    let unconnected = socket.get().ok_or_else(forked_away)?;
    unconnected.set_nonblocking(true)?;
    match unconnected.connect(&SockAddr::from(destination)) {
        Ok(()) => {}
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(error) => return Err(error),
    }
    // As tokio's own connect: writable once the handshake ends either way, and the socket's
    // error says which.
    let stream = socket.try_map(|socket| TcpStream::from_std(socket.into()))?;
    let connecting = stream.get().ok_or_else(forked_away)?;
    connecting.writable().await?;
    match connecting.take_error()? {
        Some(error) => Err(error),
        None => Ok(stream),
    }
}

/// A socket received from elsewhere (made in a box's network namespace by its init), held at
/// once.
pub(super) fn received(socket: OwnedFd) -> ParentOnly<Socket> {
    ParentOnly::new(Socket::from(socket))
}

/// A UDP socket of the host's connected to `destination`.
pub(super) fn datagrams_to(destination: SocketAddr) -> io::Result<ParentOnly<UdpSocket>> {
    let socket = ParentOnly::make(|| Socket::new(Domain::for_address(destination), Type::DGRAM, None))?;
    datagrams_with(socket, destination)
}

/// `socket`, a UDP socket, connected to `destination`.
pub(super) fn datagrams_with(socket: ParentOnly<Socket>, destination: SocketAddr) -> io::Result<ParentOnly<UdpSocket>> {
    let unconnected = socket.get().ok_or_else(forked_away)?;
    unconnected.set_nonblocking(true)?;
    unconnected.connect(&SockAddr::from(destination))?;
    socket.try_map(|socket| UdpSocket::from_std(socket.into()))
}
