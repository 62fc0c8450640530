//! The MySQL side of the proxy. It clears `CLIENT_SSL` from the server greeting (never TLS inside
//! TLS) and, for an IAM database user, answers the backend's `mysql_native_password` challenge
//! with a password only the emulator knows — only when the client certificate was issued with a
//! valid IAM login token for that very principal. Everyone else is relayed untouched after the
//! greeting, and the backend checks their password.

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::config::IamUser;
use crate::instance::{Instance, Issued};
use crate::naming::iam_database_user;

const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
const CLIENT_PLUGIN_AUTH_LENENC: u32 = 0x20_0000;
const NATIVE_PASSWORD: &str = "mysql_native_password";
/// The plugin that sends the password as is (safe only inside TLS), used for manual IAM logins.
const CLEAR_PASSWORD: &str = "mysql_clear_password";
const MAX_PACKET: usize = 1 << 20;

fn invalid(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

async fn read_packet<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if len > MAX_PACKET {
        return Err(invalid("handshake packet too large"));
    }
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).await?;
    Ok((header[3], payload))
}

async fn write_packet<S: AsyncWrite + Unpin>(stream: &mut S, seq: u8, payload: &[u8]) -> std::io::Result<()> {
    let len = payload.len();
    let mut out = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, seq];
    out.extend_from_slice(payload);
    stream.write_all(&out).await?;
    stream.flush().await
}

/// `mysql_native_password`: SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))).
pub(crate) fn native_password(password: &str, scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = digest(&SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
    let stage2 = digest(&SHA1_FOR_LEGACY_USE_ONLY, stage1.as_ref());
    let mut input = scramble.to_vec();
    input.extend_from_slice(stage2.as_ref());
    let mix = digest(&SHA1_FOR_LEGACY_USE_ONLY, &input);
    stage1
        .as_ref()
        .iter()
        .zip(mix.as_ref())
        .map(|(a, b)| a ^ b)
        .collect()
}

/// What matters in the server greeting: the 20-byte scramble, and where the lower capability
/// flags sit (to clear `CLIENT_SSL`).
struct Greeting {
    scramble: Vec<u8>,
    caps_low_at: usize,
}

fn nul_str(data: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let end = at + data.get(at..)?.iter().position(|b| *b == 0)?;
    Some((&data[at..end], end + 1))
}

fn parse_greeting(p: &[u8]) -> Option<Greeting> {
    if p.first() != Some(&10) {
        return None;
    }
    let (_, mut at) = nul_str(p, 1)?;
    at += 4; // connection id
    let mut scramble = p.get(at..at + 8)?.to_vec();
    at += 9; // auth-plugin-data part 1 + filler
    let caps_low_at = at;
    at += 2 + 1 + 2 + 2; // caps low, charset, status, caps high
    let auth_len = usize::from(*p.get(at)?);
    at += 1 + 10;
    let part2 = auth_len.saturating_sub(8).max(13);
    let rest = p.get(at..at + part2)?;
    scramble.extend_from_slice(&rest[..12.min(rest.len())]);
    Some(Greeting {
        scramble,
        caps_low_at,
    })
}

/// A parsed HandshakeResponse41.
struct Response<'a> {
    caps: u32,
    head: &'a [u8],
    user: &'a [u8],
    database: Option<&'a [u8]>,
    attrs: &'a [u8],
}

fn parse_response(p: &[u8]) -> Option<Response<'_>> {
    let caps = u32::from_le_bytes(p.get(0..4)?.try_into().ok()?);
    if caps & CLIENT_PROTOCOL_41 == 0 {
        return None;
    }
    let head = p.get(0..32)?;
    let (user, mut at) = nul_str(p, 32)?;
    // Skip the client's auth response.
    if caps & CLIENT_PLUGIN_AUTH_LENENC != 0 {
        let first = *p.get(at)?;
        let (len, size) = match first {
            0xfc => (
                usize::from(u16::from_le_bytes(p.get(at + 1..at + 3)?.try_into().ok()?)),
                3,
            ),
            0xfd | 0xfe => return None,
            n => (usize::from(n), 1),
        };
        at += size + len;
    } else if caps & CLIENT_SECURE_CONNECTION != 0 {
        at += 1 + usize::from(*p.get(at)?);
    } else {
        at = nul_str(p, at)?.1;
    }
    let mut database = None;
    if caps & CLIENT_CONNECT_WITH_DB != 0 && at < p.len() {
        let (db, next) = nul_str(p, at)?;
        database = Some(db);
        at = next;
    }
    if caps & CLIENT_PLUGIN_AUTH != 0 && at < p.len() {
        at = nul_str(p, at)?.1;
    }
    Some(Response {
        caps,
        head,
        user,
        database,
        attrs: p.get(at..)?,
    })
}

/// The client's response with the auth response replaced and the plugin set to native.
fn rewrite_response(r: &Response<'_>, auth: &[u8]) -> Vec<u8> {
    let mut out = r.head.to_vec();
    out.extend_from_slice(r.user);
    out.push(0);
    if r.caps & (CLIENT_PLUGIN_AUTH_LENENC | CLIENT_SECURE_CONNECTION) != 0 {
        out.push(auth.len() as u8);
        out.extend_from_slice(auth);
    } else {
        out.extend_from_slice(auth);
        out.push(0);
    }
    if let Some(db) = r.database {
        out.extend_from_slice(db);
        out.push(0);
    }
    if r.caps & CLIENT_PLUGIN_AUTH != 0 {
        out.extend_from_slice(NATIVE_PASSWORD.as_bytes());
        out.push(0);
    }
    out.extend_from_slice(r.attrs);
    out
}

fn error_packet(code: u16, message: &str) -> Vec<u8> {
    let mut out = vec![0xff];
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(b"#28000");
    out.extend_from_slice(message.as_bytes());
    out
}

pub(super) async fn serve<S>(mut client: S, instance: &Instance, issued: Issued) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut backend = instance.connect_backend().await?;
    let (seq, mut greeting) = read_packet(&mut backend).await?;
    let parsed = parse_greeting(&greeting);
    if let Some(g) = &parsed {
        greeting[g.caps_low_at] &= !((CLIENT_SSL & 0xff) as u8);
        greeting[g.caps_low_at + 1] &= !((CLIENT_SSL >> 8) as u8);
    }
    write_packet(&mut client, seq, &greeting).await?;

    let (client_seq, response) = super::within_login(instance, read_packet(&mut client)).await?;
    let Some(parsed_response) = parse_response(&response) else {
        // Not something we understand (or an error): relay it as is.
        write_packet(&mut backend, client_seq, &response).await?;
        tokio::io::copy_bidirectional(&mut client, &mut backend).await?;
        return Ok(());
    };
    let user = String::from_utf8_lossy(parsed_response.user).into_owned();
    let version = instance.database_version();
    let iam_user: Option<&IamUser> = instance
        .config
        .iam_users
        .iter()
        .find(|u| iam_database_user(version, &u.principal) == user);

    match (iam_user, parsed) {
        (Some(iam), Some(greeting)) => {
            // The sequence number the client expects next from the server.
            let mut reply_seq = client_seq.wrapping_add(1);
            if issued.principal.as_deref() != Some(iam.principal.as_str()) {
                // Manual IAM database authentication: switch the client to the cleartext plugin
                // (inside TLS) and check the password as an access token of the principal.
                let mut switch = vec![0xfe];
                switch.extend_from_slice(CLEAR_PASSWORD.as_bytes());
                switch.push(0);
                write_packet(&mut client, reply_seq, &switch).await?;
                let (seq, password) = super::within_login(instance, read_packet(&mut client)).await?;
                reply_seq = seq.wrapping_add(1);
                let token = password.strip_suffix(&[0]).unwrap_or(&password);
                let verdict = match std::str::from_utf8(token) {
                    Ok(token) => instance.verify_login_token(token, &iam.principal),
                    Err(_) => Err("the password is not an access token"),
                };
                if let Err(why) = verdict {
                    debug!(%user, why, "MySQL manual IAM login refused");
                    let message = format!(
                        "Access denied for user '{user}': Cloud SQL IAM user authentication failed: {why}; \
                         log in with an access token of {} as the password (cleartext plugin), or with \
                         automatic IAM database authentication",
                        iam.principal
                    );
                    write_packet(&mut client, reply_seq, &error_packet(1045, &message)).await?;
                    return Ok(());
                }
                debug!(%user, "MySQL manual IAM login: access token accepted");
            }
            let auth = native_password(&iam.backend_password, &greeting.scramble);
            let rewritten = rewrite_response(&parsed_response, &auth);
            write_packet(&mut backend, client_seq, &rewritten).await?;
            let (mut backend_seq, mut reply) = read_packet(&mut backend).await?;
            if reply.first() == Some(&0xfe) {
                // AuthSwitchRequest: plugin name, then the new scramble.
                let (plugin, at) = nul_str(&reply, 1).ok_or_else(|| invalid("bad auth switch"))?;
                if plugin != NATIVE_PASSWORD.as_bytes() {
                    return Err(invalid(format!(
                        "backend asks for auth plugin {}",
                        String::from_utf8_lossy(plugin)
                    )));
                }
                let scramble: Vec<u8> = reply[at..].iter().copied().take(20).collect();
                write_packet(
                    &mut backend,
                    backend_seq.wrapping_add(1),
                    &native_password(&iam.backend_password, &scramble),
                )
                .await?;
                (backend_seq, reply) = read_packet(&mut backend).await?;
            }
            let _ = backend_seq;
            // To the client, this is the server's next packet.
            write_packet(&mut client, reply_seq, &reply).await?;
            if reply.first() != Some(&0x00) {
                return Ok(());
            }
            debug!(%user, principal = %iam.principal, "MySQL IAM database login completed");
        }
        _ => write_packet(&mut backend, client_seq, &response).await?,
    }
    tokio::io::copy_bidirectional(&mut client, &mut backend).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_password_matches_the_reference_algorithm() {
        // SHA1("secret") XOR SHA1(scramble || SHA1(SHA1("secret"))), scramble = 20 x 0x01,
        // computed independently with Python's hashlib.
        let scramble = [1u8; 20];
        let out = native_password("secret", &scramble);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "04eca285ce66a0e05365554aaedaf99192c6223f");
        assert_eq!(native_password("", &scramble), Vec::<u8>::new());
        assert_ne!(native_password("secret", &[2u8; 20]), out);
    }
}
