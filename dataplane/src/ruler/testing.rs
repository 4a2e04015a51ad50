//! Real Prometheus and Alertmanager servers for the ruler tests, found through
//! `NORN_PROMETHEUS` / `NORN_ALERTMANAGER` (or on `PATH`; Debian packages `prometheus` and
//! `prometheus-alertmanager`), each on a free loopback port with its data in a temp dir.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child server process, killed on drop.
#[derive(Debug)]
pub struct ExternalServer {
    bin: PathBuf,
    args: Vec<String>,
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

fn find(env: &str, names: &[&str], package: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{env}={} does not exist; install it with `apt-get install {package}`", path.display()))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/bin")])
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{} not found: install it with `apt-get install {package}` or set {env}", names[0]))
}

impl ExternalServer {
    /// Starts `bin` with `args(dir, listen address)` on a port the OS just handed out (another
    /// one if the server could not bind it), and waits until `/-/ready` answers 200.
    fn start(bin: PathBuf, args: impl Fn(&std::path::Path, &str) -> Vec<String>) -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let log = dir.path().join("server.log");
            let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
            let err = out.try_clone().map_err(|e| e.to_string())?;
            let args = args(dir.path(), &addr.to_string());
            let mut child = spawn(&bin, &args, out, err)?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if crate::testing::get_ok(addr, "/-/ready") {
                    return Ok(Self { bin, args, child, addr, _dir: dir, log });
                }
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!(
                        "{} exited with {status} on port {port}: {}",
                        bin.display(),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!("{} not ready on port {port} within 30s", bin.display());
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Err(last)
    }

    /// Prometheus with its remote-write receiver on (`/api/v1/write`).
    pub fn prometheus() -> Result<Self, String> {
        let bin = find("NORN_PROMETHEUS", &["prometheus"], "prometheus")?;
        Self::start(bin, |dir, addr| {
            let cfg = dir.join("prometheus.yml");
            let _ = std::fs::write(&cfg, "global:\n  scrape_interval: 1m\n");
            vec![
                format!("--config.file={}", cfg.display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address={addr}"),
                "--web.enable-remote-write-receiver".into(),
            ]
        })
    }

    /// Alertmanager without clustering, one receiver that takes every alert.
    pub fn alertmanager() -> Result<Self, String> {
        let bin = find("NORN_ALERTMANAGER", &["prometheus-alertmanager", "alertmanager"], "prometheus-alertmanager")?;
        Self::start(bin, |dir, addr| {
            let cfg = dir.join("alertmanager.yml");
            let _ = std::fs::write(
                &cfg,
                "route:\n  receiver: default\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: default\n",
            );
            vec![
                format!("--config.file={}", cfg.display()),
                format!("--storage.path={}", dir.join("data").display()),
                format!("--web.listen-address={addr}"),
                "--cluster.listen-address=".into(),
            ]
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the server logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts the server again after [`ExternalServer::kill`]: same port, same data.
    pub fn restart(&mut self) -> Result<(), String> {
        let out = std::fs::OpenOptions::new().append(true).open(&self.log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        self.child = spawn(&self.bin, &self.args, out, err)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !crate::testing::get_ok(self.addr, "/-/ready") {
            if Instant::now() >= deadline {
                return Err(format!("{} not ready again within 30s: {}", self.bin.display(), self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ExternalServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(bin: &std::path::Path, args: &[String], out: std::fs::File, err: std::fs::File) -> Result<Child, String> {
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))
}
