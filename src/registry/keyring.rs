//! kubelet-compatible registry matching.
//!
//! This is a faithful port of kubernetes `pkg/credentialprovider/keyring.go` as of v1.36
//! (`BasicDockerKeyring.Add`, `Lookup`, `ParseSchemelessURL`, `SplitURL`, `URLsMatch`,
//! `isDefaultRegistryMatch`), including its quirks, because the injector must inject exactly the
//! secrets kubelet will use: no fewer (the pull fails) and no more (a credential leaks). Go's URL
//! parser, which decides which keys kubelet can use at all, is ported in [`crate::registry::gourl`].

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;

use crate::registry::glob::{Glob, GlobError};
use crate::registry::gourl;

/// The host kubelet falls back to for Docker Hub images when no key matched.
pub const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// Why an auths key or registry pattern cannot be used. The keys it names are redacted
/// ([`redact_key`]): a key's userinfo is credential material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is the empty string (kubelet's empty host matches no image).
    #[error("registry key is empty")]
    Empty,
    /// Go's `url.Parse` rejects the key, so kubelet's `BasicDockerKeyring.Add` drops it
    /// ("Entry ... in dockercfg invalid ..., ignoring").
    #[error("registry key {key:?} is not a valid URL: {reason}")]
    Url {
        /// The key as written, redacted.
        key: String,
        /// What `url.Parse` objects to.
        reason: String,
    },
    /// kubelet stores the key in the normalised form, but `Lookup` re-parses that form for
    /// every image and fails, so the key never matches.
    #[error(
        "registry key {key:?} is stored by kubelet as {stored:?}, which its lookup cannot parse ({reason}), so it never matches"
    )]
    Unmatchable {
        /// The key as written, redacted.
        key: String,
        /// kubelet's normalised key, redacted.
        stored: String,
        /// What `url.Parse` objects to.
        reason: String,
    },
    /// The key parses but has no host.
    #[error("registry key {0:?} has no host")]
    NoHost(String),
    /// A host label is empty (`a..b`, a leading or trailing `.`): no image host has one.
    #[error("registry key {0:?} has an empty host label, which matches no image")]
    EmptyLabel(String),
    /// A host label is a malformed glob, so kubelet's `filepath.Match` errors and never matches.
    #[error("registry key {key:?}: {source}")]
    Glob {
        /// The key as written, redacted.
        key: String,
        /// The glob fault.
        source: GlobError,
    },
}

/// A key as it may be shown in messages and reports: every run of characters that ends in
/// an `@` and could be userinfo (`user:password@`) is replaced by `***`.
///
/// Go takes the userinfo from before the last `@` of the authority; this masks more (every
/// `@`-terminated segment between `/`, `?`, `#` and `@`) so that a key that fails to parse, or
/// is read otherwise than its author meant (`HTTPS://user:pw@host` has no authority userinfo
/// for Go), still shows no secret.
pub fn redact_key(raw: &str) -> Cow<'_, str> {
    if !raw.contains('@') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut segment = String::new();
    for c in raw.chars() {
        match c {
            '@' => {
                if !segment.is_empty() {
                    out.push_str("***");
                }
                segment.clear();
                out.push('@');
            }
            '/' | '?' | '#' => {
                out.push_str(&segment);
                segment.clear();
                out.push(c);
            }
            c => segment.push(c),
        }
    }
    out.push_str(&segment);
    Cow::Owned(out)
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
    /// `*.icr.io`, `host:5000`) into kubelet's normalised form; an error for every key kubelet
    /// drops or can never match.
    pub fn parse(raw: &str) -> Result<RegistryKey, KeyError> {
        if raw.is_empty() {
            return Err(KeyError::Empty);
        }
        let shown = || redact_key(raw).into_owned();
        // `Add` prepends `https://` unless the key starts with `https://` or `http://` (case
        // matters: `HTTPS://x` becomes `https://HTTPS://x`).
        let with_scheme: Cow<'_, str> = if raw.starts_with("https://") || raw.starts_with("http://")
        {
            Cow::Borrowed(raw)
        } else {
            Cow::Owned(format!("https://{raw}"))
        };
        let url = gourl::parse(&with_scheme).map_err(|reason| KeyError::Url {
            key: shown(),
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
        let target = Location::parse(&normalized).map_err(|reason| KeyError::Unmatchable {
            key: shown(),
            stored: redact_key(&normalized).into_owned(),
            reason,
        })?;
        if target.host.is_empty() {
            return Err(KeyError::NoHost(shown()));
        }
        let labels = target
            .labels()
            .map(|label| match Glob::new(label) {
                Err(GlobError::Empty) => Err(KeyError::EmptyLabel(shown())),
                other => other.map_err(|source| KeyError::Glob {
                    key: shown(),
                    source,
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let port = target.port.into_owned();
        let path = target.path.into_owned();
        Ok(RegistryKey {
            raw: raw.to_string(),
            normalized,
            port,
            labels,
            path,
        })
    }

    /// The key as written in the secret or the config (userinfo included: never show it; the
    /// `Display` form is redacted).
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

    /// The registry the key names, `host[:port]` without its path, when every host label is
    /// literal: what a credential is verified against. `None` for a glob key (`*.icr.io`),
    /// which names no single registry.
    pub fn registry(&self) -> Option<String> {
        let host = self.literal_host()?;
        Some(if self.port.is_empty() {
            host
        } else {
            format!("{host}:{}", self.port)
        })
    }

    /// Whether a host label is a pattern (`*.icr.io`): the key names no single registry.
    pub fn is_glob(&self) -> bool {
        !self.labels.iter().all(Glob::is_literal)
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
        write!(
            f,
            "RegistryKey({:?} -> {:?})",
            redact_key(&self.raw),
            redact_key(&self.normalized)
        )
    }
}

impl fmt::Display for RegistryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_key(&self.raw))
    }
}

/// A schemeless URL split the way kubelet's `ParseSchemelessURL` + `SplitURL` split it: an image
/// name looked up in the keyring, or an auths key read as an image location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location<'a> {
    host: Cow<'a, str>,
    port: Cow<'a, str>,
    path: Cow<'a, str>,
    /// Number of dot-separated host labels: most keys are rejected on this alone.
    label_count: usize,
}

impl<'a> Location<'a> {
    /// Parses `host[:port][/path]` (no scheme), as `url.Parse("https://" + s)` would.
    pub fn parse(schemeless: &'a str) -> Result<Location<'a>, String> {
        let url = gourl::parse_schemeless(schemeless)?;
        let (host, port) = match url.host {
            Cow::Borrowed(hostport) => {
                let (host, port) = split_host_port(hostport);
                (Cow::Borrowed(host), Cow::Borrowed(port))
            }
            Cow::Owned(hostport) => {
                let (host, port) = split_host_port(&hostport);
                (Cow::Owned(host.to_string()), Cow::Owned(port.to_string()))
            }
        };
        let label_count = host.bytes().filter(|b| *b == b'.').count() + 1;
        Ok(Location {
            host,
            port,
            path: url.path,
            label_count,
        })
    }

    /// A location no key matches: an image kubelet's `ParseSchemelessURL` refuses. `Lookup`
    /// then matches no key, but the Docker Hub fallback still applies.
    pub fn unmatchable() -> Location<'static> {
        Location {
            host: Cow::Borrowed(""),
            port: Cow::Borrowed(""),
            path: Cow::Borrowed(""),
            // Every key has at least one label.
            label_count: 0,
        }
    }

    /// The location of a parsed image, `name` being `image.name()`. The reference grammar
    /// admits none of the characters that make Go's URL parser differ from a plain split
    /// (`%`, `?`, `#`, `@`, controls, a second colon), so the split is done directly, except
    /// for an IPv6 literal, which Go also checks with `netip.ParseAddr` (the grammar takes
    /// `[ABC]`, Go does not).
    pub fn of_image(image: &crate::registry::image::ImageRef, name: &'a str) -> Location<'a> {
        let domain = image.domain();
        if domain.is_empty() || !name.starts_with(domain) || domain.starts_with('[') {
            // An empty domain (upstream's `a_b.c/d` quirk) or an IPv6 literal: let the general
            // parser split it.
            return Location::parse(name).unwrap_or_else(|_| Location::unmatchable());
        }
        let (host, port) = split_host_port(&name[..domain.len()]);
        Location {
            host: Cow::Borrowed(host),
            port: Cow::Borrowed(port),
            path: Cow::Borrowed(&name[domain.len()..]),
            label_count: host.bytes().filter(|b| *b == b'.').count() + 1,
        }
    }

    /// The host without its port; `::1` for `[::1]:5000`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, or `""` when there is none.
    pub fn port(&self) -> &str {
        &self.port
    }

    /// The path including its leading `/`, or `""`.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn labels(&self) -> std::str::Split<'_, char> {
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
        // An image kubelet cannot parse matches no key, but may still take the fallback.
        let target = Location::parse(image_name).unwrap_or_else(|_| Location::unmatchable());
        let mut keep = keep;
        self.lookup_at(image_name, &target, |_, value| keep(value))
    }

    /// `lookup_where` for an image name already parsed into `target`.
    pub fn lookup_at(
        &self,
        image_name: &str,
        target: &Location<'_>,
        mut keep: impl FnMut(&RegistryKey, &T) -> bool,
    ) -> Vec<(&RegistryKey, &T)> {
        if self.entries.is_empty() {
            return Vec::new();
        }
        let literal = self
            .literal
            .get(target.host())
            .map_or(&[][..], Vec::as_slice);
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
                key.matches(target) && keep(key, value)
            })
            .collect();
        if hits.is_empty() && is_default_registry_match(image_name) {
            hits = self
                .default_registry
                .iter()
                .copied()
                .filter(|&i| keep(&self.entries[i].0, &self.entries[i].1))
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

/// Go's `net.SplitHostPort`, falling back to the whole host and no port on error as `SplitURL`
/// does.
fn split_host_port(hostport: &str) -> (&str, &str) {
    let whole = || (hostport, "");
    // The port starts after the last colon; without one there is no port.
    let Some(last_colon) = hostport.rfind(':') else {
        return whole();
    };
    let port = &hostport[last_colon + 1..];
    let host = if let Some(inner) = hostport.strip_prefix('[') {
        // The first `]` must come just before the last colon; no `[` may follow the opening
        // one and no `]` the closing one.
        let Some(close) = inner.find(']') else {
            return whole();
        };
        let host = &inner[..close];
        if close + 2 != last_colon || host.contains('[') || port.contains(['[', ']']) {
            return whole();
        }
        host
    } else {
        let host = &hostport[..last_colon];
        if host.contains(':') || hostport.contains(['[', ']']) {
            return whole();
        }
        host
    };
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
            // Go stores the host unescaped (url.go:635); `%25` is how a zone's `%` is written.
            ("a%C3%A9.io", "a\u{e9}.io"),
            ("[fe80::1%2525en0]:5000", "[fe80::1%25en0]:5000"),
            // The userinfo runs to the last `@` (url.go:512) and is dropped from the key.
            ("user:p@ss@quay.io", "quay.io"),
            // An empty port is a valid optional port (url.go:761).
            ("localhost:", "localhost:"),
            // A fragment is cut off first (url.go:400); control bytes are fine in it.
            ("quay.io#\n", "quay.io"),
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
            ("us icr.io", "invalid character \" \" in host name"),
            ("us.icr.io/a%zz", "invalid URL escape \"%zz\""),
            ("foo\nbar", "invalid control character"),
            ("https://", "has no host"),
            ("/just/a/path", "has no host"),
            (
                "us.[a-.io",
                "registry key \"us.[a-.io\" is not a valid URL: invalid IP-literal",
            ),
            ("a..b", "has an empty host label"),
            // Parses, but kubelet's stored form "quay.io/%zz" fails its lookup's parse.
            (
                "quay.io/%25zz",
                "is stored by kubelet as \"quay.io/%zz\", which its lookup cannot parse (invalid URL escape \"%zz\"), so it never matches",
            ),
        ];
        for (raw, want) in cases {
            let err = RegistryKey::parse(raw).expect_err(raw).to_string();
            assert!(err.contains(want), "key {raw:?}: {err:?} lacks {want:?}");
        }
        // `^` is no host byte for Go (url.go:147), and the `[` alone already refuses the key.
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
            // `*` is the one glob that works in a kubelet 1.36 key: `?` starts a query and a
            // `[` is refused unless it opens an IPv6 literal (see the tables below).
            ("u*.icr.io", "us.icr.io/x", true),
            ("*s.icr.io", "us.icr.io/x", true),
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
            // Without a port SplitURL keeps the brackets, so the one label "[::1]" is a
            // `filepath.Match` class matching a single character: never this image.
            ("[::1]", "[::1]/x", false),
            // An empty port equals no port.
            ("localhost:", "localhost/x", true),
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
            // The reference grammar takes these IPv6 literals, netip.ParseAddr does not.
            "[ABC]/x",
            "[1:2]:5000/x",
        ] {
            let image = crate::registry::image::ImageRef::parse(reference).unwrap();
            let name = image.name();
            assert_eq!(
                Location::of_image(&image, name),
                Location::parse(name).unwrap_or_else(|_| Location::unmatchable()),
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
        // net.SplitHostPort fails without a port; SplitURL then keeps the whole host.
        let loc = Location::parse("[::1]/x").unwrap();
        assert_eq!((loc.host(), loc.port()), ("[::1]", ""));
        // Go 1.26 refuses two colons outside brackets (url.go:606-632), where older Go left
        // them for SplitHostPort to refuse.
        assert!(Location::parse("a:b:1/x").is_err());
    }

    /// What kubelet 1.36's `BasicDockerKeyring` returns for an image (a reference, normalised
    /// as the runtime does) given these auths keys: the keys `Add` drops are dropped here too.
    fn kubelet_lookup<'k>(keys: &[&'k str], image: &str) -> Vec<&'k str> {
        let mut ring = Keyring::new();
        for raw in keys {
            if let Ok(k) = RegistryKey::parse(raw) {
                ring.add(k, *raw);
            }
        }
        let image =
            crate::registry::image::ImageRef::parse(image).unwrap_or_else(|e| panic!("{e}"));
        let name = image.name();
        let target = Location::of_image(&image, name);
        ring.lookup_at(name, &target, |_, _| true)
            .into_iter()
            .map(|(_, v)| *v)
            .collect()
    }

    /// Rows of (keys, image, the keys kubelet uses, in its order).
    type Table<'a> = [(&'a [&'a str], &'a str, &'a [&'a str])];

    fn check_table(table: &Table<'_>) {
        for (keys, image, want) in table {
            assert_eq!(
                kubelet_lookup(keys, image),
                *want,
                "keys {keys:?}, image {image:?}"
            );
        }
    }

    /// Class 1: Go 1.26.2+ `parseHost` (url.go:549) refuses a host whose last `[` is not its
    /// first byte ("invalid IP-literal"), so kubelet ignores the key: `[...]` globs inside a
    /// label, which Go before 1.25.2 let through, no longer work at all.
    #[test]
    fn a_bracket_inside_the_host_makes_kubelet_ignore_the_key() {
        check_table(&[
            (&["u[r-t].icr.io"], "us.icr.io/x", &[]),
            (&["us.[a-c]cr.io"], "us.icr.io/x", &[]),
            (&["registry.[a-z]*.io"], "registry.ab.io/x", &[]),
            (&["quay.io["], "quay.io/x", &[]),
            // Go 1.26.0 still read this as the literal [::1]:5000; 1.26.2+ refuse it.
            (&["x[::1]:5000"], "[::1]:5000/x", &[]),
            // The glob that still works, and the same keys beside a valid one.
            (&["u*.icr.io"], "us.icr.io/x", &["u*.icr.io"]),
            (
                &["u[r-t].icr.io", "us.icr.io"],
                "us.icr.io/x",
                &["us.icr.io"],
            ),
        ]);
    }

    /// Class 2: a leading `[` opens an IP literal (url.go:551-605); what is inside must pass
    /// `netip.ParseAddr` as an IPv6 address (CVE-2025-47912, since Go 1.25.2), so globs and
    /// IPv4 addresses in brackets make kubelet ignore the key.
    #[test]
    fn only_an_ipv6_address_may_be_bracketed() {
        check_table(&[
            // ParseAddr("*"): "unable to parse IP".
            (&["[*]:5000"], "localhost:5000/app", &[]),
            // An IPv4 address is refused even though it parses (url.go:602, addr.Is4()).
            (&["[127.0.0.1]:5000"], "127.0.0.1:5000/app", &[]),
            // The text after the last `]` must be a port (url.go:557).
            (&["[a-z].icr.io"], "a.icr.io/x", &[]),
            // ParseAddr("ABC"), ParseAddr("1:2"): not IPv6 addresses.
            (&["[ABC]:5000"], "[ABC]:5000/x", &[]),
            (&["[1:2]:5000"], "[1:2]:5000/x", &[]),
            // "zone must be a non-empty string" (netip.go:218).
            (&["[::1%25]:5000"], "[::1]:5000/x", &[]),
            // A real IPv6 literal still works.
            (&["[::1]:5000"], "[::1]:5000/x", &["[::1]:5000"]),
            (&["[0:0::1]:5000"], "[0:0::1]:5000/x", &["[0:0::1]:5000"]),
        ]);
    }

    /// Class 3: validUserinfo (url.go:1273, called at url.go:525) allows only RFC 3986
    /// userinfo characters plus `%` and `@`; anything else makes kubelet ignore the key.
    #[test]
    fn userinfo_characters_are_validated() {
        check_table(&[
            (&["a b@quay.io"], "quay.io/x", &[]),
            (&["us[er@quay.io"], "quay.io/x", &[]),
            (&["\u{e9}@quay.io"], "quay.io/x", &[]),
            (&["u\"@quay.io"], "quay.io/x", &[]),
            // Allowed: the last `@` ends the userinfo, so `p@ss` is fine; `:` splits it.
            (&["user:p@ss@quay.io"], "quay.io/x", &["user:p@ss@quay.io"]),
            (
                &["https://user:pass@quay.io"],
                "quay.io/x",
                &["https://user:pass@quay.io"],
            ),
            (&["@quay.io"], "quay.io/x", &["@quay.io"]),
        ]);
    }

    /// Class 4: escapes are checked in the userinfo (unescape(..., encodeUserPassword),
    /// url.go:529-540) and in a non-empty fragment (setFragment, url.go:408/726); the query is
    /// never checked by Parse (url.go:456-460).
    #[test]
    fn userinfo_and_fragment_escapes_must_be_valid() {
        check_table(&[
            (&["quay.io#%zz"], "quay.io/x", &[]),
            (&["quay.io#%"], "quay.io/x", &[]),
            (&["u%zz@quay.io"], "quay.io/x", &[]),
            (&["u:%4@quay.io"], "quay.io/x", &[]),
            (&["quay.io#%41"], "quay.io/x", &["quay.io#%41"]),
            (&["quay.io#"], "quay.io/x", &["quay.io#"]),
            // parse's control-byte check (url.go:435) sees only what precedes the `#`.
            (&["quay.io#\n"], "quay.io/x", &["quay.io#\n"]),
            (&["quay.io?%zz"], "quay.io/x", &["quay.io?%zz"]),
            (&["a%41@quay.io"], "quay.io/x", &["a%41@quay.io"]),
        ]);
    }

    /// Not in the classes, found in Go 1.26.4's source: with urlstrictcolons=1 (the
    /// default since Go 1.26, and kubelet 1.36 declares `godebug default=go1.26`) an http(s)
    /// host outside brackets takes its port from the first colon (url.go:606-632).
    #[test]
    fn a_host_outside_brackets_has_at_most_one_colon() {
        for raw in ["a:b:1", "localhost:5000:6000", "::1", "http://a:b:1"] {
            assert!(
                matches!(RegistryKey::parse(raw), Err(KeyError::Url { .. })),
                "{raw}"
            );
        }
        check_table(&[(&["localhost:5000:6000"], "localhost:5000/x", &[])]);
    }

    /// The consequence the issue reports: a key kubelet ignores cannot count as the match that
    /// suppresses the Docker Hub fallback.
    #[test]
    fn an_ignored_key_leaves_the_docker_hub_fallback_to_apply() {
        check_table(&[
            (
                &["docker.i[n-z]", "https://index.docker.io/v1/"],
                "nginx",
                &["https://index.docker.io/v1/"],
            ),
            (
                &["[*]", "https://index.docker.io/v1/"],
                "nginx",
                &["https://index.docker.io/v1/"],
            ),
            // A key kubelet accepts and matches does suppress it.
            (
                &["docker.i*", "https://index.docker.io/v1/"],
                "nginx",
                &["docker.i*"],
            ),
        ]);
    }

    /// kubelet's `Lookup` fails to parse an image with a bracketed non-IPv6 host, so no key
    /// matches it, but `isDefaultRegistryMatch` still says Docker Hub (no `.` or `:` in
    /// `[ABC]`) and the fallback applies.
    #[test]
    fn an_image_go_cannot_parse_matches_no_key_but_may_fall_back() {
        check_table(&[
            (&["*"], "[ABC]/x", &[]),
            (
                &["*", "https://index.docker.io/v1/"],
                "[ABC]/x",
                &["https://index.docker.io/v1/"],
            ),
            (
                &["*:5000", "https://index.docker.io/v1/"],
                "[1:2]:5000/x",
                &[],
            ),
        ]);
    }

    #[test]
    fn messages_never_show_userinfo() {
        let cases = [
            ("https://user:fake-password@quay.io", "https://***@quay.io"),
            ("user:fake-password@quay.io/v2/x", "***@quay.io/v2/x"),
            // Go sees no userinfo in these (the scheme is not lower case; `@` after `/`), but
            // what a person meant as a password is masked all the same.
            ("HTTPS://user:fake-password@quay.io", "HTTPS://***@quay.io"),
            ("quay.io/user:fake-password@x", "quay.io/***@x"),
            ("a:fake@password@quay.io", "***@***@quay.io"),
            ("quay.io", "quay.io"),
        ];
        for (raw, shown) in cases {
            assert_eq!(redact_key(raw), shown);
        }
        for raw in [
            "user:fake-password@quay.i[o]",
            "user:fake-password%zz@quay.io",
            "user:fake password@quay.io",
            "user:fake-password@quay.io/%25zz",
            "user:fake-password@quay.io#%zz",
            "user:fake-password@a..b",
        ] {
            let err = RegistryKey::parse(raw).expect_err(raw);
            let text = format!("{err} {err:?}");
            assert!(!text.contains("fake"), "{text}");
        }
        // For Go the second one is host `HTTPS:` and path `//user:...@quay.io[`: it parses.
        for raw in [
            "https://user:fake-password@quay.io",
            "HTTPS://user:fake-password@quay.io[",
        ] {
            let ok = key(raw);
            let text = format!("{ok} {ok:?}");
            assert!(!text.contains("fake"), "{text}");
        }
    }

    /// Go 1.26.4 `url.Parse` success for kubelet's string (`Add` prepends `https://` unless
    /// the key has an http(s) scheme), written as a checklist of Go's conditions rather than
    /// as a parser, to check `gourl` against. Lines are those of go1.26.4 src/net/url/url.go.
    fn go_accepts(key: &str) -> bool {
        let url = if key.starts_with("https://") || key.starts_with("http://") {
            key.to_string()
        } else {
            format!("https://{key}")
        };
        // url.go:400: the fragment is cut off first; url.go:408 -> setFragment (url.go:726)
        // unescapes it with encodeFragment, which only checks `%` escapes.
        let (before_fragment, fragment) = url.split_once('#').unwrap_or((&url, ""));
        if !escapes_well_formed(fragment) {
            return false;
        }
        // url.go:435: no ASCII control byte before the fragment.
        if before_fragment.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return false;
        }
        // url.go:449 getScheme, url.go:456-460: the query goes, unchecked.
        let after_scheme = &before_fragment[before_fragment.find("://").unwrap() + 3..];
        let hier = after_scheme.split('?').next().unwrap_or("");
        // url.go:487: the authority ends at the first `/`; url.go:505 -> setPath (url.go:659)
        // checks the path's escapes only.
        let (authority, path) = hier.split_at(hier.find('/').unwrap_or(hier.len()));
        if !escapes_well_formed(path) {
            return false;
        }
        // url.go:512: the last `@` separates the userinfo.
        let (userinfo, host) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        // url.go:525 validUserinfo (url.go:1273), then unescape with encodeUserPassword
        // (url.go:529-540); splitting at `:` first changes nothing, `:` is not hex.
        let userinfo_ok = |u: &str| {
            u.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c))
                && escapes_well_formed(u)
        };
        host_accepted(host) && userinfo.is_none_or(userinfo_ok)
    }

    /// Every `%` is followed by two hex digits (url.go:119-125).
    fn escapes_well_formed(s: &str) -> bool {
        let b = s.as_bytes();
        (0..b.len()).filter(|&i| b[i] == b'%').all(|i| {
            b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        })
    }

    /// The bytes `encoding_table.go` marks as needing no escape in a host (or zone).
    fn host_byte(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]<>\"".contains(&b)
    }

    /// `%XY` sequences of `s`, decoded, with the rest of `s` kept as it is.
    fn percent_decode(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    /// `unescape(s, encodeHost)` succeeds (url.go:126, url.go:147): ASCII bytes from the host
    /// set, escapes only of non-ASCII bytes (first hex digit 8 or more) or `%25`.
    fn host_text_ok(s: &str) -> bool {
        escapes_well_formed(s) && {
            let b = s.as_bytes();
            (0..b.len()).all(|i| match b[i] {
                b'%' => s[i..].starts_with("%25") || b[i + 1].to_ascii_lowercase() >= b'8',
                c => c >= 0x80 || host_byte(c),
            })
        }
    }

    /// `parseHost` (url.go:548) for an http(s) URL.
    fn host_accepted(host: &str) -> bool {
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        match host.rfind('[') {
            Some(0) => {
                // url.go:554-560: the last `]` closes; only `:digits` may follow it.
                let Some(close) = host.rfind(']') else {
                    return false;
                };
                let after = &host[close + 1..];
                if !(after.is_empty() || after.starts_with(':') && digits(&after[1..])) {
                    return false;
                }
                let inside = &host[1..close];
                let (address, zone) = match inside.find("%25") {
                    Some(z) => (&inside[..z], Some(&inside[z + 3..])),
                    None => (inside, None),
                };
                // url.go:129-141, url.go:147: the zone's bytes and escapes.
                let zone_ok = |z: &str| {
                    escapes_well_formed(z)
                        && z.bytes().all(|c| c == b'%' || c >= 0x80 || host_byte(c))
                        && percent_escapes(z).all(|v| v == b'%' || v == b' ' || host_byte(v))
                };
                if !host_text_ok(address) || !zone.is_none_or(zone_ok) {
                    return false;
                }
                // url.go:598-604: netip.ParseAddr must see an IPv6 address (std's parser, which
                // has no zones, stands in for it) and a zone, when given, is not empty.
                let address = String::from_utf8_lossy(&percent_decode(address)).into_owned();
                address.parse::<std::net::Ipv6Addr>().is_ok() && zone != Some("")
            }
            Some(_) => false,
            None => {
                // url.go:606-632 (urlstrictcolons=1): from the first colon on, digits only.
                let port_ok = host.find(':').is_none_or(|i| digits(&host[i + 1..]));
                port_ok && host_text_ok(host)
            }
        }
    }

    /// The byte values of the `%XY` escapes in `s` (which has only well-formed ones).
    fn percent_escapes(s: &str) -> impl Iterator<Item = u8> + '_ {
        let b = s.as_bytes();
        (0..b.len()).filter(move |&i| b[i] == b'%').map(move |i| {
            u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap()
        })
    }

    mod generated {
        use super::*;
        use proptest::prelude::*;

        /// Text from the characters the classes turn on.
        fn junk(max: usize) -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    "[a-z0-9.:*-]",
                    Just("[".to_string()),
                    Just("]".to_string()),
                    Just("%".to_string()),
                    Just("%41".to_string()),
                    Just("%zz".to_string()),
                    Just("%25".to_string()),
                    Just("%C3%A9".to_string()),
                    Just("@".to_string()),
                    Just(" ".to_string()),
                    Just("\u{e9}".to_string()),
                    Just("\n".to_string()),
                    "[\"<>^\\\\!$&'()+,;=_~]",
                ],
                0..max,
            )
            .prop_map(|parts| parts.concat())
        }

        fn ipv6() -> impl Strategy<Value = String> {
            let zone = prop_oneof![
                4 => Just(String::new()),
                1 => Just("%25".to_string()),
                2 => "%25[a-z0-9]{1,3}",
                1 => Just("%25%41".to_string()),
                1 => Just("%25%C3".to_string()),
                1 => Just("%25 ".to_string()),
                1 => Just("%en0".to_string()),
            ];
            let address = prop_oneof![
                // Mostly well-formed: `::` and up to seven groups.
                2 => proptest::collection::vec("[0-9a-f]{1,4}", 0..8)
                    .prop_map(|g| format!("::{}", g.join(":"))),
                1 => proptest::collection::vec("[0-9a-fA-F]{1,4}", 8..9).prop_map(|g| g.join(":")),
                // Anything group-like, with an embedded IPv4 tail or not.
                2 => (
                    prop_oneof![Just(""), Just("::"), Just("::ffff:")],
                    proptest::collection::vec("[0-9a-fA-F]{0,5}", 1..9),
                    prop_oneof![Just(""), Just(":1.2.3.4"), Just(".1.2.3"), Just(":01.2.3.4")],
                )
                    .prop_map(|(lead, groups, tail)| format!("{lead}{}{tail}", groups.join(":"))),
            ];
            (address, zone).prop_map(|(a, z)| format!("{a}{z}"))
        }

        fn host() -> impl Strategy<Value = String> {
            prop_oneof![
                // Labels, some of them globs or junk.
                3 => proptest::collection::vec(
                    prop_oneof![
                        6 => "[a-z]{1,4}",
                        2 => Just("*".to_string()),
                        1 => Just("u[r-t]".to_string()),
                        1 => Just("[a-z]".to_string()),
                        2 => junk(3),
                    ],
                    1..4
                )
                .prop_map(|labels| labels.join(".")),
                // Bracketed: IPv6-like, globs, IPv4, with the bracket maybe not leading.
                2 => (
                    prop_oneof![4 => Just(""), 1 => Just("x"), 1 => Just("a.")],
                    prop_oneof![
                        8 => ipv6(),
                        1 => Just("*".to_string()),
                        1 => Just("127.0.0.1".to_string()),
                        1 => Just("a-z".to_string()),
                        1 => Just("%3A%3A1".to_string()),
                    ],
                    prop_oneof![4 => Just("]"), 1 => Just(""), 1 => Just("]]"), 1 => Just("]x"), 1 => Just("].io")],
                )
                    .prop_map(|(before, inside, close)| format!("{before}[{inside}{close}")),
                1 => junk(8),
            ]
        }

        /// Keys of the shapes `[scheme][userinfo@]host[:port][/path][?query][#fragment]`.
        fn key() -> impl Strategy<Value = String> {
            (
                prop_oneof![
                    Just(""),
                    Just(""),
                    Just("https://"),
                    Just("http://"),
                    Just("HTTPS://")
                ],
                proptest::option::weighted(0.3, junk(6)),
                host(),
                proptest::option::weighted(
                    0.4,
                    prop_oneof![
                        Just(":5000"),
                        Just(":"),
                        Just(":x"),
                        Just(":50:00"),
                        Just("::1"),
                    ],
                ),
                proptest::option::weighted(0.4, junk(5)),
                proptest::option::weighted(0.2, junk(4)),
                proptest::option::weighted(0.3, junk(4)),
            )
                .prop_map(|(scheme, user, host, port, path, query, fragment)| {
                    let mut k = scheme.to_string();
                    if let Some(u) = user {
                        k.push_str(&u);
                        k.push('@');
                    }
                    k.push_str(&host);
                    k.push_str(port.unwrap_or(""));
                    if let Some(p) = path {
                        k.push('/');
                        k.push_str(&p);
                    }
                    if let Some(q) = query {
                        k.push('?');
                        k.push_str(&q);
                    }
                    if let Some(f) = fragment {
                        k.push('#');
                        k.push_str(&f);
                    }
                    k
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]

            /// The injector drops a key (KeyError::Url) exactly when Go's url.Parse fails.
            #[test]
            fn keys_are_dropped_exactly_when_go_refuses_them(k in key()) {
                let dropped = matches!(RegistryKey::parse(&k), Err(KeyError::Url { .. }));
                prop_assert_eq!(dropped, !go_accepts(&k), "key {:?}", k);
            }

            /// The same on arbitrary text, which must not panic either.
            #[test]
            fn arbitrary_keys_are_dropped_exactly_when_go_refuses_them(k in any::<String>()) {
                let dropped = matches!(RegistryKey::parse(&k), Err(KeyError::Url { .. }));
                prop_assert_eq!(dropped, !go_accepts(&k), "key {:?}", k);
            }

            /// Whatever the key, a secret in its userinfo never reaches a message.
            #[test]
            fn userinfo_never_reaches_a_message(
                before in "[a-z:%@ \\[\"]{0,4}",
                after in "[a-z:%@ \\[\"]{0,4}",
                rest in key(),
            ) {
                let k = format!("{before}Zq9Secret{after}@{rest}");
                let text = match RegistryKey::parse(&k) {
                    Ok(key) => format!("{key} {key:?}"),
                    Err(e) => format!("{e} {e:?}"),
                };
                prop_assert!(!text.contains("Zq9Secret"), "{}", text);
            }
        }
    }
}
