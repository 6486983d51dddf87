//! Parsing and checking the PEM material of a webhook's `tls` block.
//!
//! Used twice: by [`crate::config::TlsConfig::validate`] so a bad CA bundle or a certificate
//! that does not belong to its key is a 400 at creation time, and by the transport to hand
//! the exact parsed material to reqwest.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// A client certificate chain with its private key, checked to belong together.
pub(crate) struct ClientIdentity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// Which of the two identity fields a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdentityField {
    Cert,
    Key,
}

/// Parses a CA bundle: one or more `CERTIFICATE` blocks, each usable as a trust anchor.
pub(crate) fn parse_ca_bundle(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = parse_certificates(pem)?;
    let mut store = RootCertStore::empty();
    for (index, cert) in certs.iter().enumerate() {
        store.add(cert.clone()).map_err(|e| {
            format!(
                "certificate {} is not a usable CA certificate: {e}",
                index + 1
            )
        })?;
    }
    Ok(certs)
}

/// Parses a client certificate chain and its private key and checks that the key is the
/// one the (first) certificate was issued for.
pub(crate) fn parse_client_identity(
    cert_pem: &str,
    key_pem: &str,
) -> Result<ClientIdentity, (IdentityField, String)> {
    let certs = parse_certificates(cert_pem).map_err(|e| (IdentityField::Cert, e))?;
    if key_pem.contains("ENCRYPTED") {
        return Err((
            IdentityField::Key,
            "encrypted private keys are not supported; provide an unencrypted PKCS#8, \
             PKCS#1 or SEC1 PEM key"
                .into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
        (
            IdentityField::Key,
            "no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) found".into(),
        )
    })?;
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    CertifiedKey::from_der(certs.clone(), key.clone_key(), &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => (
            IdentityField::Key,
            "the private key does not match the client certificate".into(),
        ),
        rustls::Error::General(_) => (
            IdentityField::Key,
            format!("the private key is not usable: {e}"),
        ),
        other => (
            IdentityField::Cert,
            format!("the client certificate is not usable: {other}"),
        ),
    })?;
    Ok(ClientIdentity { certs, key })
}

impl ClientIdentity {
    /// Re-encodes the checked material as one PEM document for `reqwest::Identity::from_pem`
    /// (which wants certificate and key together and rejects extra blocks such as
    /// `EC PARAMETERS` that real key files often carry).
    pub(crate) fn to_pem(&self) -> String {
        let mut out = String::new();
        for cert in &self.certs {
            push_pem_block(&mut out, "CERTIFICATE", cert.as_ref());
        }
        let label = match &self.key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        push_pem_block(&mut out, label, self.key.secret_der());
        out
    }
}

fn parse_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM CERTIFICATE block found".into());
    }
    Ok(certs)
}

fn push_pem_block(out: &mut String, label: &str, der: &[u8]) {
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let encoded = STANDARD.encode(der);
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
}
