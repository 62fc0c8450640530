//! `ErrorChain`: an error and its causes on one line, for error types that show their cause in
//! their own text (the driver crates' errors do, so `{}` alone names why Cloud SQL failed).

use std::error::Error as StdError;
use std::fmt;

/// Displays an error and each of its causes whose text is not already shown, joined by `": "`
/// (some errors, mysql_async's and sqlx's among them, already put their cause in their text).
///
/// ```
/// use cloudsql_core::{Error, ErrorChain};
/// let error = Error::Closed;
/// assert_eq!(ErrorChain(&error).to_string(), error.to_string());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Layer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn StdError + 'static))
        }
    }

    #[test]
    fn causes_are_joined_once() {
        let inner = Layer("identity check failed", None);
        let middle = Layer("TLS failed: identity check failed", Some(Box::new(inner)));
        let outer = Layer("connect failed", Some(Box::new(middle)));
        assert_eq!(
            ErrorChain(&outer).to_string(),
            "connect failed: TLS failed: identity check failed"
        );
    }
}
