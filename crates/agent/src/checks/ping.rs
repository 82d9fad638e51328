//! The ping probe (RFD 0009): ICMP echo from the agent over an
//! unprivileged ICMP datagram socket (Linux's ping sockets, open to the
//! groups in `net.ipv4.ping_group_range`; the kernel fills in the
//! identifier and routes replies to this socket only). Where that range
//! leaves the agent out, root (CAP_NET_RAW) falls back to a raw ICMP
//! socket and keeps only replies with its own identifier. Where neither
//! opens, the check is unknown, with the reason.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::probes::Measurement;

/// Between two requests.
const SPACING: Duration = Duration::from_millis(200);
/// How long the last request may wait for its reply.
const LAST_WAIT: Duration = Duration::from_secs(1);
const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;
const PAYLOAD: &[u8] = b"bulwark-agent ping";

/// An echo request: type, code, checksum, identifier (the kernel's on a
/// ping socket), sequence, payload.
fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut packet = vec![ECHO_REQUEST, 0, 0, 0];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(PAYLOAD);
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

/// RFC 1071's Internet checksum.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Which socket the probe got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A ping socket: ICMP messages without the IP header, only our replies.
    Datagram,
    /// A raw socket: every ICMP packet with its IP header; ours carry `id`.
    Raw { id: u16 },
}

/// The sequence number of an echo reply to this probe; `None` for
/// anything else (another program's reply, our own request on loopback).
pub fn reply_seq(packet: &[u8], kind: Kind) -> Option<u16> {
    let icmp = match kind {
        Kind::Datagram => packet,
        Kind::Raw { .. } => {
            let header = usize::from(packet.first()? & 0x0f) * 4;
            packet.get(header..)?
        }
    };
    if icmp.len() < 8 || icmp[0] != ECHO_REPLY || icmp[1] != 0 {
        return None;
    }
    if let Kind::Raw { id } = kind
        && u16::from_be_bytes([icmp[4], icmp[5]]) != id
    {
        return None;
    }
    Some(u16::from_be_bytes([icmp[6], icmp[7]]))
}

async fn resolve(host: &str) -> Result<Ipv4Addr, String> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(ip);
    }
    tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .find_map(|a| match a.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .ok_or_else(|| format!("{host} has no IPv4 address"))
}

fn open() -> Result<(tokio::net::UdpSocket, Kind), String> {
    let (socket, kind) = match Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)) {
        Ok(socket) => (socket, Kind::Datagram),
        Err(e) => match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
            Ok(socket) => (socket, Kind::Raw { id: rand::random() }),
            Err(_) => {
                return Err(format!(
                    "cannot open an ICMP socket ({e}); the agent's group may need net.ipv4.ping_group_range"
                ));
            }
        },
    };
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("cannot use the ICMP socket: {e}"))?;
    // A ping socket reads and writes datagrams like a UDP one.
    let socket = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(socket))
        .map_err(|e| format!("cannot use the ICMP socket: {e}"))?;
    Ok((socket, kind))
}

/// Sends `count` echo requests to `host`: the percent lost, the average
/// round trip of the answered ones in the summary.
pub async fn ping(host: &str, count: u8) -> Measurement {
    let ip = resolve(host).await?;
    let (socket, kind) = open()?;
    let id = match kind {
        Kind::Raw { id } => id,
        Kind::Datagram => 0,
    };
    let target = SocketAddr::new(IpAddr::V4(ip), 0);
    let count = u16::from(count.max(1));
    let mut sent_at = Vec::with_capacity(usize::from(count));
    let mut rtts: Vec<Duration> = Vec::new();
    let mut answered = vec![false; usize::from(count)];
    let mut buf = [0u8; 1500];
    let mut next_send = Instant::now();
    loop {
        let now = Instant::now();
        if sent_at.len() < usize::from(count) && now >= next_send {
            let seq = sent_at.len() as u16;
            socket
                .send_to(&echo_request(id, seq), target)
                .await
                .map_err(|e| format!("cannot send to {ip}: {e}"))?;
            sent_at.push(Instant::now());
            next_send = now + SPACING;
            continue;
        }
        let deadline = if sent_at.len() < usize::from(count) {
            next_send
        } else {
            sent_at.last().copied().unwrap_or(now) + LAST_WAIT
        };
        if sent_at.len() == usize::from(count) && (now >= deadline || answered.iter().all(|a| *a)) {
            break;
        }
        let wait = deadline.saturating_duration_since(now);
        if let Ok(Ok(n)) = tokio::time::timeout(wait, socket.recv(&mut buf)).await
            && let Some(seq) = reply_seq(&buf[..n], kind)
            && let Some(done) = answered.get_mut(usize::from(seq))
            && !*done
        {
            *done = true;
            rtts.push(sent_at[usize::from(seq)].elapsed());
        }
    }
    let replies = rtts.len() as u64;
    let lost = (u64::from(count) - replies) * 100 / u64::from(count);
    let summary = if replies == 0 {
        format!("{host}: no reply to {count} requests")
    } else {
        let avg = rtts.iter().sum::<Duration>() / rtts.len() as u32;
        format!(
            "{host}: {replies} of {count} replies, {lost}% lost, round trip {:.1} ms",
            avg.as_secs_f64() * 1000.0
        )
    };
    Ok((lost, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_carry_a_valid_checksum() {
        let packet = echo_request(0x1234, 7);
        assert_eq!(
            checksum(&packet),
            0,
            "with its checksum a packet sums to zero"
        );
        assert_eq!(&packet[4..8], &[0x12, 0x34, 0, 7]);
        let reply = [0, 0, 0, 0, 0x12, 0x34, 1, 2];
        assert_eq!(reply_seq(&reply, Kind::Datagram), Some(258));
        assert_eq!(
            reply_seq(&packet, Kind::Datagram),
            None,
            "a request is not a reply"
        );
        assert_eq!(reply_seq(&[0, 0, 0], Kind::Datagram), None);
        // Raw: behind a 20-byte IP header, and only with our identifier.
        let mut raw = vec![0x45];
        raw.extend_from_slice(&[0; 19]);
        raw.extend_from_slice(&reply);
        assert_eq!(reply_seq(&raw, Kind::Raw { id: 0x1234 }), Some(258));
        assert_eq!(reply_seq(&raw, Kind::Raw { id: 0x4321 }), None);
        assert_eq!(reply_seq(&raw[..24], Kind::Raw { id: 0x1234 }), None);
        assert_eq!(reply_seq(&[0x4f], Kind::Raw { id: 0 }), None);
    }

    #[tokio::test]
    async fn loopback_answers_or_the_reason_is_given() {
        match ping("127.0.0.1", 3).await {
            Ok((lost, summary)) => {
                assert_eq!(lost, 0, "{summary}");
                assert!(summary.contains("3 of 3 replies"), "{summary}");
            }
            // Not root and outside ping_group_range: the reason, not a crash.
            Err(why) => {
                eprintln!("ping: {why}");
                assert!(why.contains("ICMP socket"), "{why}")
            }
        }
        // (No test of loss: this machine's network answers every echo,
        // TEST-NET addresses included.)
        assert!(ping("no-such-host.invalid", 1).await.is_err());
    }
}
