//! The DNS server over real sockets: cluster records over UDP and TCP, truncation, snapshot
//! changes, bad requests, `dig` reading every record kind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use pier_dns::cache::CacheConfig;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use common::*;

#[tokio::test]
async fn cluster_records_over_udp_and_tcp() {
    let dns = start(Vec::new(), &["127.0.0.0/8"], CacheConfig::default()).await;
    let r = query(dns.addr, "WEB.Default.Svc.Cluster.Local.", RecordType::A).await;
    assert!(r.metadata.authoritative);
    assert_eq!(
        r.queries[0].name().to_ascii(),
        "WEB.Default.Svc.Cluster.Local.",
        "question echoed as asked"
    );
    assert_eq!(addresses(&r), ["10.96.0.10".parse::<IpAddr>().unwrap()]);
    let r = tcp(
        dns.addr,
        &request("web.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!(addresses(&r), ["10.96.0.10".parse::<IpAddr>().unwrap()]);
    let nx = query(dns.addr, "nope.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(nx.authorities[0].data, RData::SOA(_)));
    assert_eq!(nx.authorities[0].ttl, 5, "negative TTL");
    let nodata = query(dns.addr, "web.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty() && matches!(nodata.authorities[0].data, RData::SOA(_)));
    // No upstream configured: outside names fail cleanly.
    let out = query(dns.addr, "example.org.", RecordType::A).await;
    assert_eq!(out.metadata.response_code, ResponseCode::ServFail);
    // An ExternalName to a cluster name is answered with the whole chain, from the zone.
    let alias = query(dns.addr, "alias.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(alias.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        chain(&alias),
        ["web.default.svc.cluster.local.", "10.96.0.10"]
    );
    let cname = query(
        dns.addr,
        "alias.default.svc.cluster.local.",
        RecordType::CNAME,
    )
    .await;
    assert_eq!(chain(&cname), ["web.default.svc.cluster.local."]);
    let dangling = query(
        dns.addr,
        "dangling.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(dangling.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(chain(&dangling), ["gone.default.svc.cluster.local."]);
    assert!(matches!(dangling.authorities[0].data, RData::SOA(_)));
    // The apex names its nameserver; `<ns>.pod.<zone>` is an empty non-terminal.
    let ns = query(dns.addr, "cluster.local.", RecordType::NS).await;
    assert_eq!(ns.answers.len(), 1);
    assert!(
        matches!(&ns.answers[0].data, RData::NS(n) if n.0.to_ascii() == "ns.dns.cluster.local.")
    );
    let ent = query(dns.addr, "default.pod.cluster.local.", RecordType::A).await;
    assert_eq!(ent.metadata.response_code, ResponseCode::NoError);
    assert!(ent.answers.is_empty());
    // EDNS versions above 0 get BADVERS (RFC 6891).
    let mut v1 = request("web.default.svc.cluster.local.", RecordType::A, true);
    if let Some(e) = v1.edns.as_mut() {
        e.set_version(1);
    }
    let badvers = udp(dns.addr, &v1).await;
    // Code 16 (hickory decodes it as BADSIG, its TSIG twin).
    assert_eq!(u16::from(badvers.metadata.response_code), 16);
    assert!(badvers.answers.is_empty());
}

#[tokio::test]
async fn large_answers_truncate_over_udp_and_complete_over_tcp() {
    let dns = start(Vec::new(), &["127.0.0.0/8"], CacheConfig::default()).await;
    let small = udp(
        dns.addr,
        &request("big.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert!(
        small.metadata.truncation,
        "100 A records do not fit 512 bytes"
    );
    assert!(small.answers.is_empty());
    let full = tcp(
        dns.addr,
        &request("big.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert!(!full.metadata.truncation);
    assert_eq!(full.answers.len(), 100);
}

#[tokio::test]
async fn snapshot_changes_show_up_within_10ms() {
    let dns = start(Vec::new(), &["127.0.0.0/8"], CacheConfig::default()).await;
    let mut objects = cluster();
    let mut delays = Vec::new();
    for i in 0..20u8 {
        objects[0] = object(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"clusterIP": format!("10.96.1.{i}"), "ports": [{"name": "http", "port": 80}]}}),
        );
        let want: IpAddr = format!("10.96.1.{i}").parse().unwrap();
        let published = Instant::now();
        dns.handle.publish(snapshot(&objects, 2 + u64::from(i)));
        loop {
            let r = query(dns.addr, "web.default.svc.cluster.local.", RecordType::A).await;
            if addresses(&r) == [want] {
                delays.push(published.elapsed());
                break;
            }
            assert!(
                published.elapsed() < Duration::from_secs(2),
                "change never visible"
            );
        }
    }
    delays.sort();
    eprintln!(
        "publish -> visible in answers: median {:?}, max {:?}",
        delays[10], delays[19]
    );
    assert!(
        delays[10] < Duration::from_millis(10),
        "median {:?}",
        delays[10]
    );
}

#[tokio::test]
async fn bad_requests_get_the_right_errors_and_never_stop_the_server() {
    let dns = start(Vec::new(), &["127.0.0.0/8"], CacheConfig::default()).await;
    let mut two = request("web.default.svc.cluster.local.", RecordType::A, false);
    two.add_query(Query::query(Name::from_ascii("x.").unwrap(), RecordType::A));
    assert_eq!(
        udp(dns.addr, &two).await.metadata.response_code,
        ResponseCode::FormErr
    );
    let mut notify = request("web.default.svc.cluster.local.", RecordType::SOA, false);
    notify.metadata.op_code = OpCode::Notify;
    assert_eq!(
        udp(dns.addr, &notify).await.metadata.response_code,
        ResponseCode::NotImp
    );
    let mut chaos = request("version.bind.", RecordType::TXT, false);
    let q = chaos.queries[0].clone();
    chaos.queries = vec![Query::query(q.name().clone(), RecordType::TXT)
        .set_query_class(DNSClass::CH)
        .clone()];
    assert_eq!(
        udp(dns.addr, &chaos).await.metadata.response_code,
        ResponseCode::NotImp
    );
    let axfr = request("cluster.local.", RecordType::AXFR, false);
    assert_eq!(
        tcp(dns.addr, &axfr).await.metadata.response_code,
        ResponseCode::Refused
    );
    // Garbage with a readable header gets FORMERR; a response or a runt gets nothing.
    let formerr = udp_raw(
        dns.addr,
        &[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff],
        Duration::from_secs(2),
    )
    .await
    .expect("FORMERR expected");
    let formerr = Message::from_vec(&formerr).unwrap();
    assert_eq!(
        (formerr.metadata.id, formerr.metadata.response_code),
        (0x1234, ResponseCode::FormErr)
    );
    assert!(udp_raw(dns.addr, &[1, 2, 3], Duration::from_millis(200))
        .await
        .is_none());
    let mut answer = request("web.default.svc.cluster.local.", RecordType::A, false);
    answer.metadata.message_type = MessageType::Response;
    assert!(udp_raw(
        dns.addr,
        &answer.to_vec().unwrap(),
        Duration::from_millis(200)
    )
    .await
    .is_none());
    // Random and mutated packets, bounded in count: none may take the server down.
    let valid = request(
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
        true,
    )
    .to_vec()
    .unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..3000u32 {
        let mut p = if i % 2 == 0 {
            (0..(rand::random::<u8>() as usize))
                .map(|_| rand::random())
                .collect::<Vec<u8>>()
        } else {
            valid.clone()
        };
        if !p.is_empty() {
            for _ in 0..(1 + i % 4) {
                let at = rand::random::<u32>() as usize % p.len();
                p[at] = rand::random();
            }
        }
        socket.send_to(&p, dns.addr).await.unwrap();
    }
    let ok = query(dns.addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&ok), ["10.96.0.10".parse::<IpAddr>().unwrap()]);
    // Oversized TCP length prefix with too little data: the connection is dropped, the server lives.
    let mut s = TcpStream::connect(dns.addr).await.unwrap();
    s.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
    drop(s);
    let ok = tcp(
        dns.addr,
        &request("web.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!(ok.answers.len(), 1);
}

#[tokio::test]
async fn dig_reads_every_record_kind() {
    if !require_tool("dig") {
        return;
    }
    let dns = start(Vec::new(), &["127.0.0.0/8"], CacheConfig::default()).await;
    let port = dns.addr.port().to_string();
    let dig = move |args: &[&str]| {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+time=2", "+tries=1", "+short"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let out = tokio::task::spawn_blocking(move || {
        [
            dig(&["web.default.svc.cluster.local"]),
            dig(&["_http._tcp.web.default.svc.cluster.local", "SRV"]),
            dig(&["-x", "10.96.0.10"]),
            dig(&["+tcp", "10-88-1-5.big.default.svc.cluster.local"]),
            dig(&["dns-version.cluster.local", "TXT"]),
        ]
    })
    .await
    .unwrap();
    assert_eq!(out[0], "10.96.0.10\n");
    assert_eq!(out[1], "0 100 80 web.default.svc.cluster.local.\n");
    assert_eq!(out[2], "web.default.svc.cluster.local.\n");
    assert_eq!(out[3], "10.88.1.5\n");
    assert_eq!(out[4], "\"1.1.0\"\n");
}

/// A query as glibc's stub resolver sends it: no EDNS, so repeated ones take the encoded-answer path.
fn plain_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = request(name, RecordType::A, false);
    q.metadata.id = id;
    q.to_vec().unwrap()
}

#[tokio::test]
async fn repeated_plain_queries_keep_id_case_and_follow_zone_changes() {
    let dns = start(Vec::new(), &["127.0.0.0/8"], CacheConfig::default()).await;
    let mut objects = cluster();
    for (i, name) in [
        "web.default.svc.cluster.local.",
        "WeB.DeFaUlT.svc.CLUSTER.local.",
    ]
    .iter()
    .enumerate()
    {
        let id = 0x4000 + i as u16;
        let packet = plain_query(id, name);
        let bytes = udp_raw(dns.addr, &packet, Duration::from_secs(2))
            .await
            .unwrap();
        let resp = Message::from_vec(&bytes).unwrap();
        assert_eq!(resp.metadata.id, id);
        assert!(resp.metadata.recursion_desired, "RD copied from the query");
        assert_eq!(
            resp.queries[0].name().to_ascii(),
            *name,
            "0x20 case is echoed"
        );
        assert_eq!(addresses(&resp), ["10.96.0.10".parse::<IpAddr>().unwrap()]);
        // The question section is byte for byte the query's.
        assert_eq!(&bytes[12..packet.len()], &packet[12..]);
    }
    // A zone change is seen by the next plain query, not an old encoded answer.
    objects[0] = object(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"clusterIP": "10.96.7.7", "ports": [{"name": "http", "port": 80}]}}),
    );
    dns.handle.publish(snapshot(&objects, 50));
    let want: IpAddr = "10.96.7.7".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let bytes = udp_raw(
            dns.addr,
            &plain_query(7, "web.default.svc.cluster.local."),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        if addresses(&Message::from_vec(&bytes).unwrap()) == [want] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "change never visible to plain queries"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // NXDOMAIN answers are kept too, with the SOA.
    for id in [1u16, 2] {
        let bytes = udp_raw(
            dns.addr,
            &plain_query(id, "nope.default.svc.cluster.local."),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        let resp = Message::from_vec(&bytes).unwrap();
        assert_eq!(resp.metadata.id, id);
        assert_eq!(resp.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(resp.authorities.len(), 1);
    }
}
