//! A real memcached for tests of the results cache: Debian's `memcached`, found as
//! `NORN_MEMCACHED` or on `PATH` (the test command installs it), on a loopback port picked by
//! the OS, killed when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running memcached.
#[derive(Debug)]
pub struct MemcachedServer {
    child: Option<Child>,
    addr: SocketAddr,
}

fn find_memcached() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("NORN_MEMCACHED") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "NORN_MEMCACHED={} does not exist; install it with `apt-get install memcached`",
                path.display()
            ))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("memcached"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "memcached not found: install it with `apt-get install memcached` (Debian) or set NORN_MEMCACHED; the \
             results-cache tests need a real memcached"
                .to_string()
        })
}

impl MemcachedServer {
    /// Starts memcached on a free loopback port and waits until it accepts connections.
    /// memcached cannot be told to pick a port itself, so a port the OS just handed out is
    /// used, and another is tried if memcached could not bind it.
    pub fn start() -> Result<Self, String> {
        let bin = find_memcached()?;
        let mut last = String::new();
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut child = Command::new(&bin)
                .args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0", "-m", "64", "-u", "root"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("starting {}: {e}", bin.display()))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Ok(Self { child: Some(child), addr });
                }
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("memcached exited with {status} on port {port}");
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!("memcached did not listen on port {port} within 10s");
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Err(last)
    }

    /// Its `host:port`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops it (a memcached that went away).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for MemcachedServer {
    fn drop(&mut self) {
        self.kill();
    }
}
