//! End-to-end tests of Norn's operator, two ways:
//!
//! - **Against a control plane built from Kubernetes' Go modules** (part of the ordinary test
//!   command, `scripts/test.sh`): [`control_plane`] runs etcd, kube-apiserver and
//!   kube-controller-manager on loopback, [`node`] is a process-based node agent that runs each
//!   pod's container as a local process on its own 127.x.y.z address, and `tests/cluster.rs`
//!   installs the CRD and the chart's RBAC, runs `norn-operator` as the chart's service account,
//!   and drives a LogCluster through its life. `e2e/control-plane/build.sh` builds the binaries
//!   (cached outside the clone) and the test command exports `NORN_KUBE_APISERVER`,
//!   `NORN_KUBE_CONTROLLER_MANAGER` and `NORN_KUBE_ETCD`; without them the tests say so and skip.
//! - **On a kind cluster** (`tests/kind.rs`, feature `kind`): `e2e/kind.sh` creates the cluster,
//!   builds and loads the images, installs the chart, an S3 server (moto) and a LogCluster, then
//!   runs them. It needs docker, kind, kubectl and helm. The tests read where to reach the
//!   cluster from the environment the script sets: `NORN_E2E_NAMESPACE`, `NORN_E2E_CLUSTER` (the
//!   LogCluster's name), `NORN_E2E_PUSH_URL` (the distributor) and `NORN_E2E_QUERY_URL` (the
//!   querier), plus the kubeconfig.

pub mod control_plane;
pub mod node;

use std::path::PathBuf;

/// Signals to child processes, through `kill(1)` (the workspace forbids `unsafe`).
pub mod signal {
    /// Sends SIGTERM to `pid`.
    pub fn term(pid: u32) {
        send("-TERM", pid);
    }

    /// Sends SIGKILL to `pid`.
    pub fn kill(pid: u32) {
        send("-KILL", pid);
    }

    fn send(signal: &str, pid: u32) {
        let _ = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A new directory under the system temporary directory, named after `what`, this process and
/// a random suffix.
pub fn unique_dir(what: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("{what}-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// 32 random hex digits: a bearer token nobody else knows.
pub fn random_token() -> String {
    format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}
