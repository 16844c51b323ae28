//! The parts of an AdmissionReview the injector reads, borrowed from the body; everything else
//! is skipped by the parser (checked to be JSON, never built).
//!
//! Review-level fields keep the strictness of kube-core's `AdmissionReview<DynamicObject>`,
//! which this replaces: a wrong type there is a malformed review. Inside the object, `metadata`
//! is strict as k8s-openapi's `ObjectMeta` was, while `spec` and `imagePullSecrets` are read
//! leniently, as `serde_json::Value` was: a wrong type is recorded for `read_object` to report
//! as a warning, and a repeated key keeps its last value.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;

use crate::marks::{INJECTED_ANNOTATION, OPT_OUT_KEY};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A JSON string, borrowed from the body unless it had escapes to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str<'a>(Cow<'a, str>);

impl Str<'_> {
    /// The decoded text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor<'a>(PhantomData<Str<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for StrVisitor<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor(PhantomData))
    }
}

// The type names below are kube-core's: serde's schema errors name them, and should read
// as they did.

/// The top level of an AdmissionReview request body.
pub struct AdmissionReview<'a> {
    pub api_version: Str<'a>,
    pub request: Option<AdmissionRequest<'a>>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum ReviewKey {
    ApiVersion,
    Kind,
    Request,
    #[serde(other)]
    Other,
}

// Written out rather than derived because a derived struct also accepts a JSON array
// (`[1, 2, 3]` would be "expected a string"); kube-core's, being flattened, did not.
impl<'de: 'a, 'a> Deserialize<'de> for AdmissionReview<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ReviewVisitor<'a>(PhantomData<AdmissionReview<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for ReviewVisitor<'a> {
            type Value = AdmissionReview<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("struct AdmissionReview")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AdmissionReview<'a>, A::Error> {
                let mut api_version = None;
                // Required to be a string, as kube-core required it, but not otherwise used.
                let mut kind: Option<Str<'a>> = None;
                let mut request = None;
                while let Some(key) = map.next_key::<ReviewKey>()? {
                    match key {
                        ReviewKey::ApiVersion if api_version.is_some() => {
                            return Err(de::Error::duplicate_field("apiVersion"));
                        }
                        ReviewKey::ApiVersion => api_version = Some(map.next_value()?),
                        ReviewKey::Kind if kind.is_some() => {
                            return Err(de::Error::duplicate_field("kind"));
                        }
                        ReviewKey::Kind => kind = Some(map.next_value()?),
                        ReviewKey::Request if request.is_some() => {
                            return Err(de::Error::duplicate_field("request"));
                        }
                        ReviewKey::Request => request = Some(map.next_value()?),
                        ReviewKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let api_version =
                    api_version.ok_or_else(|| de::Error::missing_field("apiVersion"))?;
                if kind.is_none() {
                    return Err(de::Error::missing_field("kind"));
                }
                Ok(AdmissionReview {
                    api_version,
                    request: request.flatten(),
                })
            }
        }
        deserializer.deserialize_map(ReviewVisitor(PhantomData))
    }
}

/// `request`: what is needed to decide, ignoring `userInfo`, `oldObject`, `options` ...
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest<'a> {
    #[serde(borrow)]
    pub uid: Str<'a>,
    #[serde(borrow)]
    pub kind: GroupVersionKind<'a>,
    #[serde(borrow, default)]
    pub sub_resource: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub name: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub namespace: Option<Str<'a>>,
    pub operation: Operation,
    #[serde(default)]
    pub dry_run: Option<bool>,
    #[serde(borrow, default)]
    pub object: Option<Object<'a>>,
}

/// `request.kind`.
#[derive(Deserialize)]
pub struct GroupVersionKind<'a> {
    #[serde(borrow)]
    pub group: Str<'a>,
    /// Required, as kube-core required it, but not otherwise used.
    #[serde(borrow, rename = "version")]
    _version: Str<'a>,
    #[serde(borrow)]
    pub kind: Str<'a>,
}

/// `request.operation`. An operation a later Kubernetes adds is not a malformed review:
/// it is answered like UPDATE or DELETE, allowed with no patch.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
    #[serde(other)]
    Other,
}

impl Operation {
    /// The name kube-apiserver uses.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
            // Never the value itself: it is unbounded (metric label) and untrusted (logs).
            Operation::Other => "OTHER",
        }
    }
}

/// `request.object`, a superset of what Pods and ServiceAccounts need, since its kind is
/// only known from `request.kind`, which may come after it.
#[derive(Debug, Default)]
pub struct Object<'a> {
    pub metadata: Metadata<'a>,
    /// Whether `metadata` was there at all: the patch must create it when it was not.
    pub has_metadata: bool,
    /// `None` when absent; Pods only.
    pub spec: Option<Spec<'a>>,
    /// Top level; ServiceAccounts only.
    pub image_pull_secrets: List<'a>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum ObjectKey {
    Metadata,
    Spec,
    ImagePullSecrets,
    #[serde(other)]
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Object<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<'a>(PhantomData<Object<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for ObjectVisitor<'a> {
            type Value = Object<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("struct DynamicObject")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'a>, A::Error> {
                let mut object = Object::default();
                let mut seen_metadata = false;
                while let Some(key) = map.next_key::<ObjectKey>()? {
                    match key {
                        // A typed field of DynamicObject: serde refused it twice.
                        ObjectKey::Metadata if seen_metadata => {
                            return Err(de::Error::duplicate_field("metadata"));
                        }
                        ObjectKey::Metadata => {
                            seen_metadata = true;
                            object.has_metadata = true;
                            object.metadata = map.next_value()?;
                        }
                        ObjectKey::Spec => {
                            object.spec = Some(map.next_value_seed(Lenient(ExpectSpec))?);
                        }
                        ObjectKey::ImagePullSecrets => {
                            object.image_pull_secrets =
                                map.next_value_seed(Lenient(ExpectList("name")))?;
                        }
                        ObjectKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(object)
            }
        }
        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// `metadata`: only what naming, opt-outs and the injected record need.
#[derive(Debug, Default)]
pub struct Metadata<'a> {
    pub name: Option<Str<'a>>,
    pub generate_name: Option<Str<'a>>,
    pub namespace: Option<Str<'a>>,
    /// Only the opt-out label: `Subject::labels` is documented to be read for nothing else.
    pub labels: Option<BTreeMap<String, String>>,
    /// Only the opt-out annotation and the injected record, which is all `Subject` and
    /// the patch read. `Some` whenever the object has annotations, since the patch differs.
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum MetadataKey {
    Name,
    GenerateName,
    Namespace,
    Labels,
    Annotations,
    #[serde(other)]
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Metadata<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetadataVisitor<'a>(PhantomData<Metadata<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for MetadataVisitor<'a> {
            type Value = Metadata<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("ObjectMeta")
            }
            // k8s-openapi's ObjectMeta keeps the last of repeated keys: so does this.
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata<'a>, A::Error> {
                let mut meta = Metadata::default();
                while let Some(key) = map.next_key::<MetadataKey>()? {
                    match key {
                        MetadataKey::Name => meta.name = map.next_value()?,
                        MetadataKey::GenerateName => meta.generate_name = map.next_value()?,
                        MetadataKey::Namespace => meta.namespace = map.next_value()?,
                        MetadataKey::Labels => {
                            meta.labels = map.next_value_seed(Picked(&[OPT_OUT_KEY]))?;
                        }
                        MetadataKey::Annotations => {
                            meta.annotations =
                                map.next_value_seed(Picked(&[OPT_OUT_KEY, INJECTED_ANNOTATION]))?;
                        }
                        MetadataKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(meta)
            }
        }
        deserializer.deserialize_map(MetadataVisitor(PhantomData))
    }
}

/// A string map (labels, annotations) keeping only the given keys: the others are checked
/// to be strings, as a `BTreeMap<String, String>` would, but not copied. Pods often carry
/// long annotations (`kubectl.kubernetes.io/last-applied-configuration`).
struct Picked(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Picked {
    type Value = Option<BTreeMap<String, String>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Picked {
    type Value = Option<BTreeMap<String, String>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
    // Repeated keys: the last wins, as in a BTreeMap.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut picked = BTreeMap::new();
        while let Some(key) = map.next_key::<Str>()? {
            let value: Str = map.next_value()?;
            if self.0.contains(&key.as_str()) {
                picked.insert(key.as_str().to_string(), value.as_str().to_string());
            }
        }
        Ok(Some(picked))
    }
}

/// `spec`, as far as a Pod's pull secrets go.
#[derive(Debug)]
pub enum Spec<'a> {
    Fields(PodSpec<'a>),
    /// Not an object (including null).
    NotObject,
}

/// The image lists of a Pod and its `imagePullSecrets`.
#[derive(Debug, Default)]
pub struct PodSpec<'a> {
    pub init_containers: List<'a>,
    pub containers: List<'a>,
    pub ephemeral_containers: List<'a>,
    pub image_pull_secrets: List<'a>,
}

/// A list of objects of which one string field is read (`image`, `name`).
#[derive(Debug, Default, PartialEq, Eq)]
pub enum List<'a> {
    /// Absent or null.
    #[default]
    Absent,
    /// The field of every item that has it as a string, in order; items that are not
    /// objects, or lack the field, or have it null, contribute nothing.
    Items(Vec<Str<'a>>),
    /// Not an array.
    NotArray,
    /// The first item whose field is neither a string nor null.
    WrongItem(usize),
}

/// One value read with [`Lenient`]: what to make of each JSON type.
trait Expect<'de>: Sized {
    type Out;
    /// `null`, which Kubernetes treats as absent.
    fn null(self) -> Self::Out;
    /// A value of another type, already skipped.
    fn wrong(self) -> Self::Out;
    fn string(self, _: Str<'de>) -> Self::Out {
        self.wrong()
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Out, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(self.wrong())
    }
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Out, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(self.wrong())
    }
}

/// Reads a value of any JSON type without failing on the type: only invalid JSON is an
/// error. A value of the wrong type is skipped without being built.
struct Lenient<E>(E);

impl<'de, E: Expect<'de>> DeserializeSeed<'de> for Lenient<E> {
    type Value = E::Out;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<E::Out, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, E: Expect<'de>> Visitor<'de> for Lenient<E> {
    type Value = E::Out;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<Er: de::Error>(self) -> Result<E::Out, Er> {
        Ok(self.0.null())
    }
    fn visit_none<Er: de::Error>(self) -> Result<E::Out, Er> {
        Ok(self.0.null())
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<E::Out, D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_bool<Er: de::Error>(self, _: bool) -> Result<E::Out, Er> {
        Ok(self.0.wrong())
    }
    fn visit_i64<Er: de::Error>(self, _: i64) -> Result<E::Out, Er> {
        Ok(self.0.wrong())
    }
    fn visit_u64<Er: de::Error>(self, _: u64) -> Result<E::Out, Er> {
        Ok(self.0.wrong())
    }
    fn visit_i128<Er: de::Error>(self, _: i128) -> Result<E::Out, Er> {
        Ok(self.0.wrong())
    }
    fn visit_u128<Er: de::Error>(self, _: u128) -> Result<E::Out, Er> {
        Ok(self.0.wrong())
    }
    fn visit_f64<Er: de::Error>(self, _: f64) -> Result<E::Out, Er> {
        Ok(self.0.wrong())
    }
    fn visit_borrowed_str<Er: de::Error>(self, v: &'de str) -> Result<E::Out, Er> {
        Ok(self.0.string(Str(Cow::Borrowed(v))))
    }
    fn visit_str<Er: de::Error>(self, v: &str) -> Result<E::Out, Er> {
        Ok(self.0.string(Str(Cow::Owned(v.to_owned()))))
    }
    fn visit_string<Er: de::Error>(self, v: String) -> Result<E::Out, Er> {
        Ok(self.0.string(Str(Cow::Owned(v))))
    }
    fn visit_bytes<Er: de::Error>(self, _: &[u8]) -> Result<E::Out, Er> {
        Ok(self.0.wrong())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<E::Out, A::Error> {
        self.0.seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<E::Out, A::Error> {
        self.0.map(map)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum SpecKey {
    InitContainers,
    Containers,
    EphemeralContainers,
    ImagePullSecrets,
    #[serde(other)]
    Other,
}

struct ExpectSpec;

impl<'de> Expect<'de> for ExpectSpec {
    type Out = Spec<'de>;
    fn null(self) -> Spec<'de> {
        Spec::NotObject
    }
    fn wrong(self) -> Spec<'de> {
        Spec::NotObject
    }
    // A repeated key keeps its last value, as in a `serde_json::Value`.
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spec<'de>, A::Error> {
        let mut spec = PodSpec::default();
        while let Some(key) = map.next_key::<SpecKey>()? {
            let list = match key {
                SpecKey::InitContainers => &mut spec.init_containers,
                SpecKey::Containers => &mut spec.containers,
                SpecKey::EphemeralContainers => &mut spec.ephemeral_containers,
                SpecKey::ImagePullSecrets => {
                    spec.image_pull_secrets = map.next_value_seed(Lenient(ExpectList("name")))?;
                    continue;
                }
                SpecKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *list = map.next_value_seed(Lenient(ExpectList("image")))?;
        }
        Ok(Spec::Fields(spec))
    }
}

/// A list of objects, reading the string field named here from each.
struct ExpectList(&'static str);

impl<'de> Expect<'de> for ExpectList {
    type Out = List<'de>;
    fn null(self) -> List<'de> {
        List::Absent
    }
    fn wrong(self) -> List<'de> {
        List::NotArray
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<'de>, A::Error> {
        let mut values = Vec::new();
        let mut index = 0;
        while let Some(item) = seq.next_element_seed(Lenient(ExpectItem(self.0)))? {
            match item {
                Field::Absent => {}
                Field::Value(v) => values.push(v),
                Field::Wrong => {
                    // The rest is still read, so that invalid JSON is refused as before.
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    return Ok(List::WrongItem(index));
                }
            }
            index += 1;
        }
        Ok(List::Items(values))
    }
}

/// One string field of a list item.
enum Field<'a> {
    /// The item is not an object, or lacks the field, or has it null.
    Absent,
    Value(Str<'a>),
    Wrong,
}

/// A list item, of which only the field named here is read.
struct ExpectItem(&'static str);

impl<'de> Expect<'de> for ExpectItem {
    type Out = Field<'de>;
    fn null(self) -> Field<'de> {
        Field::Absent
    }
    fn wrong(self) -> Field<'de> {
        Field::Absent
    }
    // A repeated key keeps its last value, as in a `serde_json::Value`.
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
        let mut field = Field::Absent;
        while let Some(wanted) = map.next_key_seed(KeyIs(self.0))? {
            if wanted {
                field = map.next_value_seed(Lenient(ExpectString))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(field)
    }
}

struct ExpectString;

impl<'de> Expect<'de> for ExpectString {
    type Out = Field<'de>;
    fn null(self) -> Field<'de> {
        Field::Absent
    }
    fn wrong(self) -> Field<'de> {
        Field::Wrong
    }
    fn string(self, s: Str<'de>) -> Field<'de> {
        Field::Value(s)
    }
}

/// Whether a map key is the given name, compared without copying it.
struct KeyIs(&'static str);

impl<'de> DeserializeSeed<'de> for KeyIs {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for KeyIs {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}
