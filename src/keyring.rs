//! kubelet-compatible registry matching.
//!
//! This is a faithful port of kubernetes `pkg/credentialprovider/keyring.go`
//! (`BasicDockerKeyring.Add`, `Lookup`, `ParseSchemelessURL`, `SplitURL`, `URLsMatch`,
//! `isDefaultRegistryMatch`), including its quirks, because the injector must inject exactly the
//! secrets kubelet will use: no fewer (the pull fails) and no more (a credential leaks).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;

use crate::glob::{Glob, GlobError};

/// The host kubelet falls back to for Docker Hub images when no key matched.
pub const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// Why an auths key or registry pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is the empty string (kubelet's empty host matches no image).
    #[error("registry key is empty")]
    Empty,
    /// Go's `url.Parse` rejects the key, so kubelet ignores it.
    #[error("registry key {key:?} is not a valid URL: {reason}")]
    Url {
        /// The key as written.
        key: String,
        /// What `url.Parse` objects to.
        reason: String,
    },
    /// The key parses but has no host.
    #[error("registry key {0:?} has no host")]
    NoHost(String),
    /// A host label is a malformed glob, so kubelet's `filepath.Match` errors and never matches.
    #[error("registry key {key:?}: {source}")]
    Glob {
        /// The key as written.
        key: String,
        /// The glob fault.
        source: GlobError,
    },
}

/// An auths key or a config registry pattern, normalised the way `BasicDockerKeyring.Add` does.
#[derive(Clone)]
pub struct RegistryKey {
    raw: String,
    normalized: String,
    port: String,
    labels: Vec<Glob>,
    path: String,
}

impl RegistryKey {
    /// Parses an auths key (`https://index.docker.io/v1/`, `us.icr.io`, `cp.icr.io/cp/cpd`,
    /// `*.icr.io`, `host:5000`) into kubelet's normalised form.
    pub fn parse(raw: &str) -> Result<RegistryKey, KeyError> {
        if raw.is_empty() {
            return Err(KeyError::Empty);
        }
        let with_scheme = if raw.starts_with("https://") || raw.starts_with("http://") {
            raw.to_string()
        } else {
            format!("https://{raw}")
        };
        let url = parse_url(&with_scheme).map_err(|reason| KeyError::Url {
            key: raw.to_string(),
            reason,
        })?;
        // docker's ResolveAuthConfig treats /v1/ and /v2/ as the bare host; kubelet follows it.
        let mut effective_path: &str = &url.path;
        if effective_path.starts_with("/v2/") || effective_path.starts_with("/v1/") {
            effective_path = &effective_path[3..];
        }
        let normalized = if !effective_path.is_empty() && effective_path != "/" {
            format!("{}{}", url.host, effective_path)
        } else {
            url.host.to_string()
        };
        // Lookup re-parses the stored key as a schemeless URL; do the same so that every
        // detail (an escaped path, a `?` in the key) behaves as it does in kubelet.
        let target = Location::parse(&normalized).map_err(|reason| KeyError::Url {
            key: raw.to_string(),
            reason,
        })?;
        if target.host.is_empty() {
            return Err(KeyError::NoHost(raw.to_string()));
        }
        let labels = target
            .labels()
            .map(Glob::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| KeyError::Glob {
                key: raw.to_string(),
                source,
            })?;
        let port = target.port.to_string();
        let path = target.path.into_owned();
        Ok(RegistryKey {
            raw: raw.to_string(),
            normalized,
            port,
            labels,
            path,
        })
    }

    /// The key as written in the secret or the config.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// kubelet's normalised key: `host[:port]` plus the path when it is neither empty nor `/`.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// Whether this key applies to an image location (`docker.io/library/nginx`), under
    /// `URLsMatch`: equal ports, equal label counts, per-label globs, raw path prefix.
    pub fn matches(&self, target: &Location<'_>) -> bool {
        if self.port != target.port || self.labels.len() != target.label_count {
            return false;
        }
        let mut target_labels = target.labels();
        for glob in &self.labels {
            match target_labels.next() {
                Some(label) if glob.matches(label) => {}
                _ => return false,
            }
        }
        if target_labels.next().is_some() {
            return false;
        }
        target.path.starts_with(self.path.as_str())
    }

    /// The host (without port) when every host label is literal; `None` when one is a glob.
    fn literal_host(&self) -> Option<String> {
        if !self.labels.iter().all(Glob::is_literal) {
            return None;
        }
        let host: Vec<&str> = self.labels.iter().map(Glob::as_str).collect();
        Some(host.join("."))
    }

    /// Whether this is the key kubelet falls back to for Docker Hub images.
    pub fn is_default_registry(&self) -> bool {
        self.normalized == DEFAULT_REGISTRY_HOST
    }
}

impl PartialEq for RegistryKey {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for RegistryKey {}

impl fmt::Debug for RegistryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegistryKey({:?} -> {:?})", self.raw, self.normalized)
    }
}

impl fmt::Display for RegistryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// A schemeless URL split the way kubelet's `ParseSchemelessURL` + `SplitURL` split it: an image
/// name looked up in the keyring, or an auths key read as an image location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location<'a> {
    host: &'a str,
    port: &'a str,
    path: Cow<'a, str>,
    /// Number of dot-separated host labels: most keys are rejected on this alone.
    label_count: usize,
}

impl<'a> Location<'a> {
    /// Parses `host[:port][/path]` (no scheme), as `url.Parse("https://" + s)` would.
    pub fn parse(schemeless: &'a str) -> Result<Location<'a>, String> {
        let url = parse_schemeless(schemeless)?;
        let (host, port) = split_host_port(url.host);
        let label_count = host.bytes().filter(|b| *b == b'.').count() + 1;
        Ok(Location {
            host,
            port,
            path: url.path,
            label_count,
        })
    }

    /// The location of a parsed image, `name` being `image.name()`. The reference grammar
    /// admits none of the characters that make Go's URL parser differ from a plain split
    /// (`%`, `?`, `#`, `@`, controls), so the split is done directly.
    pub fn of_image(image: &crate::image::ImageRef, name: &'a str) -> Result<Location<'a>, String> {
        let domain_len = image.domain().len();
        if domain_len == 0 || !name.starts_with(image.domain()) {
            // An empty domain (upstream's `a_b.c/d` quirk): let the general parser split it.
            return Location::parse(name);
        }
        let (host, port) = split_host_port(&name[..domain_len]);
        Ok(Location {
            host,
            port,
            path: Cow::Borrowed(&name[domain_len..]),
            label_count: host.bytes().filter(|b| *b == b'.').count() + 1,
        })
    }

    /// The host without its port; `::1` for `[::1]:5000`.
    pub fn host(&self) -> &str {
        self.host
    }

    /// The port, or `""` when there is none.
    pub fn port(&self) -> &str {
        self.port
    }

    /// The path including its leading `/`, or `""`.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn labels(&self) -> std::str::Split<'a, char> {
        self.host.split('.')
    }
}

/// Whether kubelet would try its Docker Hub credentials for this image name
/// (`isDefaultRegistryMatch`). `localhost/x` counts too: its first component has no `.` or `:`.
pub fn is_default_registry_match(image_name: &str) -> bool {
    let (first, rest) = match image_name.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (image_name, None),
    };
    if first.is_empty() {
        return false;
    }
    if rest.is_none() {
        return true;
    }
    if first == "docker.io" || first == "index.docker.io" {
        return true;
    }
    !first.contains(['.', ':'])
}

/// A set of keys with values, looked up exactly as kubelet's `BasicDockerKeyring.Lookup`.
///
/// kubelet scans every key for every image; this keeps keys with literal hosts in a hash map so
/// that a lookup costs one hash probe plus the glob keys, with the same answer.
#[derive(Debug, Clone)]
pub struct Keyring<T> {
    entries: Vec<(RegistryKey, T)>,
    /// Keys whose host labels are all literal, by host (ports are compared when matching).
    literal: HashMap<String, Vec<usize>>,
    /// Keys with a glob label, by number of host labels (a key only matches hosts with as
    /// many labels).
    globbed: HashMap<usize, Vec<usize>>,
    default_registry: Vec<usize>,
}

impl<T> Default for Keyring<T> {
    fn default() -> Self {
        Keyring {
            entries: Vec::new(),
            literal: HashMap::new(),
            globbed: HashMap::new(),
            default_registry: Vec::new(),
        }
    }
}

impl<T> Keyring<T> {
    /// An empty keyring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value under a key.
    pub fn add(&mut self, key: RegistryKey, value: T) {
        let at = self.entries.len();
        if key.is_default_registry() {
            self.default_registry.push(at);
        }
        match key.literal_host() {
            Some(host) => self.literal.entry(host).or_default().push(at),
            None => self.globbed.entry(key.labels.len()).or_default().push(at),
        }
        self.entries.push((key, value));
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing has been added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, in insertion order.
    pub fn entries(&self) -> impl Iterator<Item = (&RegistryKey, &T)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Every value whose key matches the image name (`docker.io/library/nginx`, no tag or
    /// digest), most specific key first; when none matches and the image is a Docker Hub image,
    /// the values stored under `index.docker.io`.
    pub fn lookup(&self, image_name: &str) -> Vec<(&RegistryKey, &T)> {
        self.lookup_where(image_name, |_| true)
    }

    /// `lookup` over only the entries `keep` accepts, as if the others had never been added.
    pub fn lookup_where(
        &self,
        image_name: &str,
        keep: impl FnMut(&T) -> bool,
    ) -> Vec<(&RegistryKey, &T)> {
        match Location::parse(image_name) {
            Ok(target) => self.lookup_at(image_name, &target, keep),
            Err(_) => Vec::new(),
        }
    }

    /// `lookup_where` for an image name already parsed into `target`.
    pub fn lookup_at(
        &self,
        image_name: &str,
        target: &Location<'_>,
        mut keep: impl FnMut(&T) -> bool,
    ) -> Vec<(&RegistryKey, &T)> {
        if self.entries.is_empty() {
            return Vec::new();
        }
        let literal = self.literal.get(target.host).map_or(&[][..], Vec::as_slice);
        let globbed = self
            .globbed
            .get(&target.label_count)
            .map_or(&[][..], Vec::as_slice);
        let mut hits: Vec<usize> = literal
            .iter()
            .chain(globbed)
            .copied()
            .filter(|&i| {
                let (key, value) = &self.entries[i];
                key.matches(target) && keep(value)
            })
            .collect();
        if hits.is_empty() && is_default_registry_match(image_name) {
            hits = self
                .default_registry
                .iter()
                .copied()
                .filter(|&i| keep(&self.entries[i].1))
                .collect();
        }
        hits.sort_by(|&a, &b| {
            reverse_order(
                self.entries[a].0.normalized(),
                self.entries[b].0.normalized(),
            )
            .then(a.cmp(&b))
        });
        hits.into_iter()
            .map(|i| (&self.entries[i].0, &self.entries[i].1))
            .collect()
    }
}

/// kubelet sorts the index with `sort.Reverse(sort.StringSlice)`: byte-wise, descending.
fn reverse_order(a: &str, b: &str) -> Ordering {
    b.as_bytes().cmp(a.as_bytes())
}

/// The parts of a URL that matching uses.
struct ParsedUrl<'a> {
    host: &'a str,
    path: Cow<'a, str>,
}

/// The subset of Go's `net/url.Parse` that kubelet's key handling depends on: it fails where Go
/// fails on the inputs an auths key can hold, and yields the same host and (unescaped) path.
fn parse_url(raw: &str) -> Result<ParsedUrl<'_>, String> {
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .ok_or_else(|| "missing scheme".to_string())?;
    parse_schemeless(rest)
}

/// What follows `https://`: authority, then path; query and fragment dropped.
fn parse_schemeless(rest: &str) -> Result<ParsedUrl<'_>, String> {
    if rest.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("invalid control character in URL".to_string());
    }
    let rest = rest.split_once('#').map_or(rest, |(u, _)| u);
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = match authority.rfind('@') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    validate_host(host)?;
    let path = unescape(path)?;
    Ok(ParsedUrl { host, path })
}

fn validate_host(host: &str) -> Result<(), String> {
    if let Some(stripped) = host.strip_prefix('[') {
        let Some(close) = stripped.rfind(']') else {
            return Err("missing ']' in host".to_string());
        };
        let after = &stripped[close + 1..];
        if !valid_optional_port(after) {
            return Err(format!("invalid port {after:?} after host"));
        }
    } else if let Some(i) = host.rfind(':') {
        let port = &host[i..];
        if !valid_optional_port(port) {
            return Err(format!("invalid port {port:?} after host"));
        }
    }
    let bytes = host.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let escaped = bytes.get(i + 1..i + 3);
            if !escaped.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return Err("invalid URL escape in host".to_string());
            }
            i += 3;
            continue;
        }
        if b < 0x80 && !host_byte_allowed(b) {
            return Err(format!("invalid character {:?} in host name", b as char));
        }
        i += 1;
    }
    Ok(())
}

/// Go's `shouldEscape(c, encodeHost)` is false for exactly these.
fn host_byte_allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_'
                | b'.'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
        )
}

fn valid_optional_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
    }
}

fn unescape(path: &str) -> Result<Cow<'_, str>, String> {
    if !path.contains('%') {
        return Ok(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or("invalid URL escape in path")?;
            let text = std::str::from_utf8(hex).map_err(|_| "invalid URL escape in path")?;
            let value = u8::from_str_radix(text, 16).map_err(|_| "invalid URL escape in path")?;
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}

/// Go's `net.SplitHostPort`, falling back to the whole host and no port on error as `SplitURL`
/// does.
fn split_host_port(hostport: &str) -> (&str, &str) {
    let whole = || (hostport, "");
    if let Some(inner) = hostport.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return whole();
        };
        let host = &inner[..close];
        let Some(port) = inner[close + 1..].strip_prefix(':') else {
            return whole();
        };
        if host.contains(['[', ']']) || port.contains(['[', ']']) {
            return whole();
        }
        return (host, port);
    }
    let Some(i) = hostport.rfind(':') else {
        return whole();
    };
    let (host, port) = (&hostport[..i], &hostport[i + 1..]);
    if host.contains(':') || host.contains(['[', ']']) || port.contains(['[', ']']) {
        return whole();
    }
    (host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> RegistryKey {
        RegistryKey::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    fn matches(raw_key: &str, image_name: &str) -> bool {
        key(raw_key).matches(&Location::parse(image_name).unwrap())
    }

    #[test]
    fn keys_normalise_like_basic_docker_keyring_add() {
        let cases = [
            ("https://index.docker.io/v1/", "index.docker.io"),
            ("https://index.docker.io/v2/", "index.docker.io"),
            ("index.docker.io", "index.docker.io"),
            ("https://us.icr.io", "us.icr.io"),
            ("us.icr.io", "us.icr.io"),
            ("http://us.icr.io/", "us.icr.io"),
            ("cp.icr.io/cp/cpd", "cp.icr.io/cp/cpd"),
            ("https://eu.gcr.io", "eu.gcr.io"),
            ("quay.io/v2/openshift", "quay.io/openshift"),
            ("quay.io/v1", "quay.io/v1"),
            (
                "image-registry.openshift-image-registry.svc:5000",
                "image-registry.openshift-image-registry.svc:5000",
            ),
            ("*.icr.io", "*.icr.io"),
            (
                "https://user@registry.example.com/v1/",
                "registry.example.com",
            ),
            ("[::1]:5000", "[::1]:5000"),
            ("registry.example.com/a?x=1", "registry.example.com/a"),
            ("registry.example.com/a%2Fb", "registry.example.com/a/b"),
        ];
        for (raw, want) in cases {
            assert_eq!(key(raw).normalized(), want, "key {raw:?}");
            assert_eq!(key(raw).raw(), raw);
        }
    }

    #[test]
    fn unusable_keys_are_errors_not_panics() {
        let cases = [
            ("", "registry key is empty"),
            ("us.icr.io:port", "invalid port \":port\" after host"),
            ("[a-z].icr.io", "invalid port"),
            ("[::1", "missing ']'"),
            ("us icr.io", "invalid character ' ' in host name"),
            ("us.icr.io/a%zz", "invalid URL escape in path"),
            ("foo\nbar", "invalid control character"),
            ("https://", "has no host"),
            ("/just/a/path", "has no host"),
            ("us.[a-.io", "registry key \"us.[a-.io\""),
        ];
        for (raw, want) in cases {
            let err = RegistryKey::parse(raw).expect_err(raw).to_string();
            assert!(err.contains(want), "key {raw:?}: {err:?} lacks {want:?}");
        }
        // kubelet's `filepath.Match` needs `^` for negation, which Go's URL parser refuses in a
        // host: such a key can never match in kubelet, so it is an error here.
        assert!(RegistryKey::parse("us.[^x]cr.io").is_err());
    }

    #[test]
    fn urls_match_rules() {
        let cases = [
            // Host globs: one label each, same label count.
            ("*.icr.io", "us.icr.io/ns/app", true),
            ("*.icr.io", "icr.io/ns/app", false),
            ("*.icr.io", "a.b.icr.io/ns/app", false),
            ("icr.io", "us.icr.io/ns/app", false),
            ("us.icr.io", "us.icr.io/ns/os-signal", true),
            ("https://us.icr.io", "us.icr.io/ns/os-signal", true),
            // Go's url.Parse reads `?` as the start of a query: kubelet's key "u?.icr.io" is "u".
            ("u?.icr.io", "us.icr.io/x", false),
            ("u?.icr.io", "u/x", true),
            ("u[r-t].icr.io", "us.icr.io/x", true),
            ("us.[a-c]cr.io", "us.icr.io/x", false),
            (
                "registry.*.ci.openshift.org",
                "registry.build01.ci.openshift.org/ci/x",
                true,
            ),
            (
                "registry.*.ci.openshift.org",
                "registry.ci.openshift.org/ci/x",
                false,
            ),
            // Ports must be equal; no port matches only no port.
            (
                "image-registry.openshift-image-registry.svc:5000",
                "image-registry.openshift-image-registry.svc:5000/proj/app",
                true,
            ),
            (
                "image-registry.openshift-image-registry.svc:5000",
                "image-registry.openshift-image-registry.svc/proj/app",
                false,
            ),
            ("localhost", "localhost:5000/x", false),
            ("localhost:5000", "localhost:5000/x", true),
            ("localhost:5001", "localhost:5000/x", false),
            ("[::1]:5000", "[::1]:5000/x", true),
            ("*:5000", "localhost:5000/x", true),
            // Paths are raw string prefixes: kubelet's /cp/cpd also matches /cp/cpdx.
            ("cp.icr.io/cp/cpd", "cp.icr.io/cp/cpd/db2u", true),
            ("cp.icr.io/cp/cpd", "cp.icr.io/cp/cpdx/tool", true),
            ("cp.icr.io/cp/cpd", "cp.icr.io/cp/other", false),
            ("cp.icr.io/cp/cpd", "cp.icr.io/cp", false),
            ("cp.icr.io", "cp.icr.io/cp/cpd/db2u", true),
            // Docker Hub: a docker.io key matches normalised Hub names, the others do not.
            ("docker.io", "docker.io/library/nginx", true),
            (
                "https://index.docker.io/v1/",
                "docker.io/library/nginx",
                false,
            ),
            ("registry-1.docker.io", "docker.io/library/nginx", false),
            (
                "registry-1.docker.io",
                "registry-1.docker.io/library/nginx",
                true,
            ),
            // No case folding anywhere.
            ("US.icr.io", "us.icr.io/x", false),
            ("eu.gcr.io", "gcr.io/project/app", false),
            ("https://eu.gcr.io", "eu.gcr.io/project/app", true),
        ];
        for (raw, image, want) in cases {
            assert_eq!(matches(raw, image), want, "key {raw:?} vs image {image:?}");
        }
    }

    #[test]
    fn default_registry_match_follows_kubelet() {
        let cases = [
            ("nginx", true),
            ("docker.io/library/nginx", true),
            ("index.docker.io/library/nginx", true),
            ("user/app", true),
            ("localhost/app", true),
            ("localhost:5000/app", false),
            ("registry-1.docker.io/library/nginx", false),
            ("us.icr.io/ns/app", false),
            ("/x", false),
            ("", false),
        ];
        for (image, want) in cases {
            assert_eq!(is_default_registry_match(image), want, "{image:?}");
        }
    }

    fn keyring(keys: &[(&str, &'static str)]) -> Keyring<&'static str> {
        let mut ring = Keyring::new();
        for (raw, value) in keys {
            ring.add(key(raw), *value);
        }
        ring
    }

    fn lookup(ring: &Keyring<&'static str>, image: &str) -> Vec<&'static str> {
        ring.lookup(image).into_iter().map(|(_, v)| *v).collect()
    }

    #[test]
    fn lookup_returns_every_match_most_specific_first() {
        let ring = keyring(&[
            ("cp.icr.io", "host"),
            ("cp.icr.io/cp/cpd", "cpd"),
            ("cp.icr.io/cp", "cp"),
            ("*.icr.io", "wild"),
        ]);
        assert_eq!(
            lookup(&ring, "cp.icr.io/cp/cpd/db2u"),
            ["cpd", "cp", "host", "wild"]
        );
        assert_eq!(lookup(&ring, "us.icr.io/ns/app"), ["wild"]);
        assert!(lookup(&ring, "quay.io/x").is_empty());
    }

    #[test]
    fn equal_keys_keep_insertion_order() {
        let ring = keyring(&[("us.icr.io", "first"), ("https://us.icr.io", "second")]);
        assert_eq!(lookup(&ring, "us.icr.io/a/b"), ["first", "second"]);
    }

    #[test]
    fn docker_hub_fallback_only_without_another_match() {
        let hub_only = keyring(&[("https://index.docker.io/v1/", "hub")]);
        assert_eq!(lookup(&hub_only, "docker.io/library/nginx"), ["hub"]);
        assert_eq!(lookup(&hub_only, "docker.io/myorg/app"), ["hub"]);
        assert!(lookup(&hub_only, "registry-1.docker.io/myorg/app").is_empty());
        assert!(lookup(&hub_only, "quay.io/myorg/app").is_empty());
        // localhost/x is a "default registry match" in kubelet's eyes: quirk kept.
        assert_eq!(lookup(&hub_only, "localhost/app"), ["hub"]);

        let both = keyring(&[
            ("https://index.docker.io/v1/", "hub"),
            ("docker.io", "direct"),
        ]);
        assert_eq!(lookup(&both, "docker.io/library/nginx"), ["direct"]);

        let path = keyring(&[
            ("https://index.docker.io/v1/", "hub"),
            ("docker.io/myorg", "org"),
        ]);
        assert_eq!(lookup(&path, "docker.io/myorg/app"), ["org"]);
        assert_eq!(lookup(&path, "docker.io/library/nginx"), ["hub"]);
    }

    #[test]
    fn seed_keys() {
        // Keys as they appear in the seed documents (OpenShift global pull secret, IBM Cloud
        // all-icr-io, Run:ai Docker Hub and GCR, the internal registry).
        let ring = keyring(&[
            ("cloud.openshift.com", "cloud"),
            ("quay.io", "quay"),
            ("registry.redhat.io", "redhat"),
            ("registry.connect.redhat.com", "connect"),
            ("cp.icr.io/cp/cpd", "cpd"),
            ("icr.io", "icr"),
            ("us.icr.io", "us"),
            ("https://index.docker.io/v1/", "hub"),
            ("https://eu.gcr.io", "gcr"),
            (
                "image-registry.openshift-image-registry.svc:5000",
                "internal",
            ),
        ]);
        let cases: &[(&str, &[&str])] = &[
            ("quay.io/openshift-release-dev/ocp-release", &["quay"]),
            ("registry.redhat.io/ubi9/ubi", &["redhat"]),
            ("cp.icr.io/cp/cpd/zen-core", &["cpd"]),
            ("cp.icr.io/cp/cpdx/zen-core", &["cpd"]),
            ("cp.icr.io/cp/ibm-mq", &[]),
            ("icr.io/cpopen/ibm-operator", &["icr"]),
            ("us.icr.io/workshop/os-signal", &["us"]),
            ("de.icr.io/x/y", &[]),
            ("docker.io/library/python", &["hub"]),
            ("eu.gcr.io/project/app", &["gcr"]),
            ("gcr.io/project/app", &[]),
            (
                "image-registry.openshift-image-registry.svc:5000/proj/app",
                &["internal"],
            ),
            ("image-registry.openshift-image-registry.svc/proj/app", &[]),
        ];
        for (image, want) in cases {
            assert_eq!(lookup(&ring, image), *want, "{image}");
        }
    }

    #[test]
    fn image_locations_equal_the_general_parse() {
        for reference in [
            "nginx",
            "us.icr.io/ns/app:1",
            "localhost:5000/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "[::1]:5000/x",
            "a_b.c/d",
            "image-registry.openshift-image-registry.svc:5000/proj/app",
        ] {
            let image = crate::image::ImageRef::parse(reference).unwrap();
            let name = image.name();
            assert_eq!(
                Location::of_image(&image, name),
                Location::parse(name),
                "{reference}"
            );
        }
    }

    #[test]
    fn locations_split_like_split_url() {
        let loc = Location::parse("[::1]:5000/a/b").unwrap();
        assert_eq!(
            (loc.host(), loc.port(), loc.path()),
            ("::1", "5000", "/a/b")
        );
        let loc = Location::parse("us.icr.io").unwrap();
        assert_eq!((loc.host(), loc.port(), loc.path()), ("us.icr.io", "", ""));
        // net.SplitHostPort fails on too many colons; SplitURL then keeps the whole host.
        let loc = Location::parse("a:b:1/x").unwrap();
        assert_eq!((loc.host(), loc.port()), ("a:b:1", ""));
    }
}
