//! TLS for PostgreSQL connections with rustls, following libpq's `sslmode` semantics.
//!
//! | `sslmode` | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow` | if the server insists | no |
//! | `prefer` (default) | if the server can | no |
//! | `require` | always | no — unless a root certificate file exists, then as `verify-ca` (libpq's rule) |
//! | `verify-ca` | always | chain to `sslrootcert` |
//! | `verify-full` | always | chain to `sslrootcert` and the host name |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the platform's trusted roots
//! (which, as in libpq 16, requires `verify-full`). Client certificates come from `sslcert` and
//! `sslkey`; the key file must not be readable by group or others (0600, or 0640 owned by root).
//! Over Unix sockets TLS is never used, whatever `sslmode` says (as libpq).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Plain first; TLS if the server refuses plain connections.
    Allow,
    /// TLS if the server offers it, else plain (libpq's default).
    Prefer,
    /// TLS always; the certificate is not checked (unless a root certificate file exists).
    Require,
    /// TLS, with the certificate chain checked against the root certificates.
    VerifyCa,
    /// TLS, with the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's names.
    pub fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// libpq's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the trusted root certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file.
    File(PathBuf),
    /// The platform's trusted roots (`sslrootcert=system`).
    System,
}

/// The TLS settings of one connection, resolved (defaults applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`, or `~/.postgresql/root.crt` when that exists.
    pub root_certs: Option<RootCerts>,
    /// `sslcert`, or `~/.postgresql/postgresql.crt` when that exists.
    pub client_cert: Option<PathBuf>,
    /// `sslkey`, or `~/.postgresql/postgresql.key`.
    pub client_key: Option<PathBuf>,
}

/// How the certificate is checked, once `require`'s root-file rule is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

impl TlsSettings {
    fn check(&self) -> Check {
        match self.mode {
            SslMode::VerifyFull => Check::ChainAndName,
            SslMode::VerifyCa => Check::Chain,
            SslMode::Require if self.root_certs.is_some() => Check::Chain,
            _ => Check::Nothing,
        }
    }

    /// What a failed certificate check should suggest.
    pub fn describe_check(&self) -> String {
        let roots = match &self.root_certs {
            Some(RootCerts::File(path)) => format!("the root certificates in {}", path.display()),
            Some(RootCerts::System) => "the system's trusted roots".to_owned(),
            None => "no root certificates".to_owned(),
        };
        format!("sslmode={} against {roots}", self.mode.as_str())
    }

    /// The rustls client configuration for these settings. Errors are one line naming the file
    /// and what to do.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("setting up TLS: {e}"))?;
        let verifier: Arc<dyn ServerCertVerifier> = match self.check() {
            Check::Nothing => Arc::new(NoCertificateCheck(provider.clone())),
            check => {
                let roots = self.root_store()?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| format!("setting up TLS certificate checks: {e}"))?;
                if check == Check::Chain {
                    Arc::new(ChainOnly(webpki))
                } else {
                    webpki
                }
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let certs = read_certs(cert, "sslcert")?;
                let key = read_key(key)?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    format!(
                        "the client certificate {} and its key do not fit together: {e}",
                        cert.display()
                    )
                })
            }
            (Some(cert), None) => Err(format!(
                "a client certificate ({}) was given without its key: set sslkey",
                cert.display()
            )),
            _ => Ok(builder.with_no_client_auth()),
        }
    }

    fn root_store(&self) -> Result<RootCertStore, String> {
        let mut store = RootCertStore::empty();
        match &self.root_certs {
            None => {
                return Err(format!(
                    "sslmode={} needs root certificates to check the server's certificate, and there is no ~/.postgresql/root.crt: set sslrootcert=/path/to/ca.pem (your provider's CA), or sslrootcert=system for the platform's trusted roots",
                    self.mode.as_str()
                ))
            }
            Some(RootCerts::File(path)) => {
                for cert in read_certs(path, "sslrootcert")? {
                    store.add(cert).map_err(|e| {
                        format!("the root certificate file {} holds a certificate rustls cannot use: {e}", path.display())
                    })?;
                }
            }
            Some(RootCerts::System) => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(
                        "sslrootcert=system: no trusted root certificates were found on this system (install ca-certificates) — or give sslrootcert=/path/to/ca.pem".to_owned(),
                    );
                }
            }
        }
        Ok(store)
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {what} file {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "{what} file {} is not PEM certificates: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{what} file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// Reads the client key, refusing one that group or others can read (libpq's rule).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let metadata = std::fs::metadata(path)
        .map_err(|e| format!("cannot read sslkey file {}: {e}", path.display()))?;
    let mode = metadata.mode() & 0o777;
    let owned_by_root = metadata.uid() == 0;
    let too_open = if owned_by_root {
        mode & 0o037 != 0
    } else {
        mode & 0o077 != 0
    };
    if too_open {
        return Err(format!(
            "private key file {} has group or world access (mode {mode:04o}); it must be u=rw (0600) or less if owned by you, or u=rw,g=r (0640) or less if owned by root",
            path.display()
        ));
    }
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!(
            "sslkey file {} is not a PEM private key: {e}",
            path.display()
        )
    })
}

/// `sslmode=prefer`/`require` without a root file: encrypts, but accepts any certificate (as
/// libpq). The handshake signatures are still checked, so the peer holds the certificate's key.
#[derive(Debug)]
struct NoCertificateCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCertificateCheck {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: SslMode, root_certs: Option<RootCerts>) -> TlsSettings {
        TlsSettings {
            mode,
            root_certs,
            client_cert: None,
            client_key: None,
        }
    }

    #[test]
    fn require_checks_the_chain_only_when_a_root_file_exists() {
        let file = Some(RootCerts::File("/x/root.crt".into()));
        assert_eq!(settings(SslMode::Require, None).check(), Check::Nothing);
        assert_eq!(
            settings(SslMode::Require, file.clone()).check(),
            Check::Chain
        );
        assert_eq!(
            settings(SslMode::Prefer, file.clone()).check(),
            Check::Nothing
        );
        assert_eq!(
            settings(SslMode::VerifyCa, file.clone()).check(),
            Check::Chain
        );
        assert_eq!(
            settings(SslMode::VerifyFull, file).check(),
            Check::ChainAndName
        );
    }

    #[test]
    fn verification_without_roots_says_what_to_set() {
        let err = settings(SslMode::VerifyFull, None)
            .client_config()
            .unwrap_err();
        assert!(err.contains("sslrootcert=system"), "{err}");
        let err = settings(
            SslMode::VerifyCa,
            Some(RootCerts::File("/nonexistent/ca.pem".into())),
        )
        .client_config()
        .unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn a_client_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("client.key");
        std::fs::write(&key, "not a key").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_key(&key).unwrap_err();
        assert!(err.contains("group or world access"), "{err}");
    }
}
