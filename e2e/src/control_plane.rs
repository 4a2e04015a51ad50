//! A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager
//! as child processes, built from Kubernetes' Go modules by `e2e/control-plane/build.sh`.
//!
//! - **etcd**: its own data directory, ports the OS picks (read back from its log).
//! - **kube-apiserver** on `127.0.0.1:<free port>`: a serving certificate it signs itself
//!   (`--cert-dir`; its CA is what the kubeconfig trusts), a static admin token in group
//!   `system:masters` generated per run, a service-account key pair generated per run (openssl),
//!   `--authorization-mode=RBAC`: every other identity gets exactly what RBAC grants.
//! - **kube-controller-manager** with `--use-service-account-credentials` (each controller acts
//!   under its own service account and RBAC) and every default controller except node lifecycle
//!   (the node agent does not heartbeat; see [`crate::node`]).
//!
//! [`ControlPlane`] writes an admin kubeconfig, hands out [`kube::Client`]s (admin, or a service
//! account's token through the TokenRequest API), and kills every process when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use norn::ring::testing::EtcdServer;

/// How long the control plane may take to come up.
const STARTUP: Duration = Duration::from_secs(120);
/// The service IP range (never routed: nothing here implements Services).
const SERVICE_CIDR: &str = "10.96.0.0/16";

/// Where the binaries are: the variables `scripts/test.sh` sets after building them.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `NORN_KUBE_APISERVER`.
    pub apiserver: PathBuf,
    /// `NORN_KUBE_CONTROLLER_MANAGER`.
    pub controller_manager: PathBuf,
    /// `NORN_KUBE_ETCD`: the etcd server built alongside (the Debian etcd is older than what
    /// Kubernetes 1.37 supports).
    pub etcd: PathBuf,
}

impl Binaries {
    /// The binaries named by the environment, or `None` with the reason when a variable is unset
    /// (the test then skips, saying so). A variable naming a missing file is an error.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| -> Result<PathBuf, String> {
            let path = std::env::var_os(name).map(PathBuf::from).ok_or_else(|| {
                format!(
                    "{name} is not set: build the control plane with e2e/control-plane/build.sh (scripts/test.sh does)"
                )
            })?;
            if !path.is_file() {
                panic!("{name}={} does not exist: run e2e/control-plane/build.sh", path.display());
            }
            Ok(path)
        };
        Ok(Self {
            apiserver: var("NORN_KUBE_APISERVER")?,
            controller_manager: var("NORN_KUBE_CONTROLLER_MANAGER")?,
            etcd: var("NORN_KUBE_ETCD")?,
        })
    }
}

/// A child process killed and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    /// What it is, for messages.
    name: String,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    /// Starts `cmd` with stdout and stderr in `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(Self { name: name.into(), child, log: log.into() })
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the log's tail when the process has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited with {status}:\n{}", self.name, self.log_tail(40))),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    /// Everything the process logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGKILL, and waits for the exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL after `grace`; waits for the exit.
    pub async fn terminate(&mut self, grace: Duration) {
        crate::signal::term(self.child.id());
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port on 127.0.0.1, for a server that cannot be told to pick its own and report it
/// (kube-apiserver). The port is released before the server binds it; a server that loses the
/// race fails to start and the harness starts it again on another.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("binding 127.0.0.1:0")
}

/// The running control plane. Dropping it stops every process; its directory (under the system
/// temporary directory) is kept for a failed test's post-mortem and removed otherwise.
pub struct ControlPlane {
    /// Working directory: certificates, keys, tokens, kubeconfig, logs.
    pub dir: PathBuf,
    /// The API server's URL.
    pub server: String,
    /// The API server's CA bundle (PEM).
    pub ca_pem: String,
    /// The admin's bearer token.
    admin_token: String,
    /// The admin kubeconfig (also written to `dir/admin.kubeconfig`).
    pub kubeconfig: PathBuf,
    controller_manager: ChildGuard,
    apiserver: ChildGuard,
    _etcd: EtcdServer,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").field("dir", &self.dir).field("server", &self.server).finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts etcd, the API server and the controller manager and waits until the API server is
    /// ready and the controllers run (the root CA ConfigMap and the default service account of
    /// `default` exist).
    pub async fn start(bins: &Binaries) -> Result<Self, String> {
        // kube's rustls, with the provider its `ring` feature means (the AWS SDK of the data
        // plane, linked into the tests too, brings aws-lc-rs, and rustls then cannot choose).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = crate::unique_dir("norn-control-plane")?;
        let etcd = EtcdServer::start_binary(bins.etcd.clone()).await?;
        let admin_token = crate::random_token();
        std::fs::write(
            dir.join("tokens.csv"),
            format!("{admin_token},norn-e2e-admin,norn-e2e-admin,\"system:masters\"\n"),
        )
        .map_err(|e| e.to_string())?;
        let sa_key = dir.join("sa.key");
        let sa_pub = dir.join("sa.pub");
        openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"], &sa_key)?;
        openssl_pub(&sa_key, &sa_pub)?;
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki).map_err(|e| e.to_string())?;

        let mut attempt = 0;
        let (apiserver, port) = loop {
            attempt += 1;
            let port = free_port();
            let mut cmd = Command::new(&bins.apiserver);
            cmd.arg(format!("--etcd-servers=http://{}", etcd.endpoint()))
                .arg("--bind-address=127.0.0.1")
                .arg("--advertise-address=127.0.0.1")
                // The `kubernetes` Service's endpoints may not be loopback addresses; nothing
                // here routes Services anyway.
                .arg("--endpoint-reconciler-type=none")
                .arg(format!("--secure-port={port}"))
                .arg(format!("--cert-dir={}", pki.display()))
                .arg(format!("--token-auth-file={}", dir.join("tokens.csv").display()))
                .arg("--authorization-mode=RBAC")
                .arg("--service-account-issuer=https://kubernetes.default.svc")
                .arg(format!("--service-account-key-file={}", sa_pub.display()))
                .arg(format!("--service-account-signing-key-file={}", sa_key.display()))
                .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
                .arg("--profiling=false")
                .arg("--v=1");
            let mut child = ChildGuard::spawn("kube-apiserver", cmd, &dir.join(format!("apiserver.{attempt}.log")))?;
            match wait_apiserver(&mut child, port, &admin_token).await {
                Ok(()) => break (child, port),
                Err(e) if attempt < 3 && child.log_tail(20).contains("address already in use") => {
                    tracing::warn!(port, error = %e, "kube-apiserver lost its port; starting it again");
                }
                Err(e) => return Err(e),
            }
        };
        let server = format!("https://127.0.0.1:{port}");
        let ca_pem = std::fs::read_to_string(pki.join("apiserver.crt"))
            .map_err(|e| format!("reading the API server's self-signed certificate: {e}"))?;
        let kubeconfig = dir.join("admin.kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&server, &ca_pem, "norn-e2e-admin", &admin_token))
            .map_err(|e| e.to_string())?;
        std::fs::write(dir.join("ca.crt"), &ca_pem).map_err(|e| e.to_string())?;

        let mut cmd = Command::new(&bins.controller_manager);
        cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--authentication-kubeconfig={}", kubeconfig.display()))
            .arg(format!("--authorization-kubeconfig={}", kubeconfig.display()))
            .arg("--use-service-account-credentials=true")
            .arg(format!("--service-account-private-key-file={}", sa_key.display()))
            .arg(format!("--root-ca-file={}", dir.join("ca.crt").display()))
            // Node lifecycle would mark the agent's node unreachable (it sends no heartbeats)
            // and evict its pods.
            .arg("--controllers=*,-nodelifecycle")
            .arg("--leader-elect=false")
            .arg("--bind-address=127.0.0.1")
            .arg("--secure-port=0")
            .arg(format!("--cert-dir={}", dir.join("kcm-pki").display()))
            .arg("--v=1");
        let controller_manager =
            ChildGuard::spawn("kube-controller-manager", cmd, &dir.join("controller-manager.log"))?;
        let mut plane =
            Self { dir, server, ca_pem, admin_token, kubeconfig, controller_manager, apiserver, _etcd: etcd };
        plane.wait_controllers().await?;
        Ok(plane)
    }

    /// A client with the admin's credentials (group `system:masters`).
    pub async fn admin(&self) -> Client {
        self.client_with_token("norn-e2e-admin", &self.admin_token).await
    }

    /// A client acting as service account `namespace/name`, with a token from the TokenRequest
    /// API (valid for an hour); also returns that kubeconfig's text for a child process.
    pub async fn service_account(&self, namespace: &str, name: &str) -> Result<(Client, String), String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.admin().await, namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec { expiration_seconds: Some(3600), ..Default::default() },
            ..Default::default()
        };
        let token = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|e| format!("requesting a token for {namespace}/{name}: {e}"))?
            .status
            .ok_or("the token request has no status")?
            .token;
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let yaml = kubeconfig_yaml(&self.server, &self.ca_pem, &user, &token);
        Ok((self.client_with_token(&user, &token).await, yaml))
    }

    async fn client_with_token(&self, user: &str, token: &str) -> Client {
        let yaml = kubeconfig_yaml(&self.server, &self.ca_pem, user, token);
        let kubeconfig = Kubeconfig::from_yaml(&yaml).expect("the generated kubeconfig parses");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("the generated kubeconfig is complete");
        Client::try_from(config).expect("a client from the generated kubeconfig")
    }

    /// Fails when the API server or the controller manager has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        self.apiserver.check_running()?;
        self.controller_manager.check_running()
    }

    /// The controller manager's log tail, for failure messages.
    pub fn controller_manager_log(&self) -> String {
        self.controller_manager.log_tail(60)
    }

    async fn wait_controllers(&mut self) -> Result<(), String> {
        let client = self.admin().await;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let sas: Api<ServiceAccount> = Api::namespaced(client, "default");
        let start = Instant::now();
        loop {
            self.check_running()?;
            let ca = cms.get_opt("kube-root-ca.crt").await.ok().flatten();
            let sa = sas.get_opt("default").await.ok().flatten();
            if ca.is_some() && sa.is_some() {
                return Ok(());
            }
            if start.elapsed() > STARTUP {
                return Err(format!(
                    "the controller manager did not publish kube-root-ca.crt and the default service account \
                     within {STARTUP:?}:\n{}",
                    self.controller_manager_log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ControlPlane {
    /// Stops the controller manager, the API server and etcd, in that order; after a passing
    /// test also removes the directory (a failing one keeps it, logs and all).
    fn drop(&mut self) {
        self.controller_manager.kill();
        self.apiserver.kill();
        self._etcd.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Waits until `/readyz` answers 200 to the admin token.
async fn wait_apiserver(child: &mut ChildGuard, port: u16, token: &str) -> Result<(), String> {
    let start = Instant::now();
    loop {
        child.check_running()?;
        if readyz(port, token).await {
            return Ok(());
        }
        if start.elapsed() > STARTUP {
            return Err(format!("kube-apiserver not ready within {STARTUP:?}:\n{}", child.log_tail(40)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `/readyz` answers 200: a client that trusts any certificate, since the self-signed
/// one only exists once the server started (the kubeconfig, written after, trusts exactly it).
async fn readyz(port: u16, token: &str) -> bool {
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    \
         insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  \
         context:\n    cluster: c\n    user: u\ncurrent-context: c\n"
    );
    let Ok(kubeconfig) = Kubeconfig::from_yaml(&yaml) else { return false };
    let Ok(config) = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await else {
        return false;
    };
    let Ok(client) = Client::try_from(config) else { return false };
    let request = http::Request::get("/readyz").body(Vec::new()).expect("a request");
    client.request_text(request).await.is_ok_and(|body| body.trim() == "ok")
}

/// A kubeconfig for `server` with `token`.
pub fn kubeconfig_yaml(server: &str, ca_pem: &str, user: &str, token: &str) -> String {
    use std::fmt::Write;
    let ca = base64(ca_pem.as_bytes());
    let mut out = String::new();
    let _ = write!(
        out,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: norn-e2e\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: \
         norn-e2e\n  context:\n    cluster: norn-e2e\n    user: {user}\ncurrent-context: norn-e2e\n"
    );
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn openssl(args: &[&str], out: &Path) -> Result<(), String> {
    let status = Command::new("openssl")
        .args(args)
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("running openssl (Debian package openssl): {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("openssl {args:?} failed: {status}")) }
}

fn openssl_pub(key: &Path, out: &Path) -> Result<(), String> {
    let status = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(key)
        .arg("-out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("running openssl: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("openssl pkey -pubout failed: {status}")) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_pads_like_the_standard() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
    }
}
