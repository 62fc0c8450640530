//! The connect errors a pool would otherwise swallow, kept for the checkout that waits for them.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// How many failed connects a [`ConnectErrors`] keeps for checkouts to pick up.
const KEPT_ERRORS: usize = 16;

/// The failed connects of one pool (or of every pool of one connection manager), for pools that
/// open connections in background tasks and hand their errors to a sink instead of to the
/// waiting checkout (bb8). Generic over the driver crate's error type; clones share the errors.
///
/// The driver crate's error sink passes every error it gets to [`sink`](Self::sink), and its
/// checkout runs the pool's own through [`checkout`](Self::checkout), which answers with the
/// real error instead of the pool's timeout. The driver crate logs (so that the log's target is
/// its own module); this type only keeps and hands out.
///
/// ```
/// use cloudsql_core::driver::{ConnectErrors, PooledFailure};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let errors = ConnectErrors::<std::io::Error>::new("proj:region:inst");
/// let sink = errors.clone();
/// // The pool's checkout never ends by itself (a timeout of one hour)…
/// let checkout = async {
///     tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
///     Err::<(), &str>("timed out")
/// };
/// // …but a background connect fails, and the sink gets its error.
/// tokio::spawn(async move {
///     sink.sink(std::io::Error::other("refused"), |failure, instance, error| {
///         assert_eq!(failure, PooledFailure::Connect);
///         eprintln!("{instance}: {error}");
///     });
/// });
/// let answer = errors.checkout(false, checkout, |r| r.is_err()).await;
/// assert_eq!(answer.unwrap_err().to_string(), "refused");
/// # }
/// ```
pub struct ConnectErrors<E> {
    shared: Arc<Shared<E>>,
}

struct Shared<E> {
    instance: String,
    /// Failed connects, oldest first, each with its sequence number.
    kept: Mutex<VecDeque<(u64, E)>>,
    /// The sequence number of the newest failed connect.
    newest: watch::Sender<u64>,
}

/// What failed, as [`ConnectErrors::sink`] tells its logger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PooledFailure {
    /// Opening a new connection failed; the error is kept for a checkout. Log it at `warn!`.
    Connect,
    /// An idle connection failed the pool's check on checkout
    /// ([`mark_check_failure`]); the pool replaces it. Log it at `debug!`.
    Check,
}

impl<E> ConnectErrors<E> {
    /// An empty collector for the pool of `instance`.
    pub fn new(instance: &str) -> Self {
        Self {
            shared: Arc::new(Shared {
                instance: instance.to_owned(),
                kept: Mutex::new(VecDeque::new()),
                newest: watch::Sender::new(0),
            }),
        }
    }

    /// The instance the pool connects to.
    pub fn instance(&self) -> &str {
        &self.shared.instance
    }

    /// Takes an error the pool handed to its sink: `log` is called with what failed, the
    /// instance and the error, then a failed connect is kept (the last 16) and wakes the
    /// checkouts waiting in [`checkout`](Self::checkout); a failed check is dropped.
    pub fn sink(&self, error: E, log: impl FnOnce(PooledFailure, &str, &E)) {
        if take_check_failure() {
            log(PooledFailure::Check, &self.shared.instance, &error);
            return;
        }
        log(PooledFailure::Connect, &self.shared.instance, &error);
        let mut kept = self.shared.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = *self.shared.newest.borrow() + 1;
        kept.push_back((seq, error));
        if kept.len() > KEPT_ERRORS {
            kept.pop_front();
        }
        self.shared.newest.send_replace(seq);
    }

    /// Runs the pool's `checkout` and answers a failed connect with its error (`Err`) instead of
    /// the pool's timeout (a result for which `timed_out` is true).
    ///
    /// With `retrying` false (the pool does not retry a failed connect) it answers as soon as a
    /// connect fails, dropping the checkout, which must then hold no connection; with `retrying`
    /// it waits for the checkout and replaces a timeout with the last failure. With no failure
    /// since it started, the checkout's own result comes back (`Ok`).
    pub async fn checkout<R>(
        &self,
        retrying: bool,
        checkout: impl Future<Output = R>,
        timed_out: impl Fn(&R) -> bool,
    ) -> Result<R, E> {
        let mut newest = self.shared.newest.subscribe();
        let start = *newest.borrow_and_update();
        tokio::pin!(checkout);
        if retrying {
            let result = checkout.await;
            return match timed_out(&result)
                .then(|| self.take_newest_after(start))
                .flatten()
            {
                Some(error) => Err(error),
                None => Ok(result),
            };
        }
        loop {
            tokio::select! {
                biased;
                result = &mut checkout => {
                    return match timed_out(&result).then(|| self.take_oldest_after(start)).flatten() {
                        Some(error) => Err(error),
                        None => Ok(result),
                    };
                }
                Ok(()) = newest.changed() => {
                    if let Some(error) = self.take_oldest_after(start) {
                        return Err(error);
                    }
                }
            }
        }
    }

    /// Takes the oldest failure newer than `start`: with no retries, each failed connect
    /// answers one waiting checkout.
    fn take_oldest_after(&self, start: u64) -> Option<E> {
        let mut kept = self.shared.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let index = kept.iter().position(|(seq, _)| *seq > start)?;
        kept.remove(index).map(|(_, error)| error)
    }

    /// Takes the newest failure newer than `start`: with retries, the last attempt's.
    fn take_newest_after(&self, start: u64) -> Option<E> {
        let mut kept = self.shared.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let index = kept.iter().rposition(|(seq, _)| *seq > start)?;
        kept.remove(index).map(|(_, error)| error)
    }
}

impl<E> Clone for ConnectErrors<E> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<E> fmt::Debug for ConnectErrors<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectErrors")
            .field("instance", &self.shared.instance)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Set by a failing check and read by the next sink on the same thread: bb8 hands a failed
    /// check to the sink in the same poll, with no await in between, so the flag tells a failed
    /// check (the pool replaces the connection) from a failed connect.
    static CHECK_FAILED: Cell<bool> = const { Cell::new(false) };
}

/// Call as a pooled connection fails the pool's check, just before returning the error to the
/// pool: the next [`ConnectErrors::sink`] on this thread then knows it is no failed connect, and
/// drops it. (bb8 hands a failed check to its sink in the same poll, on the same thread.)
///
/// ```
/// use cloudsql_core::driver::{ConnectErrors, PooledFailure, mark_check_failure};
///
/// let errors = ConnectErrors::<std::io::Error>::new("proj:region:inst");
/// mark_check_failure();
/// errors.sink(std::io::Error::other("connection reset"), |failure, _, _| {
///     assert_eq!(failure, PooledFailure::Check);
/// });
/// ```
pub fn mark_check_failure() {
    CHECK_FAILED.with(|flag| flag.set(true));
}

fn take_check_failure() -> bool {
    CHECK_FAILED.with(|flag| flag.replace(false))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn timed_out(result: &Result<u32, &str>) -> bool {
        result.is_err()
    }

    async fn never() -> Result<u32, &'static str> {
        std::future::pending().await
    }

    #[tokio::test(start_paused = true)]
    async fn without_retries_each_failed_connect_answers_one_checkout_oldest_first() {
        let errors = ConnectErrors::<String>::new("p:r:i");
        let (a, b) = (errors.clone(), errors.clone());
        let first = tokio::spawn(async move { a.checkout(false, never(), timed_out).await });
        let second = tokio::spawn(async move { b.checkout(false, never(), timed_out).await });
        tokio::task::yield_now().await;
        let mut logged = Vec::new();
        errors.sink("one".to_owned(), |kind, instance, e| {
            logged.push((kind, instance.to_owned(), e.clone()))
        });
        errors.sink("two".to_owned(), |_, _, _| {});
        let mut answers = vec![
            first.await.unwrap().unwrap_err(),
            second.await.unwrap().unwrap_err(),
        ];
        answers.sort();
        assert_eq!(answers, ["one", "two"]);
        assert_eq!(
            logged,
            [(PooledFailure::Connect, "p:r:i".to_owned(), "one".to_owned())]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_retries_a_timeout_becomes_the_last_failure() {
        let errors = ConnectErrors::<String>::new("p:r:i");
        let sink = errors.clone();
        let checkout = async move {
            sink.sink("first".to_owned(), |_, _, _| {});
            sink.sink("last".to_owned(), |_, _, _| {});
            tokio::time::sleep(Duration::from_secs(30)).await;
            Err::<u32, &str>("timed out")
        };
        assert_eq!(
            errors.checkout(true, checkout, timed_out).await.unwrap_err(),
            "last"
        );
    }

    #[tokio::test]
    async fn a_checkout_without_failures_keeps_its_own_result() {
        let errors = ConnectErrors::<String>::new("p:r:i");
        assert_eq!(
            errors.checkout(false, async { Ok(7) }, timed_out).await,
            Ok(Ok(7))
        );
        assert_eq!(
            errors.checkout(true, async { Err("timed out") }, timed_out).await,
            Ok(Err("timed out"))
        );
    }

    #[tokio::test]
    async fn a_failed_check_is_logged_as_such_and_not_kept() {
        let errors = ConnectErrors::<String>::new("p:r:i");
        mark_check_failure();
        let mut kinds = Vec::new();
        errors.sink("broken".to_owned(), |kind, _, _| kinds.push(kind));
        errors.sink("refused".to_owned(), |kind, _, _| kinds.push(kind));
        assert_eq!(kinds, [PooledFailure::Check, PooledFailure::Connect]);
        let answer = errors.checkout(true, async { Err("timed out") }, timed_out).await;
        assert_eq!(
            answer,
            Ok(Err("timed out")),
            "failures before the checkout are not its own"
        );
    }
}
