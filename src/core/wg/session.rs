//! One peer's WireGuard session as a sans-IO state machine (whitepaper §5.1, §6): handshakes in
//! both roles, the current/previous/next keys, confirmation by the first data message, rekey and
//! reject timers, keepalives and the queue of packets waiting for a session. It is what
//! `core::crypto::PeerTunnel` offers with boringtun, but on our pieces (`handshake`, `transport`)
//! so that the keys can be published to data workers, and driven by the caller's `now` instead
//! of the process clock.
//!
//! Keys per session, as in the whitepaper:
//! - `current`: what we send with. As initiator a session becomes current on the response; as
//!   responder it waits in `next` until the initiator's first data message proves the initiator
//!   has it (§5.4.5: the responder must not send first), then is promoted.
//! - `previous`: the session before, kept to open datagrams still in flight.
//!
//! Cookies (§5.4.7): a cookie reply to our initiation is kept for REKEY_AFTER_TIME and the next
//! initiation (the retry timer's) carries mac2 under it. Sending cookie replies under load is not
//! a session's: one guard for the whole node (`cookie`) does it before a message gets here. Not
//! here (yet): jitter on retries (the node spaces its own retries).

use super::handshake::{self, respond, tai64n, Initiator, INITIATION_LEN, RESPONSE_LEN};
use super::transport::{receiver_index, RecvKey, SendKey, TransportError, OVERHEAD};
use crate::core::counters::DropReason;
use crate::core::crypto::{Decapsulated, Encapsulated, Expired, TunnelStats};
use crate::core::keys::{PublicKey, SecretKey};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// §6.1 constants.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Packets kept while a handshake runs (boringtun keeps as many); more are dropped.
pub const MAX_QUEUED: usize = 256;

/// One session's transport keys and when it was made. `Arc`s so that the core can publish them
/// to the data workers' key table without copying keys.
struct Keys {
    send: Arc<SendKey>,
    recv: Arc<RecvKey>,
    born: Instant,
    initiator: bool,
}

impl Keys {
    fn new(session: handshake::Session, now: Instant, initiator: bool) -> Self {
        Keys {
            send: Arc::new(session.send),
            recv: Arc::new(session.recv),
            born: now,
            initiator,
        }
    }

    fn can_send(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.born) < REJECT_AFTER_TIME
            && self.send.sent() < super::replay::REJECT_AFTER_MESSAGES
    }
}

/// An initiation sent and not yet answered.
struct Pending {
    initiator: Initiator,
    sent_at: Instant,
    /// When this round of attempts began (§6.4: give up after REKEY_ATTEMPT_TIME).
    first_at: Instant,
}

/// One peer's session.
pub struct Session {
    local: SecretKey,
    peer: PublicKey,
    /// Our 24-bit index for this peer; each handshake's index is `base << 8 | n`, which is how
    /// `core::peers` finds the peer from a receiver index (the scheme boringtun uses too).
    base: u32,
    sub: u8,
    persistent_keepalive: Option<Duration>,
    /// A wall-clock reading and the `now` it was taken at: TAI64N timestamps (§5.1) must grow
    /// across restarts, so they are this plus the time elapsed since.
    clock: (Instant, Duration),
    pending: Option<Pending>,
    current: Option<Keys>,
    previous: Option<Keys>,
    next: Option<Keys>,
    /// The cookie a responder under load gave us, and when (§5.4.7: valid for 120 s).
    cookie: Option<([u8; 16], Instant)>,
    /// The greatest initiation timestamp accepted from the peer (§5.1, replayed initiations).
    last_timestamp: Option<[u8; 12]>,
    queue: VecDeque<Vec<u8>>,
    last_sent: Option<Instant>,
    last_received: Option<Instant>,
    /// A data message (not a keepalive) arrived and nothing was sent since (§6.5).
    owe_keepalive: bool,
    /// The first data sent since we last heard anything (§6.2: no answer → new handshake).
    unanswered_since: Option<Instant>,
    handshake_done: Option<Instant>,
    /// Keys were dropped after 3 × REJECT_AFTER_TIME; reported once as [`Expired`].
    expired: bool,
    tx_bytes: u64,
    rx_bytes: u64,
    rtt_ms: Option<u32>,
}

impl Session {
    /// `index` is this side's 24-bit index for the peer; `unix_now` the wall clock (time since
    /// 1970) at `now`, for the handshake's timestamps.
    pub fn new(
        local: &SecretKey,
        peer: PublicKey,
        index: u32,
        persistent_keepalive: Option<u16>,
        now: Instant,
        unix_now: Duration,
    ) -> Self {
        Session {
            local: local.clone(),
            peer,
            base: index & 0x00ff_ffff,
            sub: 0,
            persistent_keepalive: persistent_keepalive.map(|s| Duration::from_secs(s.into())),
            clock: (now, unix_now),
            pending: None,
            current: None,
            previous: None,
            next: None,
            cookie: None,
            last_timestamp: None,
            queue: VecDeque::new(),
            last_sent: None,
            last_received: None,
            owe_keepalive: false,
            unanswered_since: None,
            handshake_done: None,
            expired: false,
            tx_bytes: 0,
            rx_bytes: 0,
            rtt_ms: None,
        }
    }

    fn next_index(&mut self) -> u32 {
        self.sub = self.sub.wrapping_add(1);
        (self.base << 8) | u32::from(self.sub)
    }

    fn timestamp(&self, now: Instant) -> [u8; 12] {
        let unix = self.clock.1 + now.saturating_duration_since(self.clock.0);
        tai64n(unix.as_secs(), unix.subsec_nanos())
    }

    /// Writes a new initiation into `out`, keeping the round's start if one is under way.
    fn start_handshake<'a>(&mut self, out: &'a mut [u8], now: Instant) -> Option<&'a [u8]> {
        let first_at = self.pending.as_ref().map_or(now, |p| p.first_at);
        let index = self.next_index();
        let timestamp = self.timestamp(now);
        let msg: &mut [u8; INITIATION_LEN] = out.get_mut(..INITIATION_LEN)?.try_into().ok()?;
        match Initiator::start(&self.local, &self.peer, None, index, timestamp, msg) {
            Ok(initiator) => {
                if let Some((cookie, _)) = self
                    .cookie
                    .filter(|(_, at)| now.saturating_duration_since(*at) < REKEY_AFTER_TIME)
                {
                    handshake::set_mac2(msg, &cookie);
                }
                self.pending = Some(Pending {
                    initiator,
                    sent_at: now,
                    first_at,
                });
                self.last_sent = Some(now);
                Some(&out[..INITIATION_LEN])
            }
            Err(e) => {
                tracing::debug!(error = %e, "handshake initiation failed");
                None
            }
        }
    }

    /// Seals `packet` with the current keys into `out` and returns the datagram's length,
    /// noting what the timers need.
    fn seal(&mut self, packet: &[u8], out: &mut [u8], now: Instant) -> Option<usize> {
        let n = {
            let keys = self.current.as_ref().filter(|k| k.can_send(now))?;
            keys.send.seal(packet, out).ok()?
        };
        self.last_sent = Some(now);
        self.owe_keepalive = false;
        if !packet.is_empty() {
            self.tx_bytes += packet.len() as u64;
            self.unanswered_since.get_or_insert(now);
        }
        Some(n)
    }

    /// Encrypts one inner packet, or queues it and starts a handshake (whose initiation is then
    /// returned) when there is no usable session.
    pub fn encapsulate<'a>(
        &mut self,
        packet: &[u8],
        out: &'a mut [u8],
        now: Instant,
    ) -> Result<Encapsulated<'a>, DropReason> {
        if out.len() < packet.len() + OVERHEAD || out.len() < INITIATION_LEN {
            return Err(DropReason::Malformed);
        }
        if self.current.as_ref().is_some_and(|k| k.can_send(now)) {
            return match self.seal(packet, out, now) {
                Some(n) => Ok(Encapsulated::Data(&out[..n])),
                None => Err(DropReason::UnknownSession),
            };
        }
        if self.queue.len() < MAX_QUEUED {
            self.queue.push_back(packet.to_vec());
        }
        // A responder's unconfirmed session, or an initiation younger than REKEY_TIMEOUT, will
        // bring the session up on its own.
        let waiting = self
            .pending
            .as_ref()
            .is_some_and(|p| now.saturating_duration_since(p.sent_at) < REKEY_TIMEOUT)
            || self
                .next
                .as_ref()
                .is_some_and(|k| now.saturating_duration_since(k.born) < REKEY_TIMEOUT);
        if waiting {
            return Ok(Encapsulated::Queued);
        }
        match self.start_handshake(out, now) {
            Some(init) => Ok(Encapsulated::Handshake(init)),
            None => Ok(Encapsulated::Queued),
        }
    }

    /// Processes one datagram from the peer: a handshake message, or transport data opened into
    /// `out` (trimmed to the inner packet's length).
    pub fn decapsulate<'a>(
        &mut self,
        datagram: &[u8],
        out: &'a mut [u8],
        now: Instant,
    ) -> Result<Decapsulated<'a>, DropReason> {
        match datagram.first() {
            Some(&handshake::TYPE_INITIATION) => self.answer_initiation(datagram, out, now),
            Some(&handshake::TYPE_RESPONSE) => self.take_response(datagram, out, now),
            Some(&handshake::TYPE_COOKIE) => self.take_cookie(datagram, now),
            Some(&super::transport::TYPE_DATA) => self.open(datagram, out, now),
            _ => Err(DropReason::Malformed),
        }
    }

    fn answer_initiation<'a>(
        &mut self,
        datagram: &[u8],
        out: &'a mut [u8],
        now: Instant,
    ) -> Result<Decapsulated<'a>, DropReason> {
        let index = (self.base << 8) | u32::from(self.sub.wrapping_add(1));
        let msg: &mut [u8; RESPONSE_LEN] = out
            .get_mut(..RESPONSE_LEN)
            .and_then(|m| m.try_into().ok())
            .ok_or(DropReason::Malformed)?;
        let answered = respond(&self.local, None, index, datagram, msg)
            .map_err(|_| DropReason::DecryptFailed)?;
        if answered.peer != self.peer {
            return Err(DropReason::DecryptFailed);
        }
        // §5.1: an initiation no newer than the last one accepted is a replay.
        if self.last_timestamp.is_some_and(|t| answered.timestamp <= t) {
            return Err(DropReason::Replay);
        }
        self.sub = self.sub.wrapping_add(1);
        self.last_timestamp = Some(answered.timestamp);
        self.next = Some(Keys::new(answered.session, now, false));
        self.handshake_done = Some(now);
        self.last_sent = Some(now);
        self.last_received = Some(now);
        self.expired = false;
        Ok(Decapsulated::Reply(&out[..RESPONSE_LEN]))
    }

    /// A cookie reply (§5.4.7): kept for the next initiation, which the retry timer sends. Like
    /// boringtun, consumed without a reply.
    fn take_cookie<'a>(
        &mut self,
        datagram: &[u8],
        now: Instant,
    ) -> Result<Decapsulated<'a>, DropReason> {
        let pending = self.pending.as_ref().ok_or(DropReason::UnknownSession)?;
        let (index, cookie) =
            handshake::open_cookie_reply(&self.peer, pending.initiator.mac1(), datagram)
                .map_err(|_| DropReason::DecryptFailed)?;
        if index != pending.initiator.index() {
            return Err(DropReason::UnknownSession);
        }
        self.cookie = Some((cookie, now));
        Ok(Decapsulated::Nothing)
    }

    fn take_response<'a>(
        &mut self,
        datagram: &[u8],
        out: &'a mut [u8],
        now: Instant,
    ) -> Result<Decapsulated<'a>, DropReason> {
        let ours = datagram
            .get(8..12)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes);
        let Some(pending) = self.pending.take() else {
            return Err(DropReason::UnknownSession);
        };
        if ours != Some(pending.initiator.index()) {
            self.pending = Some(pending);
            return Err(DropReason::UnknownSession);
        }
        let sent_at = pending.sent_at;
        let session = match pending.initiator.finish(datagram) {
            Ok(s) => s,
            // A forged or broken response does not end the attempt: the retry timer decides.
            Err(_) => return Err(DropReason::DecryptFailed),
        };
        let ms = now.saturating_duration_since(sent_at).as_millis();
        self.rtt_ms = Some(u32::try_from(ms).unwrap_or(u32::MAX));
        // A `next` from the peer's simultaneous initiation stays: the peer may send with it.
        self.previous = self.current.take();
        self.current = Some(Keys::new(session, now, true));
        self.handshake_done = Some(now);
        self.last_received = Some(now);
        self.unanswered_since = None;
        self.expired = false;
        // Confirm the session to the responder at once (§5.4.5) with a keepalive; what was
        // queued follows through `poll_queued`.
        match self.seal(&[], out, now) {
            Some(n) => Ok(Decapsulated::Reply(&out[..n])),
            None => Ok(Decapsulated::Nothing),
        }
    }

    fn open<'a>(
        &mut self,
        datagram: &[u8],
        out: &'a mut [u8],
        now: Instant,
    ) -> Result<Decapsulated<'a>, DropReason> {
        let index = receiver_index(datagram).ok_or(DropReason::Malformed)?;
        let (slot, opened) = {
            let (slot, keys) = [
                (Slot::Current, &self.current),
                (Slot::Next, &self.next),
                (Slot::Previous, &self.previous),
            ]
            .into_iter()
            .find_map(|(slot, k)| {
                k.as_ref()
                    .filter(|k| k.recv.index() == index)
                    .map(|k| (slot, k))
            })
            .ok_or(DropReason::UnknownSession)?;
            if now.saturating_duration_since(keys.born) >= REJECT_AFTER_TIME {
                return Err(DropReason::UnknownSession);
            }
            (slot, keys.recv.open(datagram, out).map(|text| text.len()))
        };
        let len = match opened {
            Ok(len) => len,
            Err(TransportError::Replay(_)) => return Err(DropReason::Replay),
            Err(TransportError::Decrypt) => return Err(DropReason::DecryptFailed),
            Err(_) => return Err(DropReason::Malformed),
        };
        if slot == Slot::Next {
            // The initiator used the session: it is confirmed and becomes ours to send with.
            self.previous = self.current.take();
            self.current = self.next.take();
        }
        self.last_received = Some(now);
        self.unanswered_since = None;
        if len == 0 {
            return Ok(Decapsulated::Nothing);
        }
        let (packet_len, src) = inner(&out[..len]).ok_or(DropReason::Malformed)?;
        self.rx_bytes += packet_len as u64;
        self.owe_keepalive = true;
        Ok(Decapsulated::Tunnel {
            packet: &out[..packet_len],
            src,
        })
    }

    /// After a session comes up, the packets queued while it was made come out one per call.
    pub fn poll_queued<'a>(&mut self, out: &'a mut [u8], now: Instant) -> Option<&'a [u8]> {
        if !self.current.as_ref().is_some_and(|k| k.can_send(now)) {
            return None;
        }
        let packet = self.queue.pop_front()?;
        if out.len() < packet.len() + OVERHEAD {
            return None;
        }
        let n = self.seal(&packet, out, now)?;
        Some(&out[..n])
    }

    /// Starts a handshake now; unless `force`, not while one sent less than REKEY_TIMEOUT ago
    /// is waiting for its answer.
    pub fn initiate<'a>(
        &mut self,
        out: &'a mut [u8],
        force: bool,
        now: Instant,
    ) -> Option<&'a [u8]> {
        let in_flight = self
            .pending
            .as_ref()
            .is_some_and(|p| now.saturating_duration_since(p.sent_at) < REKEY_TIMEOUT);
        if in_flight && !force {
            return None;
        }
        self.start_handshake(out, now)
    }

    /// The timers of §6: handshake retries and giving up, rekeying, keepalives, and erasing keys.
    /// Returns a message to send, or `Err(Expired)` once when the keys were erased.
    pub fn update_timers<'a>(
        &mut self,
        out: &'a mut [u8],
        now: Instant,
    ) -> Result<Option<&'a [u8]>, Expired> {
        let age = |t: Instant| now.saturating_duration_since(t);
        // §6.3: after 3 × REJECT_AFTER_TIME without a new session, every key goes.
        if self
            .handshake_done
            .is_some_and(|t| age(t) >= REJECT_AFTER_TIME * 3)
            && !self.expired
        {
            self.current = None;
            self.previous = None;
            self.next = None;
            self.pending = None;
            self.queue.clear();
            self.expired = true;
            return Err(Expired);
        }
        if let Some(p) = &self.pending {
            if age(p.first_at) >= REKEY_ATTEMPT_TIME {
                // §6.4: give up; the next packet starts a new round.
                self.pending = None;
                self.queue.clear();
                return Ok(None);
            }
            if age(p.sent_at) >= REKEY_TIMEOUT {
                return Ok(self.start_handshake(out, now));
            }
            return Ok(None);
        }
        let current = self.current.as_ref();
        // §6.2: the initiator rekeys an old or much-used session, and either side when what it
        // sent went unanswered for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT.
        let rekey = current.is_some_and(|k| {
            k.initiator
                && (age(k.born) >= REKEY_AFTER_TIME || k.send.sent() >= REKEY_AFTER_MESSAGES)
        });
        let unanswered = self
            .unanswered_since
            .is_some_and(|t| age(t) >= KEEPALIVE_TIMEOUT + REKEY_TIMEOUT);
        if rekey || unanswered {
            self.unanswered_since = None;
            return Ok(self.start_handshake(out, now));
        }
        // §6.5: a keepalive when data came in and nothing went out for KEEPALIVE_TIMEOUT, and
        // the persistent keepalive when nothing went out for its interval.
        let quiet = self.last_sent.map_or(Duration::MAX, age);
        let owed = self.owe_keepalive
            && self
                .last_received
                .is_some_and(|t| age(t) >= KEEPALIVE_TIMEOUT);
        let persistent = self.persistent_keepalive.is_some_and(|p| quiet >= p);
        if owed || persistent {
            return Ok(self.seal(&[], out, now).map(|n| &out[..n]));
        }
        Ok(None)
    }

    /// The last handshake's round trip, as initiator.
    pub fn rtt_ms(&self) -> Option<u32> {
        self.rtt_ms
    }

    pub fn stats(&self, now: Instant) -> TunnelStats {
        TunnelStats {
            since_handshake: self
                .handshake_done
                .map(|t| now.saturating_duration_since(t)),
            tx_bytes: self.tx_bytes,
            rx_bytes: self.rx_bytes,
            rtt_ms: self.rtt_ms,
        }
    }
}

/// The keys a session lets the data workers use (`core::node::workers`): the current sending
/// key while it may send, and the receiving keys of the current and previous sessions while
/// they may receive. A responder's unconfirmed `next` session is left out: its first datagram
/// must reach [`Session::decapsulate`], which promotes it.
pub struct WorkerKeys {
    pub send: Option<Arc<SendKey>>,
    pub recv: Vec<Arc<RecvKey>>,
}

impl Session {
    pub fn worker_keys(&self, now: Instant) -> WorkerKeys {
        let young = |k: &&Keys| now.saturating_duration_since(k.born) < REJECT_AFTER_TIME;
        WorkerKeys {
            send: self
                .current
                .as_ref()
                .filter(|k| k.can_send(now))
                .map(|k| k.send.clone()),
            recv: [&self.current, &self.previous]
                .into_iter()
                .flatten()
                .filter(young)
                .map(|k| k.recv.clone())
                .collect(),
        }
    }

    /// What the data workers did with this session's keys since the last call, as the core read
    /// it from their activity counters: the timers of §6 treat it like the session's own
    /// `seal`/`open` (the last data sent or received, a keepalive owed, an unanswered send).
    pub fn note_worker_activity(
        &mut self,
        sent: Option<Instant>,
        received: Option<Instant>,
        tx_bytes: u64,
        rx_bytes: u64,
    ) {
        if let Some(at) = sent {
            self.last_sent = Some(self.last_sent.map_or(at, |t| t.max(at)));
            self.owe_keepalive = false;
            if tx_bytes > 0 {
                self.unanswered_since.get_or_insert(at);
            }
        }
        if let Some(at) = received {
            self.last_received = Some(self.last_received.map_or(at, |t| t.max(at)));
            // What the peer sent answers ours when it came after it.
            if self.unanswered_since.is_some_and(|t| t <= at) {
                self.unanswered_since = None;
            }
            if rx_bytes > 0 && sent.is_none_or(|s| s < at) {
                self.owe_keepalive = true;
            }
        }
        self.tx_bytes += tx_bytes;
        self.rx_bytes += rx_bytes;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Current,
    Next,
    Previous,
}

/// The inner packet's real length (other implementations pad the plaintext to 16, §5.4.6)
/// and its source.
fn inner(text: &[u8]) -> Option<(usize, IpAddr)> {
    match text.first()? >> 4 {
        4 => {
            let len = usize::from(u16::from_be_bytes([*text.get(2)?, *text.get(3)?]));
            let src: [u8; 4] = text.get(12..16)?.try_into().ok()?;
            (20..=text.len())
                .contains(&len)
                .then_some((len, IpAddr::V4(Ipv4Addr::from(src))))
        }
        6 => {
            let payload = usize::from(u16::from_be_bytes([*text.get(4)?, *text.get(5)?]));
            let src: [u8; 16] = text.get(8..24)?.try_into().ok()?;
            let len = 40 + payload;
            (len <= text.len()).then_some((len, IpAddr::V6(Ipv6Addr::from(src))))
        }
        _ => None,
    }
}
