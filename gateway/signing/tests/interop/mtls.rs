//! TLS: a rustls server on loopback that requires a client certificate from a test CA
//! (generated here with rcgen). Verification is on by default, `ca_pem` adds trust, and the
//! client identity comes from `client_cert_pem` + `client_key_pem`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hookgate_signing::transport::describe_error;
use hookgate_signing::{DestinationPolicy, TlsConfig, Transport, TransportOptions};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use url::Url;

struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn issue(&self, usage: ExtendedKeyUsagePurpose, sans: Vec<SanType>) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "hookgate test leaf");
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &*self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn client(&self) -> Leaf {
        self.issue(ExtendedKeyUsagePurpose::ClientAuth, Vec::new())
    }
}

/// An HTTPS server on 127.0.0.1 that requires a client certificate issued by `client_ca`
/// and counts completed handshakes.
struct MtlsServer {
    url: Url,
    handshakes: Arc<AtomicUsize>,
}

impl MtlsServer {
    async fn start(server_ca: &TestCa, client_ca: &TestCa) -> Self {
        let leaf = server_ca.issue(
            ExtendedKeyUsagePurpose::ServerAuth,
            vec![SanType::IpAddress("127.0.0.1".parse().unwrap())],
        );
        let chain = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let mut client_roots = RootCertStore::empty();
        client_roots
            .add(CertificateDer::from_pem_slice(client_ca.pem().as_bytes()).unwrap())
            .unwrap();
        // Explicit provider: the process-wide default may be ambiguous in a shared workspace.
        let provider = Arc::new(aws_lc_rs::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots), provider.clone())
                .build()
                .unwrap();
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counter = handshakes.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response =
                        "HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nmtls ok";
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self {
            url: Url::parse(&format!("https://{addr}/")).unwrap(),
            handshakes,
        }
    }

    fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

fn transport(tls: &TlsConfig) -> Transport {
    let options = TransportOptions {
        policy: DestinationPolicy {
            allow_private: true,
        },
        ..TransportOptions::default()
    };
    Transport::new(tls, &options).unwrap()
}

async fn get(transport: &Transport, url: &Url) -> Result<String, String> {
    let response = transport
        .request(Method::GET, url)
        .unwrap()
        .send()
        .await
        .map_err(|e| describe_error(&e))?;
    response.text().await.map_err(|e| describe_error(&e))
}

fn tls_config(ca: Option<&TestCa>, client: Option<&Leaf>) -> TlsConfig {
    TlsConfig {
        ca_pem: ca.map(TestCa::pem),
        client_cert_pem: client.map(|c| c.cert_pem.clone()),
        client_key_pem: client.map(|c| c.key_pem.clone().into()),
    }
}

#[tokio::test]
async fn the_right_ca_and_client_identity_connect() {
    let ca = TestCa::new("hookgate test CA");
    let server = MtlsServer::start(&ca, &ca).await;
    let config = tls_config(Some(&ca), Some(&ca.client()));
    assert_eq!(config.validate(), Ok(()));
    let body = get(&transport(&config), &server.url).await.unwrap();
    assert_eq!(body, "mtls ok");
    assert_eq!(server.handshakes(), 1);
}

#[tokio::test]
async fn certificates_are_verified_by_default_and_a_wrong_ca_fails() {
    let ca = TestCa::new("hookgate test CA");
    let server = MtlsServer::start(&ca, &ca).await;
    let client = ca.client();

    let default_roots = get(&transport(&tls_config(None, Some(&client))), &server.url)
        .await
        .unwrap_err();
    assert!(default_roots.contains("certificate"), "{default_roots}");

    let other_ca = TestCa::new("some other CA");
    let wrong_ca = get(
        &transport(&tls_config(Some(&other_ca), Some(&client))),
        &server.url,
    )
    .await
    .unwrap_err();
    assert!(wrong_ca.contains("certificate"), "{wrong_ca}");
    assert_eq!(server.handshakes(), 0);
}

#[tokio::test]
async fn the_server_refuses_missing_or_foreign_client_certificates() {
    let ca = TestCa::new("hookgate test CA");
    let server = MtlsServer::start(&ca, &ca).await;

    let anonymous = get(&transport(&tls_config(Some(&ca), None)), &server.url).await;
    assert!(anonymous.is_err(), "{anonymous:?}");

    let rogue = TestCa::new("rogue CA").client();
    let foreign = get(
        &transport(&tls_config(Some(&ca), Some(&rogue))),
        &server.url,
    )
    .await;
    assert!(foreign.is_err(), "{foreign:?}");
    assert_eq!(server.handshakes(), 0);
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_a_validation_error() {
    let ca = TestCa::new("hookgate test CA");
    let (first, second) = (ca.client(), ca.client());
    let mismatched = TlsConfig {
        ca_pem: Some(ca.pem()),
        client_cert_pem: Some(first.cert_pem),
        client_key_pem: Some(second.key_pem.into()),
    };
    let errors = mismatched.validate().unwrap_err();
    assert_eq!(errors[0].field, "tls.client_key_pem");
    assert!(errors[0].message.contains("does not match"), "{errors:?}");
}
