//! Container image references, parsed and normalised the way the container runtime does it.
//!
//! This reproduces `ParseNormalizedNamed` of github.com/distribution/reference (v0.6), the parser
//! that kubelet, containerd and CRI-O share: `nginx` is `docker.io/library/nginx`. A pull secret
//! is only matched correctly if we see the registry host and path that the runtime will contact,
//! so the upstream quirks are kept on purpose and each one is pointed out where it happens.
//!
//! Hand-written rather than regex-based: the grammar is small, and a hand-written scanner
//! can be shown not to panic or backtrack on hostile input (image strings come from any user
//! who can create a pod).

use std::fmt;
use std::str::FromStr;

/// Where Docker Hub images live once normalised.
const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's legacy name, folded into [`DEFAULT_DOMAIN`] by upstream.
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Always a registry host, even though it has no '.' or ':'.
const LOCALHOST: &str = "localhost";
/// Namespace of Docker Hub's official images (`nginx` is `library/nginx`).
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// Upstream has limited only the path since v0.6.0 (distribution/reference#9); the host
/// does not count. kubelet and containerd 2 vendor that version.
const MAX_PATH_LEN: usize = 255;
/// `[\w][\w.-]{0,127}`.
const MAX_TAG_LEN: usize = 128;
/// Error messages quote the input; a megabyte of garbage must not end up in a log line.
const MAX_QUOTED_LEN: usize = 512;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The normalised form `name[:tag][@digest]`, kept whole so that display and `name()` are
    /// slices rather than fresh concatenations.
    full: String,
    /// Length of the domain at the start of `full`; 0 only for the empty-domain quirk.
    domain_len: usize,
    /// End of the name (domain + '/' + path) in `full`.
    name_len: usize,
    /// End of `:tag` in `full`; equal to `name_len` when there is no tag.
    tag_end: usize,
}

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The reference is the empty string.
    #[error("invalid image reference \"\": reference is empty")]
    Empty,
    /// The reference is a bare 64-character hex string, which upstream reserves for image IDs.
    #[error(
        "invalid image reference {reference:?}: a bare 64-character hex string is an image ID, not a repository name"
    )]
    ImageId {
        /// The offending reference (shortened if huge).
        reference: String,
    },
    /// The repository path contains uppercase letters.
    #[error("invalid image reference {reference:?}: repository name must be lowercase")]
    Uppercase {
        /// The offending reference (shortened if huge).
        reference: String,
    },
    /// There is no repository path at all (`:tag`, `host.example/`).
    #[error("invalid image reference {reference:?}: repository name is missing")]
    MissingRepository {
        /// The offending reference (shortened if huge).
        reference: String,
    },
    /// The path has an empty component (`a//b`, `a/`, `/a`).
    #[error("invalid image reference {reference:?}: empty path component")]
    EmptyPathComponent {
        /// The offending reference (shortened if huge).
        reference: String,
    },
    /// A path component breaks the grammar `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
    #[error(
        "invalid image reference {reference:?}: invalid path component {component:?} (lowercase letters and digits, separated by '.', '_', '__' or dashes)"
    )]
    InvalidPathComponent {
        /// The offending reference (shortened if huge).
        reference: String,
        /// The component at fault (shortened if huge).
        component: String,
    },
    /// The registry host is neither a DNS-style name nor a bracketed IPv6 literal.
    #[error("invalid image reference {reference:?}: invalid registry host {host:?}")]
    InvalidHost {
        /// The offending reference (shortened if huge).
        reference: String,
        /// The registry part at fault, port included (shortened if huge).
        host: String,
    },
    /// The registry port is empty or not all digits.
    #[error("invalid image reference {reference:?}: invalid port {port:?} (must be digits)")]
    InvalidPort {
        /// The offending reference (shortened if huge).
        reference: String,
        /// What follows the ':' after the host (shortened if huge).
        port: String,
    },
    /// The tag breaks `[\w][\w.-]{0,127}`.
    #[error(
        "invalid image reference {reference:?}: invalid tag {tag:?} (1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-')"
    )]
    InvalidTag {
        /// The offending reference (shortened if huge).
        reference: String,
        /// The tag at fault (shortened if huge).
        tag: String,
    },
    /// A digest of a known algorithm does not carry exactly the right number of lowercase hex digits.
    #[error(
        "invalid image reference {reference:?}: invalid digest ({algorithm} needs {hex_len} lowercase hex characters)"
    )]
    InvalidDigestHex {
        /// The offending reference (shortened if huge).
        reference: String,
        /// `sha256`, `sha384` or `sha512`.
        algorithm: &'static str,
        /// How many hex characters that algorithm requires.
        hex_len: usize,
    },
    /// The digest is not of the form `algorithm:hex` at all.
    #[error(
        "invalid image reference {reference:?}: invalid digest {digest:?} (expected algorithm:hex, e.g. sha256:<64 lowercase hex characters>)"
    )]
    InvalidDigest {
        /// The offending reference (shortened if huge).
        reference: String,
        /// The digest at fault (shortened if huge).
        digest: String,
    },
    /// The digest is well formed but its algorithm is not one the runtime can verify.
    #[error(
        "invalid image reference {reference:?}: unsupported digest algorithm {algorithm:?} (sha256, sha384 or sha512)"
    )]
    UnsupportedDigestAlgorithm {
        /// The offending reference (shortened if huge).
        reference: String,
        /// The algorithm at fault (shortened if huge).
        algorithm: String,
    },
    /// The repository path is longer than 255 characters.
    #[error(
        "invalid image reference {reference:?}: repository name is {len} characters long, more than 255"
    )]
    NameTooLong {
        /// The offending reference (shortened if huge).
        reference: String,
        /// Length of the normalised path.
        len: usize,
    },
}

impl ImageRef {
    /// Parses and normalises `reference` like distribution/reference's `ParseNormalizedNamed`.
    pub fn parse(reference: &str) -> Result<ImageRef, ImageError> {
        if reference.is_empty() {
            return Err(ImageError::Empty);
        }
        let quoted = || excerpt(reference);
        if is_image_id(reference) {
            return Err(ImageError::ImageId {
                reference: quoted(),
            });
        }

        let split = split_docker_domain(reference);

        // Upstream lowercases everything up to the first ':' of the remainder, which is the path
        // (plus, for a digest without tag, `@algorithm`; only lowercase algorithms exist).
        let remote = split
            .remainder
            .split_once(':')
            .map_or(split.remainder, |(remote, _)| remote);
        if has_uppercase(remote) {
            return Err(ImageError::Uppercase {
                reference: quoted(),
            });
        }

        // Neither path nor tag may contain '@' or ':', so the first of each is the separator.
        let (name_and_tag, digest) = match split.remainder.split_once('@') {
            Some((name_and_tag, digest)) => (name_and_tag, Some(digest)),
            None => (split.remainder, None),
        };
        let (path, tag) = match name_and_tag.split_once(':') {
            Some((path, tag)) => (path, Some(tag)),
            None => (name_and_tag, None),
        };

        // Upstream quirk: when the part before the first '/' was taken as a domain but is not a
        // valid one, its anchored name regexp falls back to reading the whole name as a path
        // with an empty domain. That only succeeds for things like `a_b.c/d` (a valid path
        // component that is not a valid host name); kubelet then looks up `a_b.c/d`.
        let domain_is_path = match check_domain(split.domain) {
            Ok(()) => false,
            Err(_) if !split.domain.contains(':') && is_path_component(split.domain) => true,
            Err(DomainProblem::Host) => {
                return Err(ImageError::InvalidHost {
                    reference: quoted(),
                    host: excerpt(split.domain),
                });
            }
            Err(DomainProblem::Port(port)) => {
                return Err(ImageError::InvalidPort {
                    reference: quoted(),
                    port: excerpt(port),
                });
            }
        };

        if path.is_empty() {
            return Err(ImageError::MissingRepository {
                reference: quoted(),
            });
        }
        for component in path.split('/') {
            if component.is_empty() {
                return Err(ImageError::EmptyPathComponent {
                    reference: quoted(),
                });
            }
            if !is_path_component(component) {
                return Err(ImageError::InvalidPathComponent {
                    reference: quoted(),
                    component: excerpt(component),
                });
            }
        }

        if let Some(tag) = tag
            && !is_tag(tag)
        {
            return Err(ImageError::InvalidTag {
                reference: quoted(),
                tag: excerpt(tag),
            });
        }

        if let Some(digest) = digest {
            check_digest(digest).map_err(|problem| match problem {
                DigestProblem::Hex { algorithm, hex_len } => ImageError::InvalidDigestHex {
                    reference: quoted(),
                    algorithm,
                    hex_len,
                },
                DigestProblem::Format => ImageError::InvalidDigest {
                    reference: quoted(),
                    digest: excerpt(digest),
                },
                DigestProblem::Unsupported(algorithm) => ImageError::UnsupportedDigestAlgorithm {
                    reference: quoted(),
                    algorithm: excerpt(algorithm),
                },
            })?;
        }

        let mut path_len = split.prefix.len() + path.len();
        if domain_is_path {
            path_len += split.domain.len() + 1;
        }
        if path_len > MAX_PATH_LEN {
            return Err(ImageError::NameTooLong {
                reference: quoted(),
                len: path_len,
            });
        }

        // With the quirk the text is the same, only the domain/path boundary differs.
        let mut full = String::with_capacity(
            split.domain.len() + 1 + split.prefix.len() + reference.len() + 2,
        );
        full.push_str(split.domain);
        full.push('/');
        full.push_str(split.prefix);
        full.push_str(path);
        let domain_len = if domain_is_path {
            0
        } else {
            split.domain.len()
        };
        let name_len = full.len();
        if let Some(tag) = tag {
            full.push(':');
            full.push_str(tag);
        }
        let tag_end = full.len();
        if let Some(digest) = digest {
            full.push('@');
            full.push_str(digest);
        }
        Ok(ImageRef {
            full,
            domain_len,
            name_len,
            tag_end,
        })
    }

    /// Registry host with optional port, e.g. `docker.io`, `localhost:5000`, `[::1]:5000`.
    ///
    /// Empty only in upstream's fallback for a first component that looks like a host but
    /// is not one (`a_b.c/d`); `path()` then holds the whole name, as upstream's does.
    pub fn domain(&self) -> &str {
        self.full.get(..self.domain_len).unwrap_or_default()
    }

    /// Repository path within the registry, e.g. `library/nginx`.
    pub fn path(&self) -> &str {
        let start = if self.domain_len == 0 {
            0
        } else {
            self.domain_len + 1
        };
        self.full.get(start..self.name_len).unwrap_or_default()
    }

    /// Tag, if the reference has one (`1.25` for `nginx:1.25`).
    pub fn tag(&self) -> Option<&str> {
        if self.tag_end > self.name_len {
            self.full.get(self.name_len + 1..self.tag_end)
        } else {
            None
        }
    }

    /// Digest, if the reference has one (`sha256:<64 hex>`).
    pub fn digest(&self) -> Option<&str> {
        if self.full.len() > self.tag_end {
            self.full.get(self.tag_end + 1..)
        } else {
            None
        }
    }

    /// Domain and path without tag or digest: the string kubelet's keyring looks up.
    pub fn name(&self) -> &str {
        self.full.get(..self.name_len).unwrap_or_default()
    }
}

impl fmt::Display for ImageRef {
    /// Writes the fully qualified normalised form `name[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl FromStr for ImageRef {
    type Err = ImageError;

    /// Same as [`ImageRef::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// Result of upstream's `splitDockerDomain`.
struct Split<'a> {
    /// Candidate registry; not validated yet.
    domain: &'a str,
    /// `library/` for Docker Hub names with a single path component, else empty.
    prefix: &'static str,
    /// Path, tag and digest after the domain.
    remainder: &'a str,
}

/// Upstream's `splitDockerDomain`: decides whether the first component is a registry.
fn split_docker_domain(name: &str) -> Split<'_> {
    let (domain, remainder) = match name.split_once('/') {
        // Upstream's FIXME: bare `localhost` or `example.com` is a Docker Hub repository.
        None => (DEFAULT_DOMAIN, name),
        Some((first, rest)) if first == LOCALHOST => (first, rest),
        Some((first, rest)) if first == LEGACY_DEFAULT_DOMAIN => (DEFAULT_DOMAIN, rest),
        Some((first, rest)) if first.contains(['.', ':']) => (first, rest),
        // Hub namespaces cannot be uppercase, so upstream reads `Foo/bar` as host `Foo`.
        Some((first, rest)) if has_uppercase(first) => (first, rest),
        Some(_) => (DEFAULT_DOMAIN, name),
    };
    let prefix = if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        OFFICIAL_REPO_PREFIX
    } else {
        ""
    };
    Split {
        domain,
        prefix,
        remainder,
    }
}

/// Mirrors Go's `strings.ToLower(s) != s`, which upstream uses for both of its case checks.
fn has_uppercase(s: &str) -> bool {
    if s.is_ascii() {
        return s.bytes().any(|b| b.is_ascii_uppercase());
    }
    s.chars().any(|c| {
        let mut lower = c.to_lowercase();
        lower.next() != Some(c) || lower.next().is_some()
    })
}

/// Upstream refuses `[a-f0-9]{64}` as a name because `docker run <id>` means an image ID.
fn is_image_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(is_lower_hex)
}

/// What is wrong with a registry domain.
enum DomainProblem<'a> {
    /// The host part breaks the grammar.
    Host,
    /// What follows the host's ':' is not a port number.
    Port(&'a str),
}

/// Validates `host[:port]`, host being a DNS-style name or `[ipv6]`.
fn check_domain(domain: &str) -> Result<(), DomainProblem<'_>> {
    let (host_ok, rest) = if let Some(bracketed) = domain.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((inner, rest)) => (
                !inner.is_empty() && inner.bytes().all(|b| b == b':' || b.is_ascii_hexdigit()),
                rest,
            ),
            None => (false, ""),
        }
    } else {
        let host_end = domain.find(':').unwrap_or(domain.len());
        match domain.split_at_checked(host_end) {
            Some((host, rest)) => (host.split('.').all(is_domain_component), rest),
            None => (false, ""),
        }
    };
    if !host_ok {
        return Err(DomainProblem::Host);
    }
    if rest.is_empty() {
        return Ok(());
    }
    match rest.strip_prefix(':') {
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        Some(port) => Err(DomainProblem::Port(port)),
        None => Err(DomainProblem::Host),
    }
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn is_domain_component(label: &str) -> bool {
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&b| b == b'-' || b.is_ascii_alphanumeric())
        }
        _ => false,
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let mut i = 0;
    loop {
        let run_start = i;
        while bytes.get(i).is_some_and(|&b| is_lower_alnum(b)) {
            i += 1;
        }
        if i == run_start {
            return false;
        }
        match bytes.get(i) {
            None => return true,
            Some(b'.') => i += 1,
            Some(b'_') => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            Some(b'-') => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            Some(_) => return false,
        }
    }
}

/// `[\w][\w.-]{0,127}`, where Go's `\w` is ASCII only.
fn is_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    bytes.len() <= MAX_TAG_LEN
        && bytes.first().is_some_and(|&b| is_word(b))
        && bytes.iter().all(|&b| is_word(b) || b == b'.' || b == b'-')
}

/// What is wrong with a digest.
enum DigestProblem<'a> {
    /// Not `algorithm:hex` at all.
    Format,
    /// Known algorithm, wrong hex.
    Hex {
        /// The algorithm.
        algorithm: &'static str,
        /// Required number of lowercase hex characters.
        hex_len: usize,
    },
    /// Well formed, but not an algorithm go-digest registers.
    Unsupported(&'a str),
}

/// The reference grammar's digest, then go-digest's `Digest.Validate`, which only knows
/// sha256/sha384/sha512 and wants exactly their length in lowercase hex.
fn check_digest(digest: &str) -> Result<(), DigestProblem<'_>> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(DigestProblem::Format);
    };
    let known = match algorithm {
        "sha256" => Some(("sha256", 64)),
        "sha384" => Some(("sha384", 96)),
        "sha512" => Some(("sha512", 128)),
        _ => None,
    };
    match known {
        Some((algorithm, hex_len)) => {
            if hex.len() == hex_len && hex.bytes().all(is_lower_hex) {
                Ok(())
            } else {
                Err(DigestProblem::Hex { algorithm, hex_len })
            }
        }
        None if is_digest_algorithm(algorithm)
            && hex.len() >= 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Err(DigestProblem::Unsupported(algorithm))
        }
        None => Err(DigestProblem::Format),
    }
}

/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*`.
fn is_digest_algorithm(algorithm: &str) -> bool {
    algorithm.split(['-', '_', '+', '.']).all(|part| {
        part.as_bytes()
            .first()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && part.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// `[a-z0-9]`.
fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-f0-9]`.
fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// Go's ASCII `\w`: `[0-9A-Za-z_]`.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Copy of `s` for an error message, cut at a character boundary when it is huge.
fn excerpt(s: &str) -> String {
    if s.len() <= MAX_QUOTED_LEN {
        return s.to_owned();
    }
    let mut end = MAX_QUOTED_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 3);
    out.push_str(s.get(..end).unwrap_or_default());
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn sha256() -> String {
        format!("sha256:{HEX64}")
    }

    /// One accepted reference and what it must normalise to.
    struct Case {
        input: String,
        domain: &'static str,
        path: String,
        tag: Option<String>,
        digest: Option<String>,
        display: String,
    }

    fn case(
        input: &str,
        domain: &'static str,
        path: &str,
        tag: Option<&str>,
        digest: Option<&str>,
        display: &str,
    ) -> Case {
        Case {
            input: input.to_owned(),
            domain,
            path: path.to_owned(),
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
            display: display.to_owned(),
        }
    }

    fn valid_cases() -> Vec<Case> {
        let d = sha256();
        let d = d.as_str();
        let sha384 = format!("sha384:{}", "a".repeat(96));
        let sha512 = format!("sha512:{}", "b".repeat(128));
        let tag128 = "t".repeat(128);
        vec![
            case(
                "nginx",
                "docker.io",
                "library/nginx",
                None,
                None,
                "docker.io/library/nginx",
            ),
            case(
                "nginx:1.25",
                "docker.io",
                "library/nginx",
                Some("1.25"),
                None,
                "docker.io/library/nginx:1.25",
            ),
            case(
                "user/app",
                "docker.io",
                "user/app",
                None,
                None,
                "docker.io/user/app",
            ),
            case(
                "user/app/sub",
                "docker.io",
                "user/app/sub",
                None,
                None,
                "docker.io/user/app/sub",
            ),
            case(
                "index.docker.io/x",
                "docker.io",
                "library/x",
                None,
                None,
                "docker.io/library/x",
            ),
            case(
                "index.docker.io/u/x",
                "docker.io",
                "u/x",
                None,
                None,
                "docker.io/u/x",
            ),
            case(
                "docker.io/x",
                "docker.io",
                "library/x",
                None,
                None,
                "docker.io/library/x",
            ),
            case(
                "docker.io/library/nginx:1.25",
                "docker.io",
                "library/nginx",
                Some("1.25"),
                None,
                "docker.io/library/nginx:1.25",
            ),
            case(
                "registry-1.docker.io/library/nginx",
                "registry-1.docker.io",
                "library/nginx",
                None,
                None,
                "registry-1.docker.io/library/nginx",
            ),
            case(
                "registry-1.docker.io/nginx",
                "registry-1.docker.io",
                "nginx",
                None,
                None,
                "registry-1.docker.io/nginx",
            ),
            case("localhost/x", "localhost", "x", None, None, "localhost/x"),
            case(
                "localhost:5000/x",
                "localhost:5000",
                "x",
                None,
                None,
                "localhost:5000/x",
            ),
            // Upstream's FIXME: with no '/', a host-looking name is a Hub repository.
            case(
                "localhost",
                "docker.io",
                "library/localhost",
                None,
                None,
                "docker.io/library/localhost",
            ),
            case(
                "localhost:5000",
                "docker.io",
                "library/localhost",
                Some("5000"),
                None,
                "docker.io/library/localhost:5000",
            ),
            case(
                "example.com",
                "docker.io",
                "library/example.com",
                None,
                None,
                "docker.io/library/example.com",
            ),
            case(
                "us.icr.io/ns/os-signal:1",
                "us.icr.io",
                "ns/os-signal",
                Some("1"),
                None,
                "us.icr.io/ns/os-signal:1",
            ),
            case(
                &format!("cp.icr.io/cp/cpd/db2@{d}"),
                "cp.icr.io",
                "cp/cpd/db2",
                None,
                Some(d),
                &format!("cp.icr.io/cp/cpd/db2@{d}"),
            ),
            case(
                "image-registry.openshift-image-registry.svc:5000/proj/app:latest",
                "image-registry.openshift-image-registry.svc:5000",
                "proj/app",
                Some("latest"),
                None,
                "image-registry.openshift-image-registry.svc:5000/proj/app:latest",
            ),
            case(
                "10.0.0.1:5000/a/b",
                "10.0.0.1:5000",
                "a/b",
                None,
                None,
                "10.0.0.1:5000/a/b",
            ),
            case("10.0.0.1/a", "10.0.0.1", "a", None, None, "10.0.0.1/a"),
            case(
                "[::1]:5000/a",
                "[::1]:5000",
                "a",
                None,
                None,
                "[::1]:5000/a",
            ),
            case(
                "[2001:db8::1]/a",
                "[2001:db8::1]",
                "a",
                None,
                None,
                "[2001:db8::1]/a",
            ),
            case(
                "[2001:DB8::1]:443/a:v",
                "[2001:DB8::1]:443",
                "a",
                Some("v"),
                None,
                "[2001:DB8::1]:443/a:v",
            ),
            case(
                &format!("nginx:1.25@{d}"),
                "docker.io",
                "library/nginx",
                Some("1.25"),
                Some(d),
                &format!("docker.io/library/nginx:1.25@{d}"),
            ),
            case(
                &format!("quay.io/a/b:v1@{d}"),
                "quay.io",
                "a/b",
                Some("v1"),
                Some(d),
                &format!("quay.io/a/b:v1@{d}"),
            ),
            case(
                &format!("nginx@{sha384}"),
                "docker.io",
                "library/nginx",
                None,
                Some(&sha384),
                &format!("docker.io/library/nginx@{sha384}"),
            ),
            case(
                &format!("nginx@{sha512}"),
                "docker.io",
                "library/nginx",
                None,
                Some(&sha512),
                &format!("docker.io/library/nginx@{sha512}"),
            ),
            // Uppercase first component: upstream takes it as a host, since Hub namespaces are lowercase.
            case("Foo/bar", "Foo", "bar", None, None, "Foo/bar"),
            case("Docker.io/x", "Docker.io", "x", None, None, "Docker.io/x"),
            case(
                "MyHost:5000/x",
                "MyHost:5000",
                "x",
                None,
                None,
                "MyHost:5000/x",
            ),
            case(
                "a.b-c.d/e__f/g-h/i.j/k---l:TAG_1.x-y",
                "a.b-c.d",
                "e__f/g-h/i.j/k---l",
                Some("TAG_1.x-y"),
                None,
                "a.b-c.d/e__f/g-h/i.j/k---l:TAG_1.x-y",
            ),
            case("host:0/x", "host:0", "x", None, None, "host:0/x"),
            case(
                "x:_tag",
                "docker.io",
                "library/x",
                Some("_tag"),
                None,
                "docker.io/library/x:_tag",
            ),
            case(
                &format!("nginx:{tag128}"),
                "docker.io",
                "library/nginx",
                Some(&tag128),
                None,
                &format!("docker.io/library/nginx:{tag128}"),
            ),
            // Upstream's empty-domain fallback: `a_b.c` is not a host but is a path component.
            case("a_b.c/d", "", "a_b.c/d", None, None, "a_b.c/d"),
            // `[ABC]` is uppercase, hence a host, and fits the IPv6 literal grammar (all hex).
            case("[ABC]/x", "[ABC]", "x", None, None, "[ABC]/x"),
        ]
    }

    #[test]
    fn parses_real_references() {
        for c in valid_cases() {
            let input = &c.input;
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.domain(), c.domain, "domain of {input}");
            assert_eq!(r.path(), c.path, "path of {input}");
            assert_eq!(r.tag(), c.tag.as_deref(), "tag of {input}");
            assert_eq!(r.digest(), c.digest.as_deref(), "digest of {input}");
            assert_eq!(r.to_string(), c.display, "display of {input}");
            let expected_name = if c.domain.is_empty() {
                c.path.clone()
            } else {
                format!("{}/{}", c.domain, c.path)
            };
            assert_eq!(r.name(), expected_name, "name of {input}");
            let again: ImageRef = c
                .display
                .parse()
                .unwrap_or_else(|e| panic!("{}: {e}", c.display));
            assert_eq!(again, r, "reparse of {}", c.display);
        }
    }

    /// Accept/reject vectors from distribution/reference's own normalisation tests.
    #[test]
    fn agrees_with_upstream_test_vectors() {
        let valid = [
            "docker/docker",
            "library/debian",
            "debian",
            "docker.io/docker/docker",
            "index.docker.io/library/debian",
            "127.0.0.1:5000/docker/docker",
            "127.0.0.1:5000/debian",
            "192.168.0.1",
            "192.168.0.1:80",
            "192.168.0.1:8/debian",
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "[fc00::1]:5000/docker",
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
            "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "Docker/docker",
            "DOCKER/docker",
            "docker-rules/docker",
            "docker---rules/docker",
            "d/docker",
            "dock__er/docker",
            "xn--n3h.com:18080/foo",
        ];
        for input in valid {
            assert!(
                ImageRef::parse(input).is_ok(),
                "{input}: {:?}",
                ImageRef::parse(input)
            );
        }
        let invalid = [
            "https://github.com/docker/docker",
            "docker/Docker",
            "-docker",
            "-docker/docker",
            "-docker.io/docker/docker",
            "docker///docker",
            "docker.io/docker/Docker",
            "[fc00::1]",
            "[fc00::1]:5000",
            "fc00::1:5000/debian",
            "[fe80::1%eth0]:5000/debian",
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "docker-/docker",
            "____/____",
            "_docker/_docker",
            "dock..er/docker",
            "dock_.er/docker",
            "dock-.er/docker",
            "docker/",
        ];
        for input in invalid {
            assert!(
                ImageRef::parse(input).is_err(),
                "{input} should be rejected"
            );
        }
        let split = [
            ("test.com/foo", "test.com", "foo"),
            ("test_com/foo", "docker.io", "test_com/foo"),
            ("test-com:8080/foo", "test-com:8080", "foo"),
            ("FOO/bar", "FOO", "bar"),
            ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
            (
                "127.0.0.1:8000/privatebase",
                "127.0.0.1:8000",
                "privatebase",
            ),
        ];
        for (input, domain, path) in split {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((r.domain(), r.path()), (domain, path), "{input}");
        }
    }

    #[test]
    fn tag_and_digest_are_not_part_of_the_name() {
        let r = ImageRef::parse(&format!("us.icr.io/ns/app:1@{}", sha256())).unwrap();
        assert_eq!(r.name(), "us.icr.io/ns/app");
        assert_eq!(
            ImageRef::parse("nginx").unwrap().name(),
            "docker.io/library/nginx"
        );
    }

    #[test]
    fn from_str_is_parse() {
        assert_eq!("nginx".parse::<ImageRef>(), ImageRef::parse("nginx"));
        assert_eq!("Nginx".parse::<ImageRef>(), ImageRef::parse("Nginx"));
    }

    #[test]
    fn equivalent_spellings_are_equal() {
        let a = ImageRef::parse("nginx").unwrap();
        for other in [
            "docker.io/nginx",
            "docker.io/library/nginx",
            "index.docker.io/library/nginx",
        ] {
            assert_eq!(ImageRef::parse(other).unwrap(), a, "{other}");
        }
        assert_ne!(
            ImageRef::parse("registry-1.docker.io/library/nginx").unwrap(),
            a
        );
    }

    fn reject(input: &str) -> String {
        match ImageRef::parse(input) {
            Ok(r) => panic!("{input:?} should be rejected, got {r}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn rejects_invalid_references_with_a_clear_message() {
        let upper_hex = HEX64.to_ascii_uppercase();
        let cases: Vec<(String, &str)> = vec![
            (
                "".into(),
                "invalid image reference \"\": reference is empty",
            ),
            (
                "Nginx".into(),
                "invalid image reference \"Nginx\": repository name must be lowercase",
            ),
            (
                "Nginx/App".into(),
                "invalid image reference \"Nginx/App\": repository name must be lowercase",
            ),
            (
                "localhost:5000/Foo".into(),
                ": repository name must be lowercase",
            ),
            (
                "a//b".into(),
                "invalid image reference \"a//b\": empty path component",
            ),
            (
                "a/".into(),
                "invalid image reference \"a/\": empty path component",
            ),
            ("/a".into(), ": empty path component"),
            ("quay.io//a".into(), ": empty path component"),
            (
                ":tag".into(),
                "invalid image reference \":tag\": repository name is missing",
            ),
            ("quay.io/".into(), ": repository name is missing"),
            ("quay.io/:v1".into(), ": repository name is missing"),
            (
                "nginx:".into(),
                "invalid image reference \"nginx:\": invalid tag \"\"",
            ),
            ("nginx:.x".into(), ": invalid tag \".x\""),
            ("nginx:-x".into(), ": invalid tag"),
            ("nginx:a:b".into(), ": invalid tag \"a:b\""),
            ("a/b:c/d".into(), ": invalid tag \"c/d\""),
            (format!("nginx:{}", "t".repeat(129)), ": invalid tag"),
            (
                "nginx@sha256:abc".into(),
                "invalid image reference \"nginx@sha256:abc\": invalid digest (sha256 needs 64 lowercase hex characters)",
            ),
            (
                format!("nginx@sha256:{upper_hex}"),
                ": invalid digest (sha256 needs 64 lowercase hex characters)",
            ),
            (
                format!("nginx@sha256:{HEX64}0"),
                ": invalid digest (sha256 needs 64 lowercase hex characters)",
            ),
            (
                format!("nginx@sha512:{HEX64}"),
                ": invalid digest (sha512 needs 128 lowercase hex characters)",
            ),
            (
                format!("nginx@md5+x:{HEX64}"),
                ": unsupported digest algorithm \"md5+x\"",
            ),
            (
                format!("nginx@sha256-{HEX64}"),
                ": invalid digest \"sha256-",
            ),
            (
                format!("nginx@sha256:{HEX64}@sha256:{HEX64}"),
                ": invalid digest (sha256 needs 64",
            ),
            ("nginx@".into(), ": invalid digest \"\""),
            (format!("nginx@1sha:{HEX64}"), ": invalid digest \"1sha:"),
            (
                format!("nginx@SHA256:{HEX64}"),
                ": repository name must be lowercase",
            ),
            (
                "host:port/x".into(),
                "invalid image reference \"host:port/x\": invalid port \"port\" (must be digits)",
            ),
            ("host:/x".into(), ": invalid port \"\""),
            ("host:50:00/x".into(), ": invalid port \"50:00\""),
            ("[::1]:x/a".into(), ": invalid port \"x\""),
            ("[::1]x/a".into(), ": invalid registry host \"[::1]x\""),
            ("[::1/a".into(), ": invalid registry host \"[::1\""),
            ("[]:5000/a".into(), ": invalid registry host \"[]:5000\""),
            ("[::g]/a".into(), ": invalid registry host \"[::g]\""),
            ("-a.com/b".into(), ": invalid registry host \"-a.com\""),
            ("a-.com/b".into(), ": invalid registry host \"a-.com\""),
            ("a..com/b".into(), ": invalid registry host \"a..com\""),
            (
                "a_b.c:5000/d".into(),
                ": invalid registry host \"a_b.c:5000\"",
            ),
            (
                "user@host.com/x".into(),
                ": invalid registry host \"user@host.com\"",
            ),
            ("Foo_Bar/x".into(), ": invalid registry host \"Foo_Bar\""),
            (
                "-a/b".into(),
                "invalid image reference \"-a/b\": invalid path component \"-a\"",
            ),
            ("[abc]/x".into(), ": invalid path component \"[abc]\""),
            ("a/b_".into(), ": invalid path component \"b_\""),
            ("a/b___c".into(), ": invalid path component \"b___c\""),
            ("a/b.-c".into(), ": invalid path component \"b.-c\""),
            ("a/b..c".into(), ": invalid path component \"b..c\""),
            ("ngïnx".into(), ": invalid path component \"ngïnx\""),
            ("a b".into(), ": invalid path component \"a b\""),
            (
                HEX64.into(),
                ": a bare 64-character hex string is an image ID",
            ),
            (
                format!("quay.io/{}", "a".repeat(256)),
                ": repository name is 256 characters long, more than 255",
            ),
            // "library/" counts towards the limit.
            ("a".repeat(248), ": repository name is 256 characters long"),
        ];
        for (input, expected) in cases {
            let message = reject(&input);
            assert!(
                message.contains(expected),
                "{input:?}: got {message:?}, want it to contain {expected:?}"
            );
            assert!(
                message.starts_with("invalid image reference \""),
                "{input:?}: {message}"
            );
        }
    }

    #[test]
    fn length_limit_is_on_the_path_only() {
        // Exactly 255 is fine, and the host does not count (distribution/reference >= v0.6.0).
        let path = "a".repeat(255);
        let long_host = format!("{}.example.com", "h".repeat(60));
        let r = ImageRef::parse(&format!("{long_host}/{path}")).unwrap();
        assert_eq!(r.path().len(), 255);
        assert!(r.name().len() > 255);
        assert!(ImageRef::parse(&"a".repeat(247)).is_ok());
    }

    #[test]
    fn image_ids_are_only_exact_lowercase_hex64() {
        assert!(ImageRef::parse(&HEX64.to_ascii_uppercase()).is_err());
        assert!(ImageRef::parse(&HEX64[..63]).is_ok());
        assert!(ImageRef::parse(&format!("{HEX64}:v1")).is_ok());
    }

    #[test]
    fn huge_input_gives_a_bounded_error() {
        let huge = format!("{}É", "A".repeat(1 << 20));
        let message = reject(&huge);
        assert!(message.len() < 2 * MAX_QUOTED_LEN, "{}", message.len());
        let huge_path = format!("quay.io/{}", "a".repeat(1 << 20));
        assert!(reject(&huge_path).contains("more than 255"));
        // A multibyte character straddling the cut must not panic.
        let cut = format!("{}é{}", "a".repeat(MAX_QUOTED_LEN - 1), "b".repeat(10));
        assert!(excerpt(&cut).ends_with('…'));
    }

    #[test]
    fn errors_are_values() {
        assert_eq!(ImageRef::parse(""), Err(ImageError::Empty));
        assert_eq!(
            ImageRef::parse("a//b"),
            Err(ImageError::EmptyPathComponent {
                reference: "a//b".into()
            })
        );
        assert_eq!(
            ImageRef::parse("nginx@sha256:abc"),
            Err(ImageError::InvalidDigestHex {
                reference: "nginx@sha256:abc".into(),
                algorithm: "sha256",
                hex_len: 64
            })
        );
    }

    // ---- property tests ----

    fn domain_component() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?"
    }

    /// A registry as the user writes it; all of these are taken as a domain by the split rule.
    fn registry() -> impl Strategy<Value = String> {
        let port = proptest::option::of("[0-9]{1,5}");
        let with_port = |host: String, port: Option<String>| match port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        prop_oneof![
            // DNS name with at least one dot.
            (
                proptest::collection::vec(domain_component(), 2..5),
                port.clone()
            )
                .prop_map(move |(labels, p)| with_port(labels.join("."), p)),
            // Single label: needs a port (or localhost, or uppercase) to count as a registry.
            (domain_component(), "[0-9]{1,5}").prop_map(|(h, p)| format!("{h}:{p}")),
            "[A-Z][a-zA-Z0-9]{0,6}",
            port.clone()
                .prop_map(move |p| with_port(LOCALHOST.to_owned(), p)),
            // IPv4.
            (proptest::array::uniform4(0u8..=255), port.clone()).prop_map(move |(o, p)| {
                with_port(format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3]), p)
            }),
            // IPv6 literal, always with a ':' inside.
            (proptest::collection::vec("[a-fA-F0-9]{0,4}", 2..8), port)
                .prop_map(move |(groups, p)| with_port(format!("[{}]", groups.join(":")), p)),
            Just("index.docker.io".to_owned()),
            Just("docker.io".to_owned()),
            Just("registry-1.docker.io".to_owned()),
        ]
    }

    fn path_component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,3}"
    }

    fn path() -> impl Strategy<Value = String> {
        proptest::collection::vec(path_component(), 1..5).prop_map(|c| c.join("/"))
    }

    fn tag() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
    }

    fn digest() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-f0-9]{64}".prop_map(|h| format!("sha256:{h}")),
            "[a-f0-9]{96}".prop_map(|h| format!("sha384:{h}")),
            "[a-f0-9]{128}".prop_map(|h| format!("sha512:{h}")),
        ]
    }

    /// What the runtime does with a registry the split rule accepted.
    fn expected(registry: Option<&str>, path: &str) -> (String, String) {
        let domain = match registry {
            None | Some("index.docker.io") => "docker.io",
            Some(other) => other,
        };
        let path = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        (domain.to_owned(), path)
    }

    fn assemble(
        registry: Option<&str>,
        path: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> String {
        let mut s = String::new();
        if let Some(r) = registry {
            s.push_str(r);
            s.push('/');
        }
        s.push_str(path);
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    proptest! {
        #[test]
        fn grammar_generated_references_parse_and_round_trip(
            registry in proptest::option::of(registry()),
            path in path(),
            tag in proptest::option::of(tag()),
            digest in proptest::option::of(digest()),
        ) {
            // Without a registry, a first component with a '.' would be read as one.
            prop_assume!(
                registry.is_some()
                    || !path.contains('/')
                    || !path.split('/').next().is_some_and(|first| first.contains('.'))
            );
            let input = assemble(registry.as_deref(), &path, tag.as_deref(), digest.as_deref());
            let r = ImageRef::parse(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (want_domain, want_path) = expected(registry.as_deref(), &path);
            prop_assert_eq!(r.domain(), want_domain.as_str());
            prop_assert_eq!(r.path(), want_path.as_str());
            prop_assert_eq!(r.tag(), tag.as_deref());
            prop_assert_eq!(r.digest(), digest.as_deref());
            prop_assert_eq!(r.name(), format!("{want_domain}/{want_path}"));
            prop_assert_eq!(
                r.to_string(),
                assemble(Some(&want_domain), &want_path, tag.as_deref(), digest.as_deref())
            );

            let shown = r.to_string();
            let again = ImageRef::parse(&shown).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&again, &r);
            prop_assert_eq!(again.to_string(), shown);
        }

        #[test]
        fn uppercase_in_the_path_is_always_rejected(
            registry in registry(),
            head in "[a-z0-9]{0,5}",
            upper in "[A-Z]",
            tail in "[a-z0-9]{0,5}",
        ) {
            let input = format!("{registry}/{head}{upper}{tail}");
            let err = ImageRef::parse(&input).err();
            prop_assert!(matches!(err, Some(ImageError::Uppercase { .. })), "{:?}", err);
        }

        #[test]
        fn never_panics_on_arbitrary_strings(s in any::<String>()) {
            check_total(&s)?;
        }

        #[test]
        fn never_panics_on_reference_like_strings(s in "[a-zA-Z0-9/:@.\\[\\]_\\-]{0,64}") {
            check_total(&s)?;
        }

        #[test]
        fn never_panics_on_mutated_valid_references(
            path in path(),
            digest in digest(),
            cut in 0usize..200,
            insert in "[/:@.\\[\\]A-Z_\\-é]{0,3}",
        ) {
            let base = format!("quay.io:443/{path}:v1@{digest}");
            let at = cut.min(base.len());
            let mutated = format!("{}{insert}{}", &base[..at], &base[at..]);
            check_total(&mutated)?;
        }
    }

    /// Parsing always returns; a success is stable under display, a failure quotes the input.
    fn check_total(s: &str) -> Result<(), TestCaseError> {
        match ImageRef::parse(s) {
            Ok(r) => {
                let shown = r.to_string();
                let again = ImageRef::parse(&shown)
                    .map_err(|e| TestCaseError::fail(format!("{s:?} -> {shown:?}: {e}")))?;
                prop_assert_eq!(&again, &r);
                prop_assert_eq!(again.to_string(), shown);
            }
            Err(e) => {
                prop_assert!(e.to_string().starts_with("invalid image reference \""));
            }
        }
        Ok(())
    }
}
