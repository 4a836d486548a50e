//! The admin socket's listener. The socket file is 0600 inside a 0700 directory, which already
//! keeps other users out; checking the peer's uid (SO_PEERCRED) as well means a mistaken chmod
//! on the directory does not open the admin API to every local user.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use tokio::net::{UnixListener, UnixStream};

/// A Unix listener that accepts only connections from root or from the uid that owns the
/// socket file (the broker's own uid: it created the file).
pub struct AdminListener {
    inner: UnixListener,
    owner_uid: u32,
}

impl AdminListener {
    pub fn new(inner: UnixListener, path: &Path) -> io::Result<Self> {
        let owner_uid = std::fs::metadata(path)?.uid();
        Ok(Self { inner, owner_uid })
    }

    fn allowed(&self, stream: &UnixStream) -> bool {
        match stream.peer_cred() {
            Ok(cred) => cred.uid() == 0 || cred.uid() == self.owner_uid,
            Err(e) => {
                tracing::warn!(error = %e, "admin socket: cannot read peer credentials");
                false
            }
        }
    }
}

impl axum::serve::Listener for AdminListener {
    type Io = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            if self.allowed(&stream) {
                return (stream, addr);
            }
            let uid = stream.peer_cred().map(|c| c.uid()).ok();
            tracing::warn!(?uid, "admin socket: refused a connection from another user");
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
