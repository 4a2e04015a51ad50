//! The operator's calls to ingesters over HTTPS (`spec.tls`): a real Norn serving HTTPS with a
//! certificate for the cluster's `serverName` only (not its IP), called by IP the way rollouts
//! call pods. With the CA of `--tls-ca-file` the call succeeds and the name is checked; without
//! the CA, or with another name, it is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use norn::testing::NornProcess;
use norn_operator::rollout::http::HttpIngesters;
use norn_operator::rollout::{IngesterApi, IngesterPod};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

const SERVER_NAME: &str = "norn.logging.svc";

/// The `norn` binary built beside this test (target/<profile>/norn), or `NORN_BIN`.
fn norn_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NORN_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent().and_then(Path::parent).expect("target/<profile>").join("norn")
}

/// A CA and a server certificate for `SERVER_NAME` alone, as PEM files in `dir`.
fn pki(dir: &Path) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "operator test ca");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![SERVER_NAME.to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
}

fn pod(addr: String, server_name: &str) -> IngesterPod {
    IngesterPod {
        name: "secure-ingester-0".into(),
        set: "secure-ingester".into(),
        ordinal: 0,
        zone: None,
        revision: "r1".into(),
        ready: true,
        terminating: false,
        http_addr: Some(addr),
        tls_server_name: Some(server_name.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_shutdown_goes_over_https_and_checks_the_certificate_name() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let file = |name: &str| dir.path().join(name).display().to_string();
    let args = vec![
        format!("--data.dir={}", dir.path().join("data").display()),
        format!("--http.tls-config.cert-file={}", file("tls.crt")),
        format!("--http.tls-config.key-file={}", file("tls.key")),
        "--http.tls-config.client-auth-type=VerifyClientCertIfGiven".into(),
        format!("--http.tls-config.client-ca-file={}", file("ca.crt")),
    ];
    let norn =
        NornProcess::spawn(&norn_bin(), &dir.path().join("norn.log"), &args, &[]).unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let addr = loop {
        if let Some(a) = norn.http_addr() {
            break a;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "norn did not start:\n{}", norn.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let timeout = Duration::from_secs(10);
    let ca = dir.path().join("ca.crt");
    let trusted = HttpIngesters::new(timeout, Some(&ca)).expect("client");

    // Without the CA the pod's certificate is not trusted; with another name it does not match.
    let untrusted = HttpIngesters::new(timeout, None).expect("client");
    let err = untrusted.prepare_shutdown(&pod(addr.to_string(), SERVER_NAME)).await.expect_err("unknown CA");
    assert!(
        err.to_string().contains("https://norn.logging.svc:") && err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
    let err = trusted.prepare_shutdown(&pod(addr.to_string(), "other.logging.svc")).await.expect_err("wrong name");
    assert!(
        err.to_string().contains("https://other.logging.svc:")
            && err.to_string().contains("certificate not valid for name"),
        "{err}"
    );

    // The ingester may still be joining its ring: retry until it answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match trusted.prepare_shutdown(&pod(addr.to_string(), SERVER_NAME)).await {
            Ok(()) => break,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("503") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("prepare_shutdown over HTTPS: {e}\n{}", norn.log_text()),
        }
    }
}
