//! Tokens from Google's official `google-cloud-auth` crate, for the credential types only it
//! reads: Workload Identity Federation (`external_account`) and service-account impersonation.
//!
//! The crate does not say when a token expires (googleapis/google-cloud-rust#2929), but an IAM
//! login token's expiry bounds the certificate it goes into. So login tokens are bounded
//! conservatively: a login token is only ever taken from a freshly built crate credentials
//! object, which mints its first token after the build started; that token lives the lifetime it
//! was minted with (the one we ask impersonation for; an hour for STS), so it is treated as
//! expiring a margin before `build start + lifetime`. When that leaves less than the
//! certificate's refresh buffer plus a margin, or the crate handed out a token minted in the
//! background (whose age is unknown), the credentials are built anew for a fresh token.
//! Admin API tokens need no expiry; the crate's own cache serves them.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use google_cloud_auth::credentials::AccessTokenCredentials;
use tokio::sync::Mutex;

use super::retry::retry_transient;
use super::{AccessToken, CredentialsError, TokenFuture, TokenSource};

/// A login token counts as expiring this long before `build start + lifetime` (clock skew,
/// and an issuer that rounds its lifetimes down).
const MARGIN: Duration = Duration::from_secs(2 * 60);
/// A login token with less than this left (by the bound) is replaced: the certificate refresh
/// buffer (4 min) and a margin, so a certificate refresh always gets a token that outlives it.
const MIN_LEFT: Duration = Duration::from_secs(6 * 60);

/// Builds the crate's credentials object (its first token is fetched on first use).
pub(crate) type Build = Arc<dyn Fn() -> Result<AccessTokenCredentials, CredentialsError> + Send + Sync>;

/// Tokens for one scope from `google-cloud-auth`.
pub(crate) struct GoogleAuthSource {
    /// What these credentials are, for messages (never a secret).
    what: String,
    build: Build,
    /// Login tokens: the lifetime tokens are minted with. `None` for Admin API tokens.
    lifetime: Option<Duration>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    credentials: Option<AccessTokenCredentials>,
    /// The last login token handed out, with its bounded expiry.
    last: Option<AccessToken>,
}

impl GoogleAuthSource {
    /// Admin API tokens: the crate's cache serves them; their expiry is not needed.
    pub(crate) fn admin(what: impl Into<String>, build: Build) -> Self {
        Self {
            what: what.into(),
            build,
            lifetime: None,
            state: Mutex::new(State::default()),
        }
    }

    /// IAM login tokens minted with `lifetime`, their expiry bounded as the module says.
    pub(crate) fn login(what: impl Into<String>, build: Build, lifetime: Duration) -> Self {
        Self {
            what: what.into(),
            build,
            lifetime: Some(lifetime),
            state: Mutex::new(State::default()),
        }
    }

    async fn fetch(&self, credentials: &AccessTokenCredentials) -> Result<String, CredentialsError> {
        match credentials.access_token().await {
            Ok(token) => Ok(token.token),
            Err(e) => {
                let transient = e.is_transient();
                let error = CredentialsError::with_source(format!("{} gave no token", self.what), e);
                Err(if transient { error.transient() } else { error })
            }
        }
    }
}

impl fmt::Debug for GoogleAuthSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleAuthSource")
            .field("what", &self.what)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// The bounded expiry of a token minted after `built_at` with `lifetime`.
fn bounded_expiry(built_at: SystemTime, lifetime: Duration) -> SystemTime {
    built_at + lifetime.saturating_sub(MARGIN)
}

/// Whether the last login token can be handed out again at `now`: the crate still serves it
/// (a different token was minted in the background, at an unknown time) and it has enough left.
fn reusable(last: &AccessToken, served: &str, now: SystemTime) -> bool {
    last.secret() == served && last.expires_at().is_some_and(|exp| exp >= now + MIN_LEFT)
}

impl GoogleAuthSource {
    /// One token, from the credentials object built last or a new one.
    async fn token_once(&self, state: &mut State) -> Result<AccessToken, CredentialsError> {
        if let Some(credentials) = state.credentials.clone() {
            match self.fetch(&credentials).await {
                Ok(served) => match self.lifetime {
                    None => return Ok(AccessToken::new(served, None)),
                    Some(_) => {
                        if let Some(last) = state
                            .last
                            .clone()
                            .filter(|last| reusable(last, &served, SystemTime::now()))
                        {
                            return Ok(last);
                        }
                    }
                },
                Err(error) => {
                    // After a refusal the crate's object fails for good ("subsequent calls
                    // will also fail"): the next call builds anew, so a fixed cause (a subject
                    // token written late, a permission granted) is picked up.
                    *state = State::default();
                    return Err(error);
                }
            }
        }
        // A fresh object mints its first token after this instant.
        let built_at = SystemTime::now();
        let credentials = (self.build)()?;
        let token = match self.fetch(&credentials).await {
            Ok(token) => token,
            Err(error) => {
                *state = State::default();
                return Err(error);
            }
        };
        let token = AccessToken::new(token, self.lifetime.map(|l| bounded_expiry(built_at, l)));
        state.credentials = Some(credentials);
        state.last = self.lifetime.map(|_| token.clone());
        Ok(token)
    }
}

impl TokenSource for GoogleAuthSource {
    /// Transient failures (the token endpoint unreachable, HTTP 5xx or 429) are tried again, as
    /// [`retry_transient`] says: the crate itself tries once.
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(retry_transient("token request", || async {
            let mut state = self.state.lock().await;
            self.token_once(&mut state).await
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use google_cloud_auth::credentials::user_account;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    /// A token endpoint refusing the first `refusals` requests, then answering each with a new
    /// token; counts the requests.
    async fn token_server(refusals: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let mut request = vec![0; 65536];
                let _ = socket.read(&mut request).await;
                let (status, body) = if n < refusals {
                    ("400 Bad Request", r#"{"error":"invalid_grant"}"#.to_owned())
                } else {
                    (
                        "200 OK",
                        format!(r#"{{"access_token":"tok-{n}","token_type":"Bearer","expires_in":3600}}"#),
                    )
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (url, count)
    }

    fn build(token_uri: &str) -> Build {
        let json = serde_json::json!({
            "type": "authorized_user",
            "client_id": "c",
            "client_secret": "s",
            "refresh_token": "r",
            "token_uri": token_uri,
        });
        Arc::new(move || {
            user_account::Builder::new(json.clone())
                .build_access_token_credentials()
                .map_err(|e| super::super::build_error("test credentials", e))
        })
    }

    #[tokio::test]
    async fn login_tokens_are_reused_within_their_bound_and_fresh_after() {
        let (uri, count) = token_server(0).await;
        let source = GoogleAuthSource::login("test credentials", build(&uri), HOUR);
        let before = SystemTime::now();
        let first = source.token().await.unwrap();
        let expires_at = first.expires_at().unwrap();
        assert!(expires_at >= before + HOUR - MARGIN, "{expires_at:?}");
        assert!(expires_at <= SystemTime::now() + HOUR - MARGIN, "{expires_at:?}");
        let again = source.token().await.unwrap();
        assert_eq!(again.secret(), first.secret());
        assert_eq!(again.expires_at(), first.expires_at());
        assert_eq!(count.load(Ordering::SeqCst), 1);

        // Minted with too short a life for a certificate refresh: each token is a fresh one.
        let short = GoogleAuthSource::login("test credentials", build(&uri), Duration::from_secs(5 * 60));
        let a = short.token().await.unwrap();
        let b = short.token().await.unwrap();
        assert_ne!(a.secret(), b.secret());
        assert_eq!(count.load(Ordering::SeqCst), 3);

        // Admin tokens carry no expiry and come from the crate's cache.
        let admin = GoogleAuthSource::admin("test credentials", build(&uri));
        assert_eq!(admin.token().await.unwrap().expires_at(), None);
        admin.token().await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn login_tokens_are_bounded_below_their_lifetime() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(bounded_expiry(t0, HOUR), t0 + Duration::from_secs(3480));
        assert_eq!(bounded_expiry(t0, Duration::from_secs(30)), t0);
    }

    #[test]
    fn reuse_needs_the_same_token_and_enough_life() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let last = AccessToken::new("a", Some(bounded_expiry(t0, HOUR)));
        let table = [
            ("a", t0, true),
            ("a", t0 + Duration::from_secs(3480 - 360), true),
            // Four minutes before the bound: a certificate refresh needs a fresh token.
            ("a", t0 + Duration::from_secs(3480 - 240), false),
            // Minted in the background, age unknown.
            ("b", t0, false),
        ];
        for (served, now, expected) in table {
            assert_eq!(reusable(&last, served, now), expected, "{served} at {now:?}");
        }
        assert!(!reusable(&AccessToken::new("a", None), "a", t0));
    }

    #[tokio::test]
    async fn a_refusal_does_not_break_the_source_for_good() {
        let (uri, count) = token_server(1).await;
        for source in [
            GoogleAuthSource::login("test credentials", build(&uri), HOUR),
            GoogleAuthSource::admin("test credentials", build(&uri)),
        ] {
            let before = count.load(Ordering::SeqCst);
            let err = source.token().await;
            if before == 0 {
                let err = err.unwrap_err();
                assert!(
                    err.to_string().contains("test credentials gave no token"),
                    "{err}"
                );
                assert!(!err.is_transient());
            }
            // The crate's object would repeat its failure; a new one asks again.
            assert!(source.token().await.unwrap().secret().starts_with("tok-"));
        }
    }
}
