//! TLS for SSL and SASL_SSL listeners with rustls (no OpenSSL), configured as Kafka's PEM
//! mode: `ssl.keystore.location` (one PEM with the private key and the certificate
//! chain), `ssl.truststore.location` (CA certificates), `ssl.client.auth`. The files are
//! polled, and a renewed certificate serves new connections without a restart (a file
//! that does not load keeps the previous one in service, with an error logged).
//!
//! A client certificate's subject becomes the principal (`User:CN=alice,O=acme`), through
//! `ssl.principal.mapping.rules` (Kafka's `RULE:pattern/replacement/[LU]` and `DEFAULT`).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::config::{BrokerConfig, ConfigError};

/// How often the keystore and truststore files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// `ssl.client.auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// What the TLS listeners serve with; rebuilt when the files change.
pub struct TlsContext {
    keystore: PathBuf,
    truststore: Option<PathBuf>,
    client_auth: ClientAuth,
    pub rules: PrincipalRules,
    current: RwLock<(Arc<ServerConfig>, Stamp)>,
}

/// The files' modification times when last loaded.
type Stamp = (Option<SystemTime>, Option<SystemTime>);

impl TlsContext {
    /// Loads the files `config` names. Called when some listener uses TLS; `sasl`: for
    /// SASL_SSL listeners, which ask for no client certificate (SASL authenticates).
    pub fn from_config(config: &BrokerConfig, sasl: bool) -> Result<Arc<Self>, ConfigError> {
        for (setting, value) in [("ssl.keystore.type", config.setting("ssl.keystore.type")), ("ssl.truststore.type", config.setting("ssl.truststore.type"))] {
            if !value.eq_ignore_ascii_case("PEM") {
                return Err(ConfigError(format!("{setting}={value}: only PEM is supported")));
            }
        }
        let keystore = config.setting("ssl.keystore.location");
        if keystore.is_empty() {
            return Err(ConfigError(
                "an SSL or SASL_SSL listener needs ssl.keystore.location (a PEM file with the private key and the certificate chain)".into(),
            ));
        }
        let client_auth = match config.setting("ssl.client.auth").to_ascii_lowercase().as_str() {
            _ if sasl => ClientAuth::None,
            "none" => ClientAuth::None,
            "requested" => ClientAuth::Requested,
            "required" => ClientAuth::Required,
            other => return Err(ConfigError(format!("ssl.client.auth={other}: expected none, requested or required"))),
        };
        let truststore = Some(config.setting("ssl.truststore.location")).filter(|s| !s.is_empty()).map(PathBuf::from);
        if client_auth != ClientAuth::None && truststore.is_none() {
            return Err(ConfigError(format!(
                "ssl.client.auth={}: needs ssl.truststore.location (the CA certificates client certificates are checked against)",
                config.setting("ssl.client.auth")
            )));
        }
        let rules = PrincipalRules::parse(config.setting("ssl.principal.mapping.rules"))?;
        let keystore = PathBuf::from(keystore);
        let stamp = (mtime(&keystore), truststore.as_deref().and_then(mtime));
        let server = build(&keystore, truststore.as_deref(), client_auth).map_err(ConfigError)?;
        Ok(Arc::new(TlsContext { keystore, truststore, client_auth, rules, current: RwLock::new((Arc::new(server), stamp)) }))
    }

    /// The config new connections are served with.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// Reloads the files if they changed since they were last loaded. Blocking (file
    /// reads): runs on the blocking pool.
    fn reload_if_changed(&self) {
        let stamp = (mtime(&self.keystore), self.truststore.as_deref().and_then(mtime));
        if self.current.read().unwrap_or_else(|p| p.into_inner()).1 == stamp {
            return;
        }
        match build(&self.keystore, self.truststore.as_deref(), self.client_auth) {
            Ok(server) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = (Arc::new(server), stamp);
                tracing::info!(keystore = %self.keystore.display(), "TLS certificate files changed; new connections use them");
            }
            Err(e) => {
                // Keep serving with what was loaded; try again when the files change again.
                self.current.write().unwrap_or_else(|p| p.into_inner()).1 = stamp;
                tracing::error!(error = %e, "TLS certificate files changed but do not load; still serving the previous ones");
            }
        }
    }

    /// Polls the files until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
                }
            }
        }
    }
}

fn mtime(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn build(keystore: &std::path::Path, truststore: Option<&std::path::Path>, client_auth: ClientAuth) -> Result<ServerConfig, String> {
    let ks = keystore.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(keystore)
        .map_err(|e| format!("ssl.keystore.location {ks}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("ssl.keystore.location {ks}: {e}"))?;
    if chain.is_empty() {
        return Err(format!("ssl.keystore.location {ks}: no CERTIFICATE in the file (it must hold the private key and the certificate chain)"));
    }
    let key = PrivateKeyDer::from_pem_file(keystore)
        .map_err(|e| format!("ssl.keystore.location {ks}: no usable PRIVATE KEY in the file ({e})"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match (client_auth, truststore) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(ts)) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ts)
                .map_err(|e| format!("ssl.truststore.location {}: {e}", ts.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("ssl.truststore.location {}: {e}", ts.display()))?;
                roots.add(c).map_err(|e| format!("ssl.truststore.location {}: {e}", ts.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("ssl.truststore.location {}: {e}", ts.display()))?)
        }
    };
    builder.with_single_cert(chain, key).map_err(|e| format!("ssl.keystore.location {ks}: {e}"))
}

/// The subject of a DER certificate as Kafka prints it (RFC 2253: the last RDN first,
/// `CN=alice,OU=eng,O=acme`).
pub fn subject_dn(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let key = x509_parser::objects::oid2abbrev(atv.attr_type(), registry)
                        .map(|k| match k {
                            "commonName" => "CN".to_string(),
                            other => other.to_string(),
                        })
                        .unwrap_or_else(|_| atv.attr_type().to_id_string());
                    let value = atv.as_str().map(rfc2253_escape).unwrap_or_default();
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Some(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

fn rfc2253_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == v.chars().count() && c == ' ');
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') || edge {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `ssl.principal.mapping.rules`: `DEFAULT` and `RULE:pattern/replacement/[LU]`, in
/// order; the first rule whose pattern matches the whole DN gives the name.
#[derive(Debug)]
pub struct PrincipalRules(Vec<Rule>);

#[derive(Debug)]
enum Rule {
    Default,
    Map { pattern: regex::Regex, replacement: String, case: Option<char> },
}

impl PrincipalRules {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError(format!("ssl.principal.mapping.rules: {why} (e.g. RULE:^CN=(.*?),OU=.*$/$1/L,DEFAULT)"));
        let mut rules = Vec::new();
        let mut rest = s.trim();
        while !rest.is_empty() {
            rest = rest.trim_start_matches([',', ' ', '\t', '\n']);
            if rest.is_empty() {
                break;
            }
            if let Some(r) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = r;
                continue;
            }
            let r = rest.strip_prefix("RULE:").ok_or_else(|| bad(&format!("'{rest}' is neither DEFAULT nor RULE:…")))?;
            let (pattern, r) = until_slash(r).ok_or_else(|| bad("a RULE needs pattern/replacement/"))?;
            let (replacement, r) = until_slash(r).ok_or_else(|| bad("a RULE needs pattern/replacement/"))?;
            let (case, r) = match r.chars().next() {
                Some(c @ ('L' | 'U')) => (Some(c), &r[1..]),
                _ => (None, r),
            };
            let pattern = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| bad(&e.to_string()))?;
            rules.push(Rule::Map { pattern, replacement: replacement.to_string(), case });
            rest = r;
        }
        if rules.is_empty() {
            rules.push(Rule::Default);
        }
        Ok(PrincipalRules(rules))
    }

    /// The principal name for a certificate subject, or None when no rule matches.
    pub fn map(&self, dn: &str) -> Option<String> {
        for rule in &self.0 {
            match rule {
                Rule::Default => return Some(dn.to_string()),
                Rule::Map { pattern, replacement, case } => {
                    if pattern.is_match(dn) {
                        let name = pattern.replace(dn, replacement.as_str()).into_owned();
                        return Some(match case {
                            Some('L') => name.to_lowercase(),
                            Some('U') => name.to_uppercase(),
                            _ => name,
                        });
                    }
                }
            }
        }
        None
    }
}

/// The text up to the first unescaped `/`, unescaped (`\/` is a slash), and what follows.
fn until_slash(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, '/')) => out.push('/'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => return None,
            },
            '/' => return Some((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_mapping_rules_follow_kafka() {
        let dn = "CN=alice,OU=ServiceUsers,O=acme";
        assert_eq!(PrincipalRules::parse("DEFAULT").unwrap().map(dn).unwrap(), dn);
        assert_eq!(PrincipalRules::parse("").unwrap().map(dn).unwrap(), dn);
        let rules = PrincipalRules::parse("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/U, RULE:^CN=([^,]*).*$/$1@x/, DEFAULT").unwrap();
        assert_eq!(rules.map(dn).unwrap(), "ALICE");
        assert_eq!(rules.map("CN=bob,O=other").unwrap(), "bob@x");
        assert_eq!(rules.map("O=nocn").unwrap(), "O=nocn");
        let strict = PrincipalRules::parse("RULE:^CN=(.*)$/$1/L").unwrap();
        assert_eq!(strict.map("CN=Carol").unwrap(), "carol");
        assert!(strict.map("O=x").is_none());
        for bad in ["RULE:x", "RULE:(/x/", "NOPE"] {
            assert!(PrincipalRules::parse(bad).is_err(), "{bad}");
        }
    }
}
