//! The signal that closes connections made through a DNS name once the name stops pointing at
//! their instance (another instance, or no instance at all).
//!
//! One [`FailoverSignal`] exists per (DNS name, instance) binding. Every stream connected
//! through that binding holds a [`FailoverWatch`] of it; firing the signal wakes them all, and
//! each then fails its reads and writes with an [`io::Error`] that says why. Local-socket relays
//! copy from such a stream, so the error ends the relay and its client is dropped.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Fired once, when the binding of a DNS name to an instance ends.
#[derive(Clone)]
pub(crate) struct FailoverSignal {
    inner: Arc<SignalInner>,
}

struct SignalInner {
    token: CancellationToken,
    reason: OnceLock<NameMoved>,
}

impl fmt::Debug for FailoverSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverSignal")
            .field("fired", &self.inner.reason.get())
            .finish()
    }
}

impl FailoverSignal {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(SignalInner {
                token: CancellationToken::new(),
                reason: OnceLock::new(),
            }),
        }
    }

    /// Closes every stream watching this signal with `reason`; only the first call counts.
    pub(crate) fn fire(&self, reason: NameMoved) {
        if self.inner.reason.set(reason).is_ok() {
            self.inner.token.cancel();
        }
    }

    /// Whether [`fire`](Self::fire) was called.
    pub(crate) fn is_fired(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// A watch for one stream.
    pub(crate) fn watch(&self) -> FailoverWatch {
        FailoverWatch {
            fired: Box::pin(self.inner.token.clone().cancelled_owned()),
            signal: self.inner.clone(),
        }
    }
}

/// Why connections made through a DNS name were closed; the source of the I/O error their
/// reads and writes return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NameMoved {
    /// The name points at another instance now.
    #[error(
        "connection closed because DNS name `{dns_name}` now points to instance `{to}` (it pointed to \
         `{from}`); connect again to reach the new instance"
    )]
    Repointed {
        dns_name: String,
        from: String,
        to: String,
    },
    /// The name no longer resolves to any instance.
    #[error(
        "connection to instance `{from}` closed because DNS name `{dns_name}` no longer resolves to it: \
         {detail}"
    )]
    Gone {
        dns_name: String,
        from: String,
        detail: String,
    },
}

/// A stream's view of a [`FailoverSignal`].
pub(crate) struct FailoverWatch {
    fired: Pin<Box<WaitForCancellationFutureOwned>>,
    signal: Arc<SignalInner>,
}

impl fmt::Debug for FailoverWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverWatch")
            .field("fired", &self.signal.reason.get())
            .finish_non_exhaustive()
    }
}

impl FailoverWatch {
    /// The error to fail I/O with once the signal fired; otherwise `cx` is woken when it fires.
    pub(crate) fn poll_moved(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        match self.fired.as_mut().poll(cx) {
            Poll::Ready(()) => Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                self.signal
                    .reason
                    .get()
                    .cloned()
                    .unwrap_or_else(|| NameMoved::Gone {
                        dns_name: String::new(),
                        from: String::new(),
                        detail: "the connector stopped watching it".into(),
                    }),
            )),
            Poll::Pending => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Wake;

    use super::*;

    struct Flag(std::sync::atomic::AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn firing_wakes_every_watch_and_keeps_the_first_reason() {
        let signal = FailoverSignal::new();
        let flag = Arc::new(Flag(false.into()));
        let waker = std::task::Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut first = signal.watch();
        let mut second = signal.watch();
        assert!(first.poll_moved(&mut cx).is_none());
        assert!(!signal.is_fired());
        let reason = NameMoved::Repointed {
            dns_name: "db.example.com".into(),
            from: "p:r:a".into(),
            to: "p:r:b".into(),
        };
        signal.fire(reason.clone());
        signal.fire(NameMoved::Gone {
            dns_name: "db.example.com".into(),
            from: "p:r:a".into(),
            detail: "NXDOMAIN".into(),
        });
        assert!(
            flag.0.load(std::sync::atomic::Ordering::SeqCst),
            "the waker was woken"
        );
        assert!(signal.is_fired());
        for watch in [&mut first, &mut second] {
            let error = watch.poll_moved(&mut cx).unwrap();
            assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
            assert!(
                error
                    .to_string()
                    .contains("DNS name `db.example.com` now points to instance `p:r:b`"),
                "{error}"
            );
            let source = error.get_ref().unwrap().downcast_ref::<NameMoved>().unwrap();
            assert_eq!(source, &reason);
        }
        // A watch taken after the signal fired fails at once.
        assert!(signal.watch().poll_moved(&mut cx).is_some());
    }

    #[test]
    fn watches_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<FailoverWatch>();
        check::<FailoverSignal>();
    }
}
