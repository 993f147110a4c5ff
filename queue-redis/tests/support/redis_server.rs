//! A throwaway `redis-server` on 127.0.0.1 for tests (also used by the workspace root's
//! integration tests). Needs `redis-server` on the PATH (`.ci/run` installs it).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` with its data (append-only file) in a temporary folder; killed
/// when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free port (another one if the server cannot start on the first:
    /// a port found free can be taken again before the server binds it).
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = RedisServer {
            child: None,
            port: 0,
            dir,
        };
        for _ in 0..5 {
            s.port = free_port();
            if s.try_start() {
                return s;
            }
        }
        panic!("redis-server did not start on any of five ports");
    }

    /// `redis://127.0.0.1:port/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it again (same port, same data) after [`RedisServer::stop`].
    #[allow(dead_code)] // used by the workspace root's tests
    pub fn restart(&mut self) {
        assert!(
            self.try_start(),
            "redis-server did not start again on its port"
        );
    }

    /// Starts the server on `self.port` and waits until it answers `PING`; `false` when it
    /// exits first (the port was taken).
    fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let t0 = Instant::now();
        // A TCP connection alone is not enough: on a loaded machine the port can answer
        // before the server is ready (or belong to something else), so wait for its PONG.
        while !pong(self.port) {
            if let Some(c) = self.child.as_mut() {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    self.child = None;
                    return false;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Stops it (SIGTERM: it finishes writing its data, as on an orderly shutdown).
    #[allow(dead_code)] // used by the workspace root's tests
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A port nothing listens on now, never handed out before in this process.
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// `true` when a Redis server on `port` answers `PING` with `PONG`.
fn pong(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf[..got].starts_with(b"+PONG")
}
