//! The node's main socket as the data path sees it: the batched IPv4 socket and, where the host
//! has IPv6, the batched IPv6-only socket on the same port (`io::ipv6_underlay`). The core knows
//! both as `SocketId::MAIN`; a datagram leaves from the half of its destination's family, and
//! a reader takes batches from whichever half has one, taking turns so that a saturated half
//! does not starve the other.

use super::udp_batch::{RecvBufs, UdpBatch};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

/// Both halves, shared by the node task and the data workers (their calls take `&self`).
#[derive(Clone)]
pub struct MainSocket {
    pub v4: Arc<UdpBatch>,
    pub v6: Option<Arc<UdpBatch>>,
    /// The data thread waits on the halves itself and took them out of the node task's
    /// reactor (`io::workers::withdraw`): [`MainSocket::send`] must not wait for readiness,
    /// which would never come.
    pub detached: bool,
}

/// Which half a reader took its last batch from, so that the next wait looks at the other first.
#[derive(Default)]
pub struct Turn(bool);

impl MainSocket {
    /// The half a datagram to `dst` leaves from: `None` for an IPv6 destination on a host
    /// without the IPv6 half.
    pub fn to(&self, dst: SocketAddr) -> Option<&UdpBatch> {
        if dst.is_ipv6() {
            self.v6.as_deref()
        } else {
            Some(&self.v4)
        }
    }

    /// Both halves, attached to the reactor of the runtime they were made in.
    pub fn new(v4: Arc<UdpBatch>, v6: Option<Arc<UdpBatch>>) -> Self {
        MainSocket {
            v4,
            v6,
            detached: false,
        }
    }

    /// Sends a run of datagrams of `segment` bytes (0: one datagram) to `dst` from the half of
    /// its family. Detached, it does not wait: what a full send queue does not take is lost,
    /// as a full queue loses it anywhere (the node task sends handshakes, keepalives and
    /// probes, which are retried, and the packets the data thread handed it).
    pub async fn send(&self, dst: SocketAddr, contents: &[u8], segment: usize) -> io::Result<()> {
        let Some(half) = self.to(dst) else {
            // An IPv6 destination on a host without the IPv6 half: the core never routes one.
            return Ok(());
        };
        if !self.detached {
            return half.send(dst, contents, segment).await;
        }
        match half.try_send_now(dst, contents, segment) {
            Ok(n) if n < contents.len() => Err(io::ErrorKind::WouldBlock.into()),
            r => r.map(drop),
        }
    }

    /// How many datagrams one send may carry on either half (a batch is sealed before its
    /// runs are split by destination).
    pub fn max_segments(&self) -> usize {
        let v6 = self.v6.as_ref().map_or(usize::MAX, |s| s.max_segments());
        self.v4.max_segments().min(v6)
    }

    /// Whether both halves are batched (quinn-udp could set them up), as the data thread needs.
    pub fn batched(&self) -> bool {
        self.v4.batched() && self.v6.as_ref().is_none_or(|s| s.batched())
    }

    /// Waits until either half has something to read and reads one batch from it: how many
    /// messages of `bufs` are filled.
    pub async fn recv(&self, bufs: &mut RecvBufs, turn: &mut Turn) -> io::Result<usize> {
        let Some(v6) = &self.v6 else {
            return self.v4.recv(bufs).await;
        };
        let (v4, v6): (&UdpBatch, &UdpBatch) = (&self.v4, v6);
        loop {
            let halves = if turn.0 { [v6, v4] } else { [v4, v6] };
            let ready = std::future::poll_fn(|cx| {
                for (i, half) in halves.iter().enumerate() {
                    if let Poll::Ready(r) = half.poll_recv_ready(cx) {
                        return Poll::Ready(r.map(|()| i));
                    }
                }
                Poll::Pending
            })
            .await?;
            let half = halves[ready];
            turn.0 = std::ptr::eq(half, v4);
            match half.try_recv(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use tokio::net::UdpSocket;

    /// Datagrams to either half come out of `recv`, each from its sender, and a half kept
    /// busy does not hide the other one's datagram (the halves take turns).
    #[tokio::test]
    async fn both_halves_are_read_in_turn() {
        let v4 = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let v6 = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).await.unwrap();
        let main = MainSocket::new(
            Arc::new(UdpBatch::new(v4).unwrap()),
            Some(Arc::new(UdpBatch::new(v6).unwrap())),
        );
        let to4 = main.v4.socket().local_addr().unwrap();
        let to6 = main.v6.as_ref().unwrap().socket().local_addr().unwrap();
        let s4 = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let s6 = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).await.unwrap();
        // Ten batches' worth of IPv4 datagrams (each of its own size, so that GRO cannot
        // coalesce them into fewer messages), then one IPv6 datagram.
        for i in 0..40u8 {
            s4.send_to(&vec![i; 60 + usize::from(i)], to4)
                .await
                .unwrap();
        }
        s6.send_to(&[200; 70], to6).await.unwrap();
        let mut bufs = RecvBufs::default();
        let mut turn = Turn::default();
        let (mut got4, mut got6, mut reads_before_v6) = (0, 0, None);
        // 41 reads where every read returns one datagram (a stack without batching: wine).
        for read in 0..100 {
            let n = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                main.recv(&mut bufs, &mut turn),
            )
            .await
            .unwrap()
            .unwrap();
            for i in 0..n {
                let (from, datagrams) = bufs.datagrams(i);
                for d in datagrams {
                    if from == s6.local_addr().unwrap() {
                        assert_eq!(d, &[200; 70][..]);
                        got6 += 1;
                        reads_before_v6.get_or_insert(read);
                    } else {
                        assert_eq!(from, s4.local_addr().unwrap());
                        got4 += 1;
                    }
                }
            }
            if got4 == 40 && got6 == 1 {
                break;
            }
        }
        assert_eq!((got4, got6), (40, 1));
        assert!(
            reads_before_v6.is_some_and(|r| r <= 1),
            "the IPv6 half waited behind the busy IPv4 half: {reads_before_v6:?}"
        );
    }

    /// A datagram leaves from the half of its destination's family; without an IPv6 half an
    /// IPv6 destination has none.
    #[tokio::test]
    async fn a_destination_picks_its_half() {
        let v4 = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let main = MainSocket::new(Arc::new(UdpBatch::new(v4).unwrap()), None);
        let four: SocketAddr = "192.0.2.1:9".parse().unwrap();
        let six: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        assert!(main.to(four).is_some_and(|s| std::ptr::eq(s, &*main.v4)));
        assert!(main.to(six).is_none());
    }
}
