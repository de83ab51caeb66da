//! TLS on the Kafka listener (`server.kafka_tls_*`): Kafka's SSL listener, or SASL_SSL together
//! with `server.sasl_mechanisms`. rustls with the ring provider, TLS 1.2 and 1.3; with
//! `kafka_tls_ca_path` set, clients must present a certificate signed by one of its CAs (Kafka's
//! `ssl.client.auth=required`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use chronik_core::config::ServerConfig;
use futures_rustls::TlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The acceptor for the Kafka listener, or `None` when TLS is off. Errors name the file and
/// what is wrong with it, for the start-up message.
pub fn kafka_acceptor(server: &ServerConfig) -> anyhow::Result<Option<TlsAcceptor>> {
    if !server.kafka_tls_enabled {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&server.kafka_tls_cert_path, &server.kafka_tls_key_path) else {
        anyhow::bail!("server.kafka_tls_enabled needs kafka_tls_cert_path and kafka_tls_key_path");
    };
    let chain = certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading a PEM private key from {}", key.display()))?;
    // One provider, named: the default builder panics when two are compiled in.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &server.kafka_tls_ca_path {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca)? {
                roots
                    .add(c)
                    .with_context(|| format!("CA certificate in {}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .with_context(|| format!("client verifier from {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .with_context(|| format!("certificate {} and its key", cert.display()))?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading PEM certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing PEM certificates in {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}
