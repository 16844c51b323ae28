//! Go `path/filepath.Match` glob patterns, the syntax kubelet uses for registry host labels and
//! the syntax the config uses for namespace and ServiceAccount names.
//!
//! Go's matcher reports a malformed pattern as an error, and kubelet then treats the key as not
//! matching. Compiling up front gives the same answer and lets config validation name the fault.

use std::fmt;

/// A compiled glob: `*` (any run of characters but `/`), `?` (one character but `/`),
/// `[...]` / `[^...]` classes with ranges, and `\` escapes.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
    /// A pattern without metacharacters is compared as a string: the common case, and cheap.
    literal: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Char(char),
    AnyChar,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Why a glob pattern is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// The pattern is the empty string, which would only ever match an empty name.
    #[error("pattern is empty")]
    Empty,
    /// A `[` class is never closed.
    #[error("pattern {0:?}: unterminated character class")]
    UnterminatedClass(String),
    /// A class is empty or starts with `-` or `]`, which Go rejects.
    #[error("pattern {0:?}: malformed character class")]
    BadClass(String),
    /// A `\` at the very end escapes nothing.
    #[error("pattern {0:?}: trailing backslash")]
    TrailingEscape(String),
}

impl Glob {
    /// Compiles a pattern, rejecting exactly what Go's `filepath.Match` reports as malformed.
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        let mut literal = true;
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    literal = false;
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => {
                    literal = false;
                    tokens.push(Token::AnyChar);
                }
                '\\' => {
                    literal = false;
                    let escaped = chars
                        .next()
                        .ok_or_else(|| GlobError::TrailingEscape(pattern.to_string()))?;
                    tokens.push(Token::Char(escaped));
                }
                '[' => {
                    literal = false;
                    tokens.push(parse_class(&mut chars, pattern)?);
                }
                c => tokens.push(Token::Char(c)),
            }
        }
        Ok(Glob {
            source: pattern.to_string(),
            tokens,
            literal,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the pattern has no metacharacters and so matches only itself.
    pub fn is_literal(&self) -> bool {
        self.literal
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        if self.literal {
            return self.source == name;
        }
        if !name.contains('/') {
            return self.matches_without_separator(name);
        }
        let text: Vec<char> = name.chars().collect();
        // possible[j]: the tokens seen so far can consume exactly text[..j]. Names here are
        // short, so a table is simpler than Go's chunk scanner and gives the same answers.
        let mut possible = vec![false; text.len() + 1];
        possible[0] = true;
        for token in &self.tokens {
            let mut next = vec![false; text.len() + 1];
            match token {
                Token::Star => {
                    let mut reachable = false;
                    for j in 0..=text.len() {
                        if possible[j] {
                            reachable = true;
                        }
                        next[j] = reachable;
                        if j < text.len() && text[j] == '/' {
                            reachable = false;
                        }
                    }
                }
                single => {
                    for j in 0..text.len() {
                        if possible[j] && single_matches(single, text[j]) {
                            next[j + 1] = true;
                        }
                    }
                }
            }
            possible = next;
        }
        possible[text.len()]
    }
}

impl Glob {
    /// Greedy matching with backtracking to the last `*`: exact when the name has no `/` (a
    /// star may then span anything), and allocation-free, which matters on the admission path.
    fn matches_without_separator(&self, name: &str) -> bool {
        let tokens = &self.tokens;
        let (mut t, mut i) = (0usize, 0usize);
        // (token after the last star, name position that star has consumed up to)
        let mut star: Option<(usize, usize)> = None;
        loop {
            if let Some(token) = tokens.get(t) {
                if *token == Token::Star {
                    star = Some((t + 1, i));
                    t += 1;
                    continue;
                }
                if let Some(c) = name[i..].chars().next()
                    && single_matches(token, c)
                {
                    t += 1;
                    i += c.len_utf8();
                    continue;
                }
            } else if i == name.len() {
                return true;
            }
            let Some((after_star, consumed)) = star else {
                return false;
            };
            let Some(c) = name[consumed..].chars().next() else {
                return false;
            };
            star = Some((after_star, consumed + c.len_utf8()));
            t = after_star;
            i = consumed + c.len_utf8();
        }
    }
}

fn single_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Char(want) => *want == c,
        Token::AnyChar => c != '/',
        Token::Class { negated, ranges } => {
            let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
            inside != *negated
        }
        Token::Star => false,
    }
}

fn parse_class(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    pattern: &str,
) -> Result<Token, GlobError> {
    let unterminated = || GlobError::UnterminatedClass(pattern.to_string());
    let negated = chars.peek() == Some(&'^');
    if negated {
        chars.next();
    }
    let mut ranges = Vec::new();
    loop {
        match chars.peek() {
            None => return Err(unterminated()),
            Some(']') if !ranges.is_empty() => {
                chars.next();
                return Ok(Token::Class { negated, ranges });
            }
            Some(_) => {}
        }
        let lo = class_char(chars, pattern)?;
        let hi = if chars.peek() == Some(&'-') {
            chars.next();
            class_char(chars, pattern)?
        } else {
            lo
        };
        if chars.peek().is_none() {
            return Err(unterminated());
        }
        if lo > hi {
            // Go accepts an inverted range; it simply matches nothing.
            ranges.push((char::MAX, '\0'));
        } else {
            ranges.push((lo, hi));
        }
    }
}

/// One character of a class, as Go's `getEsc`: `-` and `]` must be escaped, `\` escapes.
fn class_char(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    pattern: &str,
) -> Result<char, GlobError> {
    match chars.next() {
        None => Err(GlobError::UnterminatedClass(pattern.to_string())),
        Some('-') | Some(']') => Err(GlobError::BadClass(pattern.to_string())),
        Some('\\') => chars
            .next()
            .ok_or_else(|| GlobError::UnterminatedClass(pattern.to_string())),
        Some(c) => Ok(c),
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        Glob::new(pattern).unwrap().matches(name)
    }

    #[test]
    fn go_filepath_match_table() {
        // Cases from Go's path/filepath match_test.go that are valid patterns.
        let cases = [
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("[\\-x]", "-", true),
            ("[\\-x]", "a", false),
            ("*x", "xxx", true),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(m(pattern, name), want, "Match({pattern:?}, {name:?})");
        }
    }

    #[test]
    fn malformed_patterns_are_rejected_like_go() {
        for pattern in [
            "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[", "[a-",
        ] {
            assert!(
                Glob::new(pattern).is_err(),
                "{pattern:?} should be malformed"
            );
        }
        assert_eq!(Glob::new(""), Err(GlobError::Empty));
    }

    proptest::proptest! {
        #[test]
        fn fast_path_agrees_with_the_table_matcher(
            pattern in "[ab*?]{1,8}|[ab]*\\[ab\\][ab*]{0,4}",
            name in "[abc]{0,10}",
        ) {
            let glob = Glob::new(&pattern).unwrap();
            // Appending "/" forces the table path; compare it against the fast path on the same
            // name by matching `pattern/` against `name/`.
            let slow = Glob::new(&format!("{pattern}/")).unwrap().matches(&format!("{name}/"));
            proptest::prop_assert_eq!(glob.matches(&name), slow);
        }
    }

    #[test]
    fn label_globs_used_for_registries() {
        assert!(m("*", "us"));
        assert!(m("u?", "us"));
        assert!(!m("u?", "u"));
        assert!(m("kube-*", "kube-system"));
        assert!(!m("kube-*", "my-kube-system"));
        assert!(Glob::new("icr").unwrap().is_literal());
        assert!(!Glob::new("ic?").unwrap().is_literal());
    }
}
