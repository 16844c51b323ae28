//! JSON log lines written directly, in the shape of `tracing-subscriber`'s JSON formatter with
//! `flatten_event(true)`: `{"timestamp":…,"level":…,"message":…,<fields>,"target":…}`. The one
//! line per admission is written this way: through `tracing`'s formatter it was a tenth of the
//! cost of serving a review (each field visited through `dyn Visit`, formatted into a `String`,
//! then serialised again).

use std::time::{SystemTime, UNIX_EPOCH};

/// Appends `s` as a JSON string, escaped as serde_json escapes (`"`, `\`, control
/// characters): a value holding a newline stays inside its line.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_str_contents(out, s);
    out.push(b'"');
}

/// Appends `s` escaped, without the quotes.
pub fn push_str_contents(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// A line being written; fields are appended in order, after the message.
pub struct Line<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Line<'a> {
    /// Starts a line at `now`: timestamp, level and message.
    pub fn start(out: &'a mut Vec<u8>, now: SystemTime, level: &str, message: &str) -> Self {
        out.extend_from_slice(b"{\"timestamp\":\"");
        push_timestamp(out, now);
        out.extend_from_slice(b"\",\"level\":");
        push_str(out, level);
        out.extend_from_slice(b",\"message\":");
        push_str(out, message);
        Line { out }
    }

    fn key(&mut self, key: &str) {
        self.out.push(b',');
        push_str(self.out, key);
        self.out.push(b':');
    }

    /// A string field.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        push_str(self.out, value);
        self
    }

    /// A string field made of `values` joined with commas.
    pub fn joined<'s>(
        &mut self,
        key: &str,
        values: impl IntoIterator<Item = &'s str>,
    ) -> &mut Self {
        self.key(key);
        self.out.push(b'"');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            push_str_contents(self.out, v);
        }
        self.out.push(b'"');
        self
    }

    /// A number field.
    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// A boolean field.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// Ends the line with its target and a newline.
    pub fn finish(self, target: &str) {
        self.out.extend_from_slice(b",\"target\":");
        push_str(self.out, target);
        self.out.extend_from_slice(b"}\n");
    }
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber's `SystemTime` writes it:
/// `2026-12-01T23:46:59.198403Z`.
pub fn push_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    // Before 1970 only with a broken clock: written as the epoch rather than failing a line.
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let parts: [(u64, usize, u8); 7] = [
        (year, 4, b'-'),
        (month, 2, b'-'),
        (day, 2, b'T'),
        (of_day / 3600, 2, b':'),
        (of_day / 60 % 60, 2, b':'),
        (of_day % 60, 2, b'.'),
        (u64::from(since.subsec_micros()), 6, b'Z'),
    ];
    let mut buf = itoa::Buffer::new();
    for (n, width, then) in parts {
        let s = buf.format(n);
        out.extend(std::iter::repeat_n(b'0', width.saturating_sub(s.len())));
        out.extend_from_slice(s.as_bytes());
        out.push(then);
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn line(now: SystemTime, fill: impl FnOnce(&mut Line<'_>)) -> String {
        let mut out = Vec::new();
        let mut l = Line::start(&mut out, now, "INFO", "admission");
        fill(&mut l);
        l.finish("pull_secret_injector::serve::http");
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_timestamp_is_rfc3339_utc_with_microseconds() {
        let at = |secs: u64, micros: u64| {
            let mut out = Vec::new();
            push_timestamp(
                &mut out,
                UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros),
            );
            String::from_utf8(out).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(1_764_633_019, 198_403), "2025-12-01T23:50:19.198403Z");
        // A leap day, and the last second of a leap year.
        assert_eq!(at(1_709_164_800, 1), "2024-02-29T00:00:00.000001Z");
        assert_eq!(at(1_735_689_599, 999_999), "2024-12-31T23:59:59.999999Z");
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000000Z");
    }

    #[test]
    fn the_timestamp_agrees_with_the_time_crate() {
        for secs in [
            0u64,
            951_782_400,
            1_000_000_000,
            1_798_761_599,
            4_107_542_400,
        ] {
            let now = UNIX_EPOCH + Duration::from_secs(secs);
            let mut out = Vec::new();
            push_timestamp(&mut out, now);
            let expected = time::OffsetDateTime::from(now)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            // time writes no fraction for whole seconds.
            let expected = expected.replace('Z', ".000000Z");
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn a_line_is_one_json_object_with_the_fields_in_order() {
        let text = line(UNIX_EPOCH, |l| {
            l.str("uid", "u-1")
                .joined("injected", ["a", "b"])
                .joined("copies_needed", [])
                .u64("warnings", 2)
                .bool("reused", true);
        });
        assert!(
            text.ends_with("}\n") && text.matches('\n').count() == 1,
            "{text}"
        );
        assert_eq!(
            text,
            "{\"timestamp\":\"1970-01-01T00:00:00.000000Z\",\"level\":\"INFO\",\"message\":\"admission\",\
             \"uid\":\"u-1\",\"injected\":\"a,b\",\"copies_needed\":\"\",\"warnings\":2,\"reused\":true,\
             \"target\":\"pull_secret_injector::serve::http\"}\n"
        );
    }

    proptest! {
        /// Whatever a tenant puts in a name, the line parses back to it, on one line.
        #[test]
        fn any_value_round_trips_and_stays_on_its_line(value in any::<String>(), other in any::<String>()) {
            let text = line(UNIX_EPOCH, |l| {
                l.str("name", &value).joined("injected", [value.as_str(), other.as_str()]);
            });
            prop_assert_eq!(text.matches('\n').count(), 1);
            prop_assert!(!text.contains('\r'));
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(parsed["name"].as_str(), Some(value.as_str()));
            prop_assert_eq!(parsed["injected"].as_str().map(str::to_string), Some(format!("{value},{other}")));
            // serde_json writes strings the same way.
            let mut ours = Vec::new();
            push_str(&mut ours, &value);
            prop_assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&value).unwrap());
        }
    }
}
