//! TLS around the control stream, for networks that let nothing out but TLS on port 443. Owns the
//! server's self-signed certificate (created once in its state directory), the rustls server and
//! client configurations, and the client-side certificate check.
//!
//! TLS adds no authentication here: the Noise IK channel that runs inside it already proves the
//! server's identity against the static key pinned in the join token. TLS only makes the bytes
//! on the wire look like what a firewall or proxy that allows "HTTPS only" expects, so the client
//! accepts the server's self-signed certificate without a CA or a name check.

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{self, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::{client, TlsAcceptor, TlsConnector};

pub const CERT_FILE: &str = "tls-cert.pem";
pub const KEY_FILE: &str = "tls-key.pem";

/// The name in the certificate. Nobody checks it (see the module comment); it only has to be a
/// valid DNS name for the certificate to look ordinary.
const CERT_NAME: &str = "p2pvpn";

/// ring, chosen explicitly rather than through a process-wide default, so that another crate
/// enabling a second provider cannot make the builders ambiguous. ring builds without cmake or
/// nasm, and boringtun already links it.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

/// The server's certificate and key in `state_dir`, created on first use. Returns whether they
/// were created.
pub fn load_or_create_cert(
    state_dir: &Path,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>, bool)> {
    let cert_path = state_dir.join(CERT_FILE);
    let key_path = state_dir.join(KEY_FILE);
    let created = if cert_path.exists() && key_path.exists() {
        false
    } else {
        // Neither file is pinned anywhere (clients check no certificate), so one lost half is
        // simply replaced together with the other.
        create_cert(&cert_path, &key_path)?;
        true
    };
    crate::os::check_private_file(&key_path, "TLS key file")?;
    let cert = CertificateDer::from_pem_file(&cert_path).with_context(|| {
        format!(
            "cannot read the TLS certificate {}; delete it and {} and the server makes a new pair",
            cert_path.display(),
            key_path.display()
        )
    })?;
    let key = PrivateKeyDer::from_pem_file(&key_path).with_context(|| {
        format!(
            "cannot read the TLS key {}; delete it and {} and the server makes a new pair",
            key_path.display(),
            cert_path.display()
        )
    })?;
    Ok((cert, key, created))
}

fn create_cert(cert_path: &Path, key_path: &Path) -> Result<()> {
    let generated = rcgen::generate_simple_self_signed(vec![CERT_NAME.to_string()])
        .context("cannot generate a TLS certificate")?;
    write_file(key_path, generated.signing_key.serialize_pem().as_bytes())?;
    // The certificate is no secret, but nobody else needs it either: both files are private.
    write_file(cert_path, generated.cert.pem().as_bytes())?;
    Ok(())
}

/// Writes through a temporary file and a rename, so a crash never leaves half a PEM file that
/// would stop the next start.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let _ = fs::remove_file(&tmp);
    let mut file = crate::os::create_private_file(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// The acceptor for `server --tls-listen`, with the certificate from `state_dir`.
pub fn acceptor(state_dir: &Path) -> Result<TlsAcceptor> {
    let (cert, key, created) = load_or_create_cert(state_dir)?;
    if created {
        tracing::info!(
            dir = %state_dir.display(),
            "generated a self-signed TLS certificate ({CERT_FILE}, {KEY_FILE})"
        );
    }
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("the TLS library offers no protocol version")?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .with_context(|| {
            format!(
                "the TLS certificate and key in {} do not fit together; delete {CERT_FILE} and \
                 {KEY_FILE} there and the server makes a new pair",
                state_dir.display()
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The node's side: a connector that accepts any certificate whose key signs the handshake.
pub fn connector() -> Result<TlsConnector> {
    let provider = provider();
    let verifier = Arc::new(AnyCertificate {
        provider: provider.clone(),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS library offers no protocol version")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Runs the TLS handshake over a connected TCP stream to `server`.
pub async fn connect(
    stream: TcpStream,
    server: SocketAddr,
) -> std::io::Result<client::TlsStream<TcpStream>> {
    let connector = connector().map_err(std::io::Error::other)?;
    // An IP address as the name: rustls then sends no SNI, as any client dialing an IP does,
    // instead of a fixed name that would single this traffic out.
    let name = ServerName::IpAddress(server.ip().into());
    connector.connect(name, stream).await
}

/// Accepts the server's certificate without a chain or name check, but still requires a valid
/// handshake signature by the certificate's key, so the TLS session itself is sound. Who the
/// server is gets decided by the Noise channel inside (the key pinned in the join token); see
/// the module comment.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("p2pvpn-tls-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Unix modes; the Windows ACL is checked by the same `crate::os::check_private_file`.
    #[cfg(unix)]
    #[test]
    fn the_certificate_is_created_once_and_kept() {
        use std::os::unix::fs::MetadataExt;
        let dir = temp_dir("persist");
        let (cert, key, created) = load_or_create_cert(&dir).unwrap();
        assert!(created);
        assert_eq!(
            fs::metadata(dir.join(KEY_FILE)).unwrap().mode() & 0o777,
            0o600
        );
        let (again, again_key, created) = load_or_create_cert(&dir).unwrap();
        assert!(!created);
        assert_eq!(again, cert);
        assert_eq!(again_key.secret_der(), key.secret_der());
        // A key others can read is refused with the fix.
        fs::set_permissions(
            dir.join(KEY_FILE),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        let err = format!("{:#}", load_or_create_cert(&dir).unwrap_err());
        assert!(err.contains("chmod 600"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lost_half_is_replaced_by_a_new_pair() {
        let dir = temp_dir("half");
        let (cert, _, _) = load_or_create_cert(&dir).unwrap();
        fs::remove_file(dir.join(KEY_FILE)).unwrap();
        let (fresh, _, created) = load_or_create_cert(&dir).unwrap();
        assert!(created);
        assert_ne!(fresh, cert);
        assert!(acceptor(&dir).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The handshake between our own acceptor and connector works over loopback, and bytes
    /// pass both ways.
    #[tokio::test]
    async fn our_client_accepts_our_self_signed_server() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = temp_dir("handshake");
        let acceptor = acceptor(&dir).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut buf = [0u8; 5];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(&buf).await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = connect(tcp, addr).await.unwrap();
        tls.write_all(b"hello").await.unwrap();
        let mut echo = Vec::new();
        tls.read_to_end(&mut echo).await.unwrap();
        assert_eq!(echo, b"hello");
        server.await.unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
