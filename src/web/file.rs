//! The web configuration file, read as exporter-toolkit reads it (`--web.config.file` of
//! the Prometheus Go exporters): YAML → `Settings`, every problem listed. Unknown keys
//! are problems, as its strict unmarshalling makes them; so are the keys it knows that
//! this exporter cannot honour (`rate_limit`, `client_allowed_sans`), because ignoring a
//! security setting silently would be worse than refusing to start.

use std::collections::BTreeMap;

use yaml_rust2::{Yaml, YamlLoader};

/// The headers exporter-toolkit lets a file set, with the values it allows (none listed:
/// any value).
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// What the file says, before any certificate is read.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Settings {
    pub tls: Option<TlsSettings>,
    /// Response headers, as written.
    pub headers: Vec<(String, String)>,
    /// User → bcrypt hash.
    pub users: BTreeMap<String, String>,
    /// The sections the file has beyond `tls_server_config`, as written.
    pub http_sections: Vec<&'static str>,
}

/// `tls_server_config`, with exporter-toolkit's defaults.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct TlsSettings {
    pub cert_file: Option<String>,
    pub cert: Option<String>,
    pub key_file: Option<String>,
    pub key: Option<String>,
    pub client_ca_file: Option<String>,
    pub client_ca: Option<String>,
    pub client_auth_type: Option<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub cipher_suites: Vec<String>,
    pub curve_preferences: Vec<String>,
    /// Go's default is true.
    pub prefer_server_cipher_suites: Option<bool>,
}

impl TlsSettings {
    /// exporter-toolkit's `IsEnabled`: any certificate, key, CA or policy turns TLS on.
    fn is_enabled(&self) -> bool {
        self.cert_file.is_some()
            || self.cert.is_some()
            || self.key_file.is_some()
            || self.key.is_some()
            || self.client_ca_file.is_some()
            || self.client_ca.is_some()
            || self.client_auth_type.is_some()
    }
}

/// Parses the file's text into what it says and its problems (each naming the key it is
/// about); what is read despite problems lets the caller find more.
pub(super) fn read(text: &str) -> (Settings, Vec<String>) {
    let mut problems = Vec::new();
    let mut settings = Settings::default();
    let docs = match YamlLoader::load_from_str(text) {
        Ok(docs) => docs,
        Err(e) => return (settings, vec![format!("not YAML: {e}")]),
    };
    let root = match docs.first() {
        None | Some(Yaml::Null) => return (settings, problems),
        Some(Yaml::Hash(root)) => root,
        Some(_) => return (settings, vec!["expected a mapping at the top".into()]),
    };
    for (key, value) in root {
        let Some(key) = key.as_str() else {
            problems.push(format!("{key:?}: keys are strings"));
            continue;
        };
        match key {
            "tls_server_config" => settings.tls = tls(value, &mut problems),
            "http_server_config" => {
                settings.http_sections.push("http_server_config");
                settings.headers = http(value, &mut problems);
            }
            "basic_auth_users" => {
                settings.http_sections.push("basic_auth_users");
                settings.users = users(value, &mut problems);
            }
            "rate_limit" => problems.push(
                "rate_limit: not supported by this exporter (limit scrapes in front of it)".into(),
            ),
            other => problems.push(format!(
                "{other}: unknown key; expected tls_server_config, http_server_config or basic_auth_users"
            )),
        }
    }
    (settings, problems)
}

#[cfg(test)]
fn parse(text: &str) -> Result<Settings, Vec<String>> {
    match read(text) {
        (settings, problems) if problems.is_empty() => Ok(settings),
        (_, problems) => Err(problems),
    }
}

/// The entries of a mapping (`null` reads as empty, as Go's YAML does).
fn mapping<'a>(
    name: &str,
    value: &'a Yaml,
    problems: &mut Vec<String>,
) -> Vec<(&'a str, &'a Yaml)> {
    match value {
        Yaml::Null => Vec::new(),
        Yaml::Hash(hash) => hash
            .iter()
            .filter_map(|(k, v)| match k.as_str() {
                Some(k) => Some((k, v)),
                None => {
                    problems.push(format!("{name}: {k:?}: keys are strings"));
                    None
                }
            })
            .collect(),
        _ => {
            problems.push(format!("{name}: expected a mapping"));
            Vec::new()
        }
    }
}

/// A scalar as Go's YAML turns it into a string (`nosniff`, `10`, `true`).
fn string(name: &str, value: &Yaml, problems: &mut Vec<String>) -> Option<String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        Yaml::Null => None,
        _ => {
            problems.push(format!("{name}: expected a string"));
            None
        }
    }
}

fn strings(name: &str, value: &Yaml, problems: &mut Vec<String>) -> Vec<String> {
    match value {
        Yaml::Null => Vec::new(),
        Yaml::Array(items) => items
            .iter()
            .filter_map(|item| string(name, item, problems))
            .collect(),
        _ => {
            problems.push(format!("{name}: expected a list of strings"));
            Vec::new()
        }
    }
}

fn boolean(name: &str, value: &Yaml, problems: &mut Vec<String>) -> Option<bool> {
    match value {
        Yaml::Boolean(b) => Some(*b),
        Yaml::Null => None,
        _ => {
            problems.push(format!("{name}: expected true or false"));
            None
        }
    }
}

fn tls(value: &Yaml, problems: &mut Vec<String>) -> Option<TlsSettings> {
    let mut t = TlsSettings::default();
    for (key, value) in mapping("tls_server_config", value, problems) {
        let name = format!("tls_server_config.{key}");
        let text = |problems: &mut Vec<String>| string(&name, value, problems);
        match key {
            "cert_file" => t.cert_file = text(problems),
            "cert" => t.cert = text(problems),
            "key_file" => t.key_file = text(problems),
            "key" => t.key = text(problems),
            "client_ca_file" => t.client_ca_file = text(problems),
            "client_ca" => t.client_ca = text(problems),
            "client_auth_type" => t.client_auth_type = text(problems),
            "min_version" => t.min_version = text(problems),
            "max_version" => t.max_version = text(problems),
            "cipher_suites" => t.cipher_suites = strings(&name, value, problems),
            "curve_preferences" => t.curve_preferences = strings(&name, value, problems),
            "prefer_server_cipher_suites" => {
                t.prefer_server_cipher_suites = boolean(&name, value, problems)
            }
            "client_allowed_sans" => problems.push(format!(
                "{name}: not supported by this exporter; give the clients their own CA (client_ca_file) instead"
            )),
            _ => problems.push(format!("{name}: unknown key")),
        }
    }
    // Go's YAML leaves an empty string as unset.
    for field in [
        &mut t.cert_file,
        &mut t.cert,
        &mut t.key_file,
        &mut t.key,
        &mut t.client_ca_file,
        &mut t.client_ca,
        &mut t.client_auth_type,
        &mut t.min_version,
        &mut t.max_version,
    ] {
        if field.as_deref() == Some("") {
            *field = None;
        }
    }
    t.is_enabled().then_some(t)
}

fn http(value: &Yaml, problems: &mut Vec<String>) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    for (key, value) in mapping("http_server_config", value, problems) {
        let name = format!("http_server_config.{key}");
        match key {
            "headers" => {
                for (header, value) in mapping(&name, value, problems) {
                    let Some(value) = string(&format!("{name}.{header}"), value, problems) else {
                        continue;
                    };
                    if let Err(problem) = allowed_header(header, &value) {
                        problems.push(format!("{name}: {problem}"));
                    } else if !value.is_empty() {
                        headers.push((header.to_string(), value));
                    }
                }
            }
            // HTTP/1.1 only: with or without HTTP/2, Prometheus scrapes alike. The value
            // is read (a wrong type is a problem) and otherwise ignored.
            "http2" => {
                boolean(&name, value, problems);
            }
            _ => problems.push(format!("{name}: unknown key; expected headers or http2")),
        }
    }
    headers
}

/// exporter-toolkit's `validateHeaderConfig`: only a few headers, some with fixed values.
fn allowed_header(header: &str, value: &str) -> Result<(), String> {
    let Some((_, values)) = ALLOWED_HEADERS.iter().find(|(name, _)| *name == header) else {
        let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "HTTP header {header:?} can not be configured; allowed: {}",
            names.join(", ")
        ));
    };
    if values.is_empty() || values.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "invalid value for {header}: expected one of {values:?}, got {value:?}"
        ))
    }
}

fn users(value: &Yaml, problems: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut users = BTreeMap::new();
    for (user, hash) in mapping("basic_auth_users", value, problems) {
        let name = format!("basic_auth_users.{user}");
        let Some(hash) = string(&name, hash, problems) else {
            problems.push(format!("{name}: expected a bcrypt hash"));
            continue;
        };
        // What Go's `bcrypt.Cost` checks: the hash can be read.
        if hash.parse::<bcrypt::HashParts>().is_err() {
            problems.push(format!(
                "{name}: not a bcrypt hash (make one with htpasswd -nBC 10 {user})"
            ));
            continue;
        }
        users.insert(user.to_string(), hash);
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG";

    #[test]
    fn an_empty_file_is_no_tls_and_no_auth() {
        assert_eq!(parse("").unwrap(), Settings::default());
        assert_eq!(parse("# nothing\n").unwrap(), Settings::default());
    }

    #[test]
    fn reads_every_section() {
        let text = format!(
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  min_version: TLS13\n  \
             cipher_suites: [TLS_AES_128_GCM_SHA256]\n  prefer_server_cipher_suites: false\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  prometheus: {HASH}\n"
        );
        let s = parse(&text).unwrap();
        let tls = s.tls.unwrap();
        assert_eq!(tls.cert_file.as_deref(), Some("a.crt"));
        assert_eq!(tls.min_version.as_deref(), Some("TLS13"));
        assert_eq!(tls.cipher_suites, ["TLS_AES_128_GCM_SHA256"]);
        assert_eq!(tls.prefer_server_cipher_suites, Some(false));
        assert_eq!(s.headers, [("X-Frame-Options".into(), "deny".into())]);
        assert_eq!(s.users.get("prometheus").map(String::as_str), Some(HASH));
    }

    #[test]
    fn lists_every_problem() {
        let text = "tls_server_config:\n  cert_fil: a\n  client_allowed_sans: [x]\n\
                    http_server_config:\n  headers:\n    Server: me\n    X-Frame-Options: allow\n\
                    basic_auth_users:\n  a: plain\nrate_limit: {burst: 1}\nextra: 1\n";
        let problems = parse(text).unwrap_err();
        assert_eq!(problems.len(), 7, "{problems:#?}");
        let all = problems.join("\n");
        for want in [
            "tls_server_config.cert_fil: unknown key",
            "client_allowed_sans: not supported",
            "\"Server\" can not be configured",
            "invalid value for X-Frame-Options",
            "basic_auth_users.a: not a bcrypt hash",
            "rate_limit: not supported",
            "extra: unknown key",
        ] {
            assert!(all.contains(want), "{want} in {all}");
        }
    }

    #[test]
    fn not_yaml_or_not_a_mapping_is_a_problem() {
        assert!(parse("a: [")
            .unwrap_err()
            .iter()
            .any(|p| p.contains("not YAML")));
        assert!(parse("- a\n").is_err());
        assert!(parse("tls_server_config: 3\n").is_err());
    }

    #[test]
    fn a_tls_section_without_anything_in_it_leaves_tls_off() {
        assert_eq!(
            parse("tls_server_config:\n  min_version: TLS13\n")
                .unwrap()
                .tls,
            None
        );
    }
}
