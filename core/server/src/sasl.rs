//! SASL authentication of Kafka clients: PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802,
//! RFC 7677), checked against the SCRAM credentials kept in the replicated metadata
//! (AlterUserScramCredentials, or `server.sasl_bootstrap_users` at start-up).
//!
//! [`Authenticator`] is the server side of one exchange and does no I/O: the connection feeds it
//! each client token (from SaslAuthenticate, or a raw frame after a version-0 SaslHandshake) and
//! sends back what it returns. PLAIN checks the password by deriving the salted password with the
//! stored salt and iteration count, so one credential store serves both mechanisms. SCRAM never
//! sees the password: it checks the client proof against the stored salted password and proves
//! the server knows it too. Channel binding is not offered (gs2 flag `n` or `y` only), as Kafka
//! does not offer it; `tokenauth` (delegation tokens) is refused.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chronik_core::meta::{MetaState, ScramCredential};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use crate::handlers::scram_credentials::{MIN_ITERATIONS, SCRAM_SHA_256, SCRAM_SHA_512};

/// A SASL mechanism the Kafka listener can require.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    /// Parses a mechanism name as clients send it (case-sensitive, as Kafka).
    pub fn parse(name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            "SCRAM-SHA-256" => Some(Mechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(Mechanism::ScramSha512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// Parses `server.sasl_mechanisms` ("SCRAM-SHA-256,PLAIN"; empty: no authentication).
    pub fn parse_list(list: &str) -> Result<Vec<Mechanism>, String> {
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let m = Mechanism::parse(name).ok_or_else(|| {
                format!("unknown SASL mechanism '{name}' (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
            })?;
            if !out.contains(&m) {
                out.push(m);
            }
        }
        Ok(out)
    }
}

/// The SCRAM hash functions, by mechanism code.
#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    fn code(self) -> i8 {
        match self {
            Hash::Sha256 => SCRAM_SHA_256,
            Hash::Sha512 => SCRAM_SHA_512,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Hash::Sha512 => {
                let mut m = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2 with this HMAC, one output block.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        let rounds = u32::try_from(iterations).unwrap_or(0).max(1);
        match self {
            Hash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, &mut out);
                out.to_vec()
            }
            Hash::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, rounds, &mut out);
                out.to_vec()
            }
        }
    }
}

/// A new SCRAM credential for `password` with a random salt (what a client's
/// AlterUserScramCredentials would carry), for start-up users.
pub fn new_credential(mechanism: i8, password: &str) -> ScramCredential {
    let hash = if mechanism == SCRAM_SHA_512 {
        Hash::Sha512
    } else {
        Hash::Sha256
    };
    let mut salt = vec![0u8; 24];
    getrandom::getrandom(&mut salt).expect("the OS random source works");
    ScramCredential {
        salted_password: hash.salted_password(password.as_bytes(), &salt, MIN_ITERATIONS),
        salt,
        iterations: MIN_ITERATIONS,
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the server answers to one client token.
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    /// Bytes to send back (possibly empty).
    pub token: Vec<u8>,
    /// Set once the exchange succeeded: the authenticated user.
    pub user: Option<String>,
}

enum State {
    Start,
    /// SCRAM: the server-first message went out; waiting for the client-final message.
    ScramFirstSent {
        user: String,
        cred: ScramCredential,
        /// The gs2 header as the client sent it (checked against `c=`).
        gs2: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
    Failed,
}

/// The server side of one SASL exchange.
pub struct Authenticator {
    mechanism: Mechanism,
    state: State,
    /// Server nonce part (random; fixed in tests).
    server_nonce: Option<String>,
}

impl Authenticator {
    pub fn new(mechanism: Mechanism) -> Self {
        Authenticator {
            mechanism,
            state: State::Start,
            server_nonce: None,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Feeds one client token. `Err` (a message for the client) ends the exchange: the
    /// connection must answer SASL_AUTHENTICATION_FAILED and close.
    pub fn step(&mut self, token: &[u8], meta: &MetaState) -> Result<Step, String> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let result = match (self.mechanism, state) {
            (Mechanism::Plain, State::Start) => plain(token, meta).map(|user| Step {
                token: Vec::new(),
                user: Some(user),
            }),
            (Mechanism::ScramSha256 | Mechanism::ScramSha512, State::Start) => {
                self.scram_first(token, meta)
            }
            (
                _,
                State::ScramFirstSent {
                    user,
                    cred,
                    gs2,
                    client_first_bare,
                    server_first,
                    nonce,
                },
            ) => self.scram_final(
                token,
                &user,
                &cred,
                &gs2,
                &client_first_bare,
                &server_first,
                &nonce,
            ),
            (_, State::Done | State::Failed) => {
                Err("unexpected SASL token after the exchange ended".to_string())
            }
        };
        if let Ok(step) = &result {
            if step.user.is_some() {
                self.state = State::Done;
            }
        }
        result
    }

    fn failed(&self) -> String {
        format!(
            "Authentication failed during authentication due to invalid credentials with SASL \
             mechanism {}",
            self.mechanism.name()
        )
    }

    fn hash(&self) -> Hash {
        match self.mechanism {
            Mechanism::ScramSha512 => Hash::Sha512,
            _ => Hash::Sha256,
        }
    }

    fn scram_first(&mut self, token: &[u8], meta: &MetaState) -> Result<Step, String> {
        let msg = std::str::from_utf8(token).map_err(|_| "SCRAM message is not UTF-8")?;
        // gs2-header: cbind-flag "," [authzid] ","
        let mut parts = msg.splitn(3, ',');
        let flag = parts.next().unwrap_or("");
        let authzid = parts.next().ok_or("invalid SCRAM client-first message")?;
        let bare = parts.next().ok_or("invalid SCRAM client-first message")?;
        if flag != "n" && flag != "y" {
            return Err("SCRAM channel binding is not supported".into());
        }
        let attrs = attributes(bare)?;
        let user = saslname(
            attrs
                .get("n")
                .ok_or("SCRAM client-first has no user name")?,
        )?;
        let client_nonce = attrs.get("r").ok_or("SCRAM client-first has no nonce")?;
        if client_nonce.is_empty() {
            return Err("SCRAM client nonce is empty".into());
        }
        if attrs.get("tokenauth").is_some_and(|v| v == "true") {
            return Err("delegation tokens are not supported".into());
        }
        if !authzid.is_empty() && saslname(authzid.trim_start_matches("a="))? != user {
            return Err(format!(
                "Authentication failed: Client requested an authorization id that is different \
                 from username ({})",
                self.mechanism.name()
            ));
        }
        let hash = self.hash();
        let Some(cred) = meta.scram.get(&user).and_then(|c| c.get(&hash.code())) else {
            return Err(self.failed());
        };
        let server_nonce = self.server_nonce.take().unwrap_or_else(random_nonce);
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&cred.salt),
            cred.iterations
        );
        let gs2 = format!("{flag},{authzid},");
        self.state = State::ScramFirstSent {
            user,
            cred: cred.clone(),
            gs2,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(Step {
            token: server_first.into_bytes(),
            user: None,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn scram_final(
        &self,
        token: &[u8],
        user: &str,
        cred: &ScramCredential,
        gs2: &str,
        client_first_bare: &str,
        server_first: &str,
        nonce: &str,
    ) -> Result<Step, String> {
        let msg = std::str::from_utf8(token).map_err(|_| "SCRAM message is not UTF-8")?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or("SCRAM client-final has no proof")?;
        let attrs = attributes(without_proof)?;
        if attrs.get("c").map(String::as_str) != Some(B64.encode(gs2.as_bytes()).as_str()) {
            return Err("SCRAM channel binding data does not match".into());
        }
        if attrs.get("r").map(String::as_str) != Some(nonce) {
            return Err("SCRAM nonce does not match".into());
        }
        let proof = B64.decode(proof).map_err(|_| "SCRAM proof is not base64")?;
        let hash = self.hash();
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_key = hash.hmac(&cred.salted_password, b"Client Key");
        let stored_key = hash.digest(&client_key);
        let signature = hash.hmac(&stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(self.failed());
        }
        let recovered: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !ct_eq(&hash.digest(&recovered), &stored_key) {
            return Err(self.failed());
        }
        let server_key = hash.hmac(&cred.salted_password, b"Server Key");
        let server_signature = hash.hmac(&server_key, auth_message.as_bytes());
        Ok(Step {
            token: format!("v={}", B64.encode(server_signature)).into_bytes(),
            user: Some(user.to_string()),
        })
    }
}

/// PLAIN: `[authzid] NUL authcid NUL passwd`, checked against the user's SCRAM credential.
fn plain(token: &[u8], meta: &MetaState) -> Result<String, String> {
    let failed = || "Authentication failed: Invalid username or password (PLAIN)".to_string();
    let mut parts = token.split(|&b| b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("Invalid SASL/PLAIN response: expected 3 tokens".into());
    };
    let user = std::str::from_utf8(user).map_err(|_| failed())?;
    if user.is_empty() {
        return Err("Authentication failed: username not specified".into());
    }
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(
            "Authentication failed: Client requested an authorization id that is different from \
             username"
                .into(),
        );
    }
    let creds: Option<&BTreeMap<i8, ScramCredential>> = meta.scram.get(user);
    let (hash, cred) = match creds {
        Some(c) => match (c.get(&SCRAM_SHA_256), c.get(&SCRAM_SHA_512)) {
            (Some(c), _) => (Hash::Sha256, c),
            (None, Some(c)) => (Hash::Sha512, c),
            (None, None) => return Err(failed()),
        },
        None => return Err(failed()),
    };
    let derived = hash.salted_password(password, &cred.salt, cred.iterations);
    if ct_eq(&derived, &cred.salted_password) {
        Ok(user.to_string())
    } else {
        Err(failed())
    }
}

/// `k=v,k=v` attributes of a SCRAM message (a value may contain `=`).
fn attributes(msg: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in msg.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("invalid SCRAM attribute '{part}'"))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Decodes a SCRAM `saslname` (`=2C` is ',', `=3D` is '=').
fn saslname(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err("invalid SCRAM user name encoding".into()),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn random_nonce() -> String {
    // Alphanumeric only, as Kafka's (base 36): some clients mishandle other printable
    // characters in the nonce (librdkafka 2.0 did with base64's).
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).expect("the OS random source works");
    raw.iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronik_core::meta::MetaCommand;

    fn meta_with(user: &str, mechanism: i8, cred: ScramCredential) -> MetaState {
        let mut m = MetaState::default();
        m.apply(&MetaCommand::AlterScramCredentials {
            deletions: vec![],
            upsertions: vec![(user.into(), mechanism, cred)],
        })
        .unwrap();
        m
    }

    /// RFC 7677's SCRAM-SHA-256 example, byte for byte.
    #[test]
    fn rfc7677_scram_sha_256_exchange() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = ScramCredential {
            salted_password: Hash::Sha256.salted_password(b"pencil", &salt, 4096),
            salt,
            iterations: 4096,
        };
        let meta = meta_with("user", SCRAM_SHA_256, cred);
        let mut a = Authenticator::new(Mechanism::ScramSha256);
        a.server_nonce = Some("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into());
        let first = a.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", &meta).unwrap();
        assert_eq!(
            String::from_utf8(first.token).unwrap(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        assert_eq!(first.user, None);
        let last = a
            .step(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                &meta,
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(last.token).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert_eq!(last.user.as_deref(), Some("user"));
        // Nothing more is accepted.
        assert!(a.step(b"x", &meta).is_err());
    }

    /// A client-side SCRAM computation, to drive the server with any password.
    fn client_final(hash: Hash, password: &str, first_bare: &str, server_first: &str) -> String {
        let attrs = attributes(server_first).unwrap();
        let salt = B64.decode(&attrs["s"]).unwrap();
        let iterations: i32 = attrs["i"].parse().unwrap();
        let salted = hash.salted_password(password.as_bytes(), &salt, iterations);
        let without_proof = format!("c=biws,r={}", attrs["r"]);
        let auth = format!("{first_bare},{server_first},{without_proof}");
        let client_key = hash.hmac(&salted, b"Client Key");
        let signature = hash.hmac(&hash.digest(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn scram_sha_512_accepts_the_password_and_refuses_others() {
        let meta = meta_with(
            "al,ice",
            SCRAM_SHA_512,
            new_credential(SCRAM_SHA_512, "s3cret"),
        );
        for (password, ok) in [("s3cret", true), ("wrong", false)] {
            let mut a = Authenticator::new(Mechanism::ScramSha512);
            let bare = "n=al=2Cice,r=abc";
            let first = a.step(format!("n,,{bare}").as_bytes(), &meta).unwrap();
            let server_first = String::from_utf8(first.token).unwrap();
            assert!(server_first.starts_with("r=abc"), "{server_first}");
            let fin = client_final(Hash::Sha512, password, bare, &server_first);
            let r = a.step(fin.as_bytes(), &meta);
            assert_eq!(r.is_ok(), ok, "{password}: {r:?}");
            if ok {
                assert_eq!(r.unwrap().user.as_deref(), Some("al,ice"));
            }
        }
        // Unknown user, a mechanism without a credential, channel binding, a bad nonce.
        let mut a = Authenticator::new(Mechanism::ScramSha512);
        assert!(a.step(b"n,,n=bob,r=abc", &meta).is_err());
        let mut a = Authenticator::new(Mechanism::ScramSha256);
        assert!(a.step(b"n,,n=al=2Cice,r=abc", &meta).is_err());
        let mut a = Authenticator::new(Mechanism::ScramSha512);
        assert!(a.step(b"p=tls-unique,,n=al=2Cice,r=abc", &meta).is_err());
        let mut a = Authenticator::new(Mechanism::ScramSha512);
        let first = a.step(b"n,,n=al=2Cice,r=abc", &meta).unwrap();
        let server_first = String::from_utf8(first.token).unwrap();
        let fin = client_final(Hash::Sha512, "s3cret", "n=al=2Cice,r=abc", &server_first)
            .replace("r=abc", "r=abd");
        assert!(a.step(fin.as_bytes(), &meta).is_err());
    }

    #[test]
    fn plain_checks_the_password_against_either_credential() {
        let meta = meta_with("alice", SCRAM_SHA_512, new_credential(SCRAM_SHA_512, "pw"));
        let run = |t: &[u8]| Authenticator::new(Mechanism::Plain).step(t, &meta);
        assert_eq!(run(b"\0alice\0pw").unwrap().user.as_deref(), Some("alice"));
        assert_eq!(
            run(b"alice\0alice\0pw").unwrap().user.as_deref(),
            Some("alice")
        );
        assert!(run(b"\0alice\0pw2").is_err());
        assert!(run(b"bob\0alice\0pw").is_err());
        assert!(run(b"\0nobody\0pw").is_err());
        assert!(run(b"\0alice").is_err());
        assert!(run(b"\0alice\0pw\0x").is_err());
    }

    #[test]
    fn mechanism_lists() {
        assert_eq!(Mechanism::parse_list("").unwrap(), vec![]);
        assert_eq!(
            Mechanism::parse_list(" SCRAM-SHA-512, PLAIN,PLAIN").unwrap(),
            vec![Mechanism::ScramSha512, Mechanism::Plain]
        );
        assert!(Mechanism::parse_list("GSSAPI").is_err());
        assert_eq!(saslname("a=3Db=2Cc").unwrap(), "a=b,c");
        assert!(saslname("a=4x").is_err());
    }
}
