//! The Postgres side of the proxy. It answers `N` to an SSLRequest inside the tunnel (never TLS
//! inside TLS), reads the startup message, and for an IAM database user completes the backend's
//! password / MD5 / SCRAM exchange itself with a password only the emulator knows — but only when
//! the client certificate was issued with a valid IAM login token for that very principal.
//! Everyone else is relayed untouched, and the backend checks their password.

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

use crate::config::IamUser;
use crate::instance::{Instance, Issued};
use crate::naming::iam_database_user;

const PROTOCOL_3_0: i32 = 196_608;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
/// Startup and auth messages are small; anything larger is refused.
const MAX_MESSAGE: usize = 64 * 1024;

fn invalid(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

/// Reads an untagged startup-phase message; returns its body (after the length).
async fn read_startup<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Vec<u8>> {
    let len = stream.read_i32().await?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| (8..=MAX_MESSAGE).contains(l))
        .ok_or_else(|| invalid("bad startup message length"))?;
    let mut body = vec![0; len - 4];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

/// Reads a tagged message; returns the tag and body.
async fn read_message<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<(u8, Vec<u8>)> {
    let tag = stream.read_u8().await?;
    let len = stream.read_i32().await?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| (4..=MAX_MESSAGE).contains(l))
        .ok_or_else(|| invalid("bad message length"))?;
    let mut body = vec![0; len - 4];
    stream.read_exact(&mut body).await?;
    Ok((tag, body))
}

async fn write_message<S: AsyncWrite + Unpin>(stream: &mut S, tag: u8, body: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(
        &i32::try_from(body.len() + 4)
            .map_err(|_| invalid("message too long"))?
            .to_be_bytes(),
    );
    out.extend_from_slice(body);
    stream.write_all(&out).await
}

/// A FATAL ErrorResponse.
async fn fatal<S: AsyncWrite + Unpin>(stream: &mut S, code: &str, message: &str) -> std::io::Result<()> {
    let mut body = Vec::new();
    for (field, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', code), (b'M', message)] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    write_message(stream, b'E', &body).await?;
    stream.flush().await
}

/// Parses the `key\0value\0…\0` pairs of a startup message body (after the protocol version).
fn startup_params(body: &[u8]) -> Vec<(String, String)> {
    let mut fields = body
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let mut params = Vec::new();
    while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
        if k.is_empty() {
            break;
        }
        params.push((k, v));
    }
    params
}

fn frame_untagged(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = i32::try_from(body.len() + 4)
        .map_err(|_| invalid("message too long"))?
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(body);
    Ok(out)
}

pub(super) async fn serve<S>(mut client: S, instance: &Instance, issued: Issued) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let startup = loop {
        let body = super::within_login(instance, read_startup(&mut client)).await?;
        let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                // Already inside TLS: never negotiate TLS again.
                client.write_all(b"N").await?;
                client.flush().await?;
            }
            CANCEL_REQUEST => {
                let mut backend = instance.connect_backend().await?;
                backend.write_all(&frame_untagged(&body)?).await?;
                return Ok(());
            }
            PROTOCOL_3_0 => break body,
            other => {
                fatal(
                    &mut client,
                    "08P01",
                    &format!("unsupported frontend protocol {other}"),
                )
                .await?;
                return Ok(());
            }
        }
    };
    let params = startup_params(&startup[4..]);
    let user = params
        .iter()
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let version = instance.database_version();
    let iam_user: Option<&IamUser> = instance
        .config
        .iam_users
        .iter()
        .find(|u| iam_database_user(version, &u.principal) == user);

    if let Some(iam) = iam_user
        && issued.principal.as_deref() != Some(iam.principal.as_str())
    {
        // Manual IAM database authentication: the password is an OAuth2 access token.
        if let Err(why) = manual_iam_login(&mut client, instance, &iam.principal).await? {
            debug!(%user, why, "manual IAM login refused");
            let message = format!(
                "Cloud SQL IAM user authentication failed for user \"{user}\": {why}; log in with an \
                 access token of {} as the password, or with automatic IAM database authentication",
                iam.principal
            );
            fatal(&mut client, "28P01", &message).await?;
            return Ok(());
        }
        debug!(%user, "manual IAM login: access token accepted");
    }

    let mut backend = instance.connect_backend().await?;
    backend.write_all(&frame_untagged(&startup)?).await?;
    if let Some(iam) = iam_user {
        if !login(&mut client, &mut backend, &user, &iam.backend_password).await? {
            return Ok(());
        }
        debug!(%user, principal = %iam.principal, "IAM database login completed");
    }
    tokio::io::copy_bidirectional(&mut client, &mut backend).await?;
    Ok(())
}

/// Asks the client for a cleartext password (inside TLS) and checks it as an access token of
/// `principal`. `Ok(Err(why))` when the token is refused.
async fn manual_iam_login<S>(
    client: &mut S,
    instance: &Instance,
    principal: &str,
) -> std::io::Result<Result<(), &'static str>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    write_message(client, b'R', &3i32.to_be_bytes()).await?;
    client.flush().await?;
    let (tag, body) = super::within_login(instance, read_message(client)).await?;
    if tag != b'p' {
        return Ok(Err("the client sent no password"));
    }
    let token = body.strip_suffix(&[0]).unwrap_or(&body);
    let Ok(token) = std::str::from_utf8(token) else {
        return Ok(Err("the password is not an access token"));
    };
    Ok(instance.verify_login_token(token, principal))
}

/// Answers the backend's authentication requests for an IAM user. Forwards AuthenticationOk
/// (returning true) or the backend's error (returning false) to the client.
async fn login<S>(
    client: &mut S,
    backend: &mut TcpStream,
    user: &str,
    password: &str,
) -> std::io::Result<bool>
where
    S: AsyncWrite + Unpin,
{
    let mut scram: Option<ScramSha256> = None;
    loop {
        let (tag, body) = read_message(backend).await?;
        match tag {
            b'R' if body.len() >= 4 => {
                let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                let mut out = BytesMut::new();
                match code {
                    0 => {
                        write_message(client, b'R', &body).await?;
                        return Ok(true);
                    }
                    3 => frontend::password_message(password.as_bytes(), &mut out)?,
                    5 if body.len() >= 8 => {
                        let salt = [body[4], body[5], body[6], body[7]];
                        let hash = md5_hash(user.as_bytes(), password.as_bytes(), salt);
                        frontend::password_message(hash.as_bytes(), &mut out)?;
                    }
                    10 => {
                        let offers_scram = body[4..]
                            .split(|b| *b == 0)
                            .any(|m| m == SCRAM_SHA_256.as_bytes());
                        if !offers_scram {
                            return Err(invalid("backend offers no SCRAM-SHA-256"));
                        }
                        let s = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                        frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)?;
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram
                            .as_mut()
                            .ok_or_else(|| invalid("SASL continue before start"))?;
                        s.update(&body[4..])?;
                        frontend::sasl_response(s.message(), &mut out)?;
                    }
                    12 => {
                        let s = scram.as_mut().ok_or_else(|| invalid("SASL final before start"))?;
                        s.finish(&body[4..])?;
                        continue;
                    }
                    other => return Err(invalid(format!("unsupported backend authentication {other}"))),
                }
                backend.write_all(&out).await?;
            }
            b'E' => {
                write_message(client, b'E', &body).await?;
                client.flush().await?;
                return Ok(false);
            }
            _ => write_message(client, tag, &body).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_params_are_parsed_in_order() {
        let body = b"user\0alice\0database\0db\0\0";
        assert_eq!(
            startup_params(body),
            vec![("user".into(), "alice".into()), ("database".into(), "db".into())]
        );
    }
}
