//! The one retry policy of every token request: transient failures (unreachable, HTTP 5xx or 429,
//! a broken-off answer) are tried again with jittered backoff, [`TOKEN_ATTEMPTS`] tries in all; a
//! refusal is returned at once.

use std::future::Future;

use tracing::debug;

use super::{AccessToken, CredentialsError};
use crate::backoff::jittered_backoff;

/// How many times a token is asked for in all when the request fails transiently.
pub(super) const TOKEN_ATTEMPTS: u32 = 3;

/// Runs `request` until it succeeds, fails for good, or has been tried [`TOKEN_ATTEMPTS`] times.
pub(super) async fn retry_transient<F, Fut>(
    what: &str,
    mut request: F,
) -> Result<AccessToken, CredentialsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<AccessToken, CredentialsError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match request().await {
            Err(error) if error.is_transient() && attempt < TOKEN_ATTEMPTS => {
                let pause = jittered_backoff(attempt - 1);
                debug!(attempt, ?pause, %error, "retrying {what}");
                tokio::time::sleep(pause).await;
            }
            result => return result,
        }
    }
}
