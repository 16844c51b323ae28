//! Decision time for a pod with 10 containers against 100 credentials (target: under 10 µs),
//! and the whole offline admission path (parse review, decide, build patch, serialise), on a
//! synthetic review and on a realistic 8 KB one next to the floor of parsing only its uid.
//!
//! The decision is also measured with verification off, and with every credential's probes
//! answered: reading them must cost the admission path nothing measurable.
//!
//! Run: `cargo bench --bench decision`

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use pull_secret_injector::admission;
use pull_secret_injector::config::Config;
use pull_secret_injector::policy::{Catalog, Subject, SubjectKind};
use pull_secret_injector::registry::image::ImageRef;
use pull_secret_injector::verify;
use pull_secret_injector::view::{ClusterState, Health, NamespaceInfo, ProbeState};

const CREDENTIALS: usize = 100;

fn secret(ns: &str, name: &str, keys: &[String]) -> Secret {
    let auths: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .map(|k| {
            let auth = STANDARD.encode(format!("bench:fake-{k}"));
            (k.clone(), serde_json::json!({ "auth": auth }))
        })
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(serde_json::to_vec(&serde_json::json!({ "auths": auths })).unwrap()),
        )])),
        ..Default::default()
    }
}

/// 100 credentials, each with its own source secret: literal hosts, path keys, host globs, and
/// namespace scopes with include/exclude globs. `hub_keys` of them also hold a Docker Hub key:
/// 1 is the usual setup; 20 is a stress case where one Hub image pulls in 20 secrets.
fn setup(hub_keys: usize) -> (Catalog, ClusterState) {
    setup_with(hub_keys, "")
}

/// [`setup`] with `head` (top-level config keys) before the credentials.
fn setup_with(hub_keys: usize, head: &str) -> (Catalog, ClusterState) {
    let mut state = ClusterState::new();
    let mut config = format!("{head}credentials:\n");
    for i in 0..CREDENTIALS {
        let keys = match i % 5 {
            0 => vec![
                format!("registry{i}.example.com"),
                format!("https://mirror{i}.example.com"),
            ],
            1 => vec![format!("registry{i}.example.com/team/project")],
            2 => vec![format!("*.registry{i}.example.com")],
            3 => vec![format!("registry{i}.example.com:5000")],
            _ if i / 5 < hub_keys => vec![
                format!("registry{i}.example.com"),
                "https://index.docker.io/v1/".to_string(),
            ],
            _ => vec![format!("registry{i}.example.com")],
        };
        state.insert_secret(secret("creds", &format!("pull-{i}"), &keys));
        config.push_str(&format!(
            "  - name: cred-{i}\n    secret: creds/pull-{i}\n    namespaces: {{include: [\"team-*\", \"prod-*\"], exclude: [\"team-legacy\"]}}\n"
        ));
    }
    state.insert_namespace(NamespaceInfo::named("team-a"));
    let catalog = Catalog::build(Config::from_yaml(&config).unwrap(), &state, Some("psi"));
    (catalog, state)
}

const IMAGES: [&str; 10] = [
    "registry10.example.com/app/api:1.2.3",
    "registry11.example.com/team/project/worker@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "eu.registry12.example.com/x/y:latest",
    "registry13.example.com:5000/a/b",
    "nginx:1.25",
    "quay.io/prometheus/node-exporter:v1.7.0",
    "registry50.example.com/app/cache",
    "gcr.io/distroless/static:nonroot",
    "mirror95.example.com/library/busybox",
    "us.icr.io/ns/os-signal:1",
];

fn review_body() -> Vec<u8> {
    let containers: Vec<serde_json::Value> = IMAGES
        .iter()
        .enumerate()
        .map(|(i, image)| {
            serde_json::json!({
                "name": format!("c{i}"), "image": image,
                "resources": {}, "terminationMessagePath": "/dev/termination-log",
                "volumeMounts": [{"name": "kube-api-access-abcde", "readOnly": true,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "api-7d9c8b-", "namespace": "team-a",
                    "labels": {"app": "api", "pod-template-hash": "7d9c8b"}},
                "spec": {"serviceAccountName": "default", "containers": containers,
                    "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": []}}]}
            },
            "oldObject": null, "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    }))
    .unwrap()
}

/// A Pod CREATE as kube-apiserver sends it for a Deployment's ReplicaSet (8 KB once compact):
/// managedFields, env, probes, volumes including the injected projected token, tolerations,
/// generateName and no name, two containers and one init container.
const REALISTIC_REVIEW: &str = r#"{
  "kind":"AdmissionReview",
  "apiVersion":"admission.k8s.io/v1",
  "request":{
    "uid":"8d3f1c2a-6b4e-4f9a-a1d7-5e2c3b4a6f70",
    "kind":{"group":"","version":"v1","kind":"Pod"},
    "resource":{"group":"","version":"v1","resource":"pods"},
    "requestKind":{"group":"","version":"v1","kind":"Pod"},
    "requestResource":{"group":"","version":"v1","resource":"pods"},
    "namespace":"team-a",
    "operation":"CREATE",
    "userInfo":{
      "username":"system:serviceaccount:kube-system:replicaset-controller",
      "uid":"fa78a7a9-8c1e-40d0-b2f7-d6be9e884ec0",
      "groups":[
        "system:serviceaccounts",
        "system:serviceaccounts:kube-system",
        "system:authenticated"
      ],
      "extra":{
        "authentication.kubernetes.io/credential-id":[
          "JTI=c75d32ab-f3b1-44f8-885b-dde5567f4387"
        ]
      }
    },
    "object":{
      "kind":"Pod",
      "apiVersion":"v1",
      "metadata":{
        "generateName":"checkout-api-7c9f8d6b5d-",
        "namespace":"team-a",
        "uid":"6a1c2f4e-3b0d-4f7e-9a55-2c1e8d7b9f30",
        "creationTimestamp":null,
        "labels":{
          "app.kubernetes.io/name":"checkout-api",
          "app.kubernetes.io/instance":"checkout",
          "app.kubernetes.io/component":"api",
          "app.kubernetes.io/part-of":"shop",
          "pod-template-hash":"7c9f8d6b5d"
        },
        "annotations":{
          "kubectl.kubernetes.io/restartedAt":"2025-11-03T09:14:22Z",
          "prometheus.io/scrape":"true",
          "prometheus.io/port":"9090"
        },
        "ownerReferences":[
          {
            "apiVersion":"apps/v1",
            "kind":"ReplicaSet",
            "name":"checkout-api-7c9f8d6b5d",
            "uid":"2b7d9e1a-5c3f-4a8b-b6d2-9e0f1a2b3c4d",
            "controller":true,
            "blockOwnerDeletion":true
          }
        ],
        "managedFields":[
          {
            "manager":"kube-controller-manager",
            "operation":"Update",
            "apiVersion":"v1",
            "time":"2025-11-03T09:14:23Z",
            "fieldsType":"FieldsV1",
            "fieldsV1":{
              "f:metadata":{
                "f:annotations":{
                  ".":{},
                  "f:kubectl.kubernetes.io/restartedAt":{},
                  "f:prometheus.io/port":{},
                  "f:prometheus.io/scrape":{}
                },
                "f:generateName":{},
                "f:labels":{
                  ".":{},
                  "f:app.kubernetes.io/component":{},
                  "f:app.kubernetes.io/instance":{},
                  "f:app.kubernetes.io/name":{},
                  "f:app.kubernetes.io/part-of":{},
                  "f:pod-template-hash":{}
                },
                "f:ownerReferences":{
                  ".":{},
                  "k:{\"uid\":\"2b7d9e1a-5c3f-4a8b-b6d2-9e0f1a2b3c4d\"}":{}
                }
              },
              "f:spec":{
                "f:containers":{
                  "k:{\"name\":\"api\"}":{
                    ".":{},
                    "f:env":{
                      ".":{},
                      "k:{\"name\":\"DATABASE_URL\"}":{
                        ".":{},
                        "f:name":{},
                        "f:valueFrom":{".":{},"f:secretKeyRef":{}}
                      },
                      "k:{\"name\":\"LOG_LEVEL\"}":{".":{},"f:name":{},"f:value":{}},
                      "k:{\"name\":\"POD_NAME\"}":{
                        ".":{},
                        "f:name":{},
                        "f:valueFrom":{".":{},"f:fieldRef":{}}
                      }
                    },
                    "f:image":{},
                    "f:imagePullPolicy":{},
                    "f:livenessProbe":{
                      ".":{},
                      "f:failureThreshold":{},
                      "f:httpGet":{".":{},"f:path":{},"f:port":{},"f:scheme":{}},
                      "f:periodSeconds":{},
                      "f:successThreshold":{},
                      "f:timeoutSeconds":{}
                    },
                    "f:name":{},
                    "f:ports":{
                      ".":{},
                      "k:{\"containerPort\":8080,\"protocol\":\"TCP\"}":{
                        ".":{},
                        "f:containerPort":{},
                        "f:name":{},
                        "f:protocol":{}
                      }
                    },
                    "f:readinessProbe":{
                      ".":{},
                      "f:failureThreshold":{},
                      "f:httpGet":{".":{},"f:path":{},"f:port":{},"f:scheme":{}},
                      "f:periodSeconds":{},
                      "f:successThreshold":{},
                      "f:timeoutSeconds":{}
                    },
                    "f:resources":{
                      ".":{},
                      "f:limits":{".":{},"f:memory":{}},
                      "f:requests":{".":{},"f:cpu":{},"f:memory":{}}
                    },
                    "f:securityContext":{
                      ".":{},
                      "f:allowPrivilegeEscalation":{},
                      "f:readOnlyRootFilesystem":{}
                    },
                    "f:terminationMessagePath":{},
                    "f:terminationMessagePolicy":{},
                    "f:volumeMounts":{
                      ".":{},
                      "k:{\"mountPath\":\"/etc/checkout\"}":{
                        ".":{},
                        "f:mountPath":{},
                        "f:name":{},
                        "f:readOnly":{}
                      },
                      "k:{\"mountPath\":\"/tmp\"}":{".":{},"f:mountPath":{},"f:name":{}}
                    }
                  },
                  "k:{\"name\":\"envoy\"}":{
                    ".":{},
                    "f:args":{},
                    "f:image":{},
                    "f:imagePullPolicy":{},
                    "f:name":{},
                    "f:ports":{
                      ".":{},
                      "k:{\"containerPort\":9901,\"protocol\":\"TCP\"}":{
                        ".":{},
                        "f:containerPort":{},
                        "f:name":{},
                        "f:protocol":{}
                      }
                    },
                    "f:resources":{
                      ".":{},
                      "f:limits":{".":{},"f:memory":{}},
                      "f:requests":{".":{},"f:cpu":{},"f:memory":{}}
                    },
                    "f:terminationMessagePath":{},
                    "f:terminationMessagePolicy":{}
                  }
                },
                "f:dnsPolicy":{},
                "f:enableServiceLinks":{},
                "f:initContainers":{
                  ".":{},
                  "k:{\"name\":\"migrate\"}":{
                    ".":{},
                    "f:args":{},
                    "f:command":{},
                    "f:image":{},
                    "f:imagePullPolicy":{},
                    "f:name":{},
                    "f:resources":{},
                    "f:terminationMessagePath":{},
                    "f:terminationMessagePolicy":{}
                  }
                },
                "f:restartPolicy":{},
                "f:schedulerName":{},
                "f:securityContext":{".":{},"f:fsGroup":{},"f:runAsNonRoot":{}},
                "f:serviceAccount":{},
                "f:serviceAccountName":{},
                "f:terminationGracePeriodSeconds":{},
                "f:tolerations":{},
                "f:topologySpreadConstraints":{
                  ".":{},
                  "k:{\"topologyKey\":\"topology.kubernetes.io/zone\",\"whenUnsatisfiable\":\"ScheduleAnyway\"}":{
                    ".":{},
                    "f:labelSelector":{},
                    "f:maxSkew":{},
                    "f:topologyKey":{},
                    "f:whenUnsatisfiable":{}
                  }
                },
                "f:volumes":{
                  ".":{},
                  "k:{\"name\":\"config\"}":{
                    ".":{},
                    "f:configMap":{".":{},"f:defaultMode":{},"f:name":{}},
                    "f:name":{}
                  },
                  "k:{\"name\":\"tmp\"}":{".":{},"f:emptyDir":{},"f:name":{}}
                }
              }
            }
          }
        ]
      },
      "spec":{
        "volumes":[
          {"name":"config","configMap":{"name":"checkout-api-config","defaultMode":420}},
          {"name":"tmp","emptyDir":{}},
          {
            "name":"kube-api-access-x7k2p",
            "projected":{
              "sources":[
                {"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},
                {
                  "configMap":{
                    "name":"kube-root-ca.crt",
                    "items":[{"key":"ca.crt","path":"ca.crt"}]
                  }
                },
                {
                  "downwardAPI":{
                    "items":[
                      {
                        "path":"namespace",
                        "fieldRef":{"apiVersion":"v1","fieldPath":"metadata.namespace"}
                      }
                    ]
                  }
                }
              ],
              "defaultMode":420
            }
          }
        ],
        "initContainers":[
          {
            "name":"migrate",
            "image":"registry10.example.com/shop/checkout-migrate:2.14.1",
            "command":["/app/migrate"],
            "args":["--database-url-env=DATABASE_URL","up"],
            "resources":{},
            "volumeMounts":[
              {
                "name":"kube-api-access-x7k2p",
                "readOnly":true,
                "mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"
              }
            ],
            "terminationMessagePath":"/dev/termination-log",
            "terminationMessagePolicy":"File",
            "imagePullPolicy":"IfNotPresent"
          }
        ],
        "containers":[
          {
            "name":"api",
            "image":"registry11.example.com/team/project/checkout-api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "ports":[{"name":"http","containerPort":8080,"protocol":"TCP"}],
            "env":[
              {"name":"LOG_LEVEL","value":"info"},
              {
                "name":"DATABASE_URL",
                "valueFrom":{"secretKeyRef":{"name":"checkout-db","key":"url"}}
              },
              {
                "name":"POD_NAME",
                "valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.name"}}
              }
            ],
            "resources":{"limits":{"memory":"512Mi"},"requests":{"cpu":"250m","memory":"256Mi"}},
            "volumeMounts":[
              {"name":"config","readOnly":true,"mountPath":"/etc/checkout"},
              {"name":"tmp","mountPath":"/tmp"},
              {
                "name":"kube-api-access-x7k2p",
                "readOnly":true,
                "mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"
              }
            ],
            "livenessProbe":{
              "httpGet":{"path":"/healthz","port":"http","scheme":"HTTP"},
              "timeoutSeconds":1,
              "periodSeconds":10,
              "successThreshold":1,
              "failureThreshold":3
            },
            "readinessProbe":{
              "httpGet":{"path":"/ready","port":"http","scheme":"HTTP"},
              "timeoutSeconds":1,
              "periodSeconds":5,
              "successThreshold":1,
              "failureThreshold":3
            },
            "terminationMessagePath":"/dev/termination-log",
            "terminationMessagePolicy":"File",
            "imagePullPolicy":"IfNotPresent",
            "securityContext":{"readOnlyRootFilesystem":true,"allowPrivilegeEscalation":false}
          },
          {
            "name":"envoy",
            "image":"docker.io/envoyproxy/envoy:v1.31.2",
            "args":["-c","/etc/envoy/envoy.yaml","--log-level","warn"],
            "ports":[{"name":"admin","containerPort":9901,"protocol":"TCP"}],
            "resources":{"limits":{"memory":"128Mi"},"requests":{"cpu":"50m","memory":"64Mi"}},
            "volumeMounts":[
              {
                "name":"kube-api-access-x7k2p",
                "readOnly":true,
                "mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"
              }
            ],
            "terminationMessagePath":"/dev/termination-log",
            "terminationMessagePolicy":"File",
            "imagePullPolicy":"IfNotPresent"
          }
        ],
        "restartPolicy":"Always",
        "terminationGracePeriodSeconds":30,
        "dnsPolicy":"ClusterFirst",
        "serviceAccountName":"checkout",
        "serviceAccount":"checkout",
        "securityContext":{"runAsNonRoot":true,"fsGroup":2000},
        "schedulerName":"default-scheduler",
        "tolerations":[
          {
            "key":"node.kubernetes.io/not-ready",
            "operator":"Exists",
            "effect":"NoExecute",
            "tolerationSeconds":300
          },
          {
            "key":"node.kubernetes.io/unreachable",
            "operator":"Exists",
            "effect":"NoExecute",
            "tolerationSeconds":300
          }
        ],
        "topologySpreadConstraints":[
          {
            "maxSkew":1,
            "topologyKey":"topology.kubernetes.io/zone",
            "whenUnsatisfiable":"ScheduleAnyway",
            "labelSelector":{
              "matchLabels":{
                "app.kubernetes.io/instance":"checkout",
                "app.kubernetes.io/name":"checkout-api"
              }
            }
          }
        ],
        "priority":0,
        "enableServiceLinks":true,
        "preemptionPolicy":"PreemptLowerPriority"
      },
      "status":{}
    },
    "oldObject":null,
    "dryRun":false,
    "options":{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}
  }
}"#;

/// kube-apiserver sends compact JSON; the constant is indented only to be readable.
fn compact(pretty: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(pretty.len());
    let (mut in_string, mut escaped) = (false, false);
    for b in pretty.bytes() {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !b.is_ascii_whitespace() {
            in_string = b == b'"';
            out.push(b);
        }
    }
    out
}

/// The least any webhook must parse: the uid, skipping everything else.
#[derive(Deserialize)]
struct FloorReview<'a> {
    #[serde(borrow)]
    request: FloorRequest<'a>,
}

#[derive(Deserialize)]
struct FloorRequest<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
}

fn benches(c: &mut Criterion) {
    let (catalog, state) = setup(1);
    let ns = NamespaceInfo::named("team-a");
    let subject = Subject {
        kind: SubjectKind::Pod,
        name: None,
        images: IMAGES.to_vec(),
        existing: Vec::new(),
        labels: None,
        annotations: None,
    };
    let decision = catalog.decide(&subject, &ns, &state, false);
    assert!(
        decision.add.len() == 7,
        "bench setup must exercise matches: {:?}",
        decision.add
    );

    c.bench_function("decide/pod-10-containers/100-credentials", |b| {
        b.iter(|| catalog.decide(black_box(&subject), &ns, &state, false))
    });
    let (stress, stress_state) = setup(20);
    let stressed = stress.decide(&subject, &ns, &stress_state, false);
    assert_eq!(stressed.add.len(), 26, "{:?}", stressed.add);
    c.bench_function(
        "decide/pod-10-containers/100-credentials/20-match-one-image",
        |b| b.iter(|| stress.decide(black_box(&subject), &ns, &stress_state, false)),
    );
    // Verification: off, and on with every (credential, registry) probed ok (warn's steady
    // state) or rejected (each match then also writes a warning).
    let (off, off_state) = setup_with(1, "verify: {mode: \"off\"}\n");
    c.bench_function("decide/pod-10-containers/100-credentials/verify-off", |b| {
        b.iter(|| off.decide(black_box(&subject), &ns, &off_state, false))
    });
    let probed = |found: ProbeState| {
        let mut health = Health::new();
        for t in verify::targets(&catalog, &Default::default()) {
            let h = verify::next_health(None, found, None, 1_800_000_000);
            health.set(&t.credential, &t.registry, h);
        }
        let mut probed = state.clone();
        probed.set_health(health);
        probed
    };
    let all_ok = probed(ProbeState::Ok);
    assert_eq!(catalog.decide(&subject, &ns, &all_ok, false).add.len(), 7);
    c.bench_function(
        "decide/pod-10-containers/100-credentials/verify-all-ok",
        |b| b.iter(|| catalog.decide(black_box(&subject), &ns, &all_ok, false)),
    );
    let all_rejected = probed(ProbeState::Rejected);
    let warned = catalog.decide(&subject, &ns, &all_rejected, false);
    assert_eq!(warned.add.len(), 7);
    assert!(warned.warnings.len() >= 6, "{:?}", warned.warnings);
    c.bench_function(
        "decide/pod-10-containers/100-credentials/verify-all-rejected",
        |b| b.iter(|| catalog.decide(black_box(&subject), &ns, &all_rejected, false)),
    );
    c.bench_function("image/parse", |b| {
        b.iter(|| ImageRef::parse(black_box(IMAGES[1])))
    });
    let body = review_body();
    c.bench_function("admission/review-10-containers/100-credentials", |b| {
        b.iter(|| admission::review(&catalog, &state, black_box(&body)).unwrap())
    });

    let realistic = compact(REALISTIC_REVIEW);
    let reviewed = admission::review(&catalog, &state, &realistic).unwrap();
    assert!(
        reviewed.response.patch.is_some(),
        "bench setup must exercise a patch: {:?}",
        reviewed.outcome
    );
    c.bench_function("review/realistic", |b| {
        b.iter(|| admission::review(&catalog, &state, black_box(&realistic)).unwrap())
    });
    // The floor for a webhook: compare with review/realistic to see what reviewing costs.
    c.bench_function("review/floor-uid-only", |b| {
        b.iter(|| {
            serde_json::from_slice::<FloorReview>(black_box(&realistic))
                .unwrap()
                .request
                .uid
                .len()
        })
    });
}

criterion_group!(decision, benches);
criterion_main!(decision);
