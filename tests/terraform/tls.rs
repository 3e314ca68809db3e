//! An `https://` endpoint: the provider trusts the system's roots plus `ca_file`.
//!
//! The server speaks plain HTTP, so a TLS-terminating proxy in this process stands in front of it
//! with a certificate from a CA made for the test.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use super::Setup;

/// A certificate for 127.0.0.1 and localhost, signed by a CA made for the test.
struct TestCertificate {
    /// The CA's certificate, as PEM.
    ca_pem: String,
    /// The server's certificate, then the CA's.
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl TestCertificate {
    fn new() -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "MonkeyCI test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");

        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("server parameters");
        params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = params.signed_by(&key, &ca, &ca_key).expect("server certificate");

        Self {
            ca_pem: ca.pem(),
            chain: vec![server.der().clone(), ca.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }
}

/// A TLS endpoint on 127.0.0.1 presenting `certificate`, which passes what it decrypts to the
/// plain HTTP server at `upstream`. Returns its `https://` base URL and the number of connections
/// that completed the handshake and were passed on.
async fn tls_proxy(upstream: &str, certificate: &TestCertificate) -> (String, Arc<AtomicUsize>) {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certificate.chain.clone(), certificate.key.clone_key().into())
        .expect("TLS server configuration");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let passed = Arc::new(AtomicUsize::new(0));
    let counter = passed.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (acceptor, upstream, counter) = (acceptor.clone(), upstream.clone(), counter.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing reaches the server.
                let Ok(mut client) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (format!("https://{address}"), passed)
}

const ORG: &str = "resource \"monkeyci_org\" \"acme\" {\n  name = \"Acme\"\n  slug = \"acme\"\n}\n";

/// Terraform's output with its line wrapping undone, for looking up a diagnostic's text.
fn unwrapped(out: &str) -> String {
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The provider block's `ca_file` attribute.
fn ca_file_attribute(path: &Path) -> String {
    format!("  ca_file = {:?}\n", path.display().to_string())
}

#[sqlx::test(migrations = false)]
async fn an_https_endpoint_is_used_when_ca_file_trusts_its_certificate_and_refused_otherwise(pool: PgPool) {
    let tf = Setup::start(pool).await;
    let certificate = TestCertificate::new();
    let files = tempfile::tempdir().expect("CA directory");
    let ca_file = files.path().join("ca.pem");
    std::fs::write(&ca_file, &certificate.ca_pem).expect("write the CA file");
    let (endpoint, passed) = tls_proxy(&tf.base, &certificate).await;
    let apply = ["apply", "-input=false", "-no-color", "-auto-approve"];

    // Without the test CA, the certificate is refused before any request is sent.
    tf.config(ORG);
    let (code, out) = tf.terraform_with(&endpoint, None, &apply).await;
    assert_eq!(code, 1, "{out}");
    let text = unwrapped(&out);
    assert!(text.contains("Cannot create the org"), "{out}");
    assert!(text.contains("invalid peer certificate"), "{out}");
    assert!(
        text.contains("set `ca_file` in the provider block (or MONKEYCI_CA_FILE)"),
        "the error says how to trust a private CA:\n{out}"
    );
    assert_eq!(passed.load(Ordering::SeqCst), 0, "no connection got past TLS");
    assert!(tf.orgs().await.is_empty(), "nothing was created");
    assert_eq!(tf.state("monkeyci_org.acme", "id").await, Value::Null);

    // A CA file that is missing, holds no certificate or a broken one is an error that names it,
    // whether the provider block or MONKEYCI_CA_FILE gives it.
    let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    for (name, content, in_block, error) in [
        ("missing.pem", None, true, "cannot read the CA file"),
        ("empty.pem", Some("no PEM\n"), false, "holds no PEM certificate"),
        ("broken.pem", Some(broken), true, "is not a valid certificate"),
    ] {
        let path = files.path().join(name);
        if let Some(content) = content {
            std::fs::write(&path, content).expect("write the CA file");
        }
        if in_block {
            tf.config_with_provider(&ca_file_attribute(&path), ORG);
        } else {
            tf.config(ORG);
        }
        let (code, out) = tf
            .terraform_with(&endpoint, (!in_block).then_some(path.as_path()), &apply)
            .await;
        assert_eq!(code, 1, "{out}");
        let text = unwrapped(&out);
        assert!(text.contains("Cannot use the CA file"), "{out}");
        assert!(text.contains(&path.display().to_string()), "{out}");
        assert!(text.contains(error), "{out}");
    }
    assert_eq!(passed.load(Ordering::SeqCst), 0, "no request was sent");
    assert!(tf.orgs().await.is_empty(), "nothing was created");

    // With the test CA in `ca_file`, apply creates the org through the TLS endpoint.
    tf.config_with_provider(&ca_file_attribute(&ca_file), ORG);
    let (code, out) = tf.terraform_with(&endpoint, None, &apply).await;
    assert_eq!(code, 0, "{out}");
    assert!(passed.load(Ordering::SeqCst) > 0, "the requests went through TLS");
    let orgs = tf.orgs().await;
    assert_eq!(orgs.len(), 1, "{orgs:?}");
    assert_eq!((orgs[0].1.as_str(), orgs[0].2.as_str()), ("Acme", "acme"));
    assert_eq!(tf.state("monkeyci_org.acme", "id").await, json!(orgs[0].0));

    // MONKEYCI_CA_FILE does the same when the provider block leaves `ca_file` out.
    tf.config(ORG);
    let (code, out) = tf
        .terraform_with(
            &endpoint,
            Some(&ca_file),
            &["destroy", "-input=false", "-no-color", "-auto-approve"],
        )
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(tf.orgs().await.is_empty(), "destroy deleted the org");

    tf.stop().await;
}
