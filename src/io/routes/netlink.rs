//! Linux: ask the kernel which route it uses for one address, as `ip route get fibmatch ADDR`
//! does: one RTM_GETROUTE request on a NETLINK_ROUTE socket (rtnetlink(7)). Unlike reading
//! `/proc/net/route` this goes through the policy rules, so routes in other tables (Tailscale's
//! table 52, a VPN's own table) are seen. RTM_F_FIB_MATCH (Linux 4.13+) makes the answer the
//! matched route with its real prefix instead of a /32 clone.

use super::Route;
use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// linux/netlink.h and linux/rtnetlink.h.
const NLMSG_ERROR: u16 = 2;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const NLM_F_REQUEST: u16 = 1;
const RTM_F_FIB_MATCH: u32 = 0x2000;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const NLMSG_HDR: usize = 16;
const RTMSG: usize = 12;

/// The request: nlmsghdr, rtmsg (AF_INET, dst_len 32, FIB_MATCH) and one RTA_DST attribute.
fn request(addr: Ipv4Addr, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDR + RTMSG + 8;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_GETROUTE.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    m.extend_from_slice(&[libc::AF_INET as u8, 32, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&RTM_F_FIB_MATCH.to_ne_bytes());
    m.extend_from_slice(&8u16.to_ne_bytes());
    m.extend_from_slice(&RTA_DST.to_ne_bytes());
    m.extend_from_slice(&addr.octets());
    m
}

/// What the kernel answered, before the interface index is turned into a name.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    dest: Ipv4Net,
    /// rtm_type: unicast, local, blackhole, unreachable...
    kind: u8,
    oif: Option<u32>,
    gateway: Option<Ipv4Addr>,
    metric: u32,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses the kernel's answer: `Ok(None)` when it has no route (ENETUNREACH and the like).
fn parse(buf: &[u8], addr: Ipv4Addr) -> Result<Option<Reply>> {
    let len = u32_at(buf, 0).context("short netlink reply")? as usize;
    let kind = u16_at(buf, 4).context("short netlink reply")?;
    let msg = buf.get(..len).context("truncated netlink reply")?;
    if kind == NLMSG_ERROR {
        let errno = u32_at(msg, NLMSG_HDR).context("short netlink error")? as i32;
        let errno = -errno;
        if [libc::ENETUNREACH, libc::EHOSTUNREACH, libc::ESRCH].contains(&errno) {
            return Ok(None);
        }
        bail!(
            "the kernel refused the route lookup: {}",
            std::io::Error::from_raw_os_error(errno)
        );
    }
    if kind != RTM_NEWROUTE {
        bail!("unexpected netlink message type {kind}");
    }
    let rt = msg
        .get(NLMSG_HDR..NLMSG_HDR + RTMSG)
        .context("short rtmsg")?;
    let dst_len = rt[1];
    let mut reply = Reply {
        dest: Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0)?,
        kind: rt[7],
        oif: None,
        gateway: None,
        metric: 0,
    };
    let mut dst = if dst_len == 0 {
        Ipv4Addr::UNSPECIFIED
    } else {
        addr
    };
    let mut at = NLMSG_HDR + RTMSG;
    while let (Some(alen), Some(atype)) = (u16_at(msg, at), u16_at(msg, at + 2)) {
        let alen = usize::from(alen);
        if alen < 4 {
            break;
        }
        let data = msg.get(at + 4..at + alen).unwrap_or_default();
        let v4 = || <[u8; 4]>::try_from(data).ok().map(Ipv4Addr::from);
        match atype {
            RTA_DST => dst = v4().unwrap_or(dst),
            RTA_OIF => reply.oif = u32_at(data, 0),
            RTA_GATEWAY => reply.gateway = v4(),
            RTA_PRIORITY => reply.metric = u32_at(data, 0).unwrap_or(0),
            _ => {}
        }
        // Attributes are padded to 4 bytes (RTA_ALIGN).
        at += (alen + 3) & !3;
    }
    reply.dest = Ipv4Net::new(dst, dst_len.min(32))?.trunc();
    Ok(Some(reply))
}

fn interface_name(index: u32) -> String {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has IF_NAMESIZE bytes, as if_indextoname(3) requires.
    let p = unsafe { libc::if_indextoname(index, name.as_mut_ptr()) };
    if p.is_null() {
        return format!("#{index}");
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// The route the kernel uses for `addr`, or `None` when it has none.
pub fn route_get(addr: Ipv4Addr) -> Result<Option<Route>> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("cannot open a netlink socket");
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // A kernel that never answers must not hang `doctor` or `up`.
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: the option value is a timeval of the size given.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let req = request(addr, 1);
    // SAFETY: `req` is a valid buffer of its length; an unbound netlink socket sends to the
    // kernel (nl_pid 0).
    let sent = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if sent < 0 {
        return Err(std::io::Error::last_os_error()).context("cannot ask the kernel for a route");
    }
    let mut buf = vec![0u8; 8192];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error()).context("no route answer from the kernel");
    }
    let reply = parse(&buf[..n as usize], addr)?; // ok: n >= 0 was checked
    Ok(reply.map(|r| Route {
        dest: r.dest,
        // Routes without a device: RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT (rtnetlink.h),
        // or a multipath route whose devices are in RTA_MULTIPATH.
        interface: r.oif.map_or_else(
            || {
                match r.kind {
                    6..=8 => super::NO_DEVICE,
                    _ => "(multipath)",
                }
                .to_string()
            },
            interface_name,
        ),
        gateway: r.gateway,
        metric: r.metric,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(data);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn the_request_is_a_well_formed_getroute() {
        let r = request(Ipv4Addr::new(10, 77, 0, 9), 7);
        assert_eq!(u32_at(&r, 0), Some(r.len() as u32));
        assert_eq!(u16_at(&r, 4), Some(RTM_GETROUTE));
        assert_eq!(&r[r.len() - 4..], &[10, 77, 0, 9]);
    }

    #[test]
    fn a_matched_route_is_parsed_with_its_prefix() {
        let mut body = vec![libc::AF_INET as u8, 24, 0, 0, 254, 0, 0, 1];
        body.extend_from_slice(&RTM_F_FIB_MATCH.to_ne_bytes());
        body.extend(attr(RTA_DST, &[10, 77, 0, 0]));
        body.extend(attr(RTA_OIF, &3u32.to_ne_bytes()));
        body.extend(attr(RTA_GATEWAY, &[10, 77, 0, 254]));
        let addr = Ipv4Addr::new(10, 77, 0, 9);
        let r = parse(&message(RTM_NEWROUTE, &body), addr).unwrap().unwrap();
        assert_eq!(r.dest, "10.77.0.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(r.oif, Some(3));
        assert_eq!(r.gateway, Some(Ipv4Addr::new(10, 77, 0, 254)));
    }

    #[test]
    fn no_route_is_none_and_other_errors_are_errors() {
        let addr = Ipv4Addr::new(10, 0, 0, 1);
        let err = |e: i32| {
            message(
                NLMSG_ERROR,
                &[(-e).to_ne_bytes().to_vec(), vec![0; 16]].concat(),
            )
        };
        assert_eq!(parse(&err(libc::ENETUNREACH), addr).unwrap(), None);
        assert!(parse(&err(libc::EPERM), addr).is_err());
        assert!(parse(&[1, 2], addr).is_err());
    }

    /// The loopback is routed through `lo` on every Linux host (table local).
    #[test]
    fn the_kernel_answers_for_the_loopback() {
        let r = route_get(Ipv4Addr::LOCALHOST).unwrap().unwrap();
        assert_eq!(r.interface, "lo");
    }

    /// For an address of a route in the main table, the kernel names that route (when no policy
    /// rule sends it elsewhere, as on a plain host).
    #[test]
    fn the_kernel_agrees_with_the_main_table() {
        let Ok(routes) = super::super::linux::table() else {
            return;
        };
        for r in routes.iter().filter(|r| r.dest.prefix_len() > 0) {
            let Some(addr) = r.dest.hosts().next() else {
                continue;
            };
            let best = super::super::lookup(&routes, addr).unwrap();
            let got = route_get(addr).unwrap().unwrap();
            eprintln!("{addr}: table {best}, kernel {got}");
            if got.dest.prefix_len() > 0 && got.dest.prefix_len() < 32 {
                assert_eq!((got.dest, &got.interface), (best.dest, &best.interface));
            }
        }
    }
}
