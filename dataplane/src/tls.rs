//! TLS for the HTTP API, for gRPC between roles and for the etcd client, configured with
//! Loki's keys: a server block like `http_tls_config` / `grpc_tls_config` (`cert_file`,
//! `key_file`, `client_auth_type`, `client_ca_file`) and a client block like
//! `grpc_client_config` (`tls_enabled`, `tls_cert_path`, `tls_key_path`, `tls_ca_path`,
//! `tls_server_name`). PEM files are read when a server or client starts; rustls with the
//! `ring` provider does the rest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// Whether and how a TLS server asks for client certificates: Go's `tls.ClientAuthType` names,
/// as Loki spells them. `RequestClientCert` and `RequireAnyClientCert` (certificates asked for
/// but not verified) are refused at start: a certificate nobody checks proves nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientAuth {
    /// No client certificate is asked for (Loki's default).
    #[default]
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    /// A client certificate, when sent, must be signed by `client_ca_file`.
    VerifyClientCertIfGiven,
    /// Every client sends a certificate signed by `client_ca_file` (mutual TLS).
    RequireAndVerifyClientCert,
}

/// A TLS server's settings (`http.tls_config`, `grpc.tls_config`); off without `cert_file`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain the server presents.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    pub client_auth_type: ClientAuth,
    /// PEM certificates of the authorities client certificates must be signed by.
    pub client_ca_file: Option<PathBuf>,
}

/// A TLS client's settings (`ingester_client.grpc_client_config`,
/// `frontend_worker.grpc_client_config`; the same keys, flat, in `ring.etcd`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTlsConfig {
    pub tls_enabled: bool,
    /// PEM client certificate, for servers that require one.
    pub tls_cert_path: Option<PathBuf>,
    /// PEM private key of `tls_cert_path`.
    pub tls_key_path: Option<PathBuf>,
    /// PEM certificates of the authorities the server's certificate must be signed by.
    pub tls_ca_path: Option<PathBuf>,
    /// Name the server's certificate must carry; the address's host when empty.
    pub tls_server_name: String,
}

/// A TLS setting that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("{key}: cannot read {}: {e}", path.display())))
}

fn certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{key}: {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{key}: {} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

fn private_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(key, path)?)
        .map_err(|e| TlsError(format!("{key}: {} holds no usable PEM private key: {e}", path.display())))
}

fn roots(key: &str, path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(key, path)? {
        roots.add(c).map_err(|e| TlsError(format!("{key}: {}: {e}", path.display())))?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServerTlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Checks the block; `section` names it in messages (`http.tls_config`).
    pub fn validate(&self, section: &str) -> Result<(), String> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(format!("{section}.cert_file and {section}.key_file are set together"));
        }
        match self.client_auth_type {
            ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => Err(format!(
                "{section}.client_auth_type {:?} is not supported: use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file",
                self.client_auth_type
            )),
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
                if self.client_ca_file.is_none() =>
            {
                Err(format!("{section}.client_auth_type {:?} needs {section}.client_ca_file", self.client_auth_type))
            }
            _ if !self.enabled() && self.client_auth_type != ClientAuth::NoClientCert => {
                Err(format!("{section}.client_auth_type needs {section}.cert_file"))
            }
            _ => Ok(()),
        }
    }

    /// The rustls configuration of an HTTPS server (HTTP/2 and HTTP/1.1 by ALPN), or `None`
    /// when TLS is off.
    pub fn rustls(&self, section: &str) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else { return Ok(None) };
        let chain = certs(&format!("{section}.cert_file"), cert)?;
        let key = private_key(&format!("{section}.key_file"), key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?;
        let builder = match (&self.client_ca_file, self.client_auth_type) {
            (Some(ca), auth @ (ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert)) => {
                let roots = Arc::new(roots(&format!("{section}.client_ca_file"), ca)?);
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider());
                let verifier = if auth == ClientAuth::VerifyClientCertIfGiven {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError(format!("{section}: {e}")))?)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_single_cert(chain, key).map_err(|e| TlsError(format!("{section}: {e}")))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Arc::new(cfg)))
    }

    /// The gRPC server's TLS (tonic), or `None` when TLS is off.
    pub fn tonic(&self, section: &str) -> Result<Option<tonic::transport::ServerTlsConfig>, TlsError> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else { return Ok(None) };
        let identity = tonic::transport::Identity::from_pem(
            read(&format!("{section}.cert_file"), cert)?,
            read(&format!("{section}.key_file"), key)?,
        );
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca_file
            && self.client_auth_type != ClientAuth::NoClientCert
        {
            let ca = tonic::transport::Certificate::from_pem(read(&format!("{section}.client_ca_file"), ca)?);
            tls = tls
                .client_ca_root(ca)
                .client_auth_optional(self.client_auth_type == ClientAuth::VerifyClientCertIfGiven);
        }
        Ok(Some(tls))
    }
}

impl ClientTlsConfig {
    /// Checks the block; `section` names it in messages.
    pub fn validate(&self, section: &str) -> Result<(), String> {
        if self.tls_cert_path.is_some() != self.tls_key_path.is_some() {
            return Err(format!("{section}.tls_cert_path and {section}.tls_key_path are set together"));
        }
        Ok(())
    }

    /// `https` with TLS, else `http`: the scheme of the endpoint URL.
    pub fn scheme(&self) -> &'static str {
        if self.tls_enabled { "https" } else { "http" }
    }

    /// Applies the client's TLS to a tonic endpoint (nothing when TLS is off).
    pub fn apply(
        &self,
        section: &str,
        endpoint: tonic::transport::Endpoint,
    ) -> Result<tonic::transport::Endpoint, TlsError> {
        if !self.tls_enabled {
            return Ok(endpoint);
        }
        let mut tls = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &self.tls_ca_path {
            tls = tls
                .ca_certificate(tonic::transport::Certificate::from_pem(read(&format!("{section}.tls_ca_path"), ca)?));
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert_path, &self.tls_key_path) {
            tls = tls.identity(tonic::transport::Identity::from_pem(
                read(&format!("{section}.tls_cert_path"), cert)?,
                read(&format!("{section}.tls_key_path"), key)?,
            ));
        }
        if !self.tls_server_name.is_empty() {
            tls = tls.domain_name(self.tls_server_name.clone());
        }
        endpoint.tls_config(tls).map_err(|e| TlsError(format!("{section}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unverified_client_certificates_and_half_configured_blocks_are_refused() {
        let on = |auth, ca: Option<&str>| ServerTlsConfig {
            cert_file: Some("c.pem".into()),
            key_file: Some("k.pem".into()),
            client_auth_type: auth,
            client_ca_file: ca.map(PathBuf::from),
        };
        assert!(on(ClientAuth::NoClientCert, None).validate("http.tls_config").is_ok());
        assert!(on(ClientAuth::RequireAndVerifyClientCert, Some("ca.pem")).validate("x").is_ok());
        let e = on(ClientAuth::RequireAndVerifyClientCert, None).validate("http.tls_config").unwrap_err();
        assert!(e.contains("needs http.tls_config.client_ca_file"), "{e}");
        let e = on(ClientAuth::RequireAnyClientCert, Some("ca.pem")).validate("grpc.tls_config").unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        let half = ServerTlsConfig { cert_file: Some("c.pem".into()), ..Default::default() };
        assert!(half.validate("http.tls_config").unwrap_err().contains("set together"));
        let e = ServerTlsConfig {
            cert_file: Some("/nonexistent.pem".into()),
            key_file: Some("/k".into()),
            ..Default::default()
        }
        .rustls("http.tls_config")
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("http.tls_config.cert_file: cannot read /nonexistent.pem"), "{e}");
    }
}
