//! Norn's Kubernetes operator: deploys and operates a Norn cluster from one `LogCluster`
//! resource.
//!
//! Reconciliation is a pipeline: [`validate`] checks the spec, [`build`] turns it into the
//! desired child objects with pure functions (no client), [`controller`] applies them with
//! server-side apply, prunes what the spec no longer asks for and writes the status. [`leader`]
//! makes one replica of the operator the one that reconciles; [`http`] serves `/metrics` and
//! `/healthz`. [`rollout`] holds the contract of the ingester rollout driver.

pub mod build;
pub mod controller;
pub mod crd;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod ring;
pub mod rollout;
pub mod validate;
