//! The socket's private directory and the bind that replaces only stale sockets (Unix only).

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use crate::Error;

fn private_mode(meta: &std::fs::Metadata) -> bool {
    meta.permissions().mode() & 0o077 == 0
}

/// The socket's directory: the given one (created if missing; it must be a directory private
/// to this user), or a new private one under the temp dir. Returns whether we created it.
pub(super) fn private_dir(dir: Option<&Path>) -> Result<(PathBuf, bool), Error> {
    let Some(dir) = dir else {
        // A fresh directory with a unique name, made with mode 0700 in one step (no window in
        // which another user could enter it). It is removed on shutdown, by the socket's entry.
        let fresh = tempfile::Builder::new()
            .prefix("cloudsql-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(|e| {
                Error::local_socket_io("create a private directory under", std::env::temp_dir(), e)
            })?;
        return Ok((fresh.keep(), true));
    };
    let dir = dir.to_path_buf();
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => return Ok((dir, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::local_socket_io("create the directory", dir, e)),
    }
    let meta = std::fs::symlink_metadata(&dir)
        .map_err(|e| Error::local_socket_io("inspect the directory", &dir, e))?;
    if !meta.is_dir() {
        return Err(Error::config(format!("{} is not a directory", dir.display())));
    }
    if !private_mode(&meta) || meta.uid() != current_uid() {
        return Err(Error::config(format!(
            "socket directory {} must belong to the current user with mode 0700 (it has {:o}); \
             other users could reach the database through it",
            dir.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    Ok((dir, false))
}

/// The uid of this process, read from a file it creates (no unsafe `getuid`).
fn current_uid() -> u32 {
    static UID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UID.get_or_init(|| {
        std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or_else(|_| {
                let probe = std::env::temp_dir().join(format!("cloudsql-uid-{}", std::process::id()));
                let uid = std::fs::write(&probe, b"")
                    .and_then(|()| std::fs::metadata(&probe))
                    .map(|m| m.uid())
                    .unwrap_or(u32::MAX);
                let _ = std::fs::remove_file(&probe);
                uid
            })
    })
}

/// Binds the socket, replacing a stale one from a crashed run but never a live one or a
/// file that is not a socket; the socket file gets mode 0600.
pub(super) fn bind(path: &Path) -> Result<UnixListener, Error> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(Error::config(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            )));
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(Error::config(format!(
                    "{} is in use by a running process; choose another directory or name",
                    path.display()
                )));
            }
            Err(_) => {
                tracing::debug!(path = %path.display(), "replacing a stale socket");
                std::fs::remove_file(path)
                    .map_err(|e| Error::local_socket_io("remove the stale socket", path, e))?;
            }
        }
    }
    let listener = UnixListener::bind(path).map_err(|e| Error::local_socket_io("listen on", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::local_socket_io("make private (mode 0600)", path, e))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_directory_that_cannot_be_made_is_an_io_error_with_its_path() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let dir = file.path().join("sockets");
        let err = private_dir(Some(&dir)).unwrap_err();
        let Error::LocalSocketIo { action, path, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!((*action, path.as_path()), ("create the directory", dir.as_path()));
        assert!(err.to_string().contains(&dir.display().to_string()), "{err}");
        assert!(err.source().is_some(), "the I/O error is kept as the source");
    }

    #[test]
    fn the_default_directory_is_fresh_and_private() {
        let (dir, owned) = private_dir(None).unwrap();
        let meta = std::fs::metadata(&dir).unwrap();
        std::fs::remove_dir(&dir).unwrap();
        assert!(owned && meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    }
}
