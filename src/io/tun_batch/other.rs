//! macOS, Windows and the BSDs: no TUN offloads, so a batch is one packet each way.

use super::slot_len;
use std::io;
use std::sync::Arc;
use tun_rs::AsyncDevice;

pub struct TunIo {
    dev: Arc<AsyncDevice>,
    packet: Vec<u8>,
    size: usize,
    out: Vec<u8>,
    out_len: usize,
    pending: bool,
}

impl TunIo {
    pub fn new(dev: impl Into<Arc<AsyncDevice>>, mtu: u16) -> Self {
        TunIo {
            dev: dev.into(),
            packet: vec![0u8; usize::from(u16::MAX)],
            size: 0,
            out: vec![0u8; slot_len(mtu).max(usize::from(u16::MAX))],
            out_len: 0,
            pending: false,
        }
    }

    /// The device, for another `TunIo` on it (`TunIo::share`).
    pub(super) fn device(&self) -> &Arc<AsyncDevice> {
        &self.dev
    }

    pub async fn read(&mut self) -> io::Result<usize> {
        self.size = self.dev.recv(&mut self.packet).await?;
        Ok(1)
    }

    pub fn packet(&mut self, _i: usize) -> &[u8] {
        &self.packet[..self.size]
    }

    pub fn slot(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.pending {
            return None;
        }
        let len = len.min(self.out.len());
        Some(&mut self.out[..len])
    }

    pub fn commit(&mut self, start: usize, len: usize) {
        self.out.copy_within(start..start + len, 0);
        self.out_len = len;
        self.pending = true;
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if !std::mem::take(&mut self.pending) {
            return Ok(());
        }
        self.dev.send(&self.out[..self.out_len]).await.map(|_| ())
    }

    pub async fn write_one(&mut self, packet: &[u8]) -> io::Result<()> {
        self.dev.send(packet).await.map(|_| ())
    }
}
