//! What to answer: parse one query, decide from the suffix and the hosts, encode the reply.
//! Every query costs one parse, one pass over the hosts (bounded by the peer table) and one
//! small encode; anything that does not parse as a query is dropped and counted, never answered.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Queries longer than this are dropped unparsed: a question for one of our names fits in a
/// few hundred bytes, and 1232 is the EDNS payload size DNS Flag Day 2020 settled on.
pub const MAX_QUERY: usize = 1232;
/// Seconds a resolver may cache an answer. Short, because a member's address can change when
/// the owner re-admits it; the names are answered locally, so a miss costs nothing.
pub const TTL: u32 = 30;
/// The EDNS payload size we announce (RFC 6891 §6.2.5; the Flag Day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

/// One name the responder knows: the node itself or a peer, as the server named it.
#[derive(Clone, Copy, Debug)]
pub struct Host<'a> {
    pub name: &'a str,
    pub ipv4: Ipv4Addr,
    /// The overlay IPv6 address, once the network has one; until then AAAA gets NODATA.
    pub ipv6: Option<Ipv6Addr>,
}

/// What the responder did, for `status` and the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsCounters {
    /// Answered with NOERROR (with records, or NODATA for a type the name does not have).
    pub answered: u64,
    /// A name under the suffix that no member has.
    pub nxdomain: u64,
    /// A name outside the suffix (we do not recurse), a class other than IN, or an opcode
    /// other than QUERY (answered NOTIMP).
    pub refused: u64,
    /// Two members whose names differ only in case: answering either could hand one member's
    /// traffic to the other, so neither is answered (SERVFAIL) until one is renamed.
    pub ambiguous: u64,
    /// Not a query we could parse (or a response, or not exactly one question): dropped.
    pub malformed: u64,
}

pub struct Responder {
    /// Lower case, fully qualified.
    suffix: Name,
    counters: DnsCounters,
}

impl Responder {
    /// `suffix` as `check_suffix` returns it.
    pub fn new(suffix: &str) -> Result<Self, super::SuffixError> {
        let checked = super::check_suffix(suffix)?;
        let mut name = Name::from_ascii(&checked)
            .map_err(|_| super::SuffixError::Invalid(suffix.to_string()))?;
        name.set_fqdn(true);
        Ok(Responder {
            suffix: name.to_lowercase(),
            counters: DnsCounters::default(),
        })
    }

    pub fn counters(&self) -> DnsCounters {
        self.counters
    }

    /// The reply to `query`, or `None` when it is dropped (counted as malformed).
    pub fn answer<'a>(
        &mut self,
        query: &[u8],
        hosts: impl IntoIterator<Item = Host<'a>>,
    ) -> Option<Vec<u8>> {
        let Some(request) = (query.len() <= MAX_QUERY)
            .then(|| Message::from_vec(query).ok())
            .flatten()
            .filter(|m| m.message_type() == MessageType::Query && m.queries().len() == 1)
        else {
            self.counters.malformed += 1;
            return None;
        };
        let mut reply = Message::new();
        reply
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(request.op_code())
            .set_recursion_desired(request.recursion_desired())
            // RFC 1035 §4.1.1: RA says whether recursion is available; it never is here.
            .set_recursion_available(false)
            .add_queries(request.queries().iter().cloned());
        if request.extensions().is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            reply.set_edns(edns);
        }
        let code = self.decide(&request, hosts, &mut reply);
        reply.set_response_code(code);
        match code {
            ResponseCode::NoError => self.counters.answered += 1,
            ResponseCode::NXDomain => self.counters.nxdomain += 1,
            ResponseCode::ServFail => self.counters.ambiguous += 1,
            _ => self.counters.refused += 1,
        }
        reply.to_vec().ok()
    }

    /// Fills in the answers and returns the response code.
    fn decide<'a>(
        &self,
        request: &Message,
        hosts: impl IntoIterator<Item = Host<'a>>,
        reply: &mut Message,
    ) -> ResponseCode {
        if request.op_code() != OpCode::Query {
            return ResponseCode::NotImp;
        }
        let Some(question) = request.queries().first() else {
            return ResponseCode::FormErr;
        };
        let qname = question.name();
        if !matches!(question.query_class(), DNSClass::IN | DNSClass::ANY)
            || !self.suffix.zone_of(qname)
        {
            return ResponseCode::Refused;
        }
        // The labels before the suffix; none for the suffix itself, which has no address.
        let host_labels = usize::from(qname.num_labels().saturating_sub(self.suffix.num_labels()));
        if host_labels == 0 {
            reply.set_authoritative(true);
            return ResponseCode::NoError;
        }
        let mut found: Option<Host<'a>> = None;
        for host in hosts {
            if !same_name(host.name, qname, host_labels) {
                continue;
            }
            match found {
                Some(f) if f.ipv4 != host.ipv4 => return ResponseCode::ServFail,
                _ => found = Some(host),
            }
        }
        let Some(host) = found else {
            reply.set_authoritative(true);
            return ResponseCode::NXDomain;
        };
        reply.set_authoritative(true);
        let qtype = question.query_type();
        // The owner name as asked: resolvers that randomise case (0x20) expect it echoed.
        let owner = qname.clone();
        if matches!(qtype, RecordType::A | RecordType::ANY) {
            reply.add_answer(Record::from_rdata(
                owner.clone(),
                TTL,
                RData::A(A(host.ipv4)),
            ));
        }
        if let (RecordType::AAAA | RecordType::ANY, Some(v6)) = (qtype, host.ipv6) {
            reply.add_answer(Record::from_rdata(owner, TTL, RData::AAAA(AAAA(v6))));
        }
        // Any other type (or AAAA without an IPv6 address) is NODATA: NOERROR, no answers.
        ResponseCode::NoError
    }
}

/// Whether the first `labels` labels of `qname` spell `name` (split at its dots), ignoring
/// ASCII case (RFC 4343). Label by label, so one label holding an escaped dot never matches a
/// two-label name.
fn same_name(name: &str, qname: &Name, labels: usize) -> bool {
    let mut asked = qname.iter().take(labels);
    let mut ours = name.split('.');
    loop {
        match (asked.next(), ours.next()) {
            (None, None) => return true,
            (Some(a), Some(o)) if a.eq_ignore_ascii_case(o.as_bytes()) => {}
            _ => return false,
        }
    }
}
