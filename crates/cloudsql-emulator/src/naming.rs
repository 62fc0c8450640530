//! Cloud SQL's naming rules the emulator applies on the server side.

use crate::Error;

/// The database user Cloud SQL creates for an IAM principal on an engine.
pub(crate) fn iam_database_user(database_version: &str, principal: &str) -> String {
    if database_version.starts_with("MYSQL") {
        principal.split_once('@').map_or(principal, |(u, _)| u).to_owned()
    } else {
        principal
            .strip_suffix(".gserviceaccount.com")
            .unwrap_or(principal)
            .to_owned()
    }
}

/// Splits `project:region:instance` (or `domain:project:region:instance`).
pub(crate) fn split_connection_name(name: &str) -> Result<(String, String, String), Error> {
    let parts: Vec<&str> = name.split(':').collect();
    match parts.as_slice() {
        [p, r, i] if !p.is_empty() && !r.is_empty() && !i.is_empty() => {
            Ok(((*p).into(), (*r).into(), (*i).into()))
        }
        [d, p, r, i] if [d, p, r, i].iter().all(|s| !s.is_empty()) => {
            Ok((format!("{d}:{p}"), (*r).into(), (*i).into()))
        }
        _ => Err(Error::InvalidConnectionName(name.to_owned())),
    }
}
