//! A TCP relay from a loopback port of the test's own network namespace to a loopback port
//! inside a test namespace: how the test reaches a `chromedriver` that runs in the client
//! namespace (so that the browser, like the WireGuard client beside it, reaches the broker
//! from the client's address, which is what the lease is pinned to).
//!
//! The listener is made in the test's namespace; the thread that accepts switches itself
//! (`setns(2)`, which moves only the calling thread) into the test namespace, so every socket
//! it then connects lives there. Nothing is routed between the namespaces: bytes are copied
//! between two loopback connections, one on each side.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::super::netns::Netns;

pub struct NsRelay {
    port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl NsRelay {
    /// Relays `127.0.0.1:<self.port()>` here to `127.0.0.1:target` inside `ns`.
    pub fn start(ns: &Netns, target: u16) -> NsRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay listener");
        let port = listener.local_addr().expect("relay port").port();
        let ns_file = File::open(format!("/var/run/netns/{}", ns.name()))
            .unwrap_or_else(|e| panic!("opening netns {}: {e}", ns.name()));
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let acceptor = std::thread::spawn(move || {
            nix::sched::setns(&ns_file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns into the test namespace: {e}"));
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(outside) = conn else { continue };
                // Connected from this thread: inside the namespace.
                match TcpStream::connect(("127.0.0.1", target)) {
                    Ok(inside) => pipe(outside, inside),
                    Err(_) => drop(outside),
                }
            }
        });
        NsRelay {
            port,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for NsRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// Copies both ways until either side closes, each direction on a thread of its own.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    std::thread::spawn(move || copy(a, b2));
    std::thread::spawn(move || copy(b, a2));
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
