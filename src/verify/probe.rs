//! One probe: does this registry accept this login? Asked the way a container runtime
//! authenticates (Docker Registry HTTP API V2 and the distribution token specification):
//! `GET /v2/` anonymously; on `401` with a `Bearer` challenge, a token from the realm it names
//! (HTTP Basic with the username and password, or the OAuth2 refresh-token grant with an
//! identity token), then `GET /v2/` with that token; on a `Basic` challenge, `GET /v2/` with
//! Basic auth.
//!
//! Where credentials go: only to the registry itself and to the realm it names, and only over
//! https (plain HTTP only when the credential is configured `insecure`). A redirect is followed
//! only within the same scheme, host and port; credentials never follow one elsewhere.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{StatusCode, Url};

use crate::config::Verify;
use crate::registry::dockerconfig::Login;
use crate::view::ProbeState;

/// What to probe: one login of one credential at one registry.
#[derive(Clone)]
pub struct ProbeTarget {
    /// The credential's name.
    pub credential: String,
    /// The registry, `host[:port]`, as the key names it (`index.docker.io` for Docker Hub).
    pub registry: String,
    /// The source secret it comes from, `namespace/name`.
    pub source: String,
    /// The login.
    pub login: Login,
    /// How to probe.
    pub verify: Verify,
}

impl std::fmt::Debug for ProbeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeTarget")
            .field("credential", &self.credential)
            .field("registry", &self.registry)
            .field("source", &self.source)
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

/// What a probe found. `detail` says why, never with a credential in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// The answer.
    pub state: ProbeState,
    /// Why, for logs, Events and `check --verify`.
    pub detail: String,
}

fn result(state: ProbeState, detail: impl Into<String>) -> ProbeResult {
    ProbeResult {
        state,
        detail: detail.into(),
    }
}

/// The host that serves a registry's V2 API: Docker Hub's keys name `index.docker.io` (or
/// `docker.io`), whose API is `registry-1.docker.io`, as Docker's own client resolves it.
pub fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// Redirects followed within one origin.
const MAX_REDIRECTS: usize = 3;

/// A request to send: where, and with which Authorization header value (if any).
struct Ask<'a> {
    url: Url,
    authorization: Option<&'a str>,
    form: Option<Vec<(&'static str, String)>>,
}

/// Probes `target`, each request bounded by `timeout`.
pub async fn probe(target: &ProbeTarget, timeout: Duration) -> ProbeResult {
    let client = match client(&target.verify, timeout) {
        Ok(c) => c,
        Err(why) => return result(ProbeState::Unreachable, why),
    };
    let scheme = if target.verify.insecure {
        "http"
    } else {
        "https"
    };
    let Ok(ping) = Url::parse(&format!("{scheme}://{}/v2/", api_host(&target.registry))) else {
        return result(
            ProbeState::Unreachable,
            format!("{:?} is not a registry address", target.registry),
        );
    };
    let anonymous = match send(
        &client,
        Ask {
            url: ping.clone(),
            authorization: None,
            form: None,
        },
    )
    .await
    {
        Ok(r) => r,
        Err(why) => return result(ProbeState::Unreachable, why),
    };
    match anonymous.status {
        StatusCode::OK => {
            return result(
                ProbeState::Unknown,
                "the registry does not ask for credentials at /v2/",
            );
        }
        StatusCode::UNAUTHORIZED => {}
        s if s.is_server_error() => {
            return result(
                ProbeState::Unreachable,
                format!("the registry answered {s}"),
            );
        }
        s => {
            return result(
                ProbeState::Unreachable,
                format!("the registry answered {s} at /v2/, not a Docker Registry V2 challenge"),
            );
        }
    }
    let Some(challenge) = anonymous.challenge.as_deref().map(Challenge::parse) else {
        return result(
            ProbeState::Unreachable,
            "the registry answered 401 without a WWW-Authenticate challenge",
        );
    };
    match challenge {
        Challenge::Basic => {
            let Some(basic) = basic(&target.login) else {
                return result(
                    ProbeState::Unknown,
                    "the entry holds no username and password for Basic auth",
                );
            };
            authorised_ping(&client, &ping, &basic, "Basic auth").await
        }
        Challenge::Bearer {
            realm,
            service,
            scope,
        } => {
            let Some(realm) = realm.and_then(|r| Url::parse(&r).ok()) else {
                return result(
                    ProbeState::Unreachable,
                    "the registry's Bearer challenge names no usable realm",
                );
            };
            if realm.scheme() != "https" && !target.verify.insecure {
                return result(
                    ProbeState::Unknown,
                    format!(
                        "the registry names a plain-HTTP token realm ({}); credentials are not sent there",
                        realm.origin().ascii_serialization()
                    ),
                );
            }
            let token = match token(&client, &realm, service, scope, &target.login).await {
                Ok(t) => t,
                Err(r) => return r,
            };
            authorised_ping(&client, &ping, &format!("Bearer {token}"), "the token").await
        }
        Challenge::Other(scheme) => result(
            ProbeState::Unreachable,
            format!("the registry asks for {scheme:?} authentication, which is not probed"),
        ),
    }
}

/// `GET /v2/` with credentials: accepted, or refused.
async fn authorised_ping(
    client: &reqwest::Client,
    ping: &Url,
    authorization: &str,
    what: &str,
) -> ProbeResult {
    let answer = match send(
        client,
        Ask {
            url: ping.clone(),
            authorization: Some(authorization),
            form: None,
        },
    )
    .await
    {
        Ok(r) => r,
        Err(why) => return result(ProbeState::Unreachable, why),
    };
    match answer.status {
        s if s.is_success() => result(ProbeState::Ok, format!("the registry accepts {what}")),
        s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => result(
            ProbeState::Rejected,
            format!("the registry refuses {what} ({s})"),
        ),
        s => result(
            ProbeState::Unreachable,
            format!("the registry answered {s} to {what}"),
        ),
    }
}

/// A token from the realm, or the result that ends the probe.
async fn token(
    client: &reqwest::Client,
    realm: &Url,
    service: Option<String>,
    scope: Option<String>,
    login: &Login,
) -> Result<String, ProbeResult> {
    let mut url = realm.clone();
    let ask = if let Some(refresh) = &login.identity_token {
        // The distribution token spec's OAuth2 flow: a refresh-token grant, POSTed as a form.
        let mut form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh.clone()),
            ("client_id", "pull-secret-injector".to_string()),
        ];
        if let Some(s) = service {
            form.push(("service", s));
        }
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        Ask {
            url,
            authorization: None,
            form: Some(form),
        }
    } else {
        let Some(basic) = basic(login) else {
            return Err(result(
                ProbeState::Unknown,
                "the entry holds no username and password, nor an identity token",
            ));
        };
        {
            let mut query = url.query_pairs_mut();
            if let Some(s) = &service {
                query.append_pair("service", s);
            }
            if let Some(s) = &scope {
                query.append_pair("scope", s);
            }
        }
        return match send(
            client,
            Ask {
                url,
                authorization: Some(&basic),
                form: None,
            },
        )
        .await
        {
            Ok(answer) => read_token(answer),
            Err(why) => Err(result(ProbeState::Unreachable, why)),
        };
    };
    match send(client, ask).await {
        Ok(answer) => read_token(answer),
        Err(why) => Err(result(ProbeState::Unreachable, why)),
    }
}

fn read_token(answer: Answer) -> Result<String, ProbeResult> {
    match answer.status {
        s if s.is_success() => {
            let body: serde_json::Value = serde_json::from_slice(&answer.body).map_err(|_| {
                result(
                    ProbeState::Unreachable,
                    "the token realm answered something that is not JSON",
                )
            })?;
            body.get("token")
                .or_else(|| body.get("access_token"))
                .and_then(|t| t.as_str())
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .ok_or_else(|| {
                    result(
                        ProbeState::Unreachable,
                        "the token realm answered without a token",
                    )
                })
        }
        s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Err(result(
            ProbeState::Rejected,
            format!("the token realm refuses these credentials ({s})"),
        )),
        // OAuth2 (RFC 6749 section 5.2) answers a refresh token it does not accept with 400
        // and an error code; other 400s say nothing about the credential.
        StatusCode::BAD_REQUEST if oauth_refusal(&answer.body).is_some() => Err(result(
            ProbeState::Rejected,
            format!(
                "the token realm refuses the identity token ({})",
                oauth_refusal(&answer.body).unwrap_or_default()
            ),
        )),
        s => Err(result(
            ProbeState::Unreachable,
            format!("the token realm answered {s}"),
        )),
    }
}

/// The OAuth2 error code of an answer that refuses the grant, if it is one.
fn oauth_refusal(body: &[u8]) -> Option<&'static str> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = body.get("error")?.as_str()?;
    ["invalid_grant", "invalid_client", "unauthorized_client"]
        .into_iter()
        .find(|c| *c == code)
}

fn basic(login: &Login) -> Option<String> {
    let (Some(user), Some(password)) = (&login.username, &login.password) else {
        return None;
    };
    Some(format!(
        "Basic {}",
        STANDARD.encode(format!("{user}:{password}"))
    ))
}

fn client(verify: &Verify, timeout: Duration) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("pull-secret-injector/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &verify.ca_bundle {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("the credential's caBundle cannot be used: {e}"))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build an HTTPS client: {e}"))
}

/// An answer, read whole (registry answers to these requests are small).
struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    body: Vec<u8>,
}

/// Upper bound on an answer's body: a token, or an error document.
const MAX_BODY: usize = 64 * 1024;

/// Sends `ask`, following redirects that stay within its origin. A redirect elsewhere ends the
/// probe: the credentials this request carries must not follow it.
async fn send(client: &reqwest::Client, ask: Ask<'_>) -> Result<Answer, String> {
    let origin = ask.url.origin();
    let mut url = ask.url;
    for _ in 0..=MAX_REDIRECTS {
        let mut request = match &ask.form {
            Some(form) => client.post(url.clone()).form(form),
            None => client.get(url.clone()),
        };
        if let Some(auth) = ask.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        let response = request.send().await.map_err(describe)?;
        let status = response.status();
        if status.is_redirection() {
            let next = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| format!("{status} without a usable Location"))?;
            if next.origin() != origin {
                return Err(format!(
                    "redirected to another host ({}); credentials are not sent there",
                    next.origin().ascii_serialization()
                ));
            }
            url = next;
            continue;
        }
        let challenge = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err("an answer larger than 64 KiB".to_string());
            }
            body.extend_from_slice(&chunk);
        }
        return Ok(Answer {
            status,
            challenge,
            body,
        });
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

/// A transport error in words, without the URL's query (which may carry a scope) repeated.
fn describe(e: reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_request() {
        "the request failed"
    } else {
        "the answer could not be read"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {cause}")
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: Option<String>,
        service: Option<String>,
        scope: Option<String>,
    },
    Other(String),
}

impl Challenge {
    /// Reads `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
    fn parse(header: &str) -> Challenge {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Challenge::Basic,
            "bearer" => {
                let params = parse_params(params);
                let get = |k: &str| {
                    params
                        .iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(k))
                        .map(|(_, v)| v.clone())
                };
                Challenge::Bearer {
                    realm: get("realm"),
                    service: get("service"),
                    scope: get("scope"),
                }
            }
            other => Challenge::Other(other.to_string()),
        }
    }
}

/// `key="value",key=value` pairs; quoted values may hold commas.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((key, value));
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_read_as_registries_send_them() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#
            ),
            Challenge::Bearer {
                realm: Some("https://auth.docker.io/token".to_string()),
                service: Some("registry.docker.io".to_string()),
                scope: None,
            }
        );
        assert_eq!(
            Challenge::parse(
                r#"bearer realm="https://r.example/token", service="r", scope="repository:a/b:pull,push""#
            ),
            Challenge::Bearer {
                realm: Some("https://r.example/token".to_string()),
                service: Some("r".to_string()),
                scope: Some("repository:a/b:pull,push".to_string()),
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry""#),
            Challenge::Basic
        );
        assert_eq!(
            Challenge::parse("Negotiate abc"),
            Challenge::Other("negotiate".to_string())
        );
    }

    #[test]
    fn docker_hub_keys_are_probed_at_its_api_host() {
        assert_eq!(api_host("index.docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("us.icr.io"), "us.icr.io");
        assert_eq!(api_host("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
