//! The generated Mesos v1 messages read and write Mesos's JSON and protobuf.
use crate::mesos::v1::{self, scheduler};
use prost::Message;

#[test]
fn subscribe_call_reads_mesos_json() {
    let json = r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n",
        "roles":["r"],"capabilities":[{"type":"MULTI_ROLE"}]}},"unknown_field":1}"#;
    let call: scheduler::Call = serde_json::from_str(json).expect("valid SUBSCRIBE");
    assert_eq!(call.r#type(), scheduler::call::Type::Subscribe);
    let info = call.subscribe.expect("subscribe").framework_info;
    assert_eq!(info.name, "n");
    assert_eq!(info.roles, vec!["r".to_string()]);
}

#[test]
fn unknown_call_type_is_an_error() {
    let err = serde_json::from_str::<scheduler::Call>(r#"{"type":"FLY"}"#)
        .expect_err("FLY is no call type");
    assert!(err.to_string().contains("FLY"), "{err}");
}

#[test]
fn sixty_four_bit_integers_are_json_numbers_both_ways() {
    let range = v1::value::Range {
        begin: 31000,
        end: 32000,
    };
    let json = serde_json::to_value(range).expect("serialize");
    assert_eq!(json, serde_json::json!({"begin": 31000, "end": 32000}));
    let back: v1::value::Range =
        serde_json::from_str(r#"{"begin":"31000","end":32000}"#).expect("strings accepted");
    assert_eq!(back, range);
}

#[test]
fn event_type_and_bytes_use_mesos_names_and_base64() {
    let event = scheduler::Event {
        r#type: Some(scheduler::event::Type::Message as i32),
        message: Some(scheduler::event::Message {
            agent_id: v1::AgentId { value: "a".into() },
            executor_id: v1::ExecutorId { value: "e".into() },
            data: b"hi".to_vec(),
        }),
        ..Default::default()
    };
    let json = serde_json::to_value(&event).expect("serialize");
    assert_eq!(json["type"], "MESSAGE");
    assert_eq!(json["message"]["data"], "aGk=");
    assert_eq!(json["message"]["agent_id"]["value"], "a");
    let decoded = scheduler::Event::decode(event.encode_to_vec().as_slice()).expect("decode");
    assert_eq!(decoded, event);
}
