use super::*;

const FULL: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    registries: ["icr.io", "*.icr.io"]
    namespaces:
      include: ["*"]
      exclude: ["kube-*", "openshift-*"]
      selector: {matchLabels: {}}
  - name: runai-cluster-wide
    secretSelector:
      namespace: runai
      matchLabels: {runai/cluster-wide: "true"}
    namespaces: {include: ["runai-*"]}
  - name: project-local
    localSecretSelector: {matchLabels: {pull-secret-injector/local: "true"}}
    namespaces: {include: ["runai-*"]}
serviceAccounts: ["default"]
pods: true
prune: false
"#;

fn problems(yaml: &str) -> Vec<String> {
    match Config::from_yaml(yaml) {
        Ok(_) => panic!("config should be invalid:\n{yaml}"),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn design_example_parses() {
    let c = Config::from_yaml(FULL).unwrap();
    assert_eq!(c.credentials.len(), 3);
    assert_eq!(
        c.credentials[0].source,
        Source::Secret {
            namespace: "default".into(),
            name: "all-icr-io".into()
        }
    );
    assert!(c.pods && !c.prune);
    assert!(c.wants_service_account("default"));
    assert!(!c.wants_service_account("builder"));
    let icr = &c.credentials[0];
    let none = BTreeMap::new();
    assert!(icr.namespaces.admits("team-a", &none));
    assert!(!icr.namespaces.admits("kube-system", &none));
    assert!(!icr.namespaces.admits("openshift-config", &none));
    assert!(icr.selects(&RegistryKey::parse("us.icr.io").unwrap()));
    assert!(icr.selects(&RegistryKey::parse("https://icr.io").unwrap()));
    assert!(icr.selects(&RegistryKey::parse("cp.icr.io/cp/cpd").unwrap()));
    assert!(!icr.selects(&RegistryKey::parse("quay.io").unwrap()));
    assert!(!icr.selects(&RegistryKey::parse("a.b.icr.io").unwrap()));
}

#[test]
fn defaults() {
    let c = Config::from_yaml("credentials: []").unwrap();
    assert!(c.pods);
    assert!(!c.prune);
    assert_eq!(c.service_accounts.len(), 1);
    assert!(c.wants_service_account("default"));
    let off = Config::from_yaml("credentials: []\nserviceAccounts: []").unwrap();
    assert!(!off.wants_service_account("default"));
}

#[test]
fn configmap_manifest_is_accepted() {
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: pull-secret-injector}}\ndata:\n  config.yaml: |\n{}",
        FULL.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    assert_eq!(Config::from_yaml(&manifest).unwrap().credentials.len(), 3);
    let missing =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: pull-secret-injector}\ndata: {}";
    assert_eq!(
        problems(missing),
        ["data: ConfigMap pull-secret-injector has no string key \"config.yaml\""]
    );
}

#[test]
fn every_problem_is_reported_at_once_with_its_credential_and_field() {
    let yaml = r#"
credentials:
  - name: a
    secret: default/src
    namespaces: {include: ["*"]}
  - name: a
    secret: default/other
    namespaces: {include: ["*"]}
  - name: two-sources
    secret: default/x
    localSecretSelector: {matchLabels: {a: b}}
    namespaces: {include: ["*"]}
  - name: no-source
    namespaces: {include: ["*"]}
  - name: Bad_Name
    secret: default/x
    namespaces: {include: ["*"]}
  - name: patterns
    secret: default/x
    registries: ["", "u?.icr.io", "us.icr.io:port", "us.[a-.io", "u[r-t].icr.io", "[a-z].icr.io", "a b@quay.io", "*.icr.io"]
    namespaces: {include: ["[", "ok"], exclude: ["\\"]}
  - name: selectors
    secretSelector: {namespace: runai, matchExpressions: [{key: a, operator: Near, values: [x]}, {key: b, operator: In}]}
    namespaces: {include: ["*"], selector: {matchLabels: {"bad key!": x}}}
  - name: no-namespaces
    secret: noslash
  - name: copy-a
    secret: default/one
    copyName: shared
    namespaces: {include: ["*"]}
  - name: copy-b
    secret: default/two
    copyName: shared
    namespaces: {include: ["*"]}
  - name: empty-registries
    secret: default/x
    registries: []
    namespaces: {include: []}
serviceAccounts: ["["]
"#;
    let got = problems(yaml);
    let want = [
        "credentials[1] (a): name: duplicate name \"a\", already used by credentials[0]",
        "credentials[2] (two-sources): secret: several sources: set exactly one of secret, secretSelector, localSecretSelector",
        "credentials[3] (no-source): secret: no source: set exactly one of secret, secretSelector, localSecretSelector",
        "credentials[4] (Bad_Name): name: \"Bad_Name\" is not a DNS label: must consist of lower case letters, digits and '-'",
        "credentials[5] (patterns): registries[0]: empty pattern: it would match nothing",
        "credentials[5] (patterns): registries[1]: \"u?.icr.io\": `?` and `#` cannot be used",
        "credentials[5] (patterns): registries[2]: kubelet cannot use it as a key: registry key \"us.icr.io:port\" is not a valid URL: invalid port \":port\" after host",
        // Go 1.26: a `[` that does not start the host is refused outright (url.go:549).
        "credentials[5] (patterns): registries[3]: kubelet cannot use it as a key: registry key \"us.[a-.io\" is not a valid URL: invalid IP-literal; kubelet accepts `[` only around an IPv6 address at the start of the host, so `[...]` classes cannot be used: use `*` within a label",
        "credentials[5] (patterns): registries[4]: kubelet cannot use it as a key: registry key \"u[r-t].icr.io\" is not a valid URL: invalid IP-literal; kubelet accepts `[` only",
        // A leading `[` is an IPv6 literal; here the text after `]` is not a port.
        "credentials[5] (patterns): registries[5]: kubelet cannot use it as a key: registry key \"[a-z].icr.io\" is not a valid URL: invalid port \".icr.io\" after host; kubelet accepts `[` only",
        // validUserinfo refuses the space; the userinfo itself is never shown.
        "credentials[5] (patterns): registries[6]: kubelet cannot use it as a key: registry key \"***@quay.io\" is not a valid URL: net/url: invalid userinfo",
        "credentials[5] (patterns): namespaces.include[0]: invalid glob: pattern \"[\": unterminated character class",
        "credentials[5] (patterns): namespaces.exclude[0]: invalid glob: pattern \"\\\\\": trailing backslash",
        "credentials[6] (selectors): secretSelector.matchExpressions[0]: unknown operator \"Near\"",
        "credentials[6] (selectors): secretSelector.matchExpressions[1]: operator In needs at least one value",
        "credentials[6] (selectors): namespaces.selector.matchLabels: key \"bad key!\"",
        "credentials[7] (no-namespaces): secret: \"noslash\" must be namespace/name",
        "credentials[7] (no-namespaces): namespaces: is required",
        "credentials[10] (empty-registries): registries: is empty, so the credential would select nothing",
        "credentials[10] (empty-registries): namespaces.include: must list at least one namespace glob",
        "credential copy-b: copyName: copy name \"shared\" is also written by credential copy-a with different content",
        "serviceAccounts[0]: invalid glob: pattern \"[\": unterminated character class",
    ];
    for w in want {
        assert!(
            got.iter().any(|g| g.starts_with(w)),
            "missing problem {w:?} in:\n{}",
            got.join("\n")
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "unexpected problems:\n{}",
        got.join("\n")
    );
}

#[test]
fn duplicates_are_reported_even_when_a_credential_has_other_problems() {
    let yaml = r#"
credentials:
  - name: icr
    secret: default/a
    registries: ["u?.icr.io"]
    namespaces: {include: ["*"]}
  - name: icr
    secret: default/b
    namespaces: {include: ["*"]}
"#;
    let got = problems(yaml);
    assert!(
        got.iter().any(|p| p.contains("duplicate name \"icr\"")),
        "{got:?}"
    );
    assert_eq!(got.len(), 2, "{got:?}");
}

#[test]
fn structural_errors_name_the_field() {
    let unknown = problems("credentials:\n  - name: a\n    secrets: default/x\n");
    assert!(
        unknown[0].contains("unknown field `secrets`"),
        "{unknown:?}"
    );
    let wrong_type = problems("credentials: {}\n");
    assert!(wrong_type[0].contains("credentials"), "{wrong_type:?}");
    assert!(problems("")[0].contains("empty"));
    assert!(problems("credentials: [")[0].contains("not valid YAML"));
}

#[test]
fn same_copy_name_with_same_content_is_fine() {
    let yaml = r#"
credentials:
  - name: a
    secret: default/src
    registries: ["quay.io"]
    namespaces: {include: ["team-*"]}
  - name: b
    secret: default/src
    registries: ["quay.io"]
    namespaces: {include: ["dev-*"]}
"#;
    assert!(Config::from_yaml(yaml).is_ok());
}

#[test]
fn label_selectors() {
    let yaml = r#"
credentials:
  - name: a
    secret: default/src
    namespaces:
      include: ["*"]
      selector:
        matchLabels: {tier: prod}
        matchExpressions:
          - {key: team, operator: In, values: [a, b]}
          - {key: legacy, operator: DoesNotExist}
"#;
    let c = Config::from_yaml(yaml).unwrap();
    let scope = &c.credentials[0].namespaces;
    let labels = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    assert!(scope.admits("x", &labels(&[("tier", "prod"), ("team", "a")])));
    assert!(!scope.admits("x", &labels(&[("tier", "prod"), ("team", "c")])));
    assert!(!scope.admits(
        "x",
        &labels(&[("tier", "prod"), ("team", "a"), ("legacy", "")])
    ));
    assert!(!scope.admits("x", &labels(&[("team", "a")])));
    assert_eq!(
        scope.selector.as_ref().unwrap().to_query(),
        "tier=prod,team in (a,b),!legacy"
    );
}

#[test]
fn verify_defaults_to_warn_every_ten_minutes_and_credentials_override_it_field_by_field() {
    use std::time::Duration;
    let c = Config::from_yaml(
        r#"
verify: {mode: skip, interval: 30m}
credentials:
  - name: inherits
    secret: creds/a
    namespaces: {include: ["*"]}
  - name: own
    secret: creds/b
    namespaces: {include: ["*"]}
    verify: {mode: "off", insecure: true, expiryWarning: 24h}
"#,
    )
    .unwrap();
    let (inherits, own) = (&c.credentials[0].verify, &c.credentials[1].verify);
    assert_eq!(inherits.mode, VerifyMode::Skip);
    assert_eq!(inherits.interval, Duration::from_secs(1800));
    assert_eq!(inherits.expiry_warning, Duration::from_secs(72 * 3600));
    assert!(!inherits.insecure);
    assert_eq!(own.mode, VerifyMode::Off);
    assert_eq!(
        own.interval,
        Duration::from_secs(1800),
        "not set: the top level's"
    );
    assert!(own.insecure);
    assert_eq!(own.expiry_warning, Duration::from_secs(24 * 3600));

    let plain =
        Config::from_yaml("credentials: [{name: a, secret: c/a, namespaces: {include: [\"*\"]}}]")
            .unwrap();
    assert_eq!(plain.credentials[0].verify, Verify::default());
    assert_eq!(Verify::default().mode, VerifyMode::Warn);
    assert_eq!(Verify::default().interval, Duration::from_secs(600));
}

#[test]
fn every_bad_verify_field_is_named_with_its_cause() {
    let found = problems(
        r#"
verify: {mode: sometimes, interval: 5s}
credentials:
  - name: a
    secret: creds/a
    namespaces: {include: ["*"]}
    verify:
      interval: soon
      expiryWarning: 3 fortnights
      caBundle: "not a certificate"
"#,
    );
    let want = [
        "verify.mode: \"sometimes\" is not one of off, warn, skip",
        "verify.interval: \"5s\" is outside 30s to 24h",
        "credentials[0] (a): verify.interval: \"soon\" is not a duration",
        "credentials[0] (a): verify.expiryWarning: \"3 fortnights\" is not a duration",
        "credentials[0] (a): verify.caBundle: holds no PEM certificate",
    ];
    let text = found.join("\n");
    for w in want {
        assert!(text.contains(w), "missing {w:?} in:\n{text}");
    }
    let unknown = problems(
        "credentials:\n  - name: a\n    secret: creds/a\n    namespaces: {include: [\"*\"]}\n    verify: {retries: 3}\n",
    )
    .join("\n");
    assert!(
        unknown.contains("credentials[0] (a): verify: unknown field `retries`"),
        "{unknown}"
    );
}

const TOKENS: &str = r#"
credentials:
  - name: ecr
    token:
      ecr:
        region: eu-west-1
        registryIds: ["123456789012"]
        secret: pull-secret-injector/aws-keys
    namespaces: {include: ["team-*"]}
  - name: ecr-irsa
    token:
      ecr: {region: us-east-1, webIdentity: {}}
    namespaces: {include: ["*"]}
  - name: gar
    token:
      gar:
        registries: [europe-docker.pkg.dev, eu.gcr.io]
        serviceAccountKey: pull-secret-injector/gar-key
    namespaces: {include: ["*"]}
  - name: acr
    copyName: acr-pull
    token:
      acr:
        registry: myregistry.azurecr.io
        tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47
        workloadIdentity: {clientId: 5b9e6b8f-0000-4000-8000-000000000000}
        endpoint: http://127.0.0.1:8080
    namespaces: {include: ["*"]}
"#;

#[test]
fn token_credentials_parse_and_their_managed_secret_lives_in_the_injectors_namespace() {
    let c = Config::from_yaml(TOKENS).unwrap();
    let ecr = &c.credentials[0];
    assert_eq!(
        ecr.token,
        Some(token::TokenSource::Ecr(token::EcrSpec {
            region: "eu-west-1".into(),
            registry_ids: vec!["123456789012".into()],
            auth: token::AwsAuth::Secret(token::SecretKeyRef {
                namespace: "pull-secret-injector".into(),
                name: "aws-keys".into(),
            }),
            endpoint: None,
            sts_endpoint: None,
        }))
    );
    assert_eq!(
        ecr.source,
        Source::Secret {
            namespace: DEFAULT_NAMESPACE.into(),
            name: "ecr-token".into()
        }
    );
    assert_eq!(ecr.copy_name_for("ecr-token"), "ecr-token");
    assert!(matches!(
        &c.credentials[1].token,
        Some(token::TokenSource::Ecr(token::EcrSpec {
            auth: token::AwsAuth::WebIdentity {
                role_arn: None,
                token_file: None
            },
            ..
        }))
    ));
    assert_eq!(
        c.credentials[2].token.as_ref().map(|t| t.provider()),
        Some("gar")
    );
    assert_eq!(c.credentials[3].copy_name_for("acr-token"), "acr-pull");

    let placed = c.place_minted("psi");
    assert_eq!(
        placed.credentials[0].source,
        Source::Secret {
            namespace: "psi".into(),
            name: "ecr-token".into()
        }
    );
}

#[test]
fn token_problems_say_exactly_what_is_missing() {
    let got = problems(
        r#"
credentials:
  - name: a
    token: {}
    namespaces: {include: ["*"]}
  - name: b
    secret: x/y
    token: {ecr: {region: eu-west-1, webIdentity: {}}}
    namespaces: {include: ["*"]}
  - name: c
    token:
      ecr:
        region: Europe
        registryIds: ["12345"]
        webIdentity: {roleArn: "role/x"}
        endpoint: http://ecr.example.com
    namespaces: {include: ["*"]}
  - name: d
    token: {gar: {registries: ["https://eu.gcr.io/x"]}}
    namespaces: {include: ["*"]}
  - name: e
    token: {acr: {clientSecret: nons, workloadIdentity: {}}}
    namespaces: {include: ["*"]}
  - name: f
    token: {ecr: {region: eu-west-1, secret: ns/k}, gar: {registries: [eu.gcr.io], serviceAccountKey: ns/k}}
    namespaces: {include: ["*"]}
"#,
    );
    let want = [
        "credentials[0] (a): token: names no provider: give one of ecr, gar, acr",
        "credentials[1] (b): secret: several sources: set exactly one of secret, secretSelector, localSecretSelector, token",
        "credentials[2] (c): token.ecr.region: \"Europe\" is not an AWS region name (for example eu-west-1)",
        "credentials[2] (c): token.ecr.registryIds[0]: \"12345\" is not an AWS account id (12 digits)",
        "credentials[2] (c): token.ecr.webIdentity.roleArn: \"role/x\" is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
        "credentials[2] (c): token.ecr.endpoint: \"http://ecr.example.com\" must use https: plain http is accepted only to localhost",
        "credentials[3] (d): token.gar.registries[0]: \"https://eu.gcr.io/x\": give the registry host alone (europe-docker.pkg.dev), without scheme or path",
        "credentials[3] (d): token.gar.serviceAccountKey: no credentials: give serviceAccountKey (a Secret with key.json) or workloadIdentity (an external-account credentials file)",
        "credentials[4] (e): token.acr.registry: is required (for example myregistry.azurecr.io)",
        "credentials[4] (e): token.acr.clientSecret: give either clientSecret or workloadIdentity, not both",
        "credentials[5] (f): token: names several providers: give exactly one of ecr, gar, acr",
    ];
    assert_eq!(got, want);
}
