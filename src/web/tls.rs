//! `tls_server_config` → a rustls `ServerConfig` (ring provider), with Go's names for
//! versions, cipher suites, curves and client certificate policies. What Go offers and
//! rustls does not (TLS 1.0 and 1.1, CBC suites, P-521) is a problem, not a quiet downgrade.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{ring, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite, SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use super::file::TlsSettings;

/// Go's names of the TLS 1.2 suites rustls has.
const TLS12_SUITES: &[(&str, SupportedCipherSuite)] = {
    use ring::cipher_suite::*;
    &[
        (
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ]
};

/// TLS 1.3 suites: Go accepts their names and then ignores them (they are not
/// configurable there); so do we, all three staying on.
const TLS13_NAMES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Suites Go's `tls.CipherSuites()` lists that rustls does not implement.
const GO_ONLY_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
];

/// How a client certificate is asked for, as Go's `tls.ClientAuthType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    None,
    Request,
    RequireAny,
    VerifyIfGiven,
    RequireAndVerify,
}

/// The files the settings name, relative to `dir` (the configuration file's directory,
/// as exporter-toolkit resolves them), so that a change to any of them is noticed.
pub(super) fn files(t: &TlsSettings, dir: &Path) -> Vec<PathBuf> {
    [&t.cert_file, &t.key_file, &t.client_ca_file]
        .into_iter()
        .flatten()
        .map(|file| dir.join(file))
        .collect()
}

/// Builds the server configuration; paths are relative to `dir`. `alpn`: the protocols
/// offered (none: the client's offer, if any, is not answered).
pub(super) fn server_config(
    t: &TlsSettings,
    dir: &Path,
    alpn: &[&[u8]],
    problems: &mut Vec<String>,
) -> Option<Arc<ServerConfig>> {
    let before = problems.len();
    let versions = versions(t, problems);
    let mut provider = ring::default_provider();
    if !t.cipher_suites.is_empty() {
        provider.cipher_suites = cipher_suites(&t.cipher_suites, problems);
    }
    if !t.curve_preferences.is_empty() {
        provider.kx_groups = curves(&t.curve_preferences, problems);
    }
    let client_auth = client_auth(t, problems);
    let cert = pem_source("cert", &t.cert_file, &t.cert, dir, problems);
    let key = pem_source("key", &t.key_file, &t.key, dir, problems);
    let ca = pem_source("client_ca", &t.client_ca_file, &t.client_ca, dir, problems);
    if cert.is_none() && t.cert_file.is_none() && t.cert.is_none() {
        problems.push("tls_server_config: missing one of cert or cert_file".into());
    }
    if key.is_none() && t.key_file.is_none() && t.key.is_none() {
        problems.push("tls_server_config: missing one of key or key_file".into());
    }
    if ca.is_some() && client_auth == Some(ClientAuth::None) {
        problems
            .push("tls_server_config: client CAs are configured without a client_auth_type".into());
    }
    let chain = cert.and_then(|pem| certificates("cert", &pem, problems));
    let key = key.and_then(|pem| match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Some(key),
        Err(e) => {
            problems.push(format!("tls_server_config: key: no PEM private key ({e})"));
            None
        }
    });
    let provider = Arc::new(provider);
    let verifier = client_auth.and_then(|auth| {
        let roots = ca.and_then(|pem| certificates("client_ca", &pem, problems));
        verifier(auth, roots, &provider, problems)
    });
    let (Some(versions), Some(chain), Some(key), Some(verifier)) = (versions, chain, key, verifier)
    else {
        return None;
    };
    if problems.len() > before {
        return None;
    }
    let built = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map(|b| b.with_client_cert_verifier(verifier))
        .and_then(|b| b.with_single_cert(chain, key));
    match built {
        Ok(mut config) => {
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
            Some(Arc::new(config))
        }
        Err(e) => {
            problems.push(format!("tls_server_config: {e}"));
            None
        }
    }
}

fn versions(
    t: &TlsSettings,
    problems: &mut Vec<String>,
) -> Option<Vec<&'static SupportedProtocolVersion>> {
    let version = |key: &str, value: &Option<String>, default: u8, problems: &mut Vec<String>| {
        match value.as_deref() {
            None => Some(default),
            Some("TLS12") => Some(2),
            Some("TLS13") => Some(3),
            Some(old @ ("TLS10" | "TLS11")) => {
                problems.push(format!(
                    "tls_server_config.{key}: {old} is not supported (rustls speaks TLS12 and TLS13)"
                ));
                None
            }
            Some(other) => {
                problems.push(format!(
                    "tls_server_config.{key}: unknown TLS version {other:?}; expected TLS12 or TLS13"
                ));
                None
            }
        }
    };
    let min = version("min_version", &t.min_version, 2, problems);
    let max = version("max_version", &t.max_version, 3, problems);
    let (min, max) = (min?, max?);
    if min > max {
        problems.push("tls_server_config: min_version is above max_version".into());
        return None;
    }
    let all = [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)];
    Some(
        all.into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, v)| v)
            .collect(),
    )
}

/// The listed TLS 1.2 suites in the file's order, and every TLS 1.3 suite.
fn cipher_suites(names: &[String], problems: &mut Vec<String>) -> Vec<SupportedCipherSuite> {
    let mut suites: Vec<SupportedCipherSuite> = ring::DEFAULT_CIPHER_SUITES
        .iter()
        .copied()
        .filter(|s| s.tls13().is_some())
        .collect();
    for name in names {
        if let Some((_, suite)) = TLS12_SUITES.iter().find(|(n, _)| n == name) {
            suites.push(*suite);
        } else if TLS13_NAMES.contains(&name.as_str()) {
            continue;
        } else if GO_ONLY_SUITES.contains(&name.as_str()) {
            problems.push(format!(
                "tls_server_config.cipher_suites: {name} is not supported here; use {}",
                supported_suites()
            ));
        } else {
            problems.push(format!(
                "tls_server_config.cipher_suites: unknown cipher {name:?}; supported: {}",
                supported_suites()
            ));
        }
    }
    suites
}

fn supported_suites() -> String {
    let names: Vec<&str> = TLS12_SUITES.iter().map(|(n, _)| *n).collect();
    names.join(", ")
}

fn curves(
    names: &[String],
    problems: &mut Vec<String>,
) -> Vec<&'static dyn rustls::crypto::SupportedKxGroup> {
    let mut groups = Vec::new();
    for name in names {
        match name.as_str() {
            "X25519" => groups.push(ring::kx_group::X25519),
            "CurveP256" => groups.push(ring::kx_group::SECP256R1),
            "CurveP384" => groups.push(ring::kx_group::SECP384R1),
            "CurveP521" => problems.push(
                "tls_server_config.curve_preferences: CurveP521 is not supported here; use X25519, CurveP256 or CurveP384".into(),
            ),
            other => problems.push(format!(
                "tls_server_config.curve_preferences: unknown curve {other:?}; expected X25519, CurveP256 or CurveP384"
            )),
        }
    }
    groups
}

fn client_auth(t: &TlsSettings, problems: &mut Vec<String>) -> Option<ClientAuth> {
    match t.client_auth_type.as_deref() {
        None | Some("NoClientCert") => Some(ClientAuth::None),
        Some("RequestClientCert") => Some(ClientAuth::Request),
        // The old name is still accepted by exporter-toolkit.
        Some("RequireAnyClientCert" | "RequireClientCert") => Some(ClientAuth::RequireAny),
        Some("VerifyClientCertIfGiven") => Some(ClientAuth::VerifyIfGiven),
        Some("RequireAndVerifyClientCert") => Some(ClientAuth::RequireAndVerify),
        Some(other) => {
            problems.push(format!(
                "tls_server_config.client_auth_type: invalid ClientAuth {other:?}; expected NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ));
            None
        }
    }
}

fn verifier(
    auth: ClientAuth,
    roots: Option<Vec<CertificateDer<'static>>>,
    provider: &Arc<CryptoProvider>,
    problems: &mut Vec<String>,
) -> Option<Arc<dyn ClientCertVerifier>> {
    let algorithms = provider.signature_verification_algorithms;
    let verified = |roots: Option<Vec<CertificateDer<'static>>>,
                    optional: bool,
                    problems: &mut Vec<String>| {
        let Some(roots) = roots else {
            problems.push(format!(
                "tls_server_config: client_auth_type {auth:?} needs client_ca_file or client_ca (there are no system roots to verify against)"
            ));
            return None;
        };
        let mut store = RootCertStore::empty();
        let (_, bad) = store.add_parsable_certificates(roots);
        if bad > 0 || store.is_empty() {
            problems.push("tls_server_config: client_ca: not a usable CA certificate".into());
            return None;
        }
        let builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider.clone());
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        match builder.build() {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(format!("tls_server_config: client_ca: {e}"));
                None
            }
        }
    };
    match auth {
        ClientAuth::None => Some(WebPkiClientVerifier::no_client_auth()),
        ClientAuth::Request => Some(Arc::new(AnyClientCert {
            mandatory: false,
            algorithms,
        })),
        ClientAuth::RequireAny => Some(Arc::new(AnyClientCert {
            mandatory: true,
            algorithms,
        })),
        ClientAuth::VerifyIfGiven => verified(roots, true, problems),
        ClientAuth::RequireAndVerify => verified(roots, false, problems),
    }
}

/// The certificate or key in force: the file's (read now) or the inline text. Both at
/// once is a problem, as exporter-toolkit's documentation has it.
fn pem_source(
    what: &str,
    file: &Option<String>,
    inline: &Option<String>,
    dir: &Path,
    problems: &mut Vec<String>,
) -> Option<Vec<u8>> {
    match (file, inline) {
        (Some(_), Some(_)) => {
            problems.push(format!(
                "tls_server_config: {what} and {what}_file are both set; give one"
            ));
            None
        }
        (Some(file), None) => {
            let path = dir.join(file);
            match std::fs::read(&path) {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    problems.push(format!(
                        "tls_server_config.{what}_file: cannot read {}: {e}",
                        path.display()
                    ));
                    None
                }
            }
        }
        (None, Some(text)) => Some(text.as_bytes().to_vec()),
        (None, None) => None,
    }
}

fn certificates(
    what: &str,
    pem: &[u8],
    problems: &mut Vec<String>,
) -> Option<Vec<CertificateDer<'static>>> {
    match CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => Some(certs),
        Ok(_) => {
            problems.push(format!("tls_server_config: {what}: no PEM certificate"));
            None
        }
        Err(e) => {
            problems.push(format!("tls_server_config: {what}: {e}"));
            None
        }
    }
}

/// Go's `RequestClientCert` and `RequireAnyClientCert`: a certificate is asked for (and
/// for the latter required), its signature over the handshake checked, and its chain not
/// verified. exporter-toolkit's documentation calls these insecure; they exist for
/// compatibility.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
