//! A tiny authoritative DNS server on loopback UDP, for testing instance DNS names: TXT records
//! holding connection names, and CNAMEs (answered alone, so the client follows them). It counts
//! the queries it receives per name, and can be made to stop answering (an outage: queries are
//! dropped, so clients time out).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::oauth::lock;

const TYPE_CNAME: u16 = 5;
const TYPE_TXT: u16 = 16;
const CLASS_IN: u16 = 1;
const TTL: u32 = 5;

#[derive(Debug, Clone)]
enum Record {
    Txt(String),
    Cname(String),
}

/// The zone: records by lower-case name without the trailing dot.
#[derive(Debug, Default)]
pub(crate) struct Zone {
    records: Mutex<HashMap<String, Vec<Record>>>,
    /// Queries received per name (lower case, no trailing dot), answered or dropped.
    queries: Mutex<HashMap<String, u64>>,
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

    pub(crate) fn set_cname(&self, name: &str, target: &str) {
        lock(&self.records).insert(key(name), vec![Record::Cname(key(target))]);
    }

    pub(crate) fn remove(&self, name: &str) {
        lock(&self.records).remove(&key(name));
    }

    /// Every record, as the control API shows them: `{"name", "txt": [...]}` or
    /// `{"name", "cname"}`, sorted by name.
    pub(crate) fn records(&self) -> Vec<serde_json::Value> {
        let mut all: Vec<serde_json::Value> = lock(&self.records)
            .iter()
            .map(|(name, records)| {
                let txt: Vec<&str> = records
                    .iter()
                    .filter_map(|r| match r {
                        Record::Txt(t) => Some(t.as_str()),
                        Record::Cname(_) => None,
                    })
                    .collect();
                match records.iter().find_map(|r| match r {
                    Record::Cname(c) => Some(c),
                    Record::Txt(_) => None,
                }) {
                    Some(cname) => serde_json::json!({"name": name, "cname": cname}),
                    None => serde_json::json!({"name": name, "txt": txt}),
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

    /// The answer to one query, or `None` to stay silent on garbage or while down.
    fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        if query.len() < 12 || query[2] & 0x80 != 0 {
            return None;
        }
        let qdcount = u16::from_be_bytes([query[4], query[5]]);
        if qdcount != 1 {
            return Some(header_only(query, 1)); // FORMERR
        }
        let (labels, end) = read_name(query, 12)?;
        let qtype = u16::from_be_bytes([*query.get(end)?, *query.get(end + 1)?]);
        let question = &query[12..end + 4];
        let name = labels.join(".").to_ascii_lowercase();
        *lock(&self.queries).entry(name.clone()).or_default() += 1;
        if self.down.load(Ordering::Relaxed) {
            return None;
        }
        let records = lock(&self.records).get(&name).cloned();
        let mut answers = Vec::new();
        let rcode = match &records {
            None => 3, // NXDOMAIN
            Some(records) => {
                for record in records {
                    match record {
                        Record::Cname(target) => answers.push(rr(TYPE_CNAME, &encode_name(target))),
                        Record::Txt(text) if qtype == TYPE_TXT => {
                            answers.push(rr(TYPE_TXT, &txt_rdata(text)))
                        }
                        Record::Txt(_) => {}
                    }
                }
                0
            }
        };
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&query[0..2]); // id
        out.push(0x84 | (query[2] & 0x01)); // QR, AA, RD copied
        out.push(0x80 | rcode); // RA
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(question);
        for answer in answers {
            out.extend_from_slice(&[0xc0, 12]); // name: pointer to the question
            out.extend_from_slice(&answer);
        }
        Some(out)
    }
}

fn header_only(query: &[u8], rcode: u8) -> Vec<u8> {
    let mut out = query[0..2].to_vec();
    out.extend_from_slice(&[0x84, 0x80 | rcode, 0, 0, 0, 0, 0, 0, 0, 0]);
    out
}

/// Reads an uncompressed name; returns its labels and the offset after it.
fn read_name(data: &[u8], mut at: usize) -> Option<(Vec<String>, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*data.get(at)?);
        at += 1;
        if len == 0 {
            return Some((labels, at));
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(data.get(at..at + len)?).into_owned());
        at += len;
    }
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn txt_rdata(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(255) {
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
    out
}

/// TYPE, CLASS, TTL, RDLENGTH, RDATA (the name is written by the caller).
fn rr(ty: u16, rdata: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&TTL.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

/// Serves the zone on a free UDP port of 127.0.0.1 until `shutdown`.
pub(crate) async fn serve(zone: Arc<Zone>, shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
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
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(&encode_name(name));
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    #[test]
    fn answers_txt_cname_and_nxdomain() {
        let zone = Zone::default();
        zone.add_txt("db.example.test", "p:r:i");
        zone.set_cname("alias.example.test", "db.example.test");
        let answer = zone.answer(&query("DB.example.test", TYPE_TXT)).unwrap();
        assert_eq!(&answer[0..2], &[0x12, 0x34]);
        assert_eq!(answer[3] & 0x0f, 0);
        assert_eq!(u16::from_be_bytes([answer[6], answer[7]]), 1);
        assert!(answer.ends_with(b"\x05p:r:i"));
        let cname = zone.answer(&query("alias.example.test", TYPE_TXT)).unwrap();
        assert_eq!(u16::from_be_bytes([cname[6], cname[7]]), 1);
        let missing = zone.answer(&query("nope.example.test", TYPE_TXT)).unwrap();
        assert_eq!(missing[3] & 0x0f, 3);
        assert_eq!(zone.queries("db.example.test."), 1);
    }

    #[test]
    fn a_down_zone_counts_queries_and_stays_silent() {
        let zone = Zone::default();
        zone.add_txt("db.example.test", "p:r:i");
        zone.set_down(true);
        assert!(zone.answer(&query("db.example.test", TYPE_TXT)).is_none());
        zone.set_down(false);
        assert!(zone.answer(&query("db.example.test", TYPE_TXT)).is_some());
        assert_eq!(zone.queries("DB.example.test"), 2);
    }
}
