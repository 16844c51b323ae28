//! Colour for the text answers of `check` and `audit`: on only when standard output is a
//! terminal and `NO_COLOR` is unset (<https://no-color.org>), or when `CLICOLOR_FORCE` asks for
//! it; JSON and YAML are never coloured. The words carry the meaning, colour only helps the eye.

use std::io::IsTerminal;

/// Paints text with ANSI colours, or leaves it as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Palette {
    on: bool,
}

impl Palette {
    /// No colour.
    pub const PLAIN: Palette = Palette { on: false };

    /// Colour (what a terminal gets).
    pub const COLOUR: Palette = Palette { on: true };

    /// What the environment asks for, for standard output.
    pub fn for_stdout() -> Palette {
        Palette::from_env(std::io::stdout().is_terminal(), |name| {
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
        })
    }

    /// The rule, with the terminal test and the environment given: `NO_COLOR` (any non-empty
    /// value) wins, then `CLICOLOR_FORCE` (non-empty, not `0`), then a terminal that is not
    /// `TERM=dumb`.
    pub fn from_env(terminal: bool, var: impl Fn(&str) -> Option<String>) -> Palette {
        let set = |name: &str| var(name).is_some_and(|v| !v.is_empty());
        let on = if set("NO_COLOR") {
            false
        } else if var("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") {
            true
        } else {
            terminal && var("TERM").as_deref() != Some("dumb")
        };
        Palette { on }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// What works: secrets injected, nothing found.
    pub fn good(self, text: &str) -> String {
        self.paint("32", text)
    }

    /// What is missing or refused.
    pub fn bad(self, text: &str) -> String {
        self.paint("31", text)
    }

    /// A warning.
    pub fn warn(self, text: &str) -> String {
        self.paint("33", text)
    }

    /// A heading: the object or the group a block is about.
    pub fn heading(self, text: &str) -> String {
        self.paint("1", text)
    }

    /// A command to run.
    pub fn command(self, text: &str) -> String {
        self.paint("36", text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert_eq!(Palette::from_env(true, env(&[])), Palette::COLOUR);
        assert_eq!(Palette::from_env(false, env(&[])), Palette::PLAIN);
        assert_eq!(
            Palette::from_env(true, env(&[("NO_COLOR", "1")])),
            Palette::PLAIN
        );
        // An empty NO_COLOR does not count (no-color.org).
        assert_eq!(
            Palette::from_env(true, env(&[("NO_COLOR", "")])),
            Palette::COLOUR
        );
        assert_eq!(
            Palette::from_env(true, env(&[("TERM", "dumb")])),
            Palette::PLAIN
        );
        assert_eq!(
            Palette::from_env(false, env(&[("CLICOLOR_FORCE", "1")])),
            Palette::COLOUR
        );
        assert_eq!(
            Palette::from_env(false, env(&[("CLICOLOR_FORCE", "0")])),
            Palette::PLAIN
        );
        assert_eq!(
            Palette::from_env(true, env(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")])),
            Palette::PLAIN
        );
    }

    #[test]
    fn plain_leaves_text_alone_and_colour_wraps_it() {
        assert_eq!(Palette::PLAIN.bad("x"), "x");
        assert_eq!(Palette::COLOUR.bad("x"), "\x1b[31mx\x1b[0m");
    }
}
