//! gRPC health probes as the kubelet runs them: `grpc.health.v1.Health/Check` over h2c,
//! success when the server reports the service SERVING.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};

/// Largest health response read (a status is a few bytes).
const MAX_RESPONSE: usize = 16 * 1024;

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// Whether the gRPC health service at `addr` reports `service` (`""`: the whole server)
/// SERVING.
pub async fn check(addr: SocketAddr, service: &str) -> bool {
    match call(addr, service).await {
        Ok(status) => status == SERVING,
        Err(e) => {
            tracing::debug!(%addr, service, error = %e, "gRPC health probe failed");
            false
        }
    }
}

/// Aborts the connection task when the probe ends (or its timeout drops it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One Check call; the serving status the server answered.
async fn call(addr: SocketAddr, service: &str) -> Result<u64, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (client, connection) = h2::client::handshake(tcp)
        .await
        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "gRPC probe connection ended");
        }
    }));
    let mut client = client.ready().await.map_err(|e| e.to_string())?;
    let request = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "pier-probe")
        .body(())
        .map_err(|e| e.to_string())?;
    let (response, mut send) = client
        .send_request(request, false)
        .map_err(|e| format!("sending the request: {e}"))?;
    send.send_data(encode_request(service), true)
        .map_err(|e| format!("sending the request body: {e}"))?;
    let response = response.await.map_err(|e| format!("response: {e}"))?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("HTTP status {}", response.status()));
    }
    let (parts, mut body) = response.into_parts();
    // A trailers-only response carries the status in its headers.
    grpc_ok(&parts.headers)?;
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("response body: {e}"))?;
        body.flow_control()
            .release_capacity(chunk.len())
            .map_err(|e| e.to_string())?;
        data.extend_from_slice(&chunk);
        if data.len() > MAX_RESPONSE {
            return Err("response too large".into());
        }
    }
    if let Some(trailers) = body
        .trailers()
        .await
        .map_err(|e| format!("trailers: {e}"))?
    {
        grpc_ok(&trailers)?;
    }
    decode_response(&data)
}

/// An error unless `headers` carry no `grpc-status` or status 0 (OK).
fn grpc_ok(headers: &http::HeaderMap) -> Result<(), String> {
    match headers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("0") => Ok(()),
        Some(code) => {
            let message = headers
                .get("grpc-message")
                .and_then(|m| m.to_str().ok())
                .unwrap_or_default();
            Err(format!("grpc-status {code} {message}"))
        }
    }
}

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// A length-prefixed gRPC message holding `HealthCheckRequest { service }`.
pub fn encode_request(service: &str) -> Bytes {
    let mut message = BytesMut::new();
    if !service.is_empty() {
        message.put_u8(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.put_slice(service.as_bytes());
    }
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0); // not compressed
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(&message);
    framed.freeze()
}

/// Reads a varint at `*at`, advancing it.
fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at).ok_or("truncated varint")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// The `status` of a length-prefixed `HealthCheckResponse` (0, UNKNOWN, when absent).
pub fn decode_response(framed: &[u8]) -> Result<u64, String> {
    let [flag, a, b, c, d, rest @ ..] = framed else {
        return Err("no response message".into());
    };
    if *flag != 0 {
        return Err("compressed response".into());
    }
    let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    let message = rest.get(..len).ok_or("truncated response message")?;
    let mut at = 0;
    let mut status = 0;
    while at < message.len() {
        let key = varint(message, &mut at)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = varint(message, &mut at)?;
                if field == 1 {
                    status = v;
                }
            }
            1 => at += 8,
            2 => {
                let n = usize::try_from(varint(message, &mut at)?).map_err(|e| e.to_string())?;
                at = at.checked_add(n).ok_or("length overflow")?;
            }
            5 => at += 4,
            other => return Err(format!("unsupported protobuf wire type {other}")),
        }
    }
    if at > message.len() {
        return Err("truncated protobuf field".into());
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_and_response_encoding() {
        assert_eq!(&encode_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &encode_request("db")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']
        );
        assert_eq!(decode_response(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(1));
        assert_eq!(decode_response(&[0, 0, 0, 0, 2, 0x08, 2]), Ok(2));
        // Unknown fields are skipped; an empty message is UNKNOWN.
        assert_eq!(
            decode_response(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 1]),
            Ok(1)
        );
        assert_eq!(decode_response(&[0, 0, 0, 0, 0]), Ok(0));
        assert!(decode_response(&[0, 0, 0, 0, 9, 0x08]).is_err());
        assert!(decode_response(&[1, 0, 0, 0, 0]).is_err());
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_response(&bytes);
        }

        #[test]
        fn any_status_reads_back(status in 0u64..1_000_000) {
            let mut m = BytesMut::new();
            m.put_u8(0x08);
            put_varint(&mut m, status);
            let mut framed = vec![0, 0, 0, 0, m.len() as u8];
            framed.extend_from_slice(&m);
            prop_assert_eq!(decode_response(&framed), Ok(status));
        }
    }
}
