//! `allowed_outbound_hosts` as the manifest declares it (Spin's syntax), and the names under
//! which this host's functions call each other. Configuration only: the engine checks each
//! outbound request against it, and `outbound` holds the client those requests go through.

use std::fmt;

/// The domain under which the functions of this host answer each other:
/// `http://users.wasmfn.internal/users/1` is function `users`, without a socket.
pub const INTERNAL_DOMAIN: &str = "wasmfn.internal";

/// Concurrent outbound calls one function may have open when the manifest does not say.
pub const DEFAULT_OUTBOUND_CONCURRENCY: u32 = 64;

/// One entry of `allowed_outbound_hosts`: `scheme://host[:port]`, where the scheme may be
/// `*`, the host `*` or `*.domain`, and the port `*`; without a port, the scheme's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`, kept as `.example.com`: any name that ends with it.
    Subdomains(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    Any,
    /// The scheme's default (80 or 443).
    Default,
    Exact(u16),
}

impl AllowedHost {
    /// Parses one entry, saying what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected = "must look like \"https://api.example.com\", \"https://*.example.com\" or \"http://localhost:8080\"";
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("{text:?} has no scheme: it {expected}"))?;
        let scheme = match scheme {
            "*" => None,
            known if SCHEMES.iter().any(|(s, _)| *s == known) => Some(scheme.to_string()),
            other => {
                let known: Vec<&str> = SCHEMES.iter().map(|(s, _)| *s).collect();
                return Err(format!(
                    "{text:?}: scheme {other:?} is not one of {} or *",
                    known.join(", ")
                ));
            }
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{text:?} names a path or credentials; an entry is only scheme, host and port"
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, "*")) => (host, PortPattern::Any),
            Some((host, port)) => match port.parse::<u16>() {
                Ok(p) if p > 0 => (host, PortPattern::Exact(p)),
                _ => return Err(format!("{text:?}: port {port:?} is not a port or *")),
            },
            None => (rest, PortPattern::Default),
        };
        if port == PortPattern::Default && scheme.is_none() {
            return Err(format!(
                "{text:?}: with any scheme, say the port too (e.g. \"*://{host}:*\")"
            ));
        }
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            valid_host(domain, text)?;
            HostPattern::Subdomains(format!(".{domain}"))
        } else {
            valid_host(&host, text)?;
            HostPattern::Exact(host)
        };
        Ok(Self { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` (port as given, or `None` for the
    /// scheme's default) is allowed by this entry.
    fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h == host,
            HostPattern::Subdomains(suffix) => host.ends_with(suffix.as_str()),
        };
        let default_port = default_port(scheme);
        let port = port.unwrap_or(default_port);
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Default => port == default_port,
            PortPattern::Exact(p) => p == port,
        };
        host_ok && port_ok
    }
}

/// The hosts an entry names, for rules outside the host (a NetworkPolicy's egress).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosts<'a> {
    /// Every host (`*`).
    Any,
    /// One host name or address.
    Exact(&'a str),
    /// Every name under a domain (`*.example.com` is `example.com`).
    Under(&'a str),
}

impl AllowedHost {
    /// The hosts this entry names.
    pub fn hosts(&self) -> Hosts<'_> {
        match &self.host {
            HostPattern::Any => Hosts::Any,
            HostPattern::Exact(h) => Hosts::Exact(h),
            HostPattern::Subdomains(d) => Hosts::Under(&d[1..]),
        }
    }

    /// The one port this entry allows (its scheme's default when none is written), or
    /// `None` for any port.
    pub fn port(&self) -> Option<u16> {
        match self.port {
            PortPattern::Any => None,
            PortPattern::Default => Some(default_port(self.scheme.as_deref().unwrap_or("http"))),
            PortPattern::Exact(p) => Some(p),
        }
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_deref().unwrap_or("*"))?;
        match &self.host {
            HostPattern::Any => write!(f, "*")?,
            HostPattern::Exact(h) => write!(f, "{h}")?,
            HostPattern::Subdomains(d) => write!(f, "*{d}")?,
        }
        match self.port {
            PortPattern::Any => write!(f, ":*"),
            PortPattern::Default => Ok(()),
            PortPattern::Exact(p) => write!(f, ":{p}"),
        }
    }
}

fn valid_host(host: &str, text: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!("{text:?}: {host:?} is not a host name"))
    }
}

/// The schemes an entry may name, with the port each means when none is written: HTTP, and
/// the databases guests connect to by address (Spin's `redis://` and `postgres://`).
const SCHEMES: [(&str, u16); 6] = [
    ("http", 80),
    ("https", 443),
    ("redis", 6379),
    ("rediss", 6379),
    ("postgres", 5432),
    ("mysql", 3306),
];

fn default_port(scheme: &str) -> u16 {
    SCHEMES
        .iter()
        .find_map(|(s, port)| (*s == scheme).then_some(*port))
        .unwrap_or(80)
}

/// A function's `allowed_outbound_hosts`; empty allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(pub Vec<AllowedHost>);

impl AllowedHosts {
    /// Whether a request to `uri` is allowed.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        let host = host_name(host);
        self.0
            .iter()
            .any(|a| a.allows(scheme, &host, uri.port_u16()))
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Spin's name for the same: a Spin app's local service chaining,
/// `http://<component>.spin.internal/...`, reaches that component here too.
pub const SPIN_INTERNAL_DOMAIN: &str = "spin.internal";

/// A host name as the allow-list and in-process dispatch both compare it: host names are
/// case-insensitive, and a trailing dot (a fully qualified name) names the same host.
fn host_name(host: &str) -> String {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

/// The function a request to `http://<function>.wasmfn.internal/...` (or Spin's
/// `.spin.internal`) addresses, in lower case as the host name is.
pub fn internal_target(uri: &http::Uri) -> Option<String> {
    let host = host_name(uri.host()?);
    host.strip_suffix(INTERNAL_DOMAIN)
        .or_else(|| host.strip_suffix(SPIN_INTERNAL_DOMAIN))?
        .strip_suffix('.')
        .filter(|f| !f.is_empty() && !f.contains('.'))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(entries: &[&str], uri: &str) -> bool {
        let hosts = AllowedHosts(
            entries
                .iter()
                .map(|e| AllowedHost::parse(e).unwrap())
                .collect(),
        );
        hosts.allows(&uri.parse().unwrap())
    }

    #[test]
    fn entries_allow_their_scheme_host_and_port_only() {
        let api = ["https://api.example.com"];
        assert!(allows(&api, "https://api.example.com/v1/x"));
        assert!(allows(&api, "https://API.example.com:443/"));
        assert!(!allows(&api, "http://api.example.com/"), "scheme");
        assert!(!allows(&api, "https://api.example.com:8443/"), "port");
        assert!(!allows(&api, "https://evil.com/"), "host");
        assert!(!allows(&api, "https://api.example.com.evil.com/"), "suffix");

        let wildcard = ["https://*.example.com"];
        assert!(allows(&wildcard, "https://a.b.example.com/"));
        assert!(!allows(&wildcard, "https://example.com/"));
        assert!(!allows(&wildcard, "https://badexample.com/"));

        let local = ["http://localhost:8089"];
        assert!(allows(&local, "http://localhost:8089/x"));
        assert!(!allows(&local, "http://localhost:8090/x"));
        assert!(!allows(&local, "http://localhost/x"));

        assert!(allows(&["*://*:*"], "http://anything:1/"));
        assert!(allows(&["http://localhost:*"], "http://localhost:5/"));
        assert!(!allows(&[], "http://localhost/"), "nothing by default");

        // Databases by address, each with its scheme's port.
        let db = ["redis://cache.example.com", "postgres://db.example.com"];
        assert!(allows(&db, "redis://cache.example.com:6379"));
        assert!(allows(&db, "redis://cache.example.com"));
        assert!(!allows(&db, "redis://cache.example.com:6380"), "port");
        assert!(allows(&db, "postgres://db.example.com:5432"));
        assert!(!allows(&db, "http://cache.example.com:6379"), "scheme");
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        for (entry, says) in [
            ("api.example.com", "no scheme"),
            ("ftp://x", "scheme"),
            ("https://x/path", "path"),
            ("https://x:http", "port"),
            ("https://x:0", "port"),
            ("*://x", "say the port"),
            ("https://", "not a host"),
            ("https://bad_host", "not a host"),
        ] {
            let e = AllowedHost::parse(entry).unwrap_err();
            assert!(e.contains(says), "{entry}: {e}");
        }
        assert_eq!(
            AllowedHost::parse("https://*.Example.com:8443")
                .unwrap()
                .to_string(),
            "https://*.example.com:8443"
        );
    }

    #[test]
    fn internal_names_address_one_function() {
        let target = |u: &str| internal_target(&u.parse().unwrap());
        assert_eq!(
            target("http://users.wasmfn.internal/users/1").as_deref(),
            Some("users")
        );
        assert_eq!(target("http://wasmfn.internal/"), None);
        assert_eq!(
            target("http://pricing.spin.internal/quote").as_deref(),
            Some("pricing"),
            "Spin's local service chaining"
        );
        assert_eq!(target("http://spin.internal/"), None);
        assert_eq!(target("http://a.b.wasmfn.internal/"), None);
        assert_eq!(target("http://users.example.com/"), None);
        // Host names are case-insensitive, and a trailing dot names the same host: the
        // allow-list and dispatch agree on both.
        for uri in [
            "http://users.WASMFN.internal/users/1",
            "http://Users.wasmfn.internal./users/1",
        ] {
            assert_eq!(target(uri).as_deref(), Some("users"), "{uri}");
            assert!(allows(&["http://*.wasmfn.internal"], uri), "{uri}");
        }
        assert!(allows(
            &["https://api.example.com"],
            "https://API.example.com./v1"
        ));
    }
}
