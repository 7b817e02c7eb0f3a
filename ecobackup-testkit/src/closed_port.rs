//! A port where nothing listens, for the tests of unreachable servers.

use std::net::SocketAddr;

use tokio::net::TcpSocket;

/// A port on 127.0.0.1 that is bound but not listening: connections to it are refused, and,
/// while this lives, no other test in the process can be given it (a port found free and
/// released could be, and a test meant to reach nothing would reach another test's server).
///
/// ```
/// let closed = ecobackup_testkit::ClosedPort::new();
/// assert!(std::net::TcpStream::connect(closed.addr()).is_err());
/// ```
#[derive(Debug)]
pub struct ClosedPort {
    _socket: TcpSocket,
    addr: SocketAddr,
}

impl ClosedPort {
    /// Binds a free port without listening on it.
    ///
    /// # Panics
    ///
    /// If no port can be bound.
    pub fn new() -> ClosedPort {
        let socket =
            TcpSocket::new_v4().unwrap_or_else(|e| panic!("ClosedPort: cannot open a socket: {e}"));
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .unwrap_or_else(|e| panic!("ClosedPort: cannot bind 127.0.0.1:0: {e}"));
        let addr = socket
            .local_addr()
            .unwrap_or_else(|e| panic!("ClosedPort: cannot read the bound address: {e}"));
        ClosedPort {
            _socket: socket,
            addr,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        ClosedPort::new()
    }
}
