//! Go's `net/url.Parse` for `http://` and `https://` URLs, the only ones kubelet's keyring
//! parses, ported from Go 1.26.4: `src/net/url/url.go` (`Parse`, `parse`, `parseAuthority`,
//! `parseHost`, `validUserinfo`, `unescape`, `validOptionalPort`, `setPath`, `setFragment`),
//! its `encoding_table.go`, and `src/net/netip/netip.go` (`ParseAddr`) which `parseHost` calls
//! for a bracketed host.
//!
//! Kubernetes 1.36 is built with Go 1.26 (1.26.2 to 1.26.6 parse identically; 1.26.0 still let
//! a `[` further into the host reach the IPv6 check) and declares `godebug default=go1.26`, so
//! Go 1.26's `urlstrictcolons=1` default holds: a host outside brackets has at most one colon.
//!
//! The port refuses exactly what Go refuses and yields the same `Host` and `Path` (both
//! unescaped, as Go stores them). Error texts follow Go's, except that nothing from the
//! userinfo part is ever quoted: it is credential material.

use std::borrow::Cow;

/// What kubelet reads of a parsed URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url<'a> {
    /// `URL.Host`: `host[:port]`, unescaped; an IPv6 literal keeps its brackets.
    pub host: Cow<'a, str>,
    /// `URL.Path`, unescaped.
    pub path: Cow<'a, str>,
}

/// `url.Parse(raw)` for a `raw` that starts with `https://` or `http://`.
pub fn parse(raw: &str) -> Result<Url<'_>, String> {
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .ok_or_else(|| "no http:// or https:// scheme".to_string())?;
    parse_after_slashes(rest)
}

/// `url.Parse("https://" + schemeless)`, which is kubelet's `ParseSchemelessURL`, without
/// building the string.
pub fn parse_schemeless(schemeless: &str) -> Result<Url<'_>, String> {
    parse_after_slashes(schemeless)
}

/// Everything after `scheme://`. The scheme is `http` or `https`, which matters to
/// `parseHost`'s colon rule only, and that rule is the same for both.
fn parse_after_slashes(rest: &str) -> Result<Url<'_>, String> {
    // url.go:400 (Parse): the fragment is cut off at the first `#` before anything else, so
    // a `?`, `/` or `@` after it is fragment text.
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (rest, None),
    };
    // url.go:435 (parse): control bytes are refused, but only before the fragment.
    if before_fragment.bytes().any(|b| b < b' ' || b == 0x7f) {
        return Err("net/url: invalid control character in URL".to_string());
    }
    // url.go:456-460: the query is cut off at the first `?` (a lone trailing `?` sets
    // ForceQuery, with the same effect on the rest) and never validated by Parse.
    let before_query = before_fragment
        .split_once('?')
        .map_or(before_fragment, |(r, _)| r);
    // url.go:487: the authority runs to the first `/`; the rest, `/` included, is the path.
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let host = parse_authority(authority)?;
    // url.go:505 -> setPath (url.go:659): unescape(p, encodePath) checks escapes only.
    let path = unescape(path, Mode::Path).map_err(|f| f.message())?;
    // url.go:404-408: a non-empty fragment goes through setFragment (url.go:726), i.e.
    // unescape(f, encodeFragment): escapes only, and control bytes are fine there.
    if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
        unescape(fragment, Mode::Fragment).map_err(|f| f.message())?;
    }
    Ok(Url { host, path })
}

/// `parseAuthority` (url.go:511): the host is checked first, then the userinfo.
fn parse_authority(authority: &str) -> Result<Cow<'_, str>, String> {
    // url.go:512: the last `@` separates them, so the userinfo may itself hold `@`.
    let (userinfo, host) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let host = parse_host(host)?;
    if let Some(userinfo) = userinfo {
        // url.go:525 and validUserinfo (url.go:1273).
        if !userinfo.chars().all(userinfo_char) {
            return Err("net/url: invalid userinfo".to_string());
        }
        // url.go:529-540: username and password (split at the first `:`) are unescaped with
        // encodeUserPassword, which checks escapes only. The text is not quoted: it is secret.
        for part in userinfo.splitn(2, ':') {
            if unescape(part, Mode::UserPassword).is_err() {
                return Err("invalid URL escape in userinfo".to_string());
            }
        }
    }
    Ok(host)
}

/// validUserinfo (url.go:1273): RFC 3986 §3.2.1 characters, plus `%` (escapes are checked
/// later) and `@` (go.dev/issue/3439). Anything else, every non-ASCII character included, is
/// refused.
fn userinfo_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.'
                | '_'
                | ':'
                | '~'
                | '!'
                | '$'
                | '&'
                | '\''
                | '('
                | ')'
                | '*'
                | '+'
                | ','
                | ';'
                | '='
                | '%'
                | '@'
        )
}

/// `parseHost` (url.go:548) for the `http`/`https` schemes.
fn parse_host(host: &str) -> Result<Cow<'_, str>, String> {
    match host.rfind('[') {
        // url.go:549: a `[` anywhere but at the start is refused outright (Go 1.26.2; from
        // 1.25.2 such a host already failed the IP-literal checks below, before 1.25.2 it
        // passed), so a `[...]` glob inside a label (`u[r-t].icr.io`) can no longer be a key.
        Some(i) if i > 0 => Err("invalid IP-literal".to_string()),
        Some(_) => parse_ip_literal(host),
        None => {
            // url.go:606-632: with more than one colon, http and https URLs take the port from
            // the first colon under urlstrictcolons=1 (the Go 1.26 default), so the "port"
            // holds a colon and fails validOptionalPort: `a:b:1` and `::1` are refused.
            if let Some(i) = host.find(':') {
                let colon_port = &host[i..];
                if !valid_optional_port(colon_port) {
                    return Err(format!("invalid port {colon_port:?} after host"));
                }
            }
            // url.go:635: the host's characters and escapes.
            unescape(host, Mode::Host).map_err(|f| f.message())
        }
    }
}

/// The IP-literal branch of `parseHost` (url.go:551-605): `[` IPv6 address, optional `%25`
/// zone, `]`, optional `:port`.
fn parse_ip_literal(host: &str) -> Result<Cow<'_, str>, String> {
    // url.go:554: the last `]` closes the literal.
    let close = host
        .rfind(']')
        .ok_or_else(|| "missing ']' in host".to_string())?;
    let colon_port = &host[close + 1..];
    if !valid_optional_port(colon_port) {
        return Err(format!("invalid port {colon_port:?} after host"));
    }
    // `host` starts with `[` and `close` is the index of a later `]`, so this is in bounds.
    let hostname = &host[1..close];
    // url.go:576: `%25` starts the zone, which has its own escaping rules (RFC 6874).
    let unescaped: Cow<'_, str> = match hostname.find("%25") {
        Some(z) => {
            let address = unescape(&hostname[..z], Mode::Host).map_err(|f| f.message())?;
            let zone = unescape(&hostname[z..], Mode::Zone).map_err(|f| f.message())?;
            match (address, zone) {
                (Cow::Borrowed(_), Cow::Borrowed(_)) => Cow::Borrowed(hostname),
                (a, z) => Cow::Owned(format!("{a}{z}")),
            }
        }
        None => unescape(hostname, Mode::Host).map_err(|f| f.message())?,
    };
    // url.go:598-604 (CVE-2025-47912): only an IPv6 address may be bracketed, so `[*]`,
    // `[a-z]` and `[127.0.0.1]` are refused; an IPv4-mapped IPv6 address is not IPv4.
    match parse_addr(&unescaped) {
        Ok(Family::V6) => {}
        Ok(Family::V4) => return Err("invalid IP-literal".to_string()),
        Err(msg) => return Err(format!("invalid host: ParseAddr({unescaped:?}): {msg}")),
    }
    // url.go:605: "[" + unescapedHostname + "]" + unescapedColonPort; the port is digits.
    Ok(match unescaped {
        Cow::Borrowed(_) => Cow::Borrowed(host),
        Cow::Owned(u) => Cow::Owned(format!("[{u}]{colon_port}")),
    })
}

/// validOptionalPort (url.go:761): empty, or `:` followed by ASCII digits only.
fn valid_optional_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// The `unescape` modes kubelet's URLs go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
    Zone,
    UserPassword,
    Fragment,
}

/// Why `unescape` failed.
#[derive(Debug)]
enum Fault {
    /// Go's EscapeError: the offending `%` and up to two bytes after it.
    Escape(String),
    /// Go's InvalidHostError.
    HostChar(char),
}

impl Fault {
    fn message(&self) -> String {
        match self {
            Fault::Escape(s) => format!("invalid URL escape {s:?}"),
            Fault::HostChar(c) => format!("invalid character {:?} in host name", c.to_string()),
        }
    }
}

/// shouldEscape(c, encodeHost), which equals shouldEscape(c, encodeZone): in
/// `encoding_table.go` every byte marked for one is marked for the other. Go leaves alone
/// the RFC 3986 unreserved characters, the sub-delims, and `:`, `[`, `]`, `<`, `>`, `"`.
fn host_must_escape(c: u8) -> bool {
    !(c.is_ascii_alphanumeric()
        || matches!(
            c,
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
        ))
}

fn unhex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// `unescape` (url.go:105). Decoded bytes that are not UTF-8 become U+FFFD: such a host or
/// path can never equal an image's (references are ASCII) and the replacement keeps every
/// ASCII byte, so acceptance and matching are unchanged.
fn unescape(s: &str, mode: Mode) -> Result<Cow<'_, str>, Fault> {
    let bytes = s.as_bytes();
    let mut escapes = 0;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'%' {
            escapes += 1;
            let Some(&[h, l]) = bytes.get(i + 1..i + 3) else {
                return Err(Fault::Escape(lossy(&bytes[i..])));
            };
            if !h.is_ascii_hexdigit() || !l.is_ascii_hexdigit() {
                return Err(Fault::Escape(lossy(&bytes[i..i + 3])));
            }
            let escape = &bytes[i..i + 3];
            // url.go:126: a host may escape only non-ASCII bytes, and `%25` (RFC 6874).
            if mode == Mode::Host && unhex(h) < 8 && escape != b"%25" {
                return Err(Fault::Escape(lossy(escape)));
            }
            // url.go:129-141: a zone may escape only bytes it could hold unescaped, or a
            // space; non-ASCII bytes count as needing an escape, so they are refused here.
            if mode == Mode::Zone {
                let v = (unhex(h) << 4) | unhex(l);
                if escape != b"%25" && v != b' ' && host_must_escape(v) {
                    return Err(Fault::Escape(lossy(escape)));
                }
            }
            i += 3;
        } else {
            // url.go:147: raw ASCII bytes are checked in the host and zone only.
            if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && host_must_escape(c) {
                return Err(Fault::HostChar(c as char));
            }
            i += 1;
        }
    }
    if escapes == 0 {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Every `%` was checked above to be followed by two hex digits.
            out.push((unhex(bytes[i + 1]) << 4) | unhex(bytes[i + 2]));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(Cow::Owned(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What `netip.ParseAddr` made of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// `netip.ParseAddr` (netip.go:114): the first `.`, `:` or `%` decides the family.
fn parse_addr(s: &str) -> Result<Family, &'static str> {
    for b in s.bytes() {
        match b {
            b'.' => return parse_ipv4_fields(s.as_bytes()).map(|()| Family::V4),
            b':' => return parse_ipv6(s).map(|()| Family::V6),
            b'%' => return Err("missing IPv6 address"),
            _ => {}
        }
    }
    Err("unable to parse IP")
}

/// `parseIPv4Fields` (netip.go:154): four decimal octets, no leading zeros, none above 255.
fn parse_ipv4_fields(s: &[u8]) -> Result<(), &'static str> {
    let mut val: u32 = 0;
    let mut pos = 0;
    let mut digits = 0;
    for (i, &c) in s.iter().enumerate() {
        if c.is_ascii_digit() {
            if digits == 1 && val == 0 {
                return Err("IPv4 field has octet with leading zero");
            }
            val = val * 10 + u32::from(c - b'0');
            digits += 1;
            if val > 255 {
                return Err("IPv4 field has value >255");
            }
        } else if c == b'.' {
            if i == 0 || i == s.len() - 1 || s[i - 1] == b'.' {
                return Err("IPv4 field must have at least one digit");
            }
            if pos == 3 {
                return Err("IPv4 address too long");
            }
            pos += 1;
            val = 0;
            digits = 0;
        } else {
            return Err("unexpected character");
        }
    }
    if pos < 3 {
        return Err("IPv4 address too short");
    }
    Ok(())
}

/// `parseIPv6` (netip.go:205): up to eight groups of at most four hex digits, one `::`
/// standing for at least one zero group, an optional embedded IPv4 address in the last 32
/// bits, and an optional non-empty `%zone`.
fn parse_ipv6(input: &str) -> Result<(), &'static str> {
    let mut s = input.as_bytes();
    if let Some(i) = input.find('%') {
        if i + 1 == input.len() {
            return Err("zone must be a non-empty string");
        }
        s = &s[..i];
    }
    let mut ellipsis: Option<usize> = None;
    if s.starts_with(b"::") {
        ellipsis = Some(0);
        s = &s[2..];
        if s.is_empty() {
            return Ok(());
        }
    }
    // `i` counts address bytes filled, as in Go.
    let mut i = 0;
    while i < 16 {
        let mut off = 0;
        let mut acc: u32 = 0;
        while off < s.len() {
            let c = s[off];
            if !c.is_ascii_hexdigit() {
                break;
            }
            acc = (acc << 4) + u32::from(unhex(c));
            if off > 3 {
                return Err("each group must have 4 or less digits");
            }
            if acc > 0xffff {
                return Err("IPv6 field has value >=2^16");
            }
            off += 1;
        }
        if off == 0 {
            return Err("each colon-separated field must have at least one digit");
        }
        if off < s.len() && s[off] == b'.' {
            if ellipsis.is_none() && i != 12 {
                return Err("embedded IPv4 address must replace the final 2 fields of the address");
            }
            if i + 4 > 16 {
                return Err(
                    "too many hex fields to fit an embedded IPv4 at the end of the address",
                );
            }
            parse_ipv4_fields(s)?;
            s = &[];
            i += 4;
            break;
        }
        i += 2;
        s = &s[off..];
        if s.is_empty() {
            break;
        }
        if s[0] != b':' {
            return Err("unexpected character, want colon");
        } else if s.len() == 1 {
            return Err("colon must be followed by more characters");
        }
        s = &s[1..];
        if s[0] == b':' {
            if ellipsis.is_some() {
                return Err("multiple :: in address");
            }
            ellipsis = Some(i);
            s = &s[1..];
            if s.is_empty() {
                break;
            }
        }
    }
    if !s.is_empty() {
        return Err("trailing garbage after address");
    }
    if i < 16 {
        if ellipsis.is_none() {
            return Err("address string too short");
        }
    } else if ellipsis.is_some() {
        return Err("the :: must expand to at least one field of zeros");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(raw: &str) -> Result<String, String> {
        parse(raw).map(|u| u.host.into_owned())
    }

    #[test]
    fn hosts_and_paths_come_out_unescaped_as_in_go() {
        let cases = [
            ("https://quay.io", "quay.io", ""),
            ("https://user:pass@quay.io/a%2Fb", "quay.io", "/a/b"),
            ("https://a%C3%A9.io", "a\u{e9}.io", ""),
            ("https://[::1]:5000/x", "[::1]:5000", "/x"),
            // RFC 6874 zone: `%25` is the `%` that starts it.
            ("https://[fe80::1%25en0]:5000", "[fe80::1%en0]:5000", ""),
            ("https://quay.io?x=%zz#frag", "quay.io", ""),
            ("https://quay.io#a?b/c@d", "quay.io", ""),
            ("https:///x", "", "/x"),
            // A `]` outside brackets is an ordinary host byte for Go.
            ("https://a]b.io", "a]b.io", ""),
        ];
        for (raw, host, path) in cases {
            let url = parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(
                (url.host.as_ref(), url.path.as_ref()),
                (host, path),
                "{raw}"
            );
        }
    }

    #[test]
    fn refusals_carry_go_reasons() {
        let cases = [
            ("https://u[r-t].icr.io", "invalid IP-literal"),
            ("https://[127.0.0.1]:5000", "invalid IP-literal"),
            (
                "https://[*]:5000",
                "invalid host: ParseAddr(\"*\"): unable to parse IP",
            ),
            ("https://[::1", "missing ']' in host"),
            ("https://[::1]x", "invalid port \"x\" after host"),
            ("https://[fe80::1%25]", "zone must be a non-empty string"),
            ("https://a:b:1", "invalid port \":b:1\" after host"),
            ("https://a b@quay.io", "net/url: invalid userinfo"),
            ("https://u%zz@quay.io", "invalid URL escape in userinfo"),
            ("https://quay.io#%zz", "invalid URL escape \"%zz\""),
            ("https://quay.io/%4", "invalid URL escape \"%4\""),
            ("https://a%41.io", "invalid URL escape \"%41\""),
            ("https://a<b>^.io", "invalid character \"^\" in host name"),
            (
                "https://quay.io/\u{7f}",
                "net/url: invalid control character in URL",
            ),
        ];
        for (raw, want) in cases {
            let err = host_of(raw).expect_err(raw);
            assert!(err.contains(want), "{raw}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn netip_parse_addr_rules() {
        let cases = [
            ("::", Ok(Family::V6)),
            ("::1", Ok(Family::V6)),
            ("1:2:3:4:5:6:7:8", Ok(Family::V6)),
            ("1:2:3:4:5:6:7::", Ok(Family::V6)),
            ("::ffff:1.2.3.4", Ok(Family::V6)),
            ("1:2:3:4:5:6:1.2.3.4", Ok(Family::V6)),
            ("fe80::1%en0", Ok(Family::V6)),
            ("1.2.3.4", Ok(Family::V4)),
            (
                "1:2:3:4:5:6:7:8::",
                Err("the :: must expand to at least one field of zeros"),
            ),
            (
                "1:2:3:4:5:1.2.3.4",
                Err("embedded IPv4 address must replace the final 2 fields of the address"),
            ),
            (
                "::ffff:01.2.3.4",
                Err("IPv4 field has octet with leading zero"),
            ),
            ("12345::", Err("each group must have 4 or less digits")),
            ("1::2::3", Err("multiple :: in address")),
            ("1:2", Err("address string too short")),
            ("1:", Err("colon must be followed by more characters")),
            ("::1%", Err("zone must be a non-empty string")),
            ("%en0", Err("missing IPv6 address")),
            (
                "::g",
                Err("each colon-separated field must have at least one digit"),
            ),
            ("1:2:3:4:5:6:7:8:9", Err("trailing garbage after address")),
            ("abc", Err("unable to parse IP")),
            ("1.2.3", Err("IPv4 address too short")),
        ];
        for (addr, want) in cases {
            assert_eq!(parse_addr(addr), want, "{addr}");
        }
    }
}
