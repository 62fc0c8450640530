//! A **test backend**, not a database: a small TDS (SQL Server wire protocol) responder, because
//! no SQL Server can run on the machines this project is tested on. It speaks just enough TDS 7.4
//! for a real driver (tiberius) to log in and get real answers and real errors:
//!
//! - PRELOGIN, answered with encryption NOT_SUP (the Cloud SQL tunnel is the encryption);
//! - LOGIN7 with SQL authentication, checked against the instance's configured logins
//!   (error 18456 otherwise);
//! - SQL batches: `SELECT <integer>` (an `int` column), `SELECT @@VERSION` (an `nvarchar`
//!   column) and empty batches; any other statement gets an ERROR token (class 16) and DONE;
//! - RPC requests (parameterised queries) get an ERROR token saying they are not supported.
//!
//! Each request is one TDS message (one or more packets up to the EOM flag); each response is
//! one message.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

const SQL_BATCH: u8 = 0x01;
const RPC: u8 = 0x03;
const TABULAR_RESULT: u8 = 0x04;
const ATTENTION: u8 = 0x06;
const LOGIN7: u8 = 0x10;
const PRELOGIN: u8 = 0x12;
const STATUS_EOM: u8 = 0x01;
const MAX_MESSAGE: usize = 1 << 20;
/// TDS 7.4 (SQL Server 2012 and later), big-endian on the wire in LOGINACK.
const TDS_74: u32 = 0x7400_0004;
/// What `SELECT @@VERSION` answers.
pub(crate) const VERSION_TEXT: &str =
    "Microsoft SQL Server 2019 (RTM) - 15.0.2000.5 (X64) — cloudsql-emulator TDS test responder";

fn invalid(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

/// Reads one message: the packets up to EOM, concatenated. Returns (type, payload).
async fn read_message<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<(u8, Vec<u8>)> {
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 8];
        stream.read_exact(&mut header).await?;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if len < 8 || payload.len() + len > MAX_MESSAGE {
            return Err(invalid("bad TDS packet length"));
        }
        let start = payload.len();
        payload.resize(start + len - 8, 0);
        stream.read_exact(&mut payload[start..]).await?;
        if header[1] & STATUS_EOM != 0 {
            return Ok((header[0], payload));
        }
    }
}

/// Writes one message in packets of at most 4096 bytes.
async fn write_message<S: AsyncWrite + Unpin>(stream: &mut S, ty: u8, payload: &[u8]) -> std::io::Result<()> {
    const MAX_BODY: usize = 4096 - 8;
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[][..]]
    } else {
        payload.chunks(MAX_BODY).collect()
    };
    let last = chunks.len() - 1;
    let mut out = Vec::with_capacity(payload.len() + 8 * chunks.len());
    for (i, chunk) in chunks.into_iter().enumerate() {
        out.push(ty);
        out.push(if i == last { STATUS_EOM } else { 0 });
        out.extend_from_slice(&((chunk.len() + 8) as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0]); // SPID
        out.push((i + 1) as u8); // packet id
        out.push(0); // window
        out.extend_from_slice(chunk);
    }
    stream.write_all(&out).await?;
    stream.flush().await
}

fn utf16(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn b_varchar(out: &mut Vec<u8>, text: &str) {
    let units: Vec<u16> = text.encode_utf16().take(255).collect();
    out.push(units.len() as u8);
    out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
}

fn us_varchar(out: &mut Vec<u8>, text: &str) {
    let units: Vec<u16> = text.encode_utf16().take(u16::MAX as usize).collect();
    out.extend_from_slice(&(units.len() as u16).to_le_bytes());
    out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
}

/// A token with a u16 length prefix.
fn token(out: &mut Vec<u8>, ty: u8, body: &[u8]) {
    out.push(ty);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(body);
}

const DONE_FINAL: u16 = 0x00;
const DONE_ERROR: u16 = 0x02;
const DONE_COUNT: u16 = 0x10;
const DONE_ATTN: u16 = 0x20;

fn done(out: &mut Vec<u8>, status: u16, rows: u64) {
    out.push(0xfd);
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&0xc1u16.to_le_bytes()); // CurCmd: SELECT
    out.extend_from_slice(&rows.to_le_bytes());
}

fn error(out: &mut Vec<u8>, number: u32, class: u8, message: &str) {
    let mut body = Vec::new();
    body.extend_from_slice(&number.to_le_bytes());
    body.push(1); // state
    body.push(class);
    us_varchar(&mut body, message);
    b_varchar(&mut body, "cloudsql-emulator");
    b_varchar(&mut body, "");
    body.extend_from_slice(&1u32.to_le_bytes()); // line
    token(out, 0xaa, &body);
}

/// The PRELOGIN answer: version, encryption NOT_SUP, no instance, no thread id, no MARS.
fn prelogin_response() -> Vec<u8> {
    // Option table: 5 entries of 5 bytes + terminator = 26 bytes, then the data.
    let data: [(u8, Vec<u8>); 5] = [
        (0x00, vec![15, 0, 0x07, 0xd0, 0, 0]), // VERSION 15.0.2000, sub-build 0
        (0x01, vec![0x02]),                    // ENCRYPTION: NOT_SUP
        (0x02, vec![0x00]),                    // INSTOPT: accepted
        (0x03, vec![]),                        // THREADID: empty from a server
        (0x04, vec![0x00]),                    // MARS: off
    ];
    let mut table = Vec::new();
    let mut body = Vec::new();
    let mut offset = (data.len() * 5 + 1) as u16;
    for (option, value) in &data {
        table.push(*option);
        table.extend_from_slice(&offset.to_be_bytes());
        table.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
        offset += value.len() as u16;
    }
    table.push(0xff);
    table.extend_from_slice(&body);
    table
}

/// Reads an (offset, length-in-characters) string of a LOGIN7 record.
fn login_string(login: &[u8], at: usize) -> Option<Vec<u8>> {
    let offset = usize::from(u16::from_le_bytes(login.get(at..at + 2)?.try_into().ok()?));
    let chars = usize::from(u16::from_le_bytes(login.get(at + 2..at + 4)?.try_into().ok()?));
    login.get(offset..offset + chars * 2).map(<[u8]>::to_vec)
}

fn decode_utf16(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// LOGIN7 passwords are obfuscated: each byte had its nibbles swapped, then XOR 0xA5.
fn deobfuscate(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| (b ^ 0xa5).rotate_left(4)).collect()
}

/// (user, password, database) of a LOGIN7 record.
fn parse_login(login: &[u8]) -> Option<(String, String, String)> {
    let user = decode_utf16(&login_string(login, 40)?);
    let password = decode_utf16(&deobfuscate(&login_string(login, 44)?));
    let database = decode_utf16(&login_string(login, 68)?);
    Some((user, password, database))
}

fn login_ack(out: &mut Vec<u8>, database: &str) {
    if !database.is_empty() {
        let mut env = vec![1u8]; // ENVCHANGE type 1: database
        b_varchar(&mut env, database);
        b_varchar(&mut env, "master");
        token(out, 0xe3, &env);
    }
    let mut ack = vec![1u8]; // interface: SQL_TSQL
    ack.extend_from_slice(&TDS_74.to_be_bytes());
    b_varchar(&mut ack, "Microsoft SQL Server");
    ack.extend_from_slice(&[15, 0, 0x07, 0xd0]);
    token(out, 0xad, &ack);
    done(out, DONE_FINAL, 0);
}

/// The answer to a SQL batch.
fn batch_response(sql: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let statement = sql.trim().trim_end_matches(';').trim();
    let lower = statement.to_ascii_lowercase();
    if statement.is_empty() {
        done(&mut out, DONE_FINAL, 0);
    } else if lower == "select @@version" {
        // COLMETADATA: one nvarchar(4000) column, no name.
        out.push(0x81);
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // user type
        out.extend_from_slice(&0x0001u16.to_le_bytes()); // flags: nullable
        out.push(0xe7);
        out.extend_from_slice(&8000u16.to_le_bytes());
        out.extend_from_slice(&[0x09, 0x04, 0xd0, 0x00, 0x34]); // collation
        b_varchar(&mut out, "");
        out.push(0xd1);
        let text = utf16(VERSION_TEXT);
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(&text);
        done(&mut out, DONE_COUNT, 1);
    } else if let Some(value) = lower
        .strip_prefix("select ")
        .and_then(|v| v.trim().parse::<i32>().ok())
    {
        // COLMETADATA: one int column, no name.
        out.push(0x81);
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&0x0000u16.to_le_bytes());
        out.push(0x38); // INT4
        b_varchar(&mut out, "");
        out.push(0xd1);
        out.extend_from_slice(&value.to_le_bytes());
        done(&mut out, DONE_COUNT, 1);
    } else {
        let shown: String = statement.chars().take(100).collect();
        error(
            &mut out,
            50000,
            16,
            &format!("The cloudsql-emulator TDS test responder does not support this statement: {shown}"),
        );
        done(&mut out, DONE_ERROR, 0);
    }
    out
}

/// Serves one client connection with the given SQL logins (user, password).
pub(crate) async fn serve<S>(mut client: S, logins: &[(String, String)]) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (ty, _) = read_message(&mut client).await?;
    if ty != PRELOGIN {
        return Err(invalid(format!("expected PRELOGIN, got packet type {ty:#04x}")));
    }
    write_message(&mut client, TABULAR_RESULT, &prelogin_response()).await?;

    let (ty, login) = read_message(&mut client).await?;
    if ty != LOGIN7 {
        return Err(invalid(format!("expected LOGIN7, got packet type {ty:#04x}")));
    }
    let (user, password, database) = parse_login(&login).ok_or_else(|| invalid("malformed LOGIN7"))?;
    let mut out = Vec::new();
    if !logins.iter().any(|(u, p)| *u == user && *p == password) {
        debug!(%user, "TDS responder: login failed");
        error(&mut out, 18456, 14, &format!("Login failed for user '{user}'."));
        done(&mut out, DONE_ERROR, 0);
        write_message(&mut client, TABULAR_RESULT, &out).await?;
        return Ok(());
    }
    login_ack(&mut out, &database);
    write_message(&mut client, TABULAR_RESULT, &out).await?;

    loop {
        let (ty, payload) = match read_message(&mut client).await {
            Ok(message) => message,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let response = match ty {
            SQL_BATCH => {
                // Skip ALL_HEADERS (its first u32 is its own total length).
                let headers = payload
                    .get(0..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                    .unwrap_or(0);
                batch_response(&decode_utf16(payload.get(headers..).unwrap_or_default()))
            }
            RPC => {
                let mut out = Vec::new();
                error(
                    &mut out,
                    50000,
                    16,
                    "The cloudsql-emulator TDS test responder does not support RPC (parameterised) requests",
                );
                done(&mut out, DONE_ERROR, 0);
                out
            }
            ATTENTION => {
                let mut out = Vec::new();
                done(&mut out, DONE_ATTN, 0);
                out
            }
            other => return Err(invalid(format!("unsupported TDS packet type {other:#04x}"))),
        };
        write_message(&mut client, TABULAR_RESULT, &response).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_deobfuscate() {
        // "a" in UTF-16LE is [0x61, 0x00]; obfuscated: swap nibbles, then XOR 0xA5.
        let obfuscated: Vec<u8> = [0x61u8, 0x00].iter().map(|b| b.rotate_left(4) ^ 0xa5).collect();
        assert_eq!(deobfuscate(&obfuscated), vec![0x61, 0x00]);
    }

    #[test]
    fn unknown_statements_get_an_error_and_a_done_with_the_error_flag() {
        let out = batch_response("DROP TABLE x");
        assert_eq!(out[0], 0xaa);
        let done_at = out.len() - 13;
        assert_eq!(out[done_at], 0xfd);
        assert_eq!(
            u16::from_le_bytes([out[done_at + 1], out[done_at + 2]]),
            DONE_ERROR
        );
    }
}
