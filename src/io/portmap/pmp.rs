//! PCP and NAT-PMP over UDP to the gateway's port 5351, with the codecs of `core::portmap`.
//! Every exchange is bounded: a few retransmissions at 250 ms doubling (RFC 6886 §3.1 and
//! RFC 6887 §8.1.1 start at 250 ms and 3 s and retry for minutes; a node that has the relay
//! and punching to fall back on does not wait that long).

use crate::core::portmap::{natpmp, pcp, MapProtocol, Mapping, SERVER_PORT};
use anyhow::{anyhow, Context, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::UdpSocket;

/// Waits for an answer: 250 ms, 500 ms, 1 s (1.75 s in all per request).
const TRIES: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
];
/// The lifetime asked for (RFC 6886 §3.3 recommends two hours); renewals come much sooner
/// (`core::portmap::renew_after`).
pub const LIFETIME: Duration = Duration::from_secs(7200);

/// A socket toward the gateway's PCP/NAT-PMP port, and our address on it (PCP checks it).
pub struct Client {
    socket: UdpSocket,
    pub local_ip: IpAddr,
    /// The nonce of our PCP mapping (RFC 6887 §11.1: renewals and the delete repeat it).
    nonce: [u8; 12],
}

impl Client {
    pub async fn new(gateway: Ipv4Addr) -> Result<Client> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .await
            .context("opening a UDP socket for port mapping")?;
        socket
            .connect(SocketAddr::from((gateway, SERVER_PORT)))
            .await
            .context("no route to the gateway")?;
        let local_ip = socket.local_addr()?.ip();
        Ok(Client {
            socket,
            local_ip,
            nonce: rand::random(),
        })
    }

    /// Sends `req` and returns the first answer `parse` accepts, retrying on silence. A
    /// connected socket only receives from the gateway's port 5351.
    async fn exchange<T, E: std::fmt::Display>(
        &self,
        req: &[u8],
        parse: impl Fn(&[u8]) -> Result<T, Option<E>>,
    ) -> Result<T> {
        let mut buf = [0u8; 1100];
        for wait in TRIES {
            // A send error (ICMP port unreachable from an earlier try) means nobody listens.
            self.socket
                .send(req)
                .await
                .context("sending to the gateway")?;
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let recv = tokio::time::timeout_at(deadline, self.socket.recv(&mut buf)).await;
                let Ok(r) = recv else { break };
                let n = r.context("the gateway refused (nothing listens on port 5351)")?;
                match parse(&buf[..n]) {
                    Ok(v) => return Ok(v),
                    Err(Some(e)) => return Err(anyhow!("{e}")),
                    // Not an answer to this request (an announcement, another opcode): wait on.
                    Err(None) => continue,
                }
            }
        }
        Err(anyhow!("no answer from the gateway"))
    }

    /// Whether the gateway answers a PCP ANNOUNCE (RFC 6887 §14.1).
    pub async fn probe_pcp(&self) -> Result<()> {
        self.exchange(&pcp::announce_request(self.local_ip), |b| {
            pcp::parse_announce(b).map(|_| ()).map_err(|e| match e {
                pcp::PcpError::Malformed => None,
                e => Some(e),
            })
        })
        .await
    }

    /// Whether the gateway answers a NAT-PMP external-address request, and with which address.
    pub async fn probe_natpmp(&self) -> Result<Ipv4Addr> {
        self.exchange(&natpmp::external_request(), |b| {
            natpmp::parse_external(b).map_err(|e| match e {
                natpmp::NatPmpError::Malformed => None,
                e => Some(e),
            })
        })
        .await
    }

    /// Maps (or renews, or with a zero lifetime deletes) UDP `port` with PCP.
    pub async fn map_pcp(&self, port: u16, suggest: u16, lifetime: Duration) -> Result<Mapping> {
        let req = pcp::map_request(self.local_ip, self.nonce, port, suggest, lifetime);
        let nonce = self.nonce;
        let r = self
            .exchange(&req, |b| {
                pcp::parse_map(b, &nonce, port).map_err(|e| match e {
                    pcp::PcpError::Refused(_) => Some(e),
                    _ => None,
                })
            })
            .await?;
        Ok(Mapping {
            protocol: MapProtocol::Pcp,
            external: r.external,
            lifetime: r.lifetime,
        })
    }

    /// Maps (or renews, or with a zero lifetime deletes) UDP `port` with NAT-PMP.
    pub async fn map_natpmp(&self, port: u16, suggest: u16, lifetime: Duration) -> Result<Mapping> {
        let req = natpmp::map_request(port, suggest, lifetime);
        let r = self
            .exchange(&req, |b| match natpmp::parse_map(b) {
                Ok(r) if r.internal_port == port => Ok(r),
                Ok(_) | Err(natpmp::NatPmpError::Malformed) => Err(None),
                Err(e) => Err(Some(e)),
            })
            .await?;
        if lifetime.is_zero() {
            return Ok(Mapping {
                protocol: MapProtocol::NatPmp,
                external: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                lifetime: Duration::ZERO,
            });
        }
        let ip = self.probe_natpmp().await?;
        Ok(Mapping {
            protocol: MapProtocol::NatPmp,
            external: natpmp::external_addr(ip, &r),
            lifetime: r.lifetime,
        })
    }
}
