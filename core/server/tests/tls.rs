//! TLS on the Kafka listener (`server.kafka_tls_*`): SSL, SASL_SSL and mutual TLS, with a
//! rustls client on the wire and with confluent-kafka (librdkafka), using certificates made
//! for the test by a throw-away CA.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{python, run_client, Server, Wire};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};

/// PEM files of one test PKI: a CA, the broker's certificate (for 127.0.0.1) and a client's.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct subject names: rcgen's default is the same for every certificate, which
        // makes OpenSSL take a leaf for self-signed.
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Chronik test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.join(name), pem).unwrap();
        write("ca.pem", ca.pem());
        for (name, sans) in [
            (
                "server",
                vec!["127.0.0.1".to_string(), "localhost".to_string()],
            ),
            ("client", vec!["client.test".to_string()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name = DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.signed_by(&key, &ca).unwrap();
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn tls_env(pki: &Pki, mtls: bool) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("CHRONIK_KAFKA_TLS_ENABLED", "true".to_string()),
        ("CHRONIK_KAFKA_TLS_CERT_PATH", pki.path("server.pem")),
        ("CHRONIK_KAFKA_TLS_KEY_PATH", pki.path("server.key")),
    ];
    if mtls {
        env.push(("CHRONIK_KAFKA_TLS_CA_PATH", pki.path("ca.pem")));
    }
    env
}

fn start(env: &[(&'static str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_with(&env)
}

/// An ApiVersions v0 request frame (no body), correlation id 7.
fn api_versions_frame() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&7i32.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

/// A rustls client session to the broker, trusting the test CA, presenting the client
/// certificate when `client_cert`.
fn tls_stream(port: u16, pki: &Pki, client_cert: bool) -> impl Read + Write {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if client_cert {
        let chain = CertificateDer::pem_file_iter(pki.path("client.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(pki.path("client.key")).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Sends ApiVersions v0 over TLS; returns the response's correlation id and error code.
fn api_versions_over_tls(port: u16, pki: &Pki) -> std::io::Result<(i32, i16)> {
    let mut tls = tls_stream(port, pki, false);
    tls.write_all(&api_versions_frame())?;
    let mut len = [0u8; 4];
    tls.read_exact(&mut len)?;
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    tls.read_exact(&mut resp)?;
    Ok((
        i32::from_be_bytes(resp[0..4].try_into().unwrap()),
        i16::from_be_bytes(resp[4..6].try_into().unwrap()),
    ))
}

#[test]
fn kafka_listener_speaks_tls_and_refuses_plaintext() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let s = start(&tls_env(&pki, false));
    assert_eq!(api_versions_over_tls(s.port, &pki).unwrap(), (7, 0));
    // A plaintext Kafka request is not a TLS ClientHello: the connection is closed unanswered.
    let mut plain = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain.write_all(&api_versions_frame()).unwrap();
    let mut buf = [0u8; 64];
    let n = plain.read(&mut buf).unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x15,
        "plaintext got a Kafka answer: {:?}",
        &buf[..n]
    );
    // The server still serves TLS clients.
    assert_eq!(api_versions_over_tls(s.port, &pki).unwrap(), (7, 0));
}

#[test]
fn tls_sasl_ssl_and_mtls_with_confluent_kafka() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let boot = |s: &Server| format!("127.0.0.1:{}", s.port);
    // SSL.
    let s = start(&tls_env(&pki, false));
    let out = run_client(
        &py,
        "tls_client.py",
        &[&boot(&s), &pki.path("ca.pem")],
        Duration::from_secs(120),
    );
    assert!(out.contains("OK tls"), "{out}");
    drop(s);
    // SASL_SSL: SCRAM inside TLS.
    let mut env = tls_env(&pki, false);
    env.push(("CHRONIK_SASL_MECHANISMS", "SCRAM-SHA-512".into()));
    env.push(("CHRONIK_SASL_BOOTSTRAP_USERS", "app:app-secret".into()));
    let s = start(&env);
    let out = run_client(
        &py,
        "tls_client.py",
        &[
            &boot(&s),
            &pki.path("ca.pem"),
            "--sasl",
            "app",
            "app-secret",
        ],
        Duration::from_secs(120),
    );
    assert!(out.contains("OK tls"), "{out}");
    drop(s);
    // Mutual TLS: a client certificate signed by the CA is required.
    let s = start(&tls_env(&pki, true));
    let out = run_client(
        &py,
        "tls_client.py",
        &[
            &boot(&s),
            &pki.path("ca.pem"),
            &pki.path("client.pem"),
            &pki.path("client.key"),
        ],
        Duration::from_secs(120),
    );
    assert!(out.contains("OK tls"), "{out}");
    let out = run_client(
        &py,
        "tls_client.py",
        &[&boot(&s), &pki.path("ca.pem"), "--expect-fail"],
        Duration::from_secs(60),
    );
    assert!(out.contains("OK tls-refused"), "{out}");
}

#[test]
fn client_certificate_names_the_principal_for_acls() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let mut env = tls_env(&pki, true);
    env.push(("CHRONIK_AUTHORIZATION_ENABLED", "true".into()));
    env.push(("CHRONIK_SUPER_USERS", "User:CN=admin".into()));
    let s = start(&env);
    let create = |w: &mut Wire, name: &str| -> i16 {
        let req = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.into())))
                .with_num_partitions(1)
                .with_replication_factor(1)])
            .with_timeout_ms(10_000);
        let r: CreateTopicsResponse = w.call(ApiKey::CreateTopics, 7, &req);
        r.topics[0].error_code
    };
    // The client certificate's subject is CN=client: no ACL, no topic creation.
    let mut w = Wire::over(tls_stream(s.port, &pki, true));
    assert_eq!(create(&mut w, "by-cert"), 29, "TOPIC_AUTHORIZATION_FAILED");
    // Nor may it change ACLs.
    let acl = CreateAclsRequest::default().with_creations(vec![
        create_acls_request::AclCreation::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("kafka-cluster"))
            .with_resource_pattern_type(3)
            .with_principal(StrBytes::from_static_str("User:CN=client"))
            .with_host(StrBytes::from_static_str("*"))
            .with_operation(5)
            .with_permission_type(3),
    ]);
    let r: CreateAclsResponse = w.call(ApiKey::CreateAcls, 3, &acl);
    assert_eq!(r.results[0].error_code, 31, "it may not grant itself");
    drop(w);
    // A broker whose super user is User:CN=client (Kafka's SSL principal for that subject)
    // lets this certificate do everything.
    drop(s);
    let mut env = tls_env(&pki, true);
    env.push(("CHRONIK_AUTHORIZATION_ENABLED", "true".into()));
    env.push(("CHRONIK_SUPER_USERS", "User:CN=client".into()));
    let s = start(&env);
    let mut w = Wire::over(tls_stream(s.port, &pki, true));
    let r: CreateAclsResponse = w.call(ApiKey::CreateAcls, 3, &acl);
    assert_eq!(r.results[0].error_code, 0);
    assert_eq!(create(&mut w, "by-super-cert"), 0);
}
