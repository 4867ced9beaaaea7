//! The HTTP/2 of a connection that carries secrets, when the host chose it (gRPC, and clients
//! that prefer it): each stream the box opens goes to the host as a stream of its own, its
//! target and header values rewritten as HTTP/1.1's are ([`super::http1`], `secrets` rule 1);
//! bodies and trailers go as written, both ways.
//!
//! # Rules
//!
//! 1. A stream moves no faster than the slower side reads it: what one side sends is taken
//!    from the other's flow-control window only once the host (or the box) granted room for
//!    it, so the runtime holds at most a window's worth per stream ([`STREAM_WINDOW`]) and per
//!    connection ([`CONNECTION_WINDOW`]) each way.
//! 2. A stream's failure is that stream's: the side still there gets a reset (`CANCEL`, or the
//!    reason given), and the connection's other streams go on.
//! 3. A `CONNECT` (a WebSocket or a tunnel over HTTP/2) is refused with 403, as HTTP/1.1's
//!    upgrades are: what follows it could not be rewritten.
//! 4. Rewritten header values are sent as never indexed (RFC 7541 §7.1.3): no table of header
//!    compression on the way to the host keeps a value.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use tokio::io::{AsyncRead, AsyncWrite};

use super::http1;
use super::SecretSpec;

/// Streams the box may have open at once on one connection (the host's own limit applies too).
const MAX_STREAMS: u32 = 256;

/// What either side may send on a stream, and on the whole connection, before the runtime
/// passed it on: HTTP/2's default (64 KiB) would hold a download from a distant host to 64 KiB
/// per round trip; these are about what browsers and curl offer.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 4 << 20;

const FORBIDDEN_CONNECT: &str = no_protocol_switch!();
const BAD_REQUEST: &str = "boxlite: a request to a secret's host could not be rewritten.\r\n";

/// The box's counters of what moved each way (headers and data), added to as it moves.
pub(super) struct Moved<'a> {
    pub sent: &'a AtomicU64,
    pub received: &'a AtomicU64,
}

/// Relays the box's HTTP/2 connection to the host's, stream by stream, until either ends.
pub(super) async fn relay<B, H>(from_box: B, to_host: H, secrets: &[&SecretSpec], moved: &Moved<'_>) -> Result<(), String>
where
    B: AsyncRead + AsyncWrite + Unpin,
    H: AsyncRead + AsyncWrite + Unpin,
{
    let (host, host_connection) = h2::client::Builder::new()
        .enable_push(false)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(to_host)
        .await
        .map_err(|error| format!("HTTP/2 with the host failed: {error}"))?;
    let mut inside = h2::server::Builder::new()
        .max_concurrent_streams(MAX_STREAMS)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(from_box)
        .await
        .map_err(|error| format!("the box's HTTP/2 failed: {error}"))?;
    let mut host_connection = std::pin::pin!(host_connection);
    let mut host_open = true;
    let mut streams = FuturesUnordered::new();
    loop {
        tokio::select! {
            accepted = inside.accept() => match accepted {
                Some(Ok((request, respond))) => streams.push(exchange(host.clone(), request, respond, secrets, moved)),
                Some(Err(error)) => return Err(format!("the box's HTTP/2 failed: {error}")),
                None => return Ok(()),
            },
            ended = &mut host_connection, if host_open => {
                // The box's streams under way fail with the host's; the box is told to open no more.
                host_open = false;
                inside.graceful_shutdown();
                if let Err(error) = ended {
                    log::debug!("HTTP/2 with a secret's host ended: {error}");
                }
            }
            Some(()) = streams.next(), if !streams.is_empty() => {}
        }
    }
}

/// One request of the box and its response (rules 2 and 3).
async fn exchange(host: h2::client::SendRequest<Bytes>, request: Request<RecvStream>, mut respond: h2::server::SendResponse<Bytes>, secrets: &[&SecretSpec], moved: &Moved<'_>) {
    let (mut head, from_box) = request.into_parts();
    if head.method == Method::CONNECT {
        refuse(&mut respond, StatusCode::FORBIDDEN, FORBIDDEN_CONNECT);
        return;
    }
    if rewrite(&mut head, secrets).is_none() {
        refuse(&mut respond, StatusCode::BAD_REQUEST, BAD_REQUEST);
        return;
    }
    moved.sent.fetch_add(head_size(&head.uri, &head.headers), Ordering::Relaxed);
    let Ok(mut host) = host.ready().await else {
        respond.send_reset(Reason::REFUSED_STREAM);
        return;
    };
    let ends = from_box.is_end_stream();
    let (response, to_host) = match host.send_request(Request::from_parts(head, ()), ends) {
        Ok(sent) => sent,
        Err(error) => {
            respond.send_reset(error.reason().unwrap_or(Reason::REFUSED_STREAM));
            return;
        }
    };
    let upload = async {
        if !ends {
            pump(from_box, to_host, moved.sent).await;
        }
    };
    let download = async {
        let response = match response.await {
            Ok(response) => response,
            Err(error) => {
                respond.send_reset(error.reason().unwrap_or(Reason::CANCEL));
                return;
            }
        };
        let (head, from_host) = response.into_parts();
        moved.received.fetch_add(head_size(&Uri::default(), &head.headers), Ordering::Relaxed);
        let ends = from_host.is_end_stream();
        match respond.send_response(Response::from_parts(head, ()), ends) {
            Ok(to_box) if !ends => pump(from_host, to_box, moved.received).await,
            Ok(_) => {}
            Err(error) => log::debug!("a response from a secret's host could not reach the box: {error}"),
        }
    };
    tokio::join!(upload, download);
}

/// The request's target and header values with the values in place (rule 4); `None` when the
/// result is no valid target or header value.
fn rewrite(head: &mut http::request::Parts, secrets: &[&SecretSpec]) -> Option<()> {
    if let Some(target) = head.uri.path_and_query() {
        let rewritten = http1::substitute_in_target(target.as_str(), secrets);
        if rewritten != target.as_str().as_bytes() {
            let mut parts = std::mem::take(&mut head.uri).into_parts();
            parts.path_and_query = Some(http::uri::PathAndQuery::try_from(rewritten).ok()?);
            head.uri = Uri::from_parts(parts).ok()?;
        }
    }
    for (name, value) in &mut head.headers {
        let rewritten = http1::header_value(name.as_str(), value.as_bytes(), secrets);
        if rewritten != value.as_bytes() {
            *value = HeaderValue::from_bytes(&rewritten).ok()?;
            value.set_sensitive(true);
        }
    }
    Some(())
}

/// Moves a stream's data and trailers from `from` to `to` (rules 1 and 2), counting the data.
async fn pump(mut from: RecvStream, mut to: SendStream<Bytes>, moved: &AtomicU64) {
    while let Some(data) = from.data().await {
        let mut data = match data {
            Ok(data) => data,
            Err(error) => {
                to.send_reset(error.reason().unwrap_or(Reason::CANCEL));
                return;
            }
        };
        let length = data.len();
        while !data.is_empty() {
            to.reserve_capacity(data.len());
            match std::future::poll_fn(|context| to.poll_capacity(context)).await {
                Some(Ok(0)) => {}
                Some(Ok(granted)) => {
                    if to.send_data(data.split_to(granted.min(data.len())), false).is_err() {
                        return;
                    }
                }
                // The receiving side's stream is gone: the exchange's other half tells the box.
                Some(Err(_)) | None => return,
            }
        }
        moved.fetch_add(length as u64, Ordering::Relaxed);
        let _ = from.flow_control().release_capacity(length);
    }
    let _ = match from.trailers().await {
        Ok(Some(trailers)) => {
            moved.fetch_add(head_size(&Uri::default(), &trailers), Ordering::Relaxed);
            to.send_trailers(trailers)
        }
        Ok(None) => to.send_data(Bytes::new(), true),
        Err(error) => {
            to.send_reset(error.reason().unwrap_or(Reason::CANCEL));
            Ok(())
        }
    };
}

/// A short plain-text answer from the runtime itself.
fn refuse(respond: &mut h2::server::SendResponse<Bytes>, status: StatusCode, text: &'static str) {
    let response = Response::builder().status(status).header("content-type", "text/plain").body(()).expect("a status and a fixed header make a response");
    if let Ok(mut body) = respond.send_response(response, false) {
        let _ = body.send_data(Bytes::from_static(text.as_bytes()), true);
    }
}

fn head_size(target: &Uri, headers: &http::HeaderMap) -> u64 {
    let fields: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    (fields + target.path_and_query().map_or(0, |target| target.as_str().len())) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_go_into_the_path_and_header_values_as_never_indexed() {
        let key = SecretSpec::for_test("key", "sk-live", &["api.example.com"], "<K>");
        let request = Request::builder()
            .method("POST")
            .uri("https://api.example.com/v1/run?key=%3CK%3E")
            .header("authorization", "Bearer <K>")
            .header("x-other", "plain")
            .body(())
            .expect("request");
        let (mut head, ()) = request.into_parts();
        rewrite(&mut head, &[&key]).expect("rewritten");
        assert_eq!(head.uri.to_string(), "https://api.example.com/v1/run?key=sk-live");
        assert_eq!(head.headers["authorization"], "Bearer sk-live");
        assert!(head.headers["authorization"].is_sensitive() && !head.headers["x-other"].is_sensitive());
    }

    #[test]
    fn a_value_that_cannot_be_a_header_value_refuses_the_request() {
        let key = SecretSpec::for_test("key", "bad\u{7f}value", &["api.example.com"], "<K>");
        let (mut head, ()) = Request::builder().uri("https://api.example.com/").header("x-key", "<K>").body(()).expect("request").into_parts();
        assert!(rewrite(&mut head, &[&key]).is_none());
    }

    #[tokio::test]
    async fn a_connect_is_refused_and_never_reaches_the_host() {
        let (box_side, relay_inside) = tokio::io::duplex(1 << 16);
        let (relay_outside, host_side) = tokio::io::duplex(1 << 16);
        let host = async {
            let mut connection = h2::server::handshake(host_side).await.expect("host handshake");
            connection.accept().await.is_some()
        };
        let client = async {
            let (client, connection) = h2::client::handshake(box_side).await.expect("box handshake");
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            let request = Request::builder().method("CONNECT").uri("elsewhere.example:443").body(()).expect("request");
            let (response, _) = client.ready().await.expect("ready").send_request(request, false).expect("sent");
            let status = response.await.expect("response").status();
            driver.abort();
            status
        };
        let relayed = async {
            let unused = AtomicU64::new(0);
            let _ = relay(relay_inside, relay_outside, &[], &Moved { sent: &unused, received: &unused }).await;
        };
        let joined = tokio::time::timeout(std::time::Duration::from_secs(30), async { tokio::join!(host, client, relayed) });
        let (host_saw_a_stream, status, ()) = joined.await.expect("the relay answered");
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(!host_saw_a_stream);
    }

    /// Both ends in memory: a client for the box, a server for the host, the relay between.
    #[tokio::test]
    async fn streams_carry_values_bodies_past_a_window_and_trailers_both_ways() {
        let key = SecretSpec::for_test("key", "sk-live", &["api.example.com"], "<K>");
        let (box_side, relay_inside) = tokio::io::duplex(1 << 16);
        let (relay_outside, host_side) = tokio::io::duplex(1 << 16);
        let (sent, received) = (AtomicU64::new(0), AtomicU64::new(0));
        let moved = Moved { sent: &sent, received: &received };
        let host = async {
            let mut connection = h2::server::handshake(host_side).await.expect("host handshake");
            let (request, mut respond) = connection.accept().await.expect("a stream").expect("a request");
            let served = async move {
                let (head, mut body) = request.into_parts();
                let mut received = Vec::new();
                while let Some(data) = body.data().await {
                    let data = data.expect("data");
                    let _ = body.flow_control().release_capacity(data.len());
                    received.extend_from_slice(&data);
                }
                let trailers = body.trailers().await.expect("trailers").expect("some");
                let mut to_box = respond.send_response(Response::new(()), false).expect("response");
                to_box.send_data(Bytes::from(vec![b'r'; 3_000_000]), false).expect("data");
                let mut answer = http::HeaderMap::new();
                answer.insert("grpc-status", HeaderValue::from_static("0"));
                to_box.send_trailers(answer).expect("trailers");
                (head, received.len(), trailers)
            };
            let (served, _) = tokio::join!(served, async { while connection.accept().await.is_some() {} });
            served
        };
        let client = async {
            let (client, connection) = h2::client::handshake(box_side).await.expect("box handshake");
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            let mut client = client.ready().await.expect("ready");
            let request = Request::builder().method("POST").uri("https://api.example.com/call?k=%3CK%3E").header("x-key", "<K>").body(()).expect("request");
            let (response, mut to_host) = client.send_request(request, false).expect("sent");
            let upload = async move {
                let mut body = Bytes::from(vec![b'u'; 2_000_000]);
                while !body.is_empty() {
                    to_host.reserve_capacity(body.len());
                    let granted = std::future::poll_fn(|context| to_host.poll_capacity(context)).await.expect("capacity").expect("granted");
                    to_host.send_data(body.split_to(granted.min(body.len())), false).expect("data");
                }
                let mut trailers = http::HeaderMap::new();
                trailers.insert("x-trailer", HeaderValue::from_static("<K>"));
                to_host.send_trailers(trailers).expect("trailers");
            };
            let download = async {
                let mut body = response.await.expect("response").into_body();
                let mut length = 0;
                while let Some(data) = body.data().await {
                    let data = data.expect("data");
                    let _ = body.flow_control().release_capacity(data.len());
                    length += data.len();
                }
                (length, body.trailers().await.expect("trailers").expect("some"))
            };
            let ((), downloaded) = tokio::join!(upload, download);
            drop(client);
            driver.abort();
            downloaded
        };
        let relayed = async {
            let _ = relay(relay_inside, relay_outside, &[&key], &moved).await;
        };
        // A window not given back would stall the streams: a bound, not a wait.
        let joined = tokio::time::timeout(std::time::Duration::from_secs(30), async { tokio::join!(host, client, relayed) });
        let ((head, uploaded, trailers), (downloaded, answer), ()) = joined.await.expect("the streams stalled");
        assert_eq!(head.uri.path_and_query().map(|target| target.as_str()), Some("/call?k=sk-live"));
        assert_eq!(head.headers["x-key"], "sk-live");
        assert_eq!((uploaded, downloaded), (2_000_000, 3_000_000));
        assert_eq!(trailers["x-trailer"], "<K>", "trailers go as written");
        assert_eq!(answer["grpc-status"], "0");
        assert!(sent.load(Ordering::Relaxed) >= 2_000_000 && received.load(Ordering::Relaxed) >= 3_000_000);
    }
}
