//! Turning serde error messages into text safe for users: the structure of the problem (which
//! field is missing, what type was expected) without any value taken from the input, because
//! the input may be a Secret or an AdmissionReview carrying one.

/// A serde/serde_json message with every input-derived value removed.
pub fn serde_message(message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    // `missing field `x`` names a field of our schema, never input data.
    if message.starts_with("missing field") {
        return message.to_string();
    }
    // `invalid type: string "…", expected …`, `unknown variant `…`, expected one of …`,
    // `invalid length 3, expected …`: keep what was expected, drop what was found.
    if let Some(i) = message.find(", expected") {
        return format!("unexpected value{}", &message[i..]);
    }
    "value does not match the schema".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_structure_drops_values() {
        let cases = [
            (
                "missing field `uid` at line 1 column 9",
                "missing field `uid`",
            ),
            (
                "invalid type: string \"fake-password\", expected a boolean at line 1 column 3",
                "unexpected value, expected a boolean",
            ),
            (
                "unknown variant `fake-password`, expected one of `CREATE`, `UPDATE`",
                "unexpected value, expected one of `CREATE`, `UPDATE`",
            ),
            (
                "Invalid symbol 33, offset 16.",
                "value does not match the schema",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(serde_message(input), want);
        }
    }
}
