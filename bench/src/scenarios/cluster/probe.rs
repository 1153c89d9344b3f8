//! What a node serves, asked the way an operator or a client would: the revision each
//! dataplane part applied (the admin listener's `/snapshot/applied`) and DNS answers.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::Value;

/// The dataplane parts every node must have applied a change in.
pub(crate) const PARTS: [&str; 3] = ["ebpf", "proxy", "dns"];

/// The snapshot revision each dataplane part of the node at `admin` serves.
pub(crate) fn applied(admin: &str) -> Result<HashMap<String, u64>> {
    let stream =
        TcpStream::connect(admin).with_context(|| format!("connecting to admin {admin}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let (code, body) = pier_testkit::pier::http_get(stream, "/snapshot/applied");
    anyhow::ensure!(
        code == 200,
        "{admin}/snapshot/applied answered {code}: {body}"
    );
    let value: Value = serde_json::from_str(&body).context("/snapshot/applied")?;
    Ok(value["parts"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(part, r)| Some((part.clone(), r.as_u64()?)))
        .collect())
}

/// Whether every part in [`PARTS`] of the node at `admin` serves `revision` or later.
pub(crate) fn all_applied(admin: &str, revision: u64) -> Result<bool> {
    let parts = applied(admin)?;
    Ok(PARTS
        .iter()
        .all(|p| parts.get(*p).is_some_and(|r| *r >= revision)))
}

/// A DNS client on one UDP socket, asking A records of one server.
pub(crate) struct Dns {
    socket: UdpSocket,
    id: u16,
}

impl Dns {
    /// A client of the server at `server`.
    pub(crate) fn new(server: SocketAddr) -> Result<Dns> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.connect(server)?;
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        Ok(Dns { socket, id: 0 })
    }

    /// The A records the server answers for `name` (empty on NXDOMAIN or a timeout).
    pub(crate) fn a(&mut self, name: &str) -> Result<Vec<Ipv4Addr>> {
        self.id = self.id.wrapping_add(1);
        let mut query = Message::query();
        query.metadata.id = self.id;
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
        self.socket.send(&query.to_vec()?)?;
        let mut buf = [0u8; 4096];
        loop {
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Vec::new()),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let answer = Message::from_vec(&buf[..n])?;
            if answer.metadata.id != self.id {
                continue; // a late answer to an earlier query
            }
            return Ok(answer
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect());
        }
    }
}
