//! Warning Events where `kubectl describe` shows them: on the config ConfigMap (an invalid
//! config, a credential whose source cannot be used) and on a credential's source Secret (its
//! registry rejects it, its token expires soon).

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::PostParams;

use super::api::{ApiAction, describe};
use super::{FIELD_MANAGER, Shared};
use crate::lock::lock;

impl Shared {
    /// Records a Warning Event on the ConfigMap, where `kubectl describe` shows it.
    pub(super) async fn post_event(&self, reason: &str, message: String) {
        self.post_event_about(reason, message, None).await;
    }

    /// [`Shared::post_event`] about one version of the ConfigMap (uid, resourceVersion); the
    /// one last seen when `None`.
    pub(super) async fn post_event_about(
        &self,
        reason: &str,
        message: String,
        object: Option<(Option<String>, Option<String>)>,
    ) {
        let (uid, resource_version) = object
            .or_else(|| lock(&self.config).object.clone())
            .unwrap_or_default();
        let about = ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("ConfigMap".to_string()),
            name: Some(self.args.config_map_name.clone()),
            namespace: Some(self.args.config_map_namespace.clone()),
            uid,
            resource_version,
            ..Default::default()
        };
        self.post_event_on(about, reason, message).await;
    }

    /// Records a Warning Event on a Secret (a credential's source: `namespace/name`), where
    /// `kubectl describe secret` shows it.
    pub(super) async fn post_secret_event(&self, source: &str, reason: &str, message: String) {
        let Some((namespace, name)) = source.split_once('/') else {
            return;
        };
        let about = ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Secret".to_string()),
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        };
        self.post_event_on(about, reason, message).await;
    }

    /// Records a Warning Event about `about`, in its namespace.
    async fn post_event_on(&self, about: ObjectReference, reason: &str, mut message: String) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        // kube-apiserver refuses Event messages over 1 KiB.
        if message.len() > 1000 {
            let mut cut = 990;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" ...");
        }
        let namespace = about.namespace.clone().unwrap_or_default();
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", about.name.as_deref().unwrap_or("event"))),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: about,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some("Warning".to_string()),
            source: Some(EventSource {
                component: Some(FIELD_MANAGER.to_string()),
                host: None,
            }),
            reporting_component: Some(FIELD_MANAGER.to_string()),
            reporting_instance: std::env::var("POD_NAME").ok(),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        self.throttle().await;
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => self.metrics.api_write(ApiAction::CreateEvent.as_str()),
            Err(e) => {
                self.metrics
                    .reconcile_error(ApiAction::CreateEvent.as_str());
                tracing::warn!(
                    "cannot record an Event in namespace {namespace}: {}",
                    describe(&e)
                );
            }
        }
    }
}
