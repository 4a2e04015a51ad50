//! Test support for tests that run `norn` as separate processes: the data plane's own
//! multi-process tests and the operator's, which roll real ingesters. [`NornProcess`] starts the
//! binary on `127.0.0.1:0`, learns its HTTP address from its log and kills it when dropped, so a
//! failing test leaves no process behind.
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::Duration;
//! use norn::testing::NornProcess;
//!
//! let bin = Path::new("target/debug/norn"); // the data plane's tests pass env!("CARGO_BIN_EXE_norn")
//! let log = Path::new("/tmp/ingester-0.log");
//! let p = NornProcess::start(bin, log, &["--target=ingester".into()], &[], Duration::from_secs(60))
//!     .expect("norn starts");
//! println!("{}", p.url("/ring"));
//! let status = p.terminate(Duration::from_secs(60)).expect("exits"); // SIGTERM, then reaped
//! # let _ = status;
//! ```
//!
//! The ring's and the object store's servers for such tests are [`crate::ring::testing`]'s
//! `EtcdServer` and [`crate::storage::testing`]'s `MotoServer`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Polls `cond` every 20ms until it returns `Some`, panicking with `what` after `deadline`.
/// Blocking: for async code, poll with `tokio::time::sleep` instead.
pub fn wait_until<T>(what: &str, deadline: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `norn` child process; killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct NornProcess {
    /// The process.
    pub child: Child,
    /// Its stderr (the log), kept for addresses and failure messages.
    log: PathBuf,
    /// Its HTTP address, once it logged it.
    addr: OnceLock<SocketAddr>,
}

impl NornProcess {
    /// Starts `bin` with `--http.addr=127.0.0.1:0` (unless `args` name another) and
    /// `--log.level=info`, then `args`, with `env`
    /// added to the environment, logging to `log`. Returns at once: the process may not serve
    /// yet (see [`NornProcess::http_addr`]).
    pub fn spawn(bin: &Path, log: &Path, args: &[String], env: &[(&str, &str)]) -> Result<Self, String> {
        Self::spawn_in(&[], bin, log, args, env)
    }

    /// [`NornProcess::spawn`] under a `wrapper` command that execs `bin` with its arguments,
    /// such as `ip netns exec NAME` ([`NetNs::exec`]); the child's pid is then `bin`'s.
    pub fn spawn_in(
        wrapper: &[String],
        bin: &Path,
        log: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let log_file = std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        if !args.iter().any(|a| a.starts_with("--http.addr")) {
            cmd.arg("--http.addr=127.0.0.1:0");
        }
        let child = cmd
            .arg("--log.level=info")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        Ok(Self { child, log: log.to_path_buf(), addr: OnceLock::new() })
    }

    /// [`NornProcess::spawn`], then waits (blocking) until it serves HTTP and `/ready` answers
    /// 2xx. Fails with the process's log if it exits first or `timeout` passes.
    pub fn start(
        bin: &Path,
        log: &Path,
        args: &[String],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Self, String> {
        Self::start_in(&[], bin, log, args, env, timeout)
    }

    /// [`NornProcess::start`] under a `wrapper` command ([`NornProcess::spawn_in`]).
    pub fn start_in(
        wrapper: &[String],
        bin: &Path,
        log: &Path,
        args: &[String],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut p = Self::spawn_in(wrapper, bin, log, args, env)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(format!("norn exited early with {status}:\n{}", p.log_text()));
            }
            if p.http_addr().is_some_and(|addr| get_ok(addr, "/ready")) {
                return Ok(p);
            }
            if Instant::now() >= deadline {
                return Err(format!("norn not ready after {timeout:?}:\n{}", p.log_text()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The HTTP address, once the process logged `serving http ... addr=...`.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        if let Some(addr) = self.addr.get() {
            return Some(*addr);
        }
        let f = std::fs::File::open(&self.log).ok()?;
        let addr = BufReader::new(f).lines().map_while(Result::ok).find_map(|l| {
            let at = l.find("serving http")?;
            l[at..].split_whitespace().find_map(|w| w.strip_prefix("addr="))?.parse().ok()
        })?;
        Some(*self.addr.get_or_init(|| addr))
    }

    /// The gRPC address, once the process logged `serving grpc ... addr=...`.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        let f = std::fs::File::open(&self.log).ok()?;
        BufReader::new(f).lines().map_while(Result::ok).find_map(|l| {
            let at = l.find("serving grpc")?;
            l[at..].split_whitespace().find_map(|w| w.strip_prefix("addr="))?.parse().ok()
        })
    }

    /// The process's peak resident set size (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: u64 =
            status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    }

    /// The HTTP address; panics before the process logged it ([`NornProcess::start`] waits).
    pub fn addr(&self) -> SocketAddr {
        self.http_addr().expect("norn does not serve http yet")
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// Sends SIGTERM (Norn's graceful shutdown) without waiting.
    pub fn sigterm(&self) -> Result<(), String> {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().map_err(|e| format!("kill -TERM: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("kill -TERM {pid}: {status}")) }
    }

    /// The exit status, if the process exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then waits (blocking) for the exit status.
    pub fn terminate(mut self, timeout: Duration) -> Result<ExitStatus, String> {
        self.sigterm()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(format!("norn still running {timeout:?} after SIGTERM:\n{}", self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to flush or checkpoint.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NornProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking `GET` over a plain socket (usable inside or outside a runtime): whether the
/// answer was 2xx.
pub fn get_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head[9] == b'2'
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What a [`FaultProxy`] does to the connections it relays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Faults {
    /// Relays every byte both ways.
    Pass,
    /// The server is gone: the listening port refuses connections and open ones are cut.
    Down,
    /// A flaky server: `fail` of new connections get `503 SlowDown` (S3's "reduce your request
    /// rate") to their first request and are closed; the others are cut after a random lifetime
    /// of up to `max_life`, mid-request or not.
    Flaky { fail: f64, max_life: Duration },
    /// A network partition: nothing gets through and nothing is refused. New connections are
    /// accepted and then hear nothing, open ones stop relaying; all of them are reset when the
    /// partition ends (as a peer's TCP would after it), so clients see timeouts, not errors.
    Partitioned,
}

/// A TCP proxy on `127.0.0.1` (or another local address) in front of a server (an S3 server, an ingester's gRPC port) whose
/// faults a test switches at runtime ([`Faults`]). Stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    /// Where connections go; `None` until [`FaultProxy::set_upstream`] (connections are closed).
    upstream: Arc<parking_lot::Mutex<Option<SocketAddr>>>,
    mode: tokio::sync::watch::Sender<Faults>,
    /// Cancelled on drop: stops the accept loop and cuts every relayed connection.
    stop: tokio_util::sync::CancellationToken,
}

impl FaultProxy {
    /// Starts relaying `127.0.0.1:<free port>` to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let proxy = Self::start_unconnected().await?;
        proxy.set_upstream(upstream);
        Ok(proxy)
    }

    /// Starts relaying `<ip>:<free port>` to `upstream`: a server on loopback made reachable
    /// from another network namespace ([`NetNs::host_ip`]).
    pub async fn start_on(ip: std::net::IpAddr, upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let proxy = Self::listen(SocketAddr::new(ip, 0)).await?;
        proxy.set_upstream(upstream);
        Ok(proxy)
    }

    /// Starts listening with no upstream yet, for a server that must be told the proxy's address
    /// before it starts (an ingester's `--instance.addr`); see [`FaultProxy::set_upstream`].
    pub async fn start_unconnected() -> std::io::Result<FaultProxy> {
        Self::listen(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    async fn listen(at: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = tokio::net::TcpListener::bind(at).await?;
        let addr = listener.local_addr()?;
        let (mode, watch) = tokio::sync::watch::channel(Faults::Pass);
        let upstream = Arc::new(parking_lot::Mutex::new(None));
        let stop = tokio_util::sync::CancellationToken::new();
        let until = stop.clone();
        let to = Arc::clone(&upstream);
        tokio::spawn(async move {
            tokio::select! {
                _ = proxy_loop(Some(listener), addr, to, watch, until.clone()) => {}
                _ = until.cancelled() => {}
            }
        });
        Ok(FaultProxy { addr, upstream, mode, stop })
    }

    /// Where new connections are relayed to from now on.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.upstream.lock() = Some(upstream);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, faults: Faults) {
        self.mode.send_replace(faults);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn proxy_loop(
    mut listener: Option<tokio::net::TcpListener>,
    addr: SocketAddr,
    upstream: Arc<parking_lot::Mutex<Option<SocketAddr>>>,
    mut mode: tokio::sync::watch::Receiver<Faults>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut cut = stop.child_token();
    loop {
        let faults = *mode.borrow_and_update();
        if faults == Faults::Down {
            // Refuse new connections (close the port) and cut the open ones.
            listener = None;
            cut.cancel();
            cut = stop.child_token();
        } else if listener.is_none() {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                Err(_) => {
                    // The port lingers for a moment after a close; try again.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let accepted = async {
            match &listener {
                Some(l) => l.accept().await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = mode.changed() => if changed.is_err() { return },
            conn = accepted => {
                let Some((client, _)) = conn else { continue };
                let faults = *mode.borrow();
                let Some(to) = *upstream.lock() else { continue };
                tokio::spawn(relay(client, to, faults, mode.clone(), cut.child_token()));
            }
        }
    }
}

/// Resolves once the proxy is partitioned (`partitioned`) or no longer is (`!partitioned`);
/// never if the proxy goes away first.
async fn partition_change(mode: &mut tokio::sync::watch::Receiver<Faults>, partitioned: bool) {
    if mode.wait_for(|f| (*f == Faults::Partitioned) == partitioned).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn relay(
    mut client: tokio::net::TcpStream,
    upstream: SocketAddr,
    faults: Faults,
    mut mode: tokio::sync::watch::Receiver<Faults>,
    cut: tokio_util::sync::CancellationToken,
) {
    use rand::Rng;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut life = Duration::MAX;
    if let Faults::Flaky { fail, max_life } = faults {
        let (refuse, l) = {
            let mut rng = rand::rng();
            (rng.random_bool(fail.clamp(0.0, 1.0)), rng.random_range(Duration::ZERO..=max_life))
        };
        if refuse {
            // Read the request head, answer as an overloaded S3 does, close.
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
            let resp = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(resp.as_bytes()).await;
            return;
        }
        life = l;
    }
    if faults == Faults::Partitioned {
        // Accepted, then silence until the partition ends.
        tokio::select! {
            _ = partition_change(&mut mode, false) => {}
            _ = cut.cancelled() => {}
        }
        let _ = client.set_zero_linger();
        return;
    }
    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let partitioned = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        _ = cut.cancelled() => false,
        _ = tokio::time::sleep(life) => false,
        _ = partition_change(&mut mode, true) => true,
    };
    if partitioned {
        // Both ends stay open and hear nothing until the partition ends.
        tokio::select! {
            _ = partition_change(&mut mode, false) => {}
            _ = cut.cancelled() => {}
        }
    }
    // Dropping both ends closes them; a cut connection is reset rather than finished cleanly.
    let _ = client.set_zero_linger();
}

/// A network namespace joined to this one by a veth pair, for a real network partition of the
/// processes started in it ([`NetNs::exec`]): while [`NetNs::set_linked`]`(false)` holds, the
/// kernel drops every packet between the two sides and refuses nothing (both ends keep permanent
/// neighbour entries, so no failed ARP turns the silence into "host unreachable"). Needs root
/// (CAP_NET_ADMIN) and iproute2's `ip`; [`NetNs::create`] says why when it cannot. Deleted with
/// its veth pair when dropped.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    host_if: String,
    ns_if: String,
    host_ip: std::net::Ipv4Addr,
    ns_ip: std::net::Ipv4Addr,
    host_mac: String,
}

impl NetNs {
    /// Creates the namespace, with loopback up and a /30 on the veth pair (10.222.x.y, chosen
    /// from the pid so that concurrent test processes do not meet).
    pub fn create() -> Result<NetNs, String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let pid = std::process::id();
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (pid.wrapping_mul(8).wrapping_add(k)) & 0x3fff;
        let [a, b] = [(id >> 6) as u8, (id & 63) as u8 * 4];
        let mut ns = NetNs {
            name: format!("norn-{pid}-{k}"),
            host_if: format!("nh{pid:x}{k}"),
            ns_if: format!("nn{pid:x}{k}"),
            host_ip: std::net::Ipv4Addr::new(10, 222, a, b + 1),
            ns_ip: std::net::Ipv4Addr::new(10, 222, a, b + 2),
            host_mac: String::new(),
        };
        ip(&["netns", "add", &ns.name])?;
        ip(&["link", "add", &ns.host_if, "type", "veth", "peer", "name", &ns.ns_if, "netns", &ns.name])?;
        ip(&["addr", "add", &format!("{}/30", ns.host_ip), "dev", &ns.host_if])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        ip(&["-n", &ns.name, "addr", "add", &format!("{}/30", ns.ns_ip), "dev", &ns.ns_if])?;
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        ns.host_mac = ip(&["-br", "link", "show", &ns.host_if])?.split_whitespace().nth(2).unwrap_or_default().into();
        let ns_link = ip(&["-n", &ns.name, "-br", "link", "show", &ns.ns_if])?;
        let ns_mac = ns_link.split_whitespace().nth(2).unwrap_or_default();
        ip(&["neigh", "replace", &ns.ns_ip.to_string(), "lladdr", ns_mac, "dev", &ns.host_if, "nud", "permanent"])?;
        ns.set_linked(true)?;
        Ok(ns)
    }

    /// The prefix that runs a command inside the namespace: `ip netns exec <name>`.
    pub fn exec(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.name].map(String::from).to_vec()
    }

    /// This side's address, reachable from inside the namespace.
    pub fn host_ip(&self) -> std::net::IpAddr {
        self.host_ip.into()
    }

    /// The namespace's address, reachable from this side.
    pub fn ns_ip(&self) -> std::net::IpAddr {
        self.ns_ip.into()
    }

    /// Takes the namespace's end of the veth pair down (a partition: packets from this side are
    /// dropped, the namespace cannot send) or up again.
    pub fn set_linked(&self, up: bool) -> Result<(), String> {
        ip(&["-n", &self.name, "link", "set", &self.ns_if, if up { "up" } else { "down" }])?;
        if up {
            // Taking a link down flushes its neighbour entries, permanent ones included.
            let host_ip = self.host_ip.to_string();
            let entry =
                ["neigh", "replace", &host_ip, "lladdr", &self.host_mac, "dev", &self.ns_if, "nud", "permanent"];
            ip(&[&["-n", self.name.as_str()][..], &entry].concat())?;
        }
        Ok(())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Runs `ip args`: its stdout, or what it printed on failure.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
