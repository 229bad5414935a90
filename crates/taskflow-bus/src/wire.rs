//! An event on a broker's wire, whichever broker: its CloudEvent in structured mode
//! (`application/cloudevents+json`) with the outbox position as the CloudEvents `sequence`
//! extension (a zero-padded decimal, so it also sorts as text). The position a handler sees,
//! and an SSE id, are the same as on the embedded log.

use serde_json::Value;
use taskflow_core::{CloudEvent, Topic};
use taskflow_store::StoredEvent;

use crate::Envelope;

/// The CloudEvents extension attribute that carries the outbox position.
const SEQUENCE: &str = "sequence";

/// The content type of an event on the wire.
pub(crate) const CONTENT_TYPE: &str = "application/cloudevents+json";

/// The wire form of an outbox event: its CloudEvent with the position as `sequence`.
pub(crate) fn encode(e: &StoredEvent) -> Vec<u8> {
    serde_json::to_vec(&encode_value(e)).unwrap_or_default()
}

/// [`encode`] as a JSON value, for a message that carries the event inside JSON of its own.
pub(crate) fn encode_value(e: &StoredEvent) -> Value {
    let mut v = serde_json::to_value(&e.event).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert(
            SEQUENCE.into(),
            Value::String(format!("{:020}", e.position)),
        );
    }
    v
}

/// The envelope of an event read from `topic` (`None`: a topic that is not taskflow's).
/// Attributes a broker adds on the way (Dapr's `topic`, `pubsubname`, `traceid`) pass by.
pub(crate) fn decode(topic: Option<Topic>, payload: &[u8]) -> Result<Envelope, String> {
    let topic = topic.ok_or("a topic that is not taskflow's")?;
    let mut v: Value =
        serde_json::from_slice(payload).map_err(|e| format!("the message is not JSON: {e}"))?;
    let position = v
        .as_object_mut()
        .and_then(|m| m.remove(SEQUENCE))
        .and_then(|s| s.as_str().and_then(|s| s.parse::<i64>().ok()))
        .ok_or("the event has no `sequence` (its outbox position)")?;
    let event: CloudEvent =
        serde_json::from_value(v).map_err(|e| format!("the message is not a CloudEvent: {e}"))?;
    Ok(Envelope {
        position,
        topic,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_crosses_the_wire_with_its_position() {
        let event = CloudEvent::new(
            "com.taskflow.task.created.v1",
            "taskflow/api",
            taskflow_core::UserId::new(),
            Some("t1".into()),
            None,
            chrono::Utc::now(),
            serde_json::json!({"task_number": 1}),
        );
        let stored = StoredEvent {
            position: 42,
            topic: Topic::TaskEvents,
            event: event.clone(),
        };
        let wire = encode(&stored);
        let v: Value = serde_json::from_slice(&wire).unwrap_or_default();
        assert_eq!(v["sequence"], "00000000000000000042");
        assert_eq!(v["specversion"], "1.0");
        let expected = Ok(Envelope {
            position: 42,
            topic: Topic::TaskEvents,
            event,
        });
        assert_eq!(decode(Some(Topic::TaskEvents), &wire), expected);
        assert!(decode(Some(Topic::TaskEvents), b"{}").is_err());
        assert!(decode(None, &wire).is_err());
        // As a Dapr sidecar delivers it: its own attributes added.
        let mut delivered = v.clone();
        delivered["topic"] = "task-events".into();
        delivered["pubsubname"] = "taskflow-pubsub".into();
        delivered["traceid"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into();
        let delivered = serde_json::to_vec(&delivered).unwrap_or_default();
        assert_eq!(decode(Some(Topic::TaskEvents), &delivered), expected);
    }
}
