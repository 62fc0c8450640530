//! Impersonation over a fixed token or a token source of the caller's own: IAM Credentials'
//! `generateAccessToken` called with that token.
//!
//! `google-cloud-auth` impersonates only with credentials it reads itself, and always at
//! `https://iamcredentials.{universe}`; so for the caller's own tokens the call is ours. Its answer
//! says when the token expires (`expireTime`), so login tokens carry their exact expiry.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::oauth::json_error_position;
use super::retry::retry_transient;
use super::{AccessToken, CredentialsError, TokenFuture, TokenSource};
use crate::backoff::retryable_status;
use crate::excerpt::excerpt;
use crate::http::{self, BODY_LIMIT, BodyError, ERROR_BODY_LIMIT, Request};

/// Tokens of one scope for `target`, minted by `generateAccessToken` with the source's token.
pub(crate) struct GenerateAccessToken {
    source: Arc<dyn TokenSource>,
    target: String,
    url: String,
    delegates: Vec<String>,
    scope: &'static str,
    lifetime: Duration,
}

impl GenerateAccessToken {
    /// `endpoint` is the IAM Credentials API's base URL; `delegates` are full resource names
    /// (`projects/-/serviceAccounts/{email}`).
    pub(crate) fn new(
        source: Arc<dyn TokenSource>,
        endpoint: &str,
        target: &str,
        delegates: Vec<String>,
        scope: &'static str,
        lifetime: Duration,
    ) -> Self {
        Self {
            source,
            target: target.to_owned(),
            url: format!("{endpoint}/v1/projects/-/serviceAccounts/{target}:generateAccessToken"),
            delegates,
            scope,
            lifetime,
        }
    }

    /// One `generateAccessToken` call.
    async fn once(&self) -> Result<AccessToken, CredentialsError> {
        let bearer = self.source.token().await.map_err(|e| {
            let transient = e.is_transient();
            let error = CredentialsError::with_source(
                format!("the credentials impersonating {} gave no token", self.target),
                e,
            );
            if transient { error.transient() } else { error }
        })?;
        let body = json!({
            "scope": [self.scope],
            "lifetime": format!("{}s", self.lifetime.as_secs()),
            "delegates": self.delegates,
        });
        let what = format!("IAM Credentials generateAccessToken for {}", self.target);
        let url = http::parse_url(&self.url).map_err(|why| {
            CredentialsError::new(format!(
                "{what}: the URL `{}` {why}; check the IAM endpoint",
                excerpt(&http::without_userinfo(&self.url))
            ))
        })?;
        let mut authorization = ::http::HeaderValue::try_from(format!("Bearer {}", bearer.secret()))
            .map_err(|_| {
                CredentialsError::new(format!(
                    "{what}: the impersonating credentials' token holds characters not allowed in an \
                     HTTP header"
                ))
            })?;
        authorization.set_sensitive(true);
        let request = Request::post(url)
            .header(::http::header::AUTHORIZATION, authorization)
            .json(&body)
            .map_err(|e| {
                CredentialsError::with_source(format!("{what}: the request could not be encoded"), e)
            })?;
        let client = http::client()
            .map_err(|e| CredentialsError::with_source(format!("{what}: no HTTP client"), e))?;
        let response = client.send(request, Duration::from_secs(30)).await.map_err(|e| {
            CredentialsError::with_source(format!("{what}: {} could not be reached", excerpt(&self.url)), e)
                .transient()
        })?;
        let status = response.status();
        if !status.is_success() {
            let body = http::read_prefix(response, ERROR_BODY_LIMIT)
                .await
                .map(|prefix| prefix.bytes)
                .unwrap_or_default();
            let detail = serde_json::from_slice::<GoogleError>(&body)
                .map(|e| excerpt(&e.error.message))
                .unwrap_or_else(|_| "no Google API error in the body".to_owned());
            let hint = if status == ::http::StatusCode::FORBIDDEN {
                format!(
                    "; the impersonating credentials need the Service Account Token Creator role \
                     (roles/iam.serviceAccountTokenCreator) on {}",
                    self.delegates
                        .first()
                        .map(|d| d.rsplit('/').next().unwrap_or(d))
                        .unwrap_or(&self.target)
                )
            } else {
                String::new()
            };
            let error = CredentialsError::new(format!("{what} failed with HTTP {status} ({detail}){hint}"));
            return Err(if retryable_status(status.as_u16()) {
                error.transient()
            } else {
                error
            });
        }
        let body = http::read_limited(response, BODY_LIMIT)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => CredentialsError::new(format!(
                    "{what} answered with a body over {BODY_LIMIT} bytes, which is not a token"
                )),
                BodyError::Transport(e) => {
                    CredentialsError::with_source(format!("{what} broke off its answer"), e).transient()
                }
            })?;
        // serde_json's message could quote the token, so only say where the body went wrong.
        let parsed: Generated = serde_json::from_slice(&body).map_err(|e| {
            CredentialsError::new(format!(
                "{what} sent a malformed answer ({})",
                json_error_position(&e)
            ))
        })?;
        let expires_at = OffsetDateTime::parse(&parsed.expire_time, &Rfc3339)
            .map_err(|_| CredentialsError::new(format!("{what} sent a malformed `expireTime`")))?;
        Ok(AccessToken::new(
            parsed.access_token,
            Some(SystemTime::from(expires_at)),
        ))
    }
}

/// A successful answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Generated {
    access_token: String,
    expire_time: String,
}

/// A Google API error body.
#[derive(Deserialize)]
struct GoogleError {
    error: GoogleErrorBody,
}

#[derive(Deserialize)]
struct GoogleErrorBody {
    message: String,
}

impl fmt::Debug for GenerateAccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateAccessToken")
            .field("source", &self.source)
            .field("target", &self.target)
            .field("delegates", &self.delegates)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TokenSource for GenerateAccessToken {
    /// Transient failures are tried again, as [`retry_transient`] says.
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(retry_transient("generateAccessToken", || self.once()))
    }
}
