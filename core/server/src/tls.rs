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

/// The principal of a client that presented `cert` (DER), as Kafka's default SSL principal
/// builder names it: `User:` and the subject's distinguished name in RFC 2253 form (most
/// specific attribute first, `CN=app,OU=ops,O=example`). `None` when the certificate does not
/// parse.
pub fn principal_of(cert: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    let rdns: Vec<String> = cert
        .subject()
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type().to_id_string();
                    let name = match oid.as_str() {
                        "2.5.4.3" => "CN",
                        "2.5.4.6" => "C",
                        "2.5.4.7" => "L",
                        "2.5.4.8" => "ST",
                        "2.5.4.9" => "STREET",
                        "2.5.4.10" => "O",
                        "2.5.4.11" => "OU",
                        "0.9.2342.19200300.100.1.1" => "UID",
                        "0.9.2342.19200300.100.1.25" => "DC",
                        other => other,
                    }
                    .to_string();
                    let value = attr.as_str().map(escape_dn).unwrap_or_else(|_| {
                        // Not a string type: RFC 2253's `#` and the DER bytes in hex.
                        let der = attr.attr_value().data;
                        format!(
                            "#{}",
                            der.iter().map(|b| format!("{b:02x}")).collect::<String>()
                        )
                    });
                    format!("{name}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Some(format!(
        "User:{}",
        rdns.into_iter().rev().collect::<Vec<_>>().join(",")
    ))
}

/// RFC 2253 escaping of an attribute value.
fn escape_dn(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == v.chars().count() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_is_the_subject_dn_most_specific_first() {
        let mut params = rcgen::CertificateParams::new(vec!["x.test".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "DE");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "app");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            principal_of(cert.der()).as_deref(),
            Some("User:CN=app,O=Example\\, Inc,C=DE")
        );
        assert_eq!(principal_of(b"not a certificate"), None);
        assert_eq!(escape_dn(" a#b "), "\\ a#b\\ ");
    }
}
