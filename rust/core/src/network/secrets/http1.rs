//! The HTTP/1.1 of a connection that carries secrets: the box's requests relayed one after
//! another with the values in place (`secrets` rule 1), their bodies by their framing and as
//! written; the host's responses relayed as they come. The rewriting of targets and header
//! values is HTTP/2's too ([`super::http2`]).

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::SecretSpec;

/// The longest request head (request line and headers) the runtime reads.
const MAX_HEAD: usize = 64 << 10;
const MAX_HEADERS: usize = 128;

const FORBIDDEN_UPGRADE: &[u8] = concat!("HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 69\r\nConnection: close\r\n\r\n", no_protocol_switch!()).as_bytes();
const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 58\r\nConnection: close\r\n\r\nboxlite: a request to a secret's host could not be read.\r\n";

/// How a request's body is framed (RFC 9112 §6).
enum Body {
    None,
    Length(u64),
    Chunked,
}

/// Relays the box's requests to the host, each with the secrets' values in place of their
/// placeholders in its target and header values; bodies go as they are. Ends at the box's
/// end of stream (then ends the host's side), or with `refusal` answered for a request that
/// may not go. Returns the bytes sent.
pub(super) async fn send_requests<R, W>(mut from_box: BufReader<R>, mut to_host: W, secrets: &[&SecretSpec], refusal: tokio::sync::oneshot::Sender<&'static [u8]>) -> u64
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut sent = 0u64;
    loop {
        let head = match read_head(&mut from_box).await {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(answer) => {
                let _ = refusal.send(answer);
                return sent;
            }
        };
        let (rewritten, body) = match rewrite_head(&head, secrets) {
            Ok(rewritten) => rewritten,
            Err(answer) => {
                let _ = refusal.send(answer);
                return sent;
            }
        };
        if to_host.write_all(&rewritten).await.is_err() {
            return sent;
        }
        sent += rewritten.len() as u64;
        let copied = match body {
            Body::None => Ok(0),
            Body::Length(length) => tokio::io::copy(&mut (&mut from_box).take(length), &mut to_host).await,
            Body::Chunked => copy_chunked(&mut from_box, &mut to_host).await,
        };
        match copied {
            Ok(bytes) => sent += bytes,
            Err(_) => return sent,
        }
    }
    let _ = to_host.shutdown().await;
    sent
}

/// Relays the host's responses to the box until either side ends, or until a refusal comes
/// (which goes to the box last). Returns the bytes received.
pub(super) async fn send_responses<R, W>(mut from_host: R, mut to_box: W, mut refused: tokio::sync::oneshot::Receiver<&'static [u8]>) -> u64
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; 64 << 10];
    let mut received = 0u64;
    loop {
        tokio::select! {
            read = from_host.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(length) => {
                    if to_box.write_all(&buffer[..length]).await.is_err() {
                        break;
                    }
                    received += length as u64;
                }
            },
            Ok(answer) = &mut refused => {
                let _ = to_box.write_all(answer).await;
                break;
            }
        }
    }
    let _ = to_box.shutdown().await;
    received
}

/// The next request head (through its empty line), `None` at the end of the stream between
/// requests. Empty lines before a request are skipped (RFC 9112 §2.2).
async fn read_head<R: AsyncRead + Unpin>(from_box: &mut BufReader<R>) -> std::result::Result<Option<Vec<u8>>, &'static [u8]> {
    let mut head = Vec::new();
    loop {
        let start = head.len();
        let read = (&mut *from_box).take((MAX_HEAD - start) as u64).read_until(b'\n', &mut head).await.map_err(|_| BAD_REQUEST)?;
        if read == 0 {
            return if head.is_empty() { Ok(None) } else { Err(BAD_REQUEST) };
        }
        let line = &head[start..];
        if line == b"\r\n" || line == b"\n" {
            if start == 0 {
                head.clear();
                continue;
            }
            return Ok(Some(head));
        }
        if !line.ends_with(b"\n") {
            return Err(BAD_REQUEST);
        }
    }
}

/// The request head with the values in place, and how its body is framed; a request to switch
/// protocols is refused (rule 4).
fn rewrite_head(head: &[u8], secrets: &[&SecretSpec]) -> std::result::Result<(Vec<u8>, Body), &'static [u8]> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(BAD_REQUEST),
    }
    let (Some(method), Some(target), Some(version)) = (request.method, request.path, request.version) else {
        return Err(BAD_REQUEST);
    };
    let mut body = Body::None;
    let mut rewritten = Vec::with_capacity(head.len() + 256);
    rewritten.extend_from_slice(method.as_bytes());
    rewritten.push(b' ');
    rewritten.extend_from_slice(&substitute_in_target(target, secrets));
    rewritten.extend_from_slice(if version == 0 { b" HTTP/1.0\r\n" } else { b" HTTP/1.1\r\n" });
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("upgrade") {
            return Err(FORBIDDEN_UPGRADE);
        }
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let codings = String::from_utf8_lossy(header.value).to_ascii_lowercase();
            body = if codings.rsplit(',').next().is_some_and(|last| last.trim() == "chunked") { Body::Chunked } else { return Err(BAD_REQUEST) };
        } else if header.name.eq_ignore_ascii_case("content-length") && !matches!(body, Body::Chunked) {
            let length = std::str::from_utf8(header.value).ok().and_then(|value| value.trim().parse::<u64>().ok()).ok_or(BAD_REQUEST)?;
            if matches!(body, Body::Length(other) if other != length) {
                return Err(BAD_REQUEST);
            }
            body = Body::Length(length);
        }
        let value = header_value(header.name, header.value, secrets);
        rewritten.extend_from_slice(header.name.as_bytes());
        rewritten.extend_from_slice(b": ");
        rewritten.extend_from_slice(&value);
        rewritten.extend_from_slice(b"\r\n");
    }
    rewritten.extend_from_slice(b"\r\n");
    Ok((rewritten, body))
}

/// The value of the header `name` with each secret's placeholder replaced by its value; in
/// Basic credentials, in their decoded form.
pub(super) fn header_value(name: &str, value: &[u8], secrets: &[&SecretSpec]) -> Vec<u8> {
    if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("proxy-authorization") {
        substitute_basic(value, secrets).unwrap_or_else(|| substitute(value, secrets))
    } else {
        substitute(value, secrets)
    }
}

/// `text` with each secret's placeholder replaced by its value.
fn substitute(text: &[u8], secrets: &[&SecretSpec]) -> Vec<u8> {
    secrets.iter().fold(text.to_vec(), |text, secret| replace_all(&text, secret.placeholder.as_bytes(), secret.value.expose().as_bytes()))
}

/// The request target with each secret's placeholder replaced by its value, percent-encoded:
/// the placeholder as it is, or percent-encoded as clients encode query values (`%20` or `+`
/// for a space, either case of hex digits).
pub(super) fn substitute_in_target(target: &str, secrets: &[&SecretSpec]) -> Vec<u8> {
    secrets.iter().fold(target.as_bytes().to_vec(), |mut text, secret| {
        let value = percent_encode(secret.value.expose(), "%20", true);
        let mut forms = vec![secret.placeholder.clone()];
        for (space, upper) in [("%20", true), ("+", true), ("%20", false), ("+", false)] {
            let form = percent_encode(&secret.placeholder, space, upper);
            if !forms.contains(&form) {
                forms.push(form);
            }
        }
        for form in forms {
            text = replace_all(&text, form.as_bytes(), value.as_bytes());
        }
        text
    })
}

/// `text` with every byte but RFC 3986's unreserved ones as `%XX`, and a space as `space`.
fn percent_encode(text: &str, space: &str, upper: bool) -> String {
    use std::fmt::Write;
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => encoded.push(char::from(byte)),
            b' ' => encoded.push_str(space),
            _ if upper => {
                let _ = write!(encoded, "%{byte:02X}");
            }
            _ => {
                let _ = write!(encoded, "%{byte:02x}");
            }
        }
    }
    encoded
}

fn replace_all(text: &[u8], needle: &[u8], replacement: &[u8]) -> Vec<u8> {
    let mut replaced = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.windows(needle.len()).position(|window| window == needle) {
        replaced.extend_from_slice(&rest[..at]);
        replaced.extend_from_slice(replacement);
        rest = &rest[at + needle.len()..];
    }
    replaced.extend_from_slice(rest);
    replaced
}

/// `Basic <base64 of user:password>` with placeholders in the decoded credentials replaced,
/// encoded again; `None` when the value is no such header or holds no placeholder.
fn substitute_basic(value: &[u8], secrets: &[&SecretSpec]) -> Option<Vec<u8>> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let replaced = substitute(&decoded, secrets);
    if replaced == decoded {
        return None;
    }
    Some(format!("{scheme} {}", base64::engine::general_purpose::STANDARD.encode(replaced)).into_bytes())
}

/// Copies one chunked body (its chunks, the last chunk and the trailer) as it is.
async fn copy_chunked<R, W>(from_box: &mut BufReader<R>, to_host: &mut W) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let malformed = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed chunked body");
    let mut copied = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        (&mut *from_box).take(4096).read_until(b'\n', &mut line).await?;
        if !line.ends_with(b"\n") {
            return Err(malformed());
        }
        to_host.write_all(&line).await?;
        copied += line.len() as u64;
        let size_text = std::str::from_utf8(&line).map_err(|_| malformed())?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size_text, 16).map_err(|_| malformed())?;
        if size == 0 {
            // The trailer: header lines up to an empty one.
            loop {
                line.clear();
                (&mut *from_box).take(MAX_HEAD as u64).read_until(b'\n', &mut line).await?;
                if !line.ends_with(b"\n") {
                    return Err(malformed());
                }
                to_host.write_all(&line).await?;
                copied += line.len() as u64;
                if line == b"\r\n" || line == b"\n" {
                    return Ok(copied);
                }
            }
        }
        // The chunk's data and the line break after it.
        copied += tokio::io::copy(&mut (&mut *from_box).take(size + 2), to_host).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_go_into_the_target_and_header_values_only() {
        let key = SecretSpec::for_test("key", "sk-live", &["api.example.com"], "<K>");
        let head = b"POST /v1/run?key=<K> HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer <K>\r\nContent-Length: 3\r\n\r\n";
        let (rewritten, body) = rewrite_head(head, &[&key]).expect("rewritten");
        let text = String::from_utf8(rewritten).expect("text");
        assert_eq!(text, "POST /v1/run?key=sk-live HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer sk-live\r\nContent-Length: 3\r\n\r\n");
        assert!(matches!(body, Body::Length(3)));
    }

    #[test]
    fn placeholders_encoded_in_the_target_are_found_and_values_go_encoded() {
        let key = SecretSpec::for_test("key", "a/b c", &["api.example.com"], "<BOXLITE_SECRET:api key>");
        let head = b"GET /q?plus=%3CBOXLITE_SECRET%3Aapi+key%3E&low=%3cBOXLITE_SECRET%3aapi%20key%3e HTTP/1.1\r\n\r\n";
        let (rewritten, _) = rewrite_head(head, &[&key]).expect("rewritten");
        assert!(String::from_utf8(rewritten).expect("text").starts_with("GET /q?plus=a%2Fb%20c&low=a%2Fb%20c HTTP/1.1\r\n"));
    }

    #[test]
    fn basic_credentials_are_decoded_replaced_and_encoded_again() {
        let key = SecretSpec::for_test("key", "hunter2", &["api.example.com"], "<K>");
        let encoded = base64::engine::general_purpose::STANDARD.encode("me:<K>");
        let head = format!("GET / HTTP/1.1\r\nAuthorization: Basic {encoded}\r\n\r\n");
        let (rewritten, _) = rewrite_head(head.as_bytes(), &[&key]).expect("rewritten");
        let expected = base64::engine::general_purpose::STANDARD.encode("me:hunter2");
        assert!(String::from_utf8(rewritten).expect("text").contains(&format!("Authorization: Basic {expected}\r\n")));
    }

    #[test]
    fn upgrades_and_unreadable_framing_are_refused() {
        let key = SecretSpec::for_test("key", "v", &["api.example.com"], "<K>");
        assert_eq!(rewrite_head(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", &[&key]).err(), Some(FORBIDDEN_UPGRADE));
        assert_eq!(rewrite_head(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", &[&key]).err(), Some(BAD_REQUEST));
        assert_eq!(rewrite_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", &[&key]).err(), Some(BAD_REQUEST));
        assert!(matches!(rewrite_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", &[&key]), Ok((_, Body::Chunked))));
    }

    #[test]
    fn refusals_say_their_length() {
        for answer in [FORBIDDEN_UPGRADE, BAD_REQUEST] {
            let text = std::str::from_utf8(answer).expect("text");
            let (head, body) = text.split_once("\r\n\r\n").expect("head");
            assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())), "{text}");
        }
    }

    #[tokio::test]
    async fn requests_follow_one_another_with_their_bodies() {
        let key = SecretSpec::for_test("key", "sk-live", &["api.example.com"], "<K>");
        let stream: &[u8] = b"POST /a HTTP/1.1\r\nX-Key: <K>\r\nContent-Length: 5\r\n\r\n<K>!!\r\nPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n<K>\r\n0\r\nX-T: <K>\r\n\r\nGET /c?<K> HTTP/1.1\r\n\r\n";
        let mut sent = Vec::new();
        let (refusal, mut refused) = tokio::sync::oneshot::channel();
        send_requests(BufReader::new(stream), &mut sent, &[&key], refusal).await;
        assert!(refused.try_recv().is_err(), "nothing refused");
        let expected = "POST /a HTTP/1.1\r\nX-Key: sk-live\r\nContent-Length: 5\r\n\r\n<K>!!POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n<K>\r\n0\r\nX-T: <K>\r\n\r\nGET /c?sk-live HTTP/1.1\r\n\r\n";
        assert_eq!(String::from_utf8(sent).expect("text"), expected);
    }
}
