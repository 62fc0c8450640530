//! A tiny authoritative DNS server on loopback UDP, for testing instance DNS names: TXT records
//! holding connection names, A and AAAA records (custom names dialled by their own address),
//! and CNAMEs (answered alone, so the client follows them). Records change at run time. It counts
//! the queries it receives per name, and can be made to stop answering (an outage: queries are
//! dropped, so clients time out). Messages are parsed and built with `hickory-proto`: an unknown
//! name gets NXDOMAIN, a query without exactly one question FORMERR, an answer that cannot be
//! encoded SERVFAIL; garbage and responses get nothing.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
use hickory_proto::rr::{Name, RData, Record as Rr, RecordType};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::unpoisoned::lock;

const TTL: u32 = 5;

#[derive(Debug, Clone)]
enum Record {
    Txt(String),
    Address(IpAddr),
    Cname(String),
}

/// The zone: records by lower-case name without the trailing dot.
#[derive(Debug, Default)]
pub(crate) struct Zone {
    records: Mutex<HashMap<String, Vec<Record>>>,
    /// Queries received per name (lower case, no trailing dot), answered or dropped.
    queries: Mutex<HashMap<String, u64>>,
    /// The same, per name and record type (`TXT`, `A`, `AAAA`, `CNAME`, …).
    typed_queries: Mutex<HashMap<(String, String), u64>>,
    /// While set, queries are counted and dropped unanswered.
    down: AtomicBool,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Zone {
    pub(crate) fn add_txt(&self, name: &str, value: &str) {
        lock(&self.records)
            .entry(key(name))
            .or_default()
            .push(Record::Txt(value.to_owned()));
    }

    /// Adds an A (IPv4) or AAAA (IPv6) record.
    pub(crate) fn add_address(&self, name: &str, address: IpAddr) {
        lock(&self.records)
            .entry(key(name))
            .or_default()
            .push(Record::Address(address));
    }

    pub(crate) fn set_cname(&self, name: &str, target: &str) {
        lock(&self.records).insert(key(name), vec![Record::Cname(key(target))]);
    }

    pub(crate) fn remove(&self, name: &str) {
        lock(&self.records).remove(&key(name));
    }

    /// Every record, as the control API shows them: `{"name", "txt": [...], "addresses": [...]}`
    /// (each list only when not empty) or `{"name", "cname"}`, sorted by name.
    pub(crate) fn records(&self) -> Vec<serde_json::Value> {
        let mut all: Vec<serde_json::Value> = lock(&self.records)
            .iter()
            .map(|(name, records)| {
                let txt: Vec<&str> = records
                    .iter()
                    .filter_map(|r| match r {
                        Record::Txt(t) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect();
                let addresses: Vec<String> = records
                    .iter()
                    .filter_map(|r| match r {
                        Record::Address(a) => Some(a.to_string()),
                        _ => None,
                    })
                    .collect();
                match records.iter().find_map(|r| match r {
                    Record::Cname(c) => Some(c),
                    _ => None,
                }) {
                    Some(cname) => serde_json::json!({"name": name, "cname": cname}),
                    None if addresses.is_empty() => serde_json::json!({"name": name, "txt": txt}),
                    None if txt.is_empty() => serde_json::json!({"name": name, "addresses": addresses}),
                    None => serde_json::json!({"name": name, "txt": txt, "addresses": addresses}),
                }
            })
            .collect();
        all.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        all
    }

    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    pub(crate) fn queries(&self, name: &str) -> u64 {
        lock(&self.queries).get(&key(name)).copied().unwrap_or(0)
    }

    /// Queries of one record type (such as `TXT` or `A`, any case) received for `name`.
    pub(crate) fn queries_of_type(&self, name: &str, record_type: &str) -> u64 {
        lock(&self.typed_queries)
            .get(&(key(name), record_type.to_ascii_uppercase()))
            .copied()
            .unwrap_or(0)
    }

    /// The answer to one query, or `None` to stay silent on garbage, on responses, or while down.
    fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        let request = Message::from_vec(query).ok()?;
        if request.message_type != MessageType::Query {
            return None;
        }
        let [question] = request.queries.as_slice() else {
            return encode(&error(&request, ResponseCode::FormErr));
        };
        let name = key(&question.name().to_ascii());
        *lock(&self.queries).entry(name.clone()).or_default() += 1;
        *lock(&self.typed_queries)
            .entry((name.clone(), question.query_type().to_string()))
            .or_default() += 1;
        if self.down.load(Ordering::Relaxed) {
            return None;
        }
        let mut response = Message::response(request.id, OpCode::Query);
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = request.recursion_desired;
        response.metadata.recursion_available = true;
        response.add_query(question.clone());
        match lock(&self.records).get(&name) {
            None => response.metadata.response_code = ResponseCode::NXDomain,
            Some(records) => {
                for record in records {
                    let rdata = match record {
                        Record::Cname(target) => match fqdn(target) {
                            Some(target) => RData::CNAME(CNAME(target)),
                            None => return encode(&error(&request, ResponseCode::ServFail)),
                        },
                        Record::Txt(text) if question.query_type() == RecordType::TXT => {
                            RData::TXT(txt(text))
                        }
                        Record::Txt(_) => continue,
                        Record::Address(IpAddr::V4(v4)) if question.query_type() == RecordType::A => {
                            RData::A(A(*v4))
                        }
                        Record::Address(IpAddr::V6(v6)) if question.query_type() == RecordType::AAAA => {
                            RData::AAAA(AAAA(*v6))
                        }
                        Record::Address(_) => continue,
                    };
                    response.add_answer(Rr::from_rdata(question.name().clone(), TTL, rdata));
                }
            }
        }
        match response.to_vec() {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                debug!(error = %e, name, "DNS answer does not encode");
                encode(&error(&request, ResponseCode::ServFail))
            }
        }
    }
}

/// A header-only answer with `code`, as an authoritative server with recursion available.
fn error(request: &Message, code: ResponseCode) -> Message {
    let mut response = Message::error_msg(request.id, OpCode::Query, code);
    response.metadata.authoritative = true;
    response.metadata.recursion_available = true;
    response
}

fn encode(message: &Message) -> Option<Vec<u8>> {
    message
        .to_vec()
        .inspect_err(|e| debug!(error = %e, "DNS error answer does not encode"))
        .ok()
}

/// A zone key (lower case, no trailing dot) as an absolute name.
fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{name}.")).ok()
}

/// TXT data split into character-strings of at most 255 bytes.
fn txt(text: &str) -> TXT {
    TXT::from_bytes(text.as_bytes().chunks(255).collect())
}

/// Serves the zone on a free UDP port of 127.0.0.1 until `shutdown`.
pub(crate) async fn serve(zone: Arc<Zone>, shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = socket.local_addr()?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        loop {
            let (len, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                received = socket.recv_from(&mut buf) => match received {
                    Ok(r) => r,
                    Err(e) => {
                        debug!(error = %e, "DNS receive failed");
                        continue;
                    }
                },
            };
            if let Some(answer) = zone.answer(&buf[..len]) {
                let _ = socket.send_to(&answer, peer).await;
            }
        }
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;

    use super::*;

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut q = Message::new(0x1234, MessageType::Query, OpCode::Query);
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        q.to_vec().unwrap()
    }

    fn parse(answer: &[u8]) -> Message {
        Message::from_vec(answer).unwrap()
    }

    #[test]
    fn answers_txt_cname_and_nxdomain() {
        let zone = Zone::default();
        zone.add_txt("db.example.test", "p:r:i");
        zone.set_cname("alias.example.test", "db.example.test");
        let answer = parse(&zone.answer(&query("DB.example.test.", RecordType::TXT)).unwrap());
        assert_eq!(answer.id, 0x1234);
        assert_eq!(answer.message_type, MessageType::Response);
        assert!(answer.authoritative && answer.recursion_desired);
        assert_eq!(answer.response_code, ResponseCode::NoError);
        assert_eq!(answer.queries.len(), 1);
        let [record] = answer.answers.as_slice() else {
            panic!("one answer expected: {answer:?}")
        };
        assert_eq!(record.name.to_ascii(), "DB.example.test.");
        assert_eq!(record.ttl, TTL);
        let RData::TXT(txt) = &record.data else {
            panic!("TXT expected: {record:?}")
        };
        assert_eq!(&*txt.txt_data, &[b"p:r:i".to_vec().into_boxed_slice()]);

        let cname = parse(
            &zone
                .answer(&query("alias.example.test.", RecordType::TXT))
                .unwrap(),
        );
        let [record] = cname.answers.as_slice() else {
            panic!("one answer expected: {cname:?}")
        };
        assert_eq!(
            &record.data,
            &RData::CNAME(CNAME(Name::from_ascii("db.example.test.").unwrap()))
        );

        let missing = parse(
            &zone
                .answer(&query("nope.example.test.", RecordType::TXT))
                .unwrap(),
        );
        assert_eq!(missing.response_code, ResponseCode::NXDomain);
        assert!(missing.answers.is_empty());
        assert_eq!(zone.queries("db.example.test."), 1);
    }

    #[test]
    fn other_types_get_no_data_and_long_txt_is_split() {
        let zone = Zone::default();
        let long = "x".repeat(300);
        zone.add_txt("db.example.test", &long);
        let a = parse(&zone.answer(&query("db.example.test.", RecordType::A)).unwrap());
        assert_eq!(a.response_code, ResponseCode::NoError);
        assert!(a.answers.is_empty());
        let answer = parse(&zone.answer(&query("db.example.test.", RecordType::TXT)).unwrap());
        let RData::TXT(txt) = &answer.answers[0].data else {
            panic!("TXT expected: {answer:?}")
        };
        let lengths: Vec<usize> = txt.txt_data.iter().map(|s| s.len()).collect();
        assert_eq!(lengths, [255, 45]);
    }

    #[test]
    fn addresses_answer_a_and_aaaa_queries_and_sit_beside_txt() {
        let zone = Zone::default();
        zone.add_txt("db.example.test", "p:r:i");
        zone.add_address("db.example.test", "127.0.0.7".parse().unwrap());
        zone.add_address("db.example.test", "::1".parse().unwrap());
        let a = parse(&zone.answer(&query("db.example.test.", RecordType::A)).unwrap());
        assert_eq!(
            a.answers.iter().map(|r| r.data.clone()).collect::<Vec<_>>(),
            vec![RData::A(A("127.0.0.7".parse().unwrap()))]
        );
        let aaaa = parse(&zone.answer(&query("db.example.test.", RecordType::AAAA)).unwrap());
        assert_eq!(
            aaaa.answers.iter().map(|r| r.data.clone()).collect::<Vec<_>>(),
            vec![RData::AAAA(AAAA("::1".parse().unwrap()))]
        );
        let txt = parse(&zone.answer(&query("db.example.test.", RecordType::TXT)).unwrap());
        assert_eq!(txt.answers.len(), 1);
        assert_eq!(
            zone.records(),
            vec![
                serde_json::json!({"name": "db.example.test", "txt": ["p:r:i"], "addresses": ["127.0.0.7", "::1"]})
            ]
        );
        zone.remove("db.example.test");
        zone.add_address("db.example.test", "127.0.0.8".parse().unwrap());
        assert_eq!(
            zone.records(),
            vec![serde_json::json!({"name": "db.example.test", "addresses": ["127.0.0.8"]})]
        );
    }

    #[test]
    fn garbage_and_responses_get_no_answer_and_two_questions_get_formerr() {
        let zone = Zone::default();
        assert!(zone.answer(b"\x12\x34").is_none());
        let mut response = Message::response(1, OpCode::Query);
        response.add_query(Query::query(
            Name::from_ascii("db.example.test.").unwrap(),
            RecordType::TXT,
        ));
        assert!(zone.answer(&response.to_vec().unwrap()).is_none());
        let mut two = Message::new(7, MessageType::Query, OpCode::Query);
        for name in ["a.example.test.", "b.example.test."] {
            two.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::TXT));
        }
        let formerr = parse(&zone.answer(&two.to_vec().unwrap()).unwrap());
        assert_eq!(formerr.id, 7);
        assert_eq!(formerr.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn a_down_zone_counts_queries_and_stays_silent() {
        let zone = Zone::default();
        zone.add_txt("db.example.test", "p:r:i");
        zone.set_down(true);
        assert!(zone.answer(&query("db.example.test.", RecordType::TXT)).is_none());
        zone.set_down(false);
        assert!(zone.answer(&query("db.example.test.", RecordType::TXT)).is_some());
        assert_eq!(zone.queries("DB.example.test"), 2);
        assert_eq!(zone.queries_of_type("db.example.test", "txt"), 2);
        assert_eq!(zone.queries_of_type("db.example.test", "A"), 0);
    }
}
