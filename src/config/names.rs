//! Kubernetes' name and label syntax (`k8s.io/apimachinery/pkg/util/validation`), for the
//! names and selectors a config holds.

/// RFC 1123 label: what Kubernetes requires of namespace names.
pub fn check_dns_label(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("must not be empty");
    }
    if s.len() > 63 {
        return Err("must be at most 63 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("must consist of lower case letters, digits and '-'");
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

/// RFC 1123 subdomain: what Kubernetes requires of Secret names.
pub fn check_dns_subdomain(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("must not be empty");
    }
    if s.len() > 253 {
        return Err("must be at most 253 characters");
    }
    for part in s.split('.') {
        if part.is_empty() {
            return Err("must not have empty dot-separated parts");
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("must consist of lower case letters, digits, '-' and '.'");
        }
        if part.starts_with('-') || part.ends_with('-') {
            return Err("each part must start and end with a letter or digit");
        }
    }
    Ok(())
}

pub(super) fn check_label_key(key: &str) -> Result<(), &'static str> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            check_dns_subdomain(prefix).map_err(|_| "prefix must be a DNS subdomain")?;
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err("name part must not be empty");
    }
    check_label_value(name)
}

pub(super) fn check_label_value(value: &str) -> Result<(), &'static str> {
    if value.len() > 63 {
        return Err("must be at most 63 characters");
    }
    if value.is_empty() {
        return Ok(());
    }
    let ok_inner = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let first = value.as_bytes()[0];
    let last = value.as_bytes()[value.len() - 1];
    if !ok_inner || !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("must be alphanumerics, '-', '_' or '.', starting and ending alphanumeric");
    }
    Ok(())
}
