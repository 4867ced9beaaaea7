//! Netlink requests to the kernel, built and sent by hand (<linux/netlink.h>): the box's rules
//! (nf_tables, `nftables`) take one batch.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
/// The size of `struct nlmsghdr`.
const HEADER: usize = 16;

/// Netlink messages and their attributes, one after the other in a buffer.
#[derive(Default)]
pub struct Writer {
    bytes: Vec<u8>,
    message_start: usize,
    /// Messages that ask for an acknowledgement.
    acknowledged: u32,
}

impl Writer {
    /// A `struct nlmsghdr` (its length written by [`Writer::end_message`]), then the family's
    /// own header (`struct ifinfomsg`, `struct nfgenmsg`).
    pub fn begin_message(&mut self, kind: u16, flags: u16, sequence: u32, family_header: &[u8]) {
        self.message_start = self.bytes.len();
        self.acknowledged += u32::from(flags & NLM_F_ACK != 0);
        self.bytes.extend_from_slice(&0u32.to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(&flags.to_ne_bytes());
        self.bytes.extend_from_slice(&sequence.to_ne_bytes());
        self.bytes.extend_from_slice(&0u32.to_ne_bytes());
        self.bytes.extend_from_slice(family_header);
    }

    pub fn end_message(&mut self) {
        let length = (self.bytes.len() - self.message_start) as u32;
        self.bytes[self.message_start..self.message_start + 4].copy_from_slice(&length.to_ne_bytes());
    }

    /// A `struct nlattr` and its payload, padded to 4 bytes.
    pub fn attribute(&mut self, kind: u16, payload: &[u8]) {
        self.bytes.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(payload);
        self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
    }

    /// A NUL-terminated string.
    pub fn string(&mut self, kind: u16, value: &str) {
        self.attribute(kind, &[value.as_bytes(), b"\0"].concat());
    }

    pub fn be32(&mut self, kind: u16, value: u32) {
        self.attribute(kind, &value.to_be_bytes());
    }

    /// An attribute holding the ones `inner` writes.
    pub fn nest(&mut self, kind: u16, inner: impl FnOnce(&mut Self)) {
        let start = self.bytes.len();
        self.attribute(kind | NLA_F_NESTED, &[]);
        inner(self);
        let length = (self.bytes.len() - start) as u16;
        self.bytes[start..start + 2].copy_from_slice(&length.to_ne_bytes());
    }

    /// Sends the messages to the kernel on a socket of `protocol` (`NETLINK_ROUTE`, ...) and
    /// waits for the acknowledgements they asked for; the first error the kernel reports is
    /// returned.
    pub fn send(&self, protocol: libc::c_int) -> std::io::Result<()> {
        // SAFETY: socket returns a new descriptor, owned at once; send and recv use buffers
        // that live through the calls, with their lengths.
        unsafe {
            let socket = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol);
            if socket < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let socket = OwnedFd::from_raw_fd(socket);
            if libc::send(socket.as_raw_fd(), self.bytes.as_ptr().cast(), self.bytes.len(), 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut confirmed = 0;
            let mut answer = vec![0u8; 16 << 10];
            while confirmed < self.acknowledged {
                let read = libc::recv(socket.as_raw_fd(), answer.as_mut_ptr().cast(), answer.len(), 0);
                if read < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                confirmed += confirmations(&answer[..read as usize])?;
            }
        }
        Ok(())
    }
}

/// How many acknowledgements (`NLMSG_ERROR` messages whose error is 0) `answer` holds; the
/// first error one is returned as the error.
fn confirmations(answer: &[u8]) -> std::io::Result<u32> {
    let mut confirmed = 0;
    let mut offset = 0;
    while offset + HEADER + 4 <= answer.len() {
        let word = |at: usize| [answer[offset + at], answer[offset + at + 1], answer[offset + at + 2], answer[offset + at + 3]];
        let length = u32::from_ne_bytes(word(0)) as usize;
        if u16::from_ne_bytes([answer[offset + 4], answer[offset + 5]]) == NLMSG_ERROR {
            let error = i32::from_ne_bytes(word(HEADER));
            if error != 0 {
                return Err(std::io::Error::from_raw_os_error(-error));
            }
            confirmed += 1;
        }
        if length < HEADER {
            break;
        }
        offset += length.next_multiple_of(4);
    }
    Ok(confirmed)
}
