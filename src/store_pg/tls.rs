//! TLS to PostgreSQL. `sslmode=require` in the store URL (`?sslmode=require`, or the key=value
//! form) encrypts both of a server's connections (the store's client and the LISTEN one) with
//! rustls and VERIFIES the database's certificate and name: against the CA file in
//! `PGSSLROOTCERT` (libpq's variable, so existing setups carry over) when set, else against the
//! system's roots. That is stricter than libpq's `require`, which encrypts without checking
//! whom it talks to unless a root file is present; a store link worth encrypting is worth
//! authenticating, and credentials go over it. Without `sslmode=require` nothing changes: no
//! TLS (the default `prefer` is served without TLS, as before).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::str::FromStr;
use std::sync::Arc;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The variable naming the CA file, as libpq names it.
pub const ROOT_CERT_VAR: &str = "PGSSLROOTCERT";

/// What a store URL asks for.
#[derive(Clone)]
pub enum Connector {
    /// No TLS (no `sslmode=require`).
    Plain,
    /// TLS, verified.
    Tls(MakeRustlsConnect),
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("PostgreSQL store: cannot read the CA certificates in {path} (from {ROOT_CERT_VAR}): {reason}; give a PEM file with the CA that signed the database's certificate")]
    CaFile { path: String, reason: String },
    #[error("PostgreSQL store: {ROOT_CERT_VAR} names {0}, which holds no certificate; give a PEM file with the CA that signed the database's certificate")]
    EmptyCaFile(String),
    #[error("PostgreSQL store: sslmode=require, but the system has no CA certificates to verify the database with; set {ROOT_CERT_VAR} to the CA file that signed its certificate")]
    NoSystemRoots,
    #[error("PostgreSQL store: the URL cannot be read: {0}")]
    Url(String),
    #[error("PostgreSQL store over TLS (sslmode=require): the database's certificate must be signed by a CA in {ROOT_CERT_VAR} (or the system's store) and name the host in the URL")]
    Handshake(#[source] postgres::Error),
}

/// A failed connection over TLS names what to check; any other error stays as it is.
pub fn explain(e: postgres::Error, connector: &Connector) -> crate::store::StoreError {
    // tokio-postgres has no public error kind; its TLS failures say so in their text.
    if matches!(connector, Connector::Tls(_)) && e.to_string().contains("TLS") {
        return TlsSetupError::Handshake(e).into();
    }
    e.into()
}

/// The connector `url` asks for; `root_file` is `PGSSLROOTCERT`'s value (taken by the caller,
/// so tests need not touch the process environment).
pub fn connector(url: &str, root_file: Option<&str>) -> Result<Connector, TlsSetupError> {
    let config =
        tokio_postgres::Config::from_str(url).map_err(|e| TlsSetupError::Url(e.to_string()))?;
    if config.get_ssl_mode() != SslMode::Require {
        return Ok(Connector::Plain);
    }
    let roots = match root_file.filter(|p| !p.is_empty()) {
        Some(path) => roots_from_file(path)?,
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Url(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Connector::Tls(MakeRustlsConnect::new(config)))
}

/// The connector for `url` with the CA file from the environment.
pub fn from_env(url: &str) -> Result<Connector, TlsSetupError> {
    let root = std::env::var(ROOT_CERT_VAR).ok();
    connector(url, root.as_deref())
}

fn roots_from_file(path: &str) -> Result<RootCertStore, TlsSetupError> {
    let fail = |reason: String| TlsSetupError::CaFile {
        path: path.to_string(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))? {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsSetupError::EmptyCaFile(path.to_string()));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, TlsSetupError> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "a system CA certificate could not be read");
    }
    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(TlsSetupError::NoSystemRoots);
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sslmode_require_turns_tls_on() {
        for url in [
            "postgres://p@127.0.0.1/db",
            "postgres://p@127.0.0.1/db?sslmode=disable",
            "postgres://p@127.0.0.1/db?sslmode=prefer",
            "host=/run/postgresql dbname=p2pvpn",
        ] {
            assert!(
                matches!(connector(url, None), Ok(Connector::Plain)),
                "{url}"
            );
        }
    }

    #[test]
    fn a_bad_ca_file_is_named() {
        let url = "postgres://p@127.0.0.1/db?sslmode=require";
        let missing = connector(url, Some("/nonexistent/ca.pem"))
            .err()
            .map(|e| e.to_string());
        assert!(
            missing
                .as_deref()
                .is_some_and(|m| m.contains("/nonexistent/ca.pem") && m.contains(ROOT_CERT_VAR)),
            "{missing:?}"
        );
        let dir = std::env::temp_dir().join(format!("p2p-pgtls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let got = connector(url, empty.to_str()).err().map(|e| e.to_string());
        assert!(
            got.as_deref()
                .is_some_and(|m| m.contains("holds no certificate")),
            "{got:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
