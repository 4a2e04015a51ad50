//! TLS between every role and for clients, with certificates made by the test (rcgen): an
//! ingester whose gRPC server requires client certificates, a distributor and querier that
//! call it with one and serve HTTPS requiring client certificates too, and an etcd ring store
//! that serves only HTTPS with client certificates. A client with a certificate pushes and reads
//! back; one without is refused, by the roles and by etcd.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, now_ns, proto_body, start_norn, urlencode};
use norn::ring::config::EtcdConfig;
use norn::ring::kv::{EtcdKv, KvStore};
use norn::ring::testing::{EtcdServer, EtcdTls};
use norn::testing::NornProcess;
use norn::tls::ClientTlsConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use reqwest::StatusCode;
use serde_json::Value;

/// A certificate authority and certificates it signed, as PEM files in a directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "norn test ca");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        for (name, sans) in
            [("server", vec!["localhost".to_string(), "127.0.0.1".into()]), ("client", vec!["client".into()])]
        {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
        }
        Pki { dir: dir.to_path_buf() }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// An HTTPS client trusting the CA, with the client certificate when `with_cert`.
    fn client(&self, with_cert: bool) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.dir.join("ca.pem")).unwrap()).unwrap();
        let mut b = reqwest::Client::builder().add_root_certificate(ca).timeout(Duration::from_secs(10));
        if with_cert {
            let mut pem = std::fs::read(self.dir.join("client.pem")).unwrap();
            pem.extend(std::fs::read(self.dir.join("client-key.pem")).unwrap());
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_between_every_role_and_clients_without_certificates_are_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    // etcd too serves only HTTPS and requires client certificates.
    let client_tls = ClientTlsConfig {
        tls_enabled: true,
        tls_cert_path: Some(pki.dir.join("client.pem")),
        tls_key_path: Some(pki.dir.join("client-key.pem")),
        tls_ca_path: Some(pki.dir.join("ca.pem")),
        tls_server_name: String::new(),
    };
    let etcd = EtcdServer::start_tls(EtcdTls {
        cert_file: pki.dir.join("server.pem"),
        key_file: pki.dir.join("server-key.pem"),
        client_ca_file: pki.dir.join("ca.pem"),
        client: client_tls.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let no_cert = ClientTlsConfig { tls_cert_path: None, tls_key_path: None, ..client_tls };
    for (who, cfg) in [
        ("no client certificate", etcd.config().with_tls(&no_cert)),
        ("plain HTTP", EtcdConfig { endpoints: vec![etcd.endpoint()], ..EtcdConfig::default() }),
    ] {
        let cfg = EtcdConfig { request_timeout: norn::config::units::Dur(Duration::from_secs(1)), ..cfg };
        let kv = EtcdKv::connect(&cfg).await.unwrap();
        let got = kv.get("tls-test/ring").await;
        assert!(got.is_err(), "etcd answered a client with {who}: {got:?}");
    }
    let etcd_tls = [
        "--ring.etcd.tls-enabled=true".to_string(),
        format!("--ring.etcd.tls-cert-path={}", pki.path("client.pem")),
        format!("--ring.etcd.tls-key-path={}", pki.path("client-key.pem")),
        format!("--ring.etcd.tls-ca-path={}", pki.path("ca.pem")),
    ];
    let ring = [
        "--ring.store=etcd".to_string(),
        format!("--ring.etcd.endpoints={}", etcd.endpoint()),
        etcd_tls[0].clone(),
        etcd_tls[1].clone(),
        etcd_tls[2].clone(),
        etcd_tls[3].clone(),
        "--ring.prefix=tls-test/".into(),
        "--ring.heartbeat-period=1s".into(),
        "--replication-factor=1".into(),
    ];
    let server_tls = |block: &str| {
        vec![
            format!("--{block}.cert-file={}", pki.path("server.pem")),
            format!("--{block}.key-file={}", pki.path("server-key.pem")),
            format!("--{block}.client-auth-type=RequireAndVerifyClientCert"),
            format!("--{block}.client-ca-file={}", pki.path("ca.pem")),
        ]
    };
    let ingester_dir = dir.path().join("ingester");
    std::fs::create_dir(&ingester_dir).unwrap();
    let mut args = vec![
        "--target=ingester".to_string(),
        "--instance.id=ingester-0".into(),
        "--grpc.addr=127.0.0.1:0".into(),
        format!("--data.dir={}", ingester_dir.display()),
    ];
    args.extend(ring.iter().cloned());
    args.extend(server_tls("grpc.tls-config"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let _ingester = start_norn(&ingester_dir, &refs);

    let front_dir = dir.path().join("front");
    std::fs::create_dir(&front_dir).unwrap();
    let client_tls = "ingester-client.grpc-client-config";
    let mut args = vec![
        "--target=distributor,querier".to_string(),
        "--instance.id=front-0".into(),
        format!("--data.dir={}", front_dir.display()),
        format!("--{client_tls}.tls-enabled=true"),
        format!("--{client_tls}.tls-cert-path={}", pki.path("client.pem")),
        format!("--{client_tls}.tls-key-path={}", pki.path("client-key.pem")),
        format!("--{client_tls}.tls-ca-path={}", pki.path("ca.pem")),
        "--limits.discover-service-name=".into(),
        "--limits.discover-log-levels=false".into(),
    ];
    args.extend(ring.iter().cloned());
    args.extend(server_tls("http.tls-config"));
    let front = NornProcess::spawn(Path::new(env!("CARGO_BIN_EXE_norn")), &front_dir.join("norn.log"), &args, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let addr = loop {
        if let Some(a) = front.http_addr() {
            break a;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the front did not start:\n{}", front.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let https = |path: &str| format!("https://localhost:{}{path}", addr.port());
    let with_cert = pki.client(true);
    eventually("the front ready over https", Duration::from_secs(60), || async {
        let r = with_cert.get(https("/ready")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;

    // Push through the distributor (HTTPS in, mTLS gRPC to the ingester), read back.
    let t = now_ns();
    let lines: Vec<(i64, String)> = (0..100).map(|i| (t + i, format!("over tls {i}"))).collect();
    let r =
        with_cert.post(https("/loki/api/v1/push")).body(proto_body(&[(r#"{app="tls"}"#, lines)])).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().await.unwrap());
    let q = https(&format!(
        "/loki/api/v1/query_range?query={}&start={}&end={}&limit=1000",
        urlencode(r#"{app="tls"}"#),
        t - 1,
        t + 1_000
    ));
    let v: Value = with_cert.get(q).send().await.unwrap().json().await.unwrap();
    let got = v["data"]["result"][0]["values"].as_array().map_or(0, Vec::len);
    assert_eq!(got, 100, "{v}");

    // Refused: a client without a certificate, and plain HTTP on the HTTPS port.
    let err = pki.client(false).get(https("/ready")).send().await.expect_err("no client certificate, no answer");
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{}/ready", addr.port())).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "plain HTTP answered");
    println!(
        "FIGURE tls: 100 lines pushed and read back over mTLS (HTTPS, gRPC, etcd); without a client certificate: {err}"
    );
}
