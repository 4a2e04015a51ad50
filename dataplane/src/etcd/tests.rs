use std::time::{Duration, Instant};

use prost::Message;

use super::proto::*;
use super::*;
use crate::ring::testing::EtcdServer;

fn options(endpoints: Vec<String>) -> ClientOptions {
    ClientOptions {
        endpoints,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        credentials: None,
        tls: ClientTlsConfig::default(),
    }
}

/// A `host:port` nothing listens on (the port was free a moment ago).
fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

#[test]
fn prefix_ranges_end_where_etcd_puts_them() {
    assert_eq!(prefix_range_end(b"a/"), b"a0");
    assert_eq!(prefix_range_end(b"a\xff"), b"b");
    assert_eq!(prefix_range_end(b"\xff\xff"), [0]);
    assert_eq!(prefix_range(b"norn/"), (b"norn/".to_vec(), b"norn0".to_vec()));
    assert_eq!(prefix_range(b""), (vec![0], vec![0]), "everything");
}

#[test]
fn a_watch_create_request_encodes_as_etcd_expects() {
    let create = WatchCreateRequest { key: b"a".to_vec(), range_end: b"b".to_vec(), start_revision: 7 };
    let req = WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) };
    #[rustfmt::skip]
    let want = [
        0x0a, 8, // create_request (1): WatchCreateRequest, 8 bytes
            0x0a, 1, b'a', // key (1)
            0x12, 1, b'b', // range_end (2)
            0x18, 7, // start_revision (3)
    ];
    assert_eq!(req.encode_to_vec(), want);
}

#[test]
fn a_watch_response_decodes_from_etcds_bytes() {
    #[rustfmt::skip]
    let bytes = [
        0x0a, 2, 0x18, 9, // header (1): revision (3) = 9
        0x10, 1, // watch_id (2)
        0x5a, 9, // events (11): Event, 9 bytes
            0x08, 1, // type (1) = DELETE
            0x12, 5, // kv (2): KeyValue, 5 bytes
                0x0a, 1, b'k', // key (1)
                0x18, 9, // mod_revision (3)
    ];
    let resp = WatchResponse::decode(&bytes[..]).expect("decodes");
    assert_eq!(resp.header.map(|h| h.revision), Some(9));
    assert_eq!(resp.watch_id, 1);
    assert_eq!(resp.events.len(), 1);
    assert_eq!(resp.events[0].r#type, EventType::Delete as i32);
    let kv = resp.events[0].kv.as_ref().expect("kv");
    assert_eq!((kv.key.as_slice(), kv.mod_revision), (&b"k"[..], 9));
}

#[tokio::test]
async fn endpoints_are_checked_when_the_client_is_built() {
    for bad in [vec![], vec!["https://etcd:2379".to_string()], vec!["not a uri".to_string()]] {
        let err = Client::connect(&options(bad.clone())).await.expect_err("refused");
        assert!(matches!(err, EtcdError::Invalid(_)), "{bad:?}: {err}");
    }
    Client::connect(&options(vec!["127.0.0.1:2379".into(), "http://etcd-0.etcd:2379".into()]))
        .await
        .expect("host:port and http:// URLs, no etcd needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_over_to_a_member_that_answers() {
    let etcd = EtcdServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let client = Client::connect(&options(vec![dead_endpoint(), etcd.endpoint()])).await.expect("client");
    let put = PutRequest { key: b"k".to_vec(), value: "v".into() };
    client.put(put).await.expect("the second endpoint answers");
    let resp = client.range(RangeRequest { key: b"k".to_vec(), ..RangeRequest::default() }).await.expect("range");
    assert_eq!(resp.kvs[0].value.as_ref(), b"v");
    assert_eq!(client.current().0, 1, "later requests go to the member that answered");
    let mut watch = client.watch(WatchCreateRequest { key: b"k".to_vec(), ..Default::default() }).await.expect("watch");
    assert!(watch.message().await.expect("created").expect("open").created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_answers_costs_one_timed_out_request() {
    // Accepts connections and never answers: a hung process or a black-holing network.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    let _accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let etcd = EtcdServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let client = Client::connect(&options(vec![silent_addr, etcd.endpoint()])).await.expect("client");
    let range = RangeRequest { key: b"k".to_vec(), ..RangeRequest::default() };
    let started = Instant::now();
    let err = client.range(range.clone()).await.expect_err("the silent member times out");
    assert!(matches!(err, EtcdError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded by the request timeout");
    client.range(range).await.expect("the next request goes to the other member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_answering_is_unavailable_and_names_them() {
    let (a, b) = (dead_endpoint(), dead_endpoint());
    let client = Client::connect(&options(vec![a.clone(), b.clone()])).await.expect("client");
    let err = client.range(RangeRequest::default()).await.expect_err("nothing listens");
    let EtcdError::Unavailable(msg) = err else { panic!("{err}") };
    assert!(msg.contains(&a) && msg.contains(&b), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_invalid() {
    let etcd = EtcdServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let client = Client::connect(&options(vec![etcd.endpoint()])).await.expect("client");
    // etcd refuses an empty key.
    let err = client.put(PutRequest::default()).await.expect_err("refused");
    assert!(matches!(err, EtcdError::Invalid(_)), "{err}");
}

/// Messages of etcd's `Auth` service for turning authentication on (tests only).
#[derive(Clone, PartialEq, prost::Message)]
struct AuthRoleAddRequest {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AuthUserAddRequest {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    password: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AuthUserGrantRoleRequest {
    #[prost(string, tag = "1")]
    user: String,
    #[prost(string, tag = "2")]
    role: String,
}

/// `AuthEnableRequest`, and the responses whose fields the test ignores.
#[derive(Clone, PartialEq, prost::Message)]
struct Empty {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_authenticate_and_the_token_goes_with_every_request() {
    let etcd = EtcdServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let admin = Client::connect(&options(vec![etcd.endpoint()])).await.expect("client");
    let role = AuthRoleAddRequest { name: "root".into() };
    let _: Empty = admin.unary("role add", "/etcdserverpb.Auth/RoleAdd", role).await.expect("role add");
    let user = AuthUserAddRequest { name: "root".into(), password: "secret".into() };
    let _: Empty = admin.unary("user add", "/etcdserverpb.Auth/UserAdd", user).await.expect("user add");
    let grant = AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() };
    let _: Empty = admin.unary("grant", "/etcdserverpb.Auth/UserGrantRole", grant).await.expect("grant");
    let _: Empty = admin.unary("auth enable", "/etcdserverpb.Auth/AuthEnable", Empty {}).await.expect("enable");

    let put = PutRequest { key: b"k".to_vec(), value: "v".into() };
    let err = admin.put(put.clone()).await.expect_err("no credentials");
    assert!(matches!(err, EtcdError::Invalid(_)), "{err}");
    let wrong = ClientOptions { credentials: Some(("root".into(), "wrong".into())), ..options(vec![etcd.endpoint()]) };
    let err = Client::connect(&wrong).await.expect_err("wrong password");
    assert!(matches!(err, EtcdError::Invalid(_)), "{err}");

    let right = ClientOptions { credentials: Some(("root".into(), "secret".into())), ..options(vec![etcd.endpoint()]) };
    let client = Client::connect(&right).await.expect("authenticates");
    client.put(put).await.expect("put with the token");
    let range = client.range(RangeRequest { key: b"k".to_vec(), ..RangeRequest::default() }).await.expect("range");
    assert_eq!(range.kvs.len(), 1);
    let mut watch = client.watch(WatchCreateRequest { key: b"k".to_vec(), ..Default::default() }).await.expect("watch");
    let created = watch.message().await.expect("created").expect("open");
    assert!(created.created && !created.canceled, "{created:?}");

    // A token etcd no longer knows (simple tokens expire unused): authenticate again, once.
    client.set_token("norn.expired").expect("ascii");
    client.range(RangeRequest { key: b"k".to_vec(), ..RangeRequest::default() }).await.expect("renewed token");
    let token = client.shared.token.read().clone().expect("token");
    assert_ne!(token.to_str().expect("ascii"), "norn.expired", "etcd refused the old token; a new one was taken");
}
