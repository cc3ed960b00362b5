//! Where there is no data thread (`[dataplane] workers = 1` needs Linux's `poll(2)` on the TUN
//! descriptor and batched UDP): the node's own loop carries the data path instead.

use super::{Ctx, WorkerStats};
use crate::io::tun_batch::TunIo;
use std::io;
use std::sync::Arc;

/// The data thread does not exist on this OS.
pub const AVAILABLE: bool = false;

pub(super) fn spawn(
    _ctx: Ctx,
    _tx: Arc<WorkerStats>,
    _tun: TunIo,
    _mtu: u16,
) -> io::Result<(std::thread::JoinHandle<()>, super::Wake)> {
    Err(io::ErrorKind::Unsupported.into())
}
