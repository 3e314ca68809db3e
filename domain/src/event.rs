use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

/// A stored event could not be turned back into a domain event.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The event type is not one this aggregate knows.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// The stored schema version is newer than this code understands.
    #[error("event type {event_type:?} has schema version {version}, newer than the supported {supported}")]
    FutureVersion {
        event_type: String,
        version: i32,
        supported: i32,
    },
    /// The payload does not match the event type's schema.
    #[error("malformed {event_type:?} event: {source}")]
    Malformed {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

/// An event as stored: a type name, a schema version and a JSON payload.
///
/// Implementations are enums serialised with `#[serde(tag = "type")]`; the tag becomes the
/// event-type column and the remaining fields the payload, so an event type's name is its
/// variant's name.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync {
    /// The schema version every event of this enum is written with today.
    ///
    /// Raise it for one event type by returning a higher number for that type, and teach
    /// [`DomainEvent::upcast`] to turn the older payloads into the current shape.
    fn schema_version(event_type: &str) -> i32 {
        let _ = event_type;
        1
    }

    /// Rewrites a payload stored with an older schema version into the current shape.
    fn upcast(event_type: &str, version: i32, data: Value) -> Value {
        let _ = (event_type, version);
        data
    }

    /// Splits the event into its type name and payload.
    fn encode(&self) -> (String, Value) {
        // Serialising a derive(Serialize) enum of plain data cannot fail.
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        let event_type = match value.as_object_mut().and_then(|m| m.remove("type")) {
            Some(Value::String(t)) => t,
            _ => String::new(),
        };
        (event_type, value)
    }

    /// Rebuilds an event from its stored type, schema version and payload, upcasting old versions.
    fn decode(event_type: &str, version: i32, data: &Value) -> Result<Self, DecodeError> {
        let supported = Self::schema_version(event_type);
        if version > supported {
            return Err(DecodeError::FutureVersion {
                event_type: event_type.to_owned(),
                version,
                supported,
            });
        }
        let upcast;
        let data = if version < supported {
            upcast = Self::upcast(event_type, version, data.clone());
            &upcast
        } else {
            data
        };
        let empty = serde_json::Map::new();
        let payload = match data {
            Value::Object(map) => map,
            Value::Null => &empty,
            other => {
                return Err(DecodeError::Malformed {
                    event_type: event_type.to_owned(),
                    source: <serde_json::Error as serde::de::Error>::custom(format!(
                        "payload must be a JSON object, not {other}"
                    )),
                })
            }
        };
        <Self as serde::Deserialize>::deserialize(tagged::Tagged { event_type, payload }).map_err(|source| {
            if is_unknown_type::<Self>(event_type) {
                DecodeError::UnknownType(event_type.to_owned())
            } else {
                DecodeError::Malformed {
                    event_type: event_type.to_owned(),
                    source,
                }
            }
        })
    }
}

/// The payload of a stored event read as the object `{"type": <event type>, ...payload}` that the
/// event enum's `#[serde(tag = "type")]` expects, straight from the stored JSON: nothing is copied
/// before serde sees it (decoding is most of a replay's work in this process).
mod tagged {
    use serde::de::value::BorrowedStrDeserializer;
    use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, Visitor};
    use serde_json::{Map, Value};

    pub(super) struct Tagged<'a> {
        pub(super) event_type: &'a str,
        pub(super) payload: &'a Map<String, Value>,
    }

    impl<'de> Deserializer<'de> for Tagged<'de> {
        type Error = serde_json::Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            visitor.visit_map(Entries {
                tag: Some(self.event_type),
                // The tag is the event type column; a payload's own "type" would contradict it.
                entries: self.payload.iter().filter(|(key, _)| key.as_str() != "type"),
                value: None,
            })
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
            identifier ignored_any
        }
    }

    struct Entries<'de, I> {
        tag: Option<&'de str>,
        entries: I,
        value: Option<&'de Value>,
    }

    impl<'de, I: Iterator<Item = (&'de String, &'de Value)>> MapAccess<'de> for Entries<'de, I> {
        type Error = serde_json::Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
            if self.tag.is_some() {
                return seed.deserialize(BorrowedStrDeserializer::new("type")).map(Some);
            }
            match self.entries.next() {
                Some((key, value)) => {
                    self.value = Some(value);
                    seed.deserialize(BorrowedStrDeserializer::new(key.as_str())).map(Some)
                }
                None => Ok(None),
            }
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
            if let Some(tag) = self.tag.take() {
                return seed.deserialize(BorrowedStrDeserializer::new(tag));
            }
            match self.value.take() {
                Some(value) => seed.deserialize(value),
                None => Err(serde_json::Error::custom("a map value was asked for before its key")),
            }
        }
    }
}

/// Whether `event_type` names no variant of `E`.
///
/// serde reports a bad tag and a bad value of an enum inside the payload with the same "unknown
/// variant" message, so the tag is decoded on its own: with no payload, a known type fails only
/// with "missing field" (or succeeds), never with "unknown variant".
fn is_unknown_type<E: DeserializeOwned>(event_type: &str) -> bool {
    let mut tag_only = serde_json::Map::new();
    tag_only.insert("type".into(), Value::String(event_type.to_owned()));
    matches!(
        serde_json::from_value::<E>(Value::Object(tag_only)),
        Err(error) if error.to_string().starts_with("unknown variant")
    )
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::build::{BuildEvent, BuildOutcome, Trigger, TriggerSource};
    use crate::ids::{BuildId, OrgId, RepoId};
    use crate::org::{OrgEvent, SlugEvent};
    use crate::repo::{RepoEvent, RepoSettings};
    use crate::values::{CommitSha, GitRef, GitUrl, JobId, Labels, Name, OrgSlug, Params, RefName};

    fn job(raw: &str) -> JobId {
        JobId::parse(raw).expect("valid job id")
    }

    fn round_trip<E: DomainEvent + PartialEq>(event: &E) {
        let (event_type, data) = event.encode();
        assert!(!data.as_object().is_some_and(|m| m.contains_key("type")), "{data}");
        let decoded = E::decode(&event_type, E::schema_version(&event_type), &data)
            .unwrap_or_else(|e| panic!("{event_type} {data} did not decode: {e}"));
        assert_eq!(&decoded, event);
    }

    /// One sample of every build event; the match makes a new variant fail to compile until it is
    /// sampled here.
    fn every_build_event() -> Vec<BuildEvent> {
        let samples = vec![
            BuildEvent::BuildQueued {
                org_id: OrgId::from_uuid(Uuid::from_u128(1)),
                repo_id: RepoId::from_uuid(Uuid::from_u128(2)),
                trigger: Trigger {
                    source: TriggerSource::Webhook,
                    git_ref: GitRef::Tag(RefName::parse("v1.2.0").expect("valid ref")),
                    commit: Some(CommitSha::parse("abcdef1").expect("valid sha")),
                    params: Params::parse([("X".into(), "1".into())]).expect("valid params"),
                    push: None,
                },
                retry_of: Some(BuildId::from_uuid(Uuid::from_u128(3))),
            },
            BuildEvent::BuildQueued {
                org_id: OrgId::from_uuid(Uuid::from_u128(1)),
                repo_id: RepoId::from_uuid(Uuid::from_u128(2)),
                trigger: Trigger {
                    source: TriggerSource::Api,
                    git_ref: GitRef::Branch(RefName::parse("main").expect("valid ref")),
                    commit: None,
                    params: Params::default(),
                    push: None,
                },
                retry_of: None,
            },
            BuildEvent::BuildStarted { runner: "r1".into() },
            BuildEvent::SourceCheckedOut {
                git_ref: GitRef::Branch(RefName::parse("main").expect("valid ref")),
                commit: CommitSha::parse(&"ab12".repeat(10)).expect("valid sha"),
            },
            BuildEvent::JobQueued {
                job_id: job("test"),
                dependencies: vec![job("build"), job("lint")],
            },
            BuildEvent::JobBlocked { job_id: job("deploy") },
            BuildEvent::JobUnblocked { job_id: job("deploy") },
            BuildEvent::JobStarted { job_id: job("test") },
            BuildEvent::JobSucceeded { job_id: job("test") },
            BuildEvent::JobFailed {
                job_id: job("test"),
                message: "exit 1".into(),
            },
            BuildEvent::JobSkipped {
                job_id: job("deploy"),
                message: "dependency failed".into(),
            },
            BuildEvent::JobCanceled { job_id: job("deploy") },
            BuildEvent::BuildCancelRequested,
            BuildEvent::BuildFinished {
                outcome: BuildOutcome::Errored,
                message: Some("runner lost".into()),
            },
            BuildEvent::BuildFinished {
                outcome: BuildOutcome::Succeeded,
                message: None,
            },
            BuildEvent::BuildRetried {
                new_build_id: BuildId::from_uuid(Uuid::from_u128(4)),
            },
            BuildEvent::ArtifactSaved {
                job_id: job("build"),
                artifact_id: crate::pipeline::ArtifactId::parse("dist").expect("valid id"),
                blob: crate::build::BlobRef {
                    key: "o/r/b/dist.tgz".into(),
                    size: 1234,
                    sha256: "0f".repeat(32),
                },
            },
            BuildEvent::JobLogArchived {
                job_id: job("build"),
                blob: crate::build::BlobRef {
                    key: "logs/o/r/b/build.log".into(),
                    size: 99,
                    sha256: "a1".repeat(32),
                },
                lines: 7,
            },
        ];
        let mut seen = [false; 16];
        for sample in &samples {
            let index = match sample {
                BuildEvent::BuildQueued { .. } => 0,
                BuildEvent::BuildStarted { .. } => 1,
                BuildEvent::JobQueued { .. } => 2,
                BuildEvent::JobBlocked { .. } => 3,
                BuildEvent::JobUnblocked { .. } => 4,
                BuildEvent::JobStarted { .. } => 5,
                BuildEvent::JobSucceeded { .. } => 6,
                BuildEvent::JobFailed { .. } => 7,
                BuildEvent::JobSkipped { .. } => 8,
                BuildEvent::JobCanceled { .. } => 9,
                BuildEvent::BuildCancelRequested => 10,
                BuildEvent::BuildFinished { .. } => 11,
                BuildEvent::BuildRetried { .. } => 12,
                BuildEvent::ArtifactSaved { .. } => 13,
                BuildEvent::JobLogArchived { .. } => 14,
                BuildEvent::SourceCheckedOut { .. } => 15,
            };
            seen[index] = true;
        }
        assert!(seen.iter().all(|s| *s), "a build event variant has no sample");
        samples
    }

    #[test]
    fn every_build_event_survives_encode_and_decode() {
        for event in every_build_event() {
            round_trip(&event);
        }
    }

    #[test]
    fn org_slug_and_repo_events_survive_encode_and_decode() {
        let org_id = OrgId::from_uuid(Uuid::from_u128(1));
        let name = Name::parse("Acme").expect("valid name");
        for event in [
            OrgEvent::OrgCreated {
                name: name.clone(),
                slug: OrgSlug::parse("acme").expect("valid slug"),
            },
            OrgEvent::OrgRenamed { name: name.clone() },
            OrgEvent::OrgDeleted,
        ] {
            round_trip(&event);
        }
        for event in [SlugEvent::SlugClaimed { org_id }, SlugEvent::SlugReleased { org_id }] {
            round_trip(&event);
        }
        let settings = RepoSettings {
            name,
            git_url: GitUrl::parse("git@github.com:acme/app.git").expect("valid url"),
            main_branch: RefName::parse("main").expect("valid ref"),
            labels: Labels::parse([("team".into(), "core".into())]).expect("valid labels"),
        };
        for event in [
            RepoEvent::RepoAdded {
                org_id,
                settings: settings.clone(),
            },
            RepoEvent::RepoUpdated { settings },
            RepoEvent::RepoArchived,
        ] {
            round_trip(&event);
        }
    }

    #[test]
    fn the_event_type_is_the_variant_name_and_the_payload_its_fields() {
        let (event_type, data) = BuildEvent::JobFailed {
            job_id: job("test"),
            message: "exit 1".into(),
        }
        .encode();
        assert_eq!(event_type, "JobFailed");
        assert_eq!(data, json!({"job_id": "test", "message": "exit 1"}));
        assert_eq!(
            BuildEvent::BuildCancelRequested.encode(),
            ("BuildCancelRequested".into(), json!({}))
        );
    }

    #[test]
    fn optional_fields_may_be_left_out_of_a_stored_payload() {
        let decoded = BuildEvent::decode("JobQueued", 1, &json!({"job_id": "a"})).expect("decodes");
        assert_eq!(
            decoded,
            BuildEvent::JobQueued {
                job_id: job("a"),
                dependencies: vec![]
            }
        );
        let decoded = BuildEvent::decode("BuildCancelRequested", 1, &Value::Null).expect("decodes");
        assert_eq!(decoded, BuildEvent::BuildCancelRequested);
    }

    #[test]
    fn an_unknown_event_type_is_refused() {
        let error = BuildEvent::decode("BuildExploded", 1, &json!({})).expect_err("refused");
        assert!(
            matches!(&error, DecodeError::UnknownType(t) if t == "BuildExploded"),
            "{error:?}"
        );
        // An event type of another aggregate is unknown too.
        let error = BuildEvent::decode("OrgDeleted", 1, &json!({})).expect_err("refused");
        assert!(
            matches!(&error, DecodeError::UnknownType(t) if t == "OrgDeleted"),
            "{error:?}"
        );
    }

    #[test]
    fn a_schema_version_newer_than_supported_is_refused() {
        let error = BuildEvent::decode("BuildStarted", 2, &json!({"runner": "r1"})).expect_err("refused");
        assert!(
            matches!(
                &error,
                DecodeError::FutureVersion { event_type, version: 2, supported: 1 } if event_type == "BuildStarted"
            ),
            "{error:?}"
        );
    }

    #[test]
    fn a_payload_missing_a_field_is_malformed() {
        let error = BuildEvent::decode("BuildStarted", 1, &json!({})).expect_err("refused");
        assert!(
            matches!(&error, DecodeError::Malformed { event_type, .. } if event_type == "BuildStarted"),
            "{error:?}"
        );
    }

    #[test]
    fn a_payload_with_a_field_of_the_wrong_type_is_malformed() {
        let error = BuildEvent::decode("BuildStarted", 1, &json!({"runner": 42})).expect_err("refused");
        assert!(matches!(&error, DecodeError::Malformed { .. }), "{error:?}");
    }

    #[test]
    fn a_payload_that_is_not_an_object_is_malformed() {
        for payload in [json!([1, 2]), json!("runner"), json!(3)] {
            let error = BuildEvent::decode("BuildStarted", 1, &payload).expect_err("refused");
            assert!(
                matches!(&error, DecodeError::Malformed { event_type, .. } if event_type == "BuildStarted"),
                "{error:?}"
            );
        }
    }

    #[test]
    fn a_payload_with_an_id_that_is_not_a_uuid_is_malformed() {
        let error = BuildEvent::decode("BuildRetried", 1, &json!({"new_build_id": "not-a-uuid"})).expect_err("refused");
        assert!(matches!(&error, DecodeError::Malformed { .. }), "{error:?}");
    }

    #[test]
    fn a_known_event_with_an_unknown_enum_value_in_its_payload_is_malformed_not_unknown() {
        let error = BuildEvent::decode("BuildFinished", 1, &json!({"outcome": "exploded"})).expect_err("refused");
        assert!(
            matches!(&error, DecodeError::Malformed { event_type, .. } if event_type == "BuildFinished"),
            "{error:?}"
        );
    }

    /// An event enum whose `Renamed` type is at schema version 2: version 1 called the field `title`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type")]
    enum Versioned {
        Renamed { name: String },
    }

    impl DomainEvent for Versioned {
        fn schema_version(event_type: &str) -> i32 {
            if event_type == "Renamed" {
                2
            } else {
                1
            }
        }

        fn upcast(event_type: &str, version: i32, mut data: Value) -> Value {
            if event_type == "Renamed" && version == 1 {
                if let Some(map) = data.as_object_mut() {
                    if let Some(title) = map.remove("title") {
                        map.insert("name".into(), title);
                    }
                }
            }
            data
        }
    }

    #[test]
    fn an_older_schema_version_is_upcast_before_decoding() {
        let decoded = Versioned::decode("Renamed", 1, &json!({"title": "Acme"})).expect("decodes");
        assert_eq!(decoded, Versioned::Renamed { name: "Acme".into() });
        let decoded = Versioned::decode("Renamed", 2, &json!({"name": "Acme"})).expect("decodes");
        assert_eq!(decoded, Versioned::Renamed { name: "Acme".into() });
        let error = Versioned::decode("Renamed", 3, &json!({"name": "Acme"})).expect_err("refused");
        assert!(
            matches!(
                error,
                DecodeError::FutureVersion {
                    version: 3,
                    supported: 2,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn a_stored_v1_job_skipped_loads_with_its_reason_as_the_message() {
        assert_eq!(BuildEvent::schema_version("JobSkipped"), 2);
        let stored = json!({"job_id": "deploy", "reason": "dependency failed"});
        let decoded = BuildEvent::decode("JobSkipped", 1, &stored).expect("v1 decodes");
        assert_eq!(
            decoded,
            BuildEvent::JobSkipped {
                job_id: job("deploy"),
                message: "dependency failed".into(),
            }
        );
        // New events are written in the current shape.
        let (_, data) = decoded.encode();
        assert_eq!(data, json!({"job_id": "deploy", "message": "dependency failed"}));
        // A v2 payload is not touched, and the v1 field name is not accepted as v2.
        assert!(BuildEvent::decode("JobSkipped", 2, &stored).is_err());
    }
}
