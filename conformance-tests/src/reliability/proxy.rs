//! A TCP proxy between the suite's stores and their server, that cuts or freezes the traffic on
//! demand: a network blip (every connection dropped, new ones refused) or a server that stops
//! answering (connections stay open, nothing goes through).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forwards everything.
    Open,
    /// Drops every connection and refuses new ones.
    Cut,
    /// Keeps connections open but forwards nothing, in either direction.
    Frozen,
}

/// A running proxy on a loopback port of its own; stopped when dropped.
pub struct Proxy {
    port: u16,
    mode: Arc<watch::Sender<Mode>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("the proxy cannot listen: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let mode = Arc::new(watch::Sender::new(Mode::Open));
        let accept = tokio::spawn(accept(listener, target, Arc::clone(&mode)));
        Proxy { port, mode, accept }
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let credentials = authority
            .rsplit_once('@')
            .map(|(c, _)| format!("{c}@"))
            .unwrap_or_default();
        format!("{scheme}://{credentials}127.0.0.1:{}{tail}", self.port)
    }

    /// Drops every connection, refuses new ones for `how_long`, then forwards again.
    pub async fn cut_for(&self, how_long: Duration) {
        self.mode.send_replace(Mode::Cut);
        tokio::time::sleep(how_long).await;
        self.mode.send_replace(Mode::Open);
    }

    /// From now on forwards nothing: the server seems to stop answering.
    pub fn freeze(&self) {
        self.mode.send_replace(Mode::Frozen);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Cut);
        self.accept.abort();
    }
}

/// The host and port of a server URL, with `default_port` when the URL names none.
pub fn address_of(url: &str, default_port: u16) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.split(',').next().unwrap_or(host);
    let with_port = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    };
    let with_port = with_port.replace("localhost", "127.0.0.1");
    with_port
        .parse()
        .unwrap_or_else(|e| panic!("{with_port} is not an address: {e}"))
}

async fn accept(listener: TcpListener, target: SocketAddr, mode: Arc<watch::Sender<Mode>>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *mode.borrow() == Mode::Cut {
            drop(client);
            continue;
        }
        let mode = mode.subscribe();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::select! {
                _ = pump(client_read, server_write, mode.clone()) => {}
                _ = pump(server_read, client_write, mode) => {}
            }
        });
    }
}

/// Copies bytes from `from` to `to` while the mode is open; pauses while frozen; ends (closing
/// both) when cut or when either side closes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Mode::Cut => return,
            Mode::Frozen => {
                if mode.changed().await.is_err() {
                    return;
                }
            }
            Mode::Open => {
                tokio::select! {
                    read = from.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    },
                    changed = mode.changed() => if changed.is_err() { return },
                }
            }
        }
    }
}
