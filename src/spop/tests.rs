use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use prometheus::Registry;
use proptest::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Decoder, Encoder, Framed};
use tokio_util::sync::CancellationToken;

use super::agent::{negotiate, Agent};
use super::codec::{SpopCodec, SpopError};
use super::counters::SpopCounters;
use super::frame::*;
use super::message::{request_path, response_record, Scratch};
use crate::config::Config;
use crate::pipeline::Pipeline;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/spoe/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn decode_one(bytes: &[u8]) -> Frame {
    let mut buf = BytesMut::from(bytes);
    let frame = SpopCodec::new(16380).decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty(), "one frame");
    frame
}

fn encode(frame: &Frame) -> BytesMut {
    let mut buf = BytesMut::new();
    SpopCodec::new(1 << 20)
        .encode(frame.clone(), &mut buf)
        .unwrap();
    buf
}

#[test]
fn varints_round_trip_at_every_boundary() {
    let cases: &[(u64, usize)] = &[
        (0, 1),
        (239, 1),
        (240, 2),
        (2287, 2),
        (2288, 3),
        (264_431, 3),
        (264_432, 4),
        (33_818_863, 4),
        (33_818_864, 5),
        (4_328_786_159, 5),
        (4_328_786_160, 6),
        (u64::from(u32::MAX), 5),
        (u64::MAX, 10),
    ];
    for &(value, len) in cases {
        let mut buf = BytesMut::new();
        put_varint(&mut buf, value);
        assert_eq!(buf.len(), len, "{value}");
        assert_eq!(varint_len(value), len, "{value}");
        let mut reader = Reader::new(&buf);
        assert_eq!(reader.varint(), Ok(value));
        assert!(reader.is_empty());
        // Cut anywhere, it is truncated, never something else.
        for cut in 0..len {
            assert_eq!(
                Reader::new(&buf[..cut]).varint(),
                Err(Malformed("truncated"))
            );
        }
    }
}

#[test]
fn varints_beyond_64_bits_are_malformed() {
    // Eleven bytes with the continuation bit: longer than any u64.
    let long = [0xff; 11];
    assert!(Reader::new(&long).varint().is_err());
    // Ten bytes whose last one carries bits beyond 2^64.
    let mut over = vec![0xff; 9];
    over.push(0x7f);
    assert!(Reader::new(&over).varint().is_err());
}

fn every_frame() -> Vec<Frame> {
    vec![
        haproxy_hello(false),
        Frame::agent_hello("2.0", 16380, "pipelining,async"),
        Frame::notify(
            u64::MAX,
            240,
            &[(
                "all-types",
                &[
                    ("null", Value::Null),
                    ("t", Value::Bool(true)),
                    ("f", Value::Bool(false)),
                    ("i32", Value::Int32(-5)),
                    ("u32", Value::Uint32(u32::MAX)),
                    ("i64", Value::Int64(i64::MIN)),
                    ("u64", Value::Uint64(u64::MAX)),
                    ("v4", Value::Ipv4(Ipv4Addr::new(10, 1, 2, 3))),
                    ("v6", Value::Ipv6(Ipv6Addr::LOCALHOST)),
                    ("s", Value::String("é/x".as_bytes())),
                    ("b", Value::Binary(&[0, 255, 10])),
                    ("", Value::String(b"unnamed")),
                ],
            )],
        ),
        Frame::ack(
            7,
            2288,
            &[
                Action::SetVar {
                    scope: Scope::Transaction,
                    name: b"route",
                    value: Value::String(b"/users/:id"),
                },
                Action::UnsetVar {
                    scope: Scope::Request,
                    name: b"x",
                },
            ],
        ),
        Frame::haproxy_disconnect(Status::Timeout, "a timeout occurred"),
        Frame::agent_disconnect(Status::Invalid, "invalid frame received"),
        Frame {
            flags: 0,
            ..Frame::new(FrameType::Unset, 3, 4, Bytes::from_static(b"fragment"))
        },
        Frame::new(FrameType::Unknown(42), 0, 0, Bytes::new()),
    ]
}

#[test]
fn every_frame_type_round_trips() {
    for frame in every_frame() {
        let bytes = encode(&frame);
        assert_eq!(decode_one(&bytes), frame);
    }
    // And the payloads read back as written.
    let frames = every_frame();
    let values: Vec<_> = messages(&frames[2].payload)
        .next()
        .unwrap()
        .unwrap()
        .args()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values[3], Value::Int32(-5));
    assert_eq!(values[5], Value::Int64(i64::MIN));
    assert_eq!(values[10], Value::Binary(&[0, 255, 10]));
    let acts: Vec<_> = actions(&frames[3].payload).map(Result::unwrap).collect();
    assert_eq!(acts.len(), 2);
    assert!(matches!(acts[0], Action::SetVar { name: b"route", .. }));
}

#[test]
fn frames_split_at_every_byte_decode_the_same() {
    let mut stream = BytesMut::new();
    for frame in every_frame() {
        stream.extend_from_slice(&encode(&frame));
    }
    for cut in 0..=stream.len() {
        let mut codec = SpopCodec::new(1 << 20);
        let mut buf = BytesMut::from(&stream[..cut]);
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f);
        }
        buf.extend_from_slice(&stream[cut..]);
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f);
        }
        assert_eq!(out, every_frame(), "cut at {cut}");
    }
}

#[test]
fn a_length_of_4_gib_is_refused_without_allocating() {
    let mut buf = BytesMut::with_capacity(16);
    buf.put_slice(&[0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0, 1, 0, 0]);
    let mut codec = SpopCodec::new(16380);
    assert!(!codec.has_frame(&[0xff, 0xff, 0xff]));
    assert!(codec.has_frame(&buf), "decode answers without waiting");
    match codec.decode(&mut buf) {
        Err(SpopError::Protocol { status, .. }) => assert_eq!(status, Status::TooBig),
        other => panic!("{other:?}"),
    }
    assert!(buf.capacity() < 1024, "{}", buf.capacity());
    // Just over the agreed size is refused too; at it, it is awaited.
    let mut codec = SpopCodec::new(300);
    let mut at = BytesMut::from(&300u32.to_be_bytes()[..]);
    assert!(codec.decode(&mut at).unwrap().is_none());
    let mut over = BytesMut::from(&301u32.to_be_bytes()[..]);
    assert!(codec.decode(&mut over).is_err());
}

#[test]
fn a_frame_shorter_than_its_header_is_invalid() {
    for len in 0u32..7 {
        let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
        buf.put_slice(&[0; 7]);
        match SpopCodec::new(16380).decode(&mut buf) {
            Err(SpopError::Protocol { status, .. }) => assert_eq!(status, Status::Invalid),
            other => panic!("{len}: {other:?}"),
        }
    }
}

#[test]
fn haproxys_hello_is_agreed_to() {
    let hello = decode_one(&fixture("haproxy-hello.bin"));
    assert_eq!(hello.frame_type, FrameType::HaproxyHello);
    assert_eq!(hello.flags & FLAG_FIN, FLAG_FIN);
    let agreed = negotiate(&hello.payload, 16380).unwrap();
    assert_eq!(agreed.max_frame_size, 16380);
    assert_eq!(agreed.capabilities, "pipelining,async");
    assert!(!agreed.healthcheck);
    // The smaller frame size wins.
    assert_eq!(
        negotiate(&hello.payload, 4096).unwrap().max_frame_size,
        4096
    );

    let check = decode_one(&fixture("haproxy-hello-healthcheck.bin"));
    let agreed = negotiate(&check.payload, 16380).unwrap();
    assert!(agreed.healthcheck);
    assert_eq!(agreed.capabilities, "");
}

#[test]
fn a_hello_that_cannot_be_agreed_to_says_why() {
    let hello = |items: &[(&str, Value<'_>)]| negotiate(&kv_payload(items), 16380);
    let versions = ("supported-versions", Value::String(b"2.0"));
    let size = ("max-frame-size", Value::Uint32(16380));
    let caps = ("capabilities", Value::String(b""));
    assert_eq!(hello(&[size, caps]), Err(Status::NoVersion));
    assert_eq!(hello(&[versions, caps]), Err(Status::NoFrameSize));
    assert_eq!(hello(&[versions, size]), Err(Status::NoCapabilities));
    assert_eq!(
        hello(&[
            ("supported-versions", Value::String(b"1.0, 3.1")),
            size,
            caps
        ]),
        Err(Status::BadVersion)
    );
    assert_eq!(
        hello(&[versions, ("max-frame-size", Value::Uint32(255)), caps]),
        Err(Status::BadFrameSize)
    );
    // Spaces are ignored; unknown capabilities are too; fragmentation is not taken.
    let ok = hello(&[
        ("supported-versions", Value::String(b" 2.0 , 1.0")),
        size,
        ("capabilities", Value::String(b"fragmentation, async ,x")),
    ])
    .unwrap();
    assert_eq!(ok.capabilities, "async");
}

#[test]
fn haproxys_messages_read_as_the_contract_says() {
    let request = decode_one(&fixture("notify-request.bin"));
    assert_eq!(request.frame_type, FrameType::Notify);
    let message = messages(&request.payload).next().unwrap().unwrap();
    assert_eq!(message.name, b"hle-request");
    assert_eq!(request_path(&message), Ok("/hello"));

    let response = decode_one(&fixture("notify-response.bin"));
    let message = messages(&response.payload).next().unwrap().unwrap();
    assert_eq!(message.name, b"hle-response");
    let mut scratch = Scratch::default();
    let record = response_record(&message, &[], &mut scratch).unwrap();
    assert_eq!(record.status_code, "200");
    assert_eq!(record.status_class(), "2xx");
    assert_eq!(record.http_request_method, "GET");
    assert_eq!(record.http_request_path, "/hello");
    assert_eq!(
        (
            record.frontend_name,
            record.backend_name,
            record.server_name
        ),
        ("www", "app", "app1")
    );
    assert_eq!(record.client_ip, "127.0.0.1");
    assert!(record.client_port.parse::<u16>().is_ok());
    assert_eq!(record.request_wait, Some(4));
    assert!(record.queued.is_some() && record.connect.is_some() && record.response.is_some());
    assert_eq!(record.session, None, "Ta is not known at response time");
    assert!(!record.missing_timer_is_abort);

    let v6 = decode_one(&fixture("notify-response-ipv6.bin"));
    let message = messages(&v6.payload).next().unwrap().unwrap();
    let record = response_record(&message, &[], &mut scratch).unwrap();
    assert_eq!(record.client_ip, "::1");
    assert_eq!(record.http_request_path, "/v6path");

    let bye = decode_one(&fixture("haproxy-disconnect.bin"));
    assert_eq!(bye.frame_type, FrameType::HaproxyDisconnect);
    let items: Vec<_> = kv_items(&bye.payload).map(Result::unwrap).collect();
    assert_eq!(items[0], (&b"status-code"[..], Value::Uint32(0)));
}

#[test]
fn a_response_message_without_a_status_or_with_bad_values_is_rejected() {
    let read = |args: &[(&str, Value<'_>)]| {
        let frame = Frame::notify(1, 1, &[("hle-response", args)]);
        let message = messages(&frame.payload).next().unwrap().unwrap();
        let mut scratch = Scratch::default();
        response_record(&message, &["tenant"], &mut scratch).map(|r| {
            (
                r.status_code.to_string(),
                r.custom[0].to_string(),
                r.response,
            )
        })
    };
    assert_eq!(
        read(&[("backend", Value::String(b"b"))]),
        Err("missing_status")
    );
    assert_eq!(read(&[("status", Value::Null)]), Err("missing_status"));
    assert_eq!(
        read(&[("status", Value::String(b"abc"))]),
        Err("invalid_status")
    );
    assert_eq!(
        read(&[
            ("status", Value::Int64(200)),
            ("response", Value::String(b"x"))
        ]),
        Err("invalid_timer")
    );
    assert_eq!(
        read(&[
            ("status", Value::Int64(200)),
            ("server", Value::String(b"\xff"))
        ]),
        Err("not_utf8")
    );
    // A string status, a NULL timer, a custom label, an unknown argument.
    assert_eq!(
        read(&[
            ("status", Value::String(b"503")),
            ("response", Value::Null),
            ("tenant", Value::Int32(42)),
            ("other", Value::Binary(b"\xff")),
        ]),
        Ok(("503".to_string(), "42".to_string(), None))
    );
    // -1 (the phase did not complete) is not observed.
    assert_eq!(
        read(&[
            ("status", Value::Int64(200)),
            ("response", Value::String(b"-1"))
        ]),
        Ok(("200".to_string(), String::new(), None))
    );
}

proptest! {
    #[test]
    fn no_input_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut codec = SpopCodec::new(16380);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            let _ = negotiate(&frame.payload, 16380);
            for message in messages(&frame.payload).flatten() {
                let _ = request_path(&message);
                let mut scratch = Scratch::default();
                let _ = response_record(&message, &["a"], &mut scratch);
            }
            for _ in actions(&frame.payload) {}
            for _ in kv_items(&frame.payload) {}
        }
        // The payload readers on raw bytes too.
        for message in messages(&bytes).flatten() {
            let _ = message.args().count();
        }
        for _ in actions(&bytes) {}
    }

    #[test]
    fn frames_round_trip(
        kind in prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(101), Just(102), Just(103), 4u8..100],
        flags in any::<u32>(),
        stream_id in any::<u64>(),
        frame_id in any::<u64>(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let frame = Frame {
            frame_type: FrameType::from_byte(kind),
            flags,
            stream_id,
            frame_id,
            payload: Bytes::from(payload),
        };
        prop_assert_eq!(decode_one(&encode(&frame)), frame);
    }

    #[test]
    fn varints_round_trip(value in any::<u64>()) {
        let mut buf = BytesMut::new();
        put_varint(&mut buf, value);
        prop_assert_eq!(buf.len(), varint_len(value));
        prop_assert_eq!(Reader::new(&buf).varint(), Ok(value));
    }

    #[test]
    fn messages_round_trip(
        name in "[a-z-]{0,20}",
        ints in proptest::collection::vec(any::<i64>(), 0..20),
        text in ".{0,40}",
    ) {
        let mut args: Vec<(&str, Value<'_>)> = ints.iter().map(|&i| ("i", Value::Int64(i))).collect();
        args.push(("s", Value::String(text.as_bytes())));
        let frame = Frame::notify(1, 2, &[(name.as_str(), &args), ("second", &[])]);
        let read: Vec<_> = messages(&frame.payload).map(Result::unwrap).collect();
        prop_assert_eq!(read.len(), 2);
        prop_assert_eq!(read[0].name, name.as_bytes());
        let values: Vec<_> = read[0].args().map(|(_, v)| v).collect();
        prop_assert_eq!(values, args.iter().map(|(_, v)| *v).collect::<Vec<_>>());
        prop_assert_eq!(read[1].arg_count(), 0);
    }
}

// The agent over a real socket, played against by a test playing HAProxy.

struct Running {
    addr: std::net::SocketAddr,
    agent: Arc<Agent>,
    registry: Registry,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start_agent(env: &[(&str, &str)]) -> Running {
    let mut vars: HashMap<String, String> = [("HLE_SPOE_ADDR", "127.0.0.1:0")]
        .iter()
        .chain(env)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.entry("HLE_SYSLOG_UDP_ADDR".into()).or_default();
    vars.entry("HLE_SYSLOG_TCP_ADDR".into()).or_default();
    let config = Config::from_env(&vars).unwrap();
    let registry = Registry::new();
    let pipeline = Arc::new(Pipeline::from_config(&config, &registry).unwrap());
    let counters = SpopCounters::new(&registry).unwrap();
    let spoe = config.spoe.clone().unwrap();
    let agent = Arc::new(Agent::new(
        pipeline,
        counters,
        &spoe,
        config.custom_labels.clone(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let task = tokio::spawn(super::serve(
        listener,
        agent.clone(),
        spoe.max_connections,
        spoe.allowed_sources.clone(),
        shutdown.clone(),
        tracker,
    ));
    Running {
        addr,
        agent,
        registry,
        shutdown,
        task,
    }
}

type Conn = Framed<TcpStream, SpopCodec>;

async fn connect(addr: std::net::SocketAddr) -> Conn {
    Framed::new(
        TcpStream::connect(addr).await.unwrap(),
        SpopCodec::new(16380),
    )
}

fn haproxy_hello(healthcheck: bool) -> Frame {
    Frame::new(
        FrameType::HaproxyHello,
        0,
        0,
        kv_payload(&[
            ("supported-versions", Value::String(b"2.0")),
            ("max-frame-size", Value::Uint32(16380)),
            ("capabilities", Value::String(b"pipelining,async")),
            ("healthcheck", Value::Bool(healthcheck)),
        ]),
    )
}

async fn next(conn: &mut Conn) -> Option<Frame> {
    tokio::time::timeout(Duration::from_secs(5), conn.next())
        .await
        .expect("an answer within 5 s")
        .map(|f| f.expect("a valid frame"))
}

async fn hello(addr: std::net::SocketAddr) -> Conn {
    let mut conn = connect(addr).await;
    conn.send(haproxy_hello(false)).await.unwrap();
    let reply = next(&mut conn).await.unwrap();
    assert_eq!(reply.frame_type, FrameType::AgentHello);
    conn
}

/// The status code of an AGENT-DISCONNECT.
fn status_of(frame: &Frame) -> Option<i64> {
    assert_eq!(frame.frame_type, FrameType::AgentDisconnect);
    kv_items(&frame.payload)
        .filter_map(Result::ok)
        .find(|(n, _)| *n == b"status-code")
        .and_then(|(_, v)| v.integer())
}

fn metric(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .filter(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

fn response_args(status: i64, path: &str) -> Vec<(&'static str, Value<'_>)> {
    vec![
        ("method", Value::String(b"GET")),
        ("path", Value::String(path.as_bytes())),
        ("status", Value::Int64(status)),
        ("frontend", Value::String(b"www")),
        ("backend", Value::String(b"app")),
        ("server", Value::String(b"app1")),
        ("client_ip", Value::Ipv4(Ipv4Addr::LOCALHOST)),
        ("client_port", Value::Int64(40000)),
        ("request_wait", Value::String(b"1")),
        ("queued", Value::String(b"0")),
        ("connect", Value::String(b"0")),
        ("response", Value::String(b"12")),
    ]
}

#[tokio::test]
async fn notify_frames_are_acked_with_their_ids_and_the_route() {
    let running = start_agent(&[]).await;
    let mut conn = hello(running.addr).await;
    // Pipelined: many frames sent before any ACK is read, ids of every size.
    let ids: Vec<(u64, u64)> = (0..50u64).map(|i| (i * 1000, i + 239)).collect();
    for &(sid, fid) in &ids {
        let path = format!("/users/{sid}");
        let frame = Frame::notify(
            sid,
            fid,
            &[(
                "hle-request",
                &[
                    ("method", Value::String(b"GET")),
                    ("path", Value::String(path.as_bytes())),
                ],
            )],
        );
        conn.feed(frame).await.unwrap();
    }
    conn.flush().await.unwrap();
    for &(sid, fid) in &ids {
        let ack = next(&mut conn).await.unwrap();
        assert_eq!(ack.frame_type, FrameType::Ack);
        assert_eq!((ack.stream_id, ack.frame_id), (sid, fid));
        let acts: Vec<_> = actions(&ack.payload).map(Result::unwrap).collect();
        let want = "/users/:id";
        assert_eq!(
            acts,
            vec![Action::SetVar {
                scope: Scope::Transaction,
                name: b"route",
                value: Value::String(want.as_bytes()),
            }],
            "{sid}"
        );
    }
    // A response message: counted; its ACK carries no route, only a harmless action.
    let args = response_args(404, "/users/7");
    conn.send(Frame::notify(
        9,
        1,
        &[("hle-response", &args), ("someone-else", &[])],
    ))
    .await
    .unwrap();
    let ack = next(&mut conn).await.unwrap();
    let acts: Vec<_> = actions(&ack.payload).map(Result::unwrap).collect();
    assert!(
        matches!(acts[..], [Action::UnsetVar { name: b"noop", .. }]),
        "{acts:?}"
    );

    let m = running.agent.counters().messages();
    assert_eq!((m.routed, m.counted, m.ignored, m.rejected), (50, 1, 1, 0));
    assert_eq!(m.received, 52);
    let text = running.agent_pipeline_exposition();
    assert!(
        text.contains("haproxy_log_requests_total{status_code=\"404\",status_class=\"4xx\",backend_name=\"app\",server_name=\"app1\"} 1"),
        "{text}"
    );
    assert!(text.contains("haproxy_log_response_processing_seconds_count{backend_name=\"app\",server_name=\"app1\",http_request_path=\"/users/:id\"} 1"), "{text}");
    // No abort is counted from timers a message did not carry.
    let aborts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("haproxy_log_request") && l.contains("abort_total{"))
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert!(aborts.is_empty(), "{aborts:?}");
    running.stop().await;
}

impl Running {
    fn agent_pipeline_exposition(&self) -> String {
        self.agent.pipeline().exposition().unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

#[tokio::test]
async fn a_health_check_is_answered_and_closed() {
    let running = start_agent(&[]).await;
    let mut conn = connect(running.addr).await;
    conn.send(haproxy_hello(true)).await.unwrap();
    assert_eq!(
        next(&mut conn).await.unwrap().frame_type,
        FrameType::AgentHello
    );
    assert!(next(&mut conn).await.is_none(), "closed after the hello");
    running.stop().await;
}

#[tokio::test]
async fn protocol_errors_disconnect_with_their_status() {
    let running = start_agent(&[]).await;
    // A fragmented NOTIFY: 10.
    let mut conn = hello(running.addr).await;
    let mut frag = Frame::notify(1, 1, &[("hle-request", &[])]);
    frag.flags = 0;
    conn.send(frag).await.unwrap();
    assert_eq!(status_of(&next(&mut conn).await.unwrap()), Some(10));
    assert!(next(&mut conn).await.is_none());
    // A malformed payload: 4.
    let mut conn = hello(running.addr).await;
    conn.send(Frame::new(
        FrameType::Notify,
        1,
        1,
        Bytes::from_static(&[5, b'a']),
    ))
    .await
    .unwrap();
    assert_eq!(status_of(&next(&mut conn).await.unwrap()), Some(4));
    // A frame longer than agreed: 3.
    let mut conn = hello(running.addr).await;
    conn.get_mut()
        .write_all_buf(&mut &20000u32.to_be_bytes()[..])
        .await
        .unwrap();
    assert_eq!(status_of(&next(&mut conn).await.unwrap()), Some(3));
    // A NOTIFY before the hello: 4.
    let mut conn = connect(running.addr).await;
    conn.send(Frame::notify(1, 1, &[])).await.unwrap();
    assert_eq!(status_of(&next(&mut conn).await.unwrap()), Some(4));
    // An unsupported version: 8.
    let mut conn = connect(running.addr).await;
    let old = kv_payload(&[
        ("supported-versions", Value::String(b"1.0")),
        ("max-frame-size", Value::Uint32(16380)),
        ("capabilities", Value::String(b"")),
    ]);
    conn.send(Frame::new(FrameType::HaproxyHello, 0, 0, old))
        .await
        .unwrap();
    assert_eq!(status_of(&next(&mut conn).await.unwrap()), Some(8));
    // HAProxy's DISCONNECT is answered with ours, status 0.
    let mut conn = hello(running.addr).await;
    conn.send(Frame::haproxy_disconnect(Status::Normal, "normal"))
        .await
        .unwrap();
    assert_eq!(status_of(&next(&mut conn).await.unwrap()), Some(0));
    assert!(next(&mut conn).await.is_none());
    // Unknown frame types are skipped; the connection goes on.
    let mut conn = hello(running.addr).await;
    conn.send(Frame::new(FrameType::Unknown(50), 0, 0, Bytes::new()))
        .await
        .unwrap();
    conn.send(Frame::notify(3, 4, &[])).await.unwrap();
    let ack = next(&mut conn).await.unwrap();
    assert_eq!(
        (ack.frame_type, ack.stream_id, ack.frame_id),
        (FrameType::Ack, 3, 4)
    );

    let r = &running.registry;
    let disconnects = |sender: &str, code: &str| {
        metric(
            r,
            "haproxy_log_exporter_spoe_disconnects_total",
            &[("sender", sender), ("status_code", code)],
        )
    };
    for code in ["10", "4", "3", "8"] {
        assert!(disconnects("agent", code) >= 1.0, "{code}");
    }
    assert_eq!(disconnects("agent", "4"), 2.0);
    assert_eq!(disconnects("haproxy", "0"), 1.0);
    // The other connections still work at shutdown: AGENT-DISCONNECT, status 0.
    let shutdown = running.shutdown.clone();
    shutdown.cancel();
    assert_eq!(status_of(&next(&mut conn).await.unwrap()), Some(0));
    running.task.await.unwrap();
}

#[tokio::test]
async fn with_metrics_off_only_routes_are_sent() {
    let running = start_agent(&[("HLE_SPOE_METRICS", "false")]).await;
    let mut conn = hello(running.addr).await;
    let args = response_args(200, "/a");
    conn.send(Frame::notify(1, 1, &[("hle-response", &args)]))
        .await
        .unwrap();
    next(&mut conn).await.unwrap();
    let m = running.agent.counters().messages();
    assert_eq!((m.received, m.ignored, m.counted), (1, 1, 0));
    assert!(!running
        .agent_pipeline_exposition()
        .contains("haproxy_log_requests_total{"));
    running.stop().await;
}

use tokio::io::AsyncWriteExt as _;
