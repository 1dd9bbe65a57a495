//! The Kafka listeners as configured: `listeners`, `advertised.listeners` and
//! `listener.security.protocol.map` (Kafka's names, KIP-103), or the one-listener
//! shorthand `--listen` / `--advertised-listener` (a `PLAINTEXT` listener). Parsing and
//! checking only; binding and serving is the server's.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::auth::SecurityProtocol;
use crate::config::{BrokerConfig, ConfigError};

/// One listener to bind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Upper-case name (`PLAINTEXT`, `SASL_SSL`, or a custom name such as `INTERNAL`).
    pub name: Arc<str>,
    pub protocol: SecurityProtocol,
    /// `HOST:PORT` to bind (an empty host in the config binds every interface).
    pub bind: String,
    /// `advertised.listeners`' address for this listener, if it names one.
    pub advertised: Option<(String, i32)>,
}

/// Where clients are told to find this broker, per listener name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub name: Arc<str>,
    pub host: String,
    pub port: i32,
}

/// The advertised endpoints of this broker, in `listeners` order (never empty), and which
/// one the other brokers of a cluster reach it on (the first unless said otherwise).
#[derive(Clone, Debug)]
pub struct Endpoints(Vec<Endpoint>, usize);

impl Endpoints {
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        assert!(!endpoints.is_empty(), "a broker has at least one listener");
        Endpoints(endpoints, 0)
    }

    /// One PLAINTEXT listener at `host:port`.
    pub fn plaintext(host: &str, port: i32) -> Self {
        Endpoints(vec![Endpoint { name: Arc::from("PLAINTEXT"), host: host.to_string(), port }], 0)
    }

    /// These endpoints with the listener named `name` (one of them) as the inter-broker one.
    pub fn with_inter_broker(mut self, name: &str) -> Self {
        self.1 = self.0.iter().position(|e| &*e.name == name).expect("the inter-broker listener is one of the listeners");
        self
    }

    /// The first listener's endpoint (what `--advertised-listener` sets).
    pub fn first(&self) -> &Endpoint {
        &self.0[0]
    }

    /// The endpoint the other brokers of a cluster reach this one on.
    pub fn inter_broker(&self) -> &Endpoint {
        &self.0[self.1]
    }

    /// The endpoint of the listener named `name`; the first listener's if there is none.
    pub fn get(&self, name: &str) -> &Endpoint {
        self.0.iter().find(|e| &*e.name == name).unwrap_or(self.first())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.0.iter()
    }
}

/// The listeners `config` asks for: from `listeners`, or the shorthand.
pub fn from_config(config: &BrokerConfig) -> Result<Vec<ListenerSpec>, ConfigError> {
    let map = protocol_map(config.setting("listener.security.protocol.map"))?;
    let listeners = config.setting("listeners").trim();
    if listeners.is_empty() {
        let advertised = match &config.advertised_listener {
            Some(a) => Some(host_port(a).ok_or_else(|| ConfigError(format!("--advertised-listener '{a}': expected HOST:PORT")))?),
            None => None,
        };
        return Ok(vec![ListenerSpec {
            name: Arc::from("PLAINTEXT"),
            protocol: SecurityProtocol::Plaintext,
            bind: config.listen.clone(),
            advertised,
        }]);
    }
    let mut specs: Vec<ListenerSpec> = Vec::new();
    for (name, host, port) in parse_list("listeners", listeners)? {
        let protocol = *map.get(&*name).ok_or_else(|| {
            ConfigError(format!(
                "listeners: listener {name} has no security protocol; map it in listener.security.protocol.map (e.g. {name}:SASL_SSL)"
            ))
        })?;
        if specs.iter().any(|s| s.name == name) {
            return Err(ConfigError(format!("listeners: listener {name} is named twice")));
        }
        if port != 0 && specs.iter().any(|s| s.bind.rsplit_once(':').is_some_and(|(_, p)| p == port.to_string())) {
            return Err(ConfigError(format!("listeners: port {port} is used by two listeners")));
        }
        let host = if host.is_empty() { "0.0.0.0".to_string() } else { host };
        let bind = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        specs.push(ListenerSpec { name, protocol, bind, advertised: None });
    }
    let advertised = config.setting("advertised.listeners").trim();
    if !advertised.is_empty() {
        for (name, host, port) in parse_list("advertised.listeners", advertised)? {
            let spec = specs.iter_mut().find(|s| s.name == name).ok_or_else(|| {
                ConfigError(format!("advertised.listeners: {name} is not one of the listeners"))
            })?;
            if host.is_empty() || port == 0 {
                return Err(ConfigError(format!("advertised.listeners: {name} needs a host and a port other than 0")));
            }
            spec.advertised = Some((host, i32::from(port)));
        }
    } else if let Some(a) = &config.advertised_listener {
        specs[0].advertised =
            Some(host_port(a).ok_or_else(|| ConfigError(format!("--advertised-listener '{a}': expected HOST:PORT")))?);
    }
    Ok(specs)
}

/// The listener the brokers of a cluster reach each other on (replica fetches, transaction
/// markers): `inter.broker.listener.name`, else the first PLAINTEXT listener. The brokers'
/// own client (`peer`) speaks neither TLS nor SASL, so it must be a PLAINTEXT listener; its
/// principal, `User:ANONYMOUS`, is what those requests are authorized as (CLUSTER_ACTION on
/// the cluster, or `super.users`). Without one, replication could not work: an error.
pub fn inter_broker(config: &BrokerConfig, specs: &[ListenerSpec]) -> Result<Arc<str>, ConfigError> {
    let named = config.setting("inter.broker.listener.name").trim().to_ascii_uppercase();
    let spec = match named.as_str() {
        "" => specs.iter().find(|s| s.protocol == SecurityProtocol::Plaintext).ok_or_else(|| {
            ConfigError("cluster mode needs a PLAINTEXT listener for the brokers to reach each other (they speak neither TLS nor SASL among themselves); add one to listeners".into())
        })?,
        name => specs.iter().find(|s| &*s.name == name).ok_or_else(|| ConfigError(format!("inter.broker.listener.name: {name} is not one of the listeners")))?,
    };
    if spec.protocol != SecurityProtocol::Plaintext {
        return Err(ConfigError(format!(
            "inter.broker.listener.name: {} is not a PLAINTEXT listener (the brokers speak neither TLS nor SASL among themselves)",
            spec.name
        )));
    }
    Ok(spec.name.clone())
}

/// `listener.security.protocol.map`: NAME:PROTOCOL,…
fn protocol_map(s: &str) -> Result<BTreeMap<Arc<str>, SecurityProtocol>, ConfigError> {
    let mut map = BTreeMap::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || {
            ConfigError(format!(
                "listener.security.protocol.map: '{entry}' is not NAME:PROTOCOL with PROTOCOL one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
            ))
        };
        let (name, proto) = entry.split_once(':').ok_or_else(bad)?;
        let proto = SecurityProtocol::parse(proto.trim()).ok_or_else(bad)?;
        if name.trim().is_empty() {
            return Err(bad());
        }
        map.insert(Arc::from(name.trim().to_ascii_uppercase()), proto);
    }
    Ok(map)
}

/// `NAME://HOST:PORT,…` (HOST may be empty or a bracketed IPv6 address).
fn parse_list(setting: &str, s: &str) -> Result<Vec<(Arc<str>, String, u16)>, ConfigError> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let bad = || ConfigError(format!("{setting}: '{entry}' is not NAME://HOST:PORT (e.g. SASL_SSL://0.0.0.0:9094)"));
            let (name, addr) = entry.split_once("://").ok_or_else(bad)?;
            let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
            let valid_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid_name {
                return Err(bad());
            }
            Ok((Arc::from(name.to_ascii_uppercase()), host, port))
        })
        .collect()
}

/// `HOST:PORT` (HOST may be a bracketed IPv6 address).
pub fn host_port(s: &str) -> Option<(String, i32)> {
    let (h, p) = s.rsplit_once(':')?;
    let port = p.parse::<u16>().ok()?;
    Some((h.trim_matches(['[', ']']).to_string(), i32::from(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(settings: &[(&str, &str)]) -> BrokerConfig {
        let mut c = BrokerConfig::default();
        for (k, v) in settings {
            c.settings.insert(k.to_string(), v.to_string());
        }
        c
    }

    #[test]
    fn listeners_parse_with_kafka_names() {
        let c = config(&[
            ("listeners", "PLAINTEXT://127.0.0.1:9092,SASL_SSL://:9094,internal://[::1]:0"),
            ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,INTERNAL:SASL_PLAINTEXT"),
            ("advertised.listeners", "SASL_SSL://kafka.example:19094"),
        ]);
        let l = from_config(&c).unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!((&*l[0].name, l[0].protocol, l[0].bind.as_str()), ("PLAINTEXT", SecurityProtocol::Plaintext, "127.0.0.1:9092"));
        assert_eq!((&*l[1].name, l[1].protocol, l[1].bind.as_str()), ("SASL_SSL", SecurityProtocol::SaslSsl, "0.0.0.0:9094"));
        assert_eq!(l[1].advertised, Some(("kafka.example".to_string(), 19094)));
        assert_eq!((&*l[2].name, l[2].protocol, l[2].bind.as_str()), ("INTERNAL", SecurityProtocol::SaslPlaintext, "[::1]:0"));
        // The shorthand: one PLAINTEXT listener on --listen.
        let mut c = config(&[]);
        c.listen = "127.0.0.1:0".into();
        c.advertised_listener = Some("proxy:1234".into());
        let l = from_config(&c).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].advertised, Some(("proxy".to_string(), 1234)));
    }

    #[test]
    fn bad_listeners_are_refused_with_the_reason() {
        for (settings, why) in [
            (vec![("listeners", "CUSTOM://:9092")], "listener.security.protocol.map"),
            (vec![("listeners", "PLAINTEXT://:9092,PLAINTEXT://:9093")], "twice"),
            (vec![("listeners", "PLAINTEXT://:9092,SSL://:9092")], "two listeners"),
            (vec![("listeners", "PLAINTEXT:9092")], "NAME://HOST:PORT"),
            (vec![("listeners", "PLAINTEXT://:x")], "NAME://HOST:PORT"),
            (vec![("listeners", "PLAINTEXT://:1"), ("advertised.listeners", "SSL://h:1")], "not one of"),
            (vec![("listeners", "A://:1"), ("listener.security.protocol.map", "A:TLS")], "NAME:PROTOCOL"),
        ] {
            let err = from_config(&config(&settings)).unwrap_err().to_string();
            assert!(err.contains(why), "{settings:?}: {err}");
        }
    }

    #[test]
    fn the_inter_broker_listener_is_a_plaintext_one() {
        let listeners = ("listeners", "SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0,REPL://127.0.0.1:0");
        let map = ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,REPL:PLAINTEXT");
        let pick = |extra: &[(&str, &str)]| {
            let c = config(&[&[listeners, map], extra].concat());
            inter_broker(&c, &from_config(&c).unwrap()).map_err(|e| e.to_string())
        };
        assert_eq!(pick(&[]).unwrap().as_ref(), "PLAINTEXT", "the first PLAINTEXT listener, not the first listener");
        assert_eq!(pick(&[("inter.broker.listener.name", "repl")]).unwrap().as_ref(), "REPL");
        assert!(pick(&[("inter.broker.listener.name", "SASL_PLAINTEXT")]).unwrap_err().contains("not a PLAINTEXT listener"));
        assert!(pick(&[("inter.broker.listener.name", "OTHER")]).unwrap_err().contains("not one of the listeners"));
        let c = config(&[("listeners", "SASL_PLAINTEXT://127.0.0.1:0")]);
        assert!(inter_broker(&c, &from_config(&c).unwrap()).unwrap_err().to_string().contains("needs a PLAINTEXT listener"));
    }
}
