//! End-to-end tests on Kubernetes. The tests live in `tests/kind.rs` behind the `kind` feature;
//! `e2e/kind.sh` creates a kind cluster, builds and loads the images, installs the chart, an S3
//! server (moto) and a LogCluster, then runs them:
//!
//! ```sh
//! ./e2e/kind.sh            # needs docker, kind, kubectl and helm
//! ```
//!
//! The tests read where to reach the cluster from the environment the script sets:
//! `NORN_E2E_NAMESPACE`, `NORN_E2E_CLUSTER` (the LogCluster's name), `NORN_E2E_PUSH_URL` (the
//! distributor) and `NORN_E2E_QUERY_URL` (the querier), plus the kubeconfig.
