//! Telemetry end to end against the emulator: every metric's exact value after a scripted
//! sequence (connects, a failed dial, refreshes, bytes counted equal to the bytes the driver
//! wrote and read, open connections back to zero), through streams and through a local socket;
//! and the spans of connects, refreshes and relayed connections with their fields.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use cloudsql::core::telemetry::{
    BYTES_RECEIVED, BYTES_SENT, CONNECTOR_ID_KEY, DIAL_FAILURE_COUNT, DIAL_LATENCY, ERROR_CODE_KEY,
    INSTANCE_KEY, IP_TYPE_KEY, METRIC_NAMES, OPEN_CONNECTIONS, REFRESH_FAILURE_COUNT, REFRESH_STRATEGY_KEY,
    REFRESH_SUCCESS_COUNT,
};
use cloudsql::core::{Connector, RefreshStrategy};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use support::*;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

/// An SDK meter provider whose metrics the test reads on demand.
struct Recorded {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

/// One data point: its attributes and its value (a histogram's count).
#[derive(Debug, Clone)]
struct Point {
    attributes: BTreeMap<String, String>,
    value: i128,
}

impl Recorded {
    fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        let reader = PeriodicReader::builder(exporter.clone()).build();
        let provider = SdkMeterProvider::builder().with_reader(reader).build();
        Self { provider, exporter }
    }

    /// Every metric's points as of now (cumulative).
    fn snapshot(&self) -> BTreeMap<String, Vec<Point>> {
        self.exporter.reset();
        self.provider.force_flush().unwrap();
        let exported = self.exporter.get_finished_metrics().unwrap();
        let mut out = BTreeMap::new();
        let Some(last) = exported.last() else {
            return out;
        };
        for scope in last.scope_metrics() {
            for metric in scope.metrics() {
                let points = match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => sum
                        .data_points()
                        .map(|p| point(p.attributes(), i128::from(p.value())))
                        .collect(),
                    AggregatedMetrics::I64(MetricData::Sum(sum)) => sum
                        .data_points()
                        .map(|p| point(p.attributes(), i128::from(p.value())))
                        .collect(),
                    AggregatedMetrics::F64(MetricData::Histogram(histogram)) => histogram
                        .data_points()
                        .map(|p| point(p.attributes(), i128::from(p.count())))
                        .collect(),
                    other => panic!("unexpected data for {}: {other:?}", metric.name()),
                };
                out.insert(metric.name().to_owned(), points);
            }
        }
        out
    }

    /// The sum of a metric's points (a histogram's count); 0 when never recorded.
    fn total(&self, name: &str) -> i128 {
        total(&self.snapshot(), name)
    }

    /// Waits up to `within` for `name`'s total to reach `value`.
    async fn wait_for(&self, name: &str, value: i128, within: Duration) -> i128 {
        let deadline = Instant::now() + within;
        loop {
            let now = self.total(name);
            if now == value || Instant::now() > deadline {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn point<'a>(attributes: impl Iterator<Item = &'a opentelemetry::KeyValue>, value: i128) -> Point {
    Point {
        attributes: attributes
            .map(|kv| (kv.key.as_str().to_owned(), kv.value.as_str().into_owned()))
            .collect(),
        value,
    }
}

fn total(snapshot: &BTreeMap<String, Vec<Point>>, name: &str) -> i128 {
    snapshot
        .get(name)
        .map_or(0, |points| points.iter().map(|p| p.value).sum())
}

/// Bytes a driver wrote and read through a stream, counted at the driver's side.
#[derive(Clone, Default)]
struct Counts {
    written: Arc<AtomicU64>,
    read: Arc<AtomicU64>,
}

impl Counts {
    fn written(&self) -> i128 {
        i128::from(self.written.load(Ordering::SeqCst))
    }

    fn read(&self) -> i128 {
        i128::from(self.read.load(Ordering::SeqCst))
    }
}

/// Counts what passes through `S`.
struct Counting<S> {
    inner: S,
    counts: Counts,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let n = (buf.filled().len() - before) as u64;
            self.counts.read.fetch_add(n, Ordering::SeqCst);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.counts.written.fetch_add(n as u64, Ordering::SeqCst);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A tokio-postgres session over `stream`, its connection task, and what it writes and reads.
struct Session {
    client: tokio_postgres::Client,
    task: JoinHandle<Result<(), tokio_postgres::Error>>,
    counts: Counts,
}

impl Session {
    async fn over<S>(stream: S) -> Self
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let counts = Counts::default();
        let counting = Counting {
            inner: stream,
            counts: counts.clone(),
        };
        let (client, connection) = trust_login()
            .connect_raw(counting, tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(connection);
        let session = Self { client, task, counts };
        let row = session
            .client
            .query_one("SELECT repeat('x', 5000), 1", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(1), 1);
        session
    }

    /// Ends the session (Terminate, then the stream is dropped) and returns its counts.
    async fn close(self) -> Counts {
        drop(self.client);
        self.task.await.unwrap().unwrap();
        self.counts
    }
}

fn assert_attributes(point: &Point, instance: &str, strategy: &str, ip_type: Option<&str>) {
    assert_eq!(point.attributes[INSTANCE_KEY], instance, "{point:?}");
    assert_eq!(point.attributes[REFRESH_STRATEGY_KEY], strategy, "{point:?}");
    assert_eq!(
        point.attributes.get(IP_TYPE_KEY).map(String::as_str),
        ip_type,
        "{point:?}"
    );
    assert_eq!(point.attributes[CONNECTOR_ID_KEY].len(), 36, "{point:?}");
}

/// Every point of every metric carries one and the same connector id.
fn connector_id(snapshot: &BTreeMap<String, Vec<Point>>) -> String {
    let ids: std::collections::BTreeSet<&String> = snapshot
        .values()
        .flatten()
        .map(|p| &p.attributes[CONNECTOR_ID_KEY])
        .collect();
    assert_eq!(ids.len(), 1, "{snapshot:#?}");
    ids.into_iter().next().unwrap().clone()
}

#[tokio::test]
async fn stream_metrics_are_exact_after_a_scripted_sequence() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let name = inst.connection_name().to_owned();
    let recorded = Recorded::new();
    let connector = env.builder().meter_provider(&recorded.provider).build().unwrap();

    // Three connects, each a tokio-postgres session that runs a query; all open at once.
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let stream = connector.connect(&name).await.unwrap();
        sessions.push(Session::over(stream).await);
    }
    let snapshot = recorded.snapshot();
    assert_eq!(total(&snapshot, OPEN_CONNECTIONS), 3, "{snapshot:#?}");
    assert_eq!(total(&snapshot, DIAL_LATENCY), 3, "{snapshot:#?}");
    for metric in [OPEN_CONNECTIONS, DIAL_LATENCY] {
        for p in &snapshot[metric] {
            assert_attributes(p, &name, "background", Some("PUBLIC"));
        }
    }
    assert_eq!(total(&snapshot, REFRESH_SUCCESS_COUNT), 1, "{snapshot:#?}");
    assert_attributes(&snapshot[REFRESH_SUCCESS_COUNT][0], &name, "background", None);

    // Closing them: back to zero open, and every byte counted exactly once.
    let (mut written, mut read) = (0, 0);
    for session in sessions {
        let counts = session.close().await;
        written += counts.written();
        read += counts.read();
    }
    assert!(written > 0 && read > 15_000, "{written} {read}");
    let snapshot = recorded.snapshot();
    assert_eq!(total(&snapshot, OPEN_CONNECTIONS), 0, "{snapshot:#?}");
    assert_eq!(total(&snapshot, BYTES_SENT), written, "{snapshot:#?}");
    assert_eq!(total(&snapshot, BYTES_RECEIVED), read, "{snapshot:#?}");
    for metric in [BYTES_SENT, BYTES_RECEIVED] {
        assert_eq!(snapshot[metric].len(), 1, "one attribute set: {snapshot:#?}");
        assert_attributes(&snapshot[metric][0], &name, "background", Some("PUBLIC"));
    }

    // The proxy stops: one failed dial, which forces one more refresh in the background.
    inst.stop();
    connector.connect(&name).await.unwrap_err();
    assert_eq!(
        recorded
            .wait_for(REFRESH_SUCCESS_COUNT, 2, Duration::from_secs(10))
            .await,
        2
    );
    let snapshot = recorded.snapshot();
    assert_eq!(total(&snapshot, DIAL_FAILURE_COUNT), 1, "{snapshot:#?}");
    assert_attributes(
        &snapshot[DIAL_FAILURE_COUNT][0],
        &name,
        "background",
        Some("PUBLIC"),
    );
    assert_eq!(total(&snapshot, REFRESH_FAILURE_COUNT), 0, "{snapshot:#?}");
    assert_eq!(
        total(&snapshot, DIAL_LATENCY),
        3,
        "failures add no latency: {snapshot:#?}"
    );
    assert_eq!(total(&snapshot, OPEN_CONNECTIONS), 0, "{snapshot:#?}");
    assert_eq!(total(&snapshot, BYTES_SENT), written, "{snapshot:#?}");
    connector_id(&snapshot);
    connector.close().await;
}

#[tokio::test]
async fn a_failed_refresh_counts_with_its_error_code_and_the_strategy() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let name = inst.connection_name().to_owned();
    let recorded = Recorded::new();
    let connector = env
        .builder()
        .refresh_strategy(RefreshStrategy::Lazy)
        .meter_provider(&recorded.provider)
        .build()
        .unwrap();
    inst.faults().admin_status(403, None);
    connector.connect(&name).await.unwrap_err();

    let snapshot = recorded.snapshot();
    assert_eq!(total(&snapshot, REFRESH_FAILURE_COUNT), 1, "{snapshot:#?}");
    let failure = &snapshot[REFRESH_FAILURE_COUNT][0];
    assert_attributes(failure, &name, "lazy", None);
    assert_eq!(failure.attributes[ERROR_CODE_KEY], "PERMISSION_DENIED");
    assert_eq!(total(&snapshot, DIAL_FAILURE_COUNT), 1, "{snapshot:#?}");
    assert_attributes(&snapshot[DIAL_FAILURE_COUNT][0], &name, "lazy", Some("PUBLIC"));
    for never in [
        REFRESH_SUCCESS_COUNT,
        DIAL_LATENCY,
        OPEN_CONNECTIONS,
        BYTES_SENT,
        BYTES_RECEIVED,
    ] {
        assert_eq!(total(&snapshot, never), 0, "{never}: {snapshot:#?}");
    }

    // A closed connector's refusals are not dial failures.
    connector.close().await;
    connector.connect(&name).await.unwrap_err();
    assert_eq!(recorded.total(DIAL_FAILURE_COUNT), 1);
}

#[tokio::test]
async fn local_socket_metrics_count_each_relayed_byte_once() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let name = inst.connection_name().to_owned();
    let recorded = Recorded::new();
    let connector = env.builder().meter_provider(&recorded.provider).build().unwrap();
    let socket = connector
        .local_socket(&name)
        .tcp("127.0.0.1:0".parse().unwrap())
        .serve()
        .await
        .unwrap();
    let addr = *socket.addr();

    let mut sessions = Vec::new();
    for _ in 0..2 {
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        sessions.push(Session::over(client).await);
    }
    let snapshot = recorded.snapshot();
    assert_eq!(total(&snapshot, OPEN_CONNECTIONS), 2, "{snapshot:#?}");
    assert_eq!(total(&snapshot, DIAL_LATENCY), 2, "{snapshot:#?}");

    let (mut written, mut read) = (0, 0);
    for session in sessions {
        let counts = session.close().await;
        written += counts.written();
        read += counts.read();
    }
    // The relay ends once the instance has closed its side too.
    assert_eq!(
        recorded
            .wait_for(OPEN_CONNECTIONS, 0, Duration::from_secs(10))
            .await,
        0
    );
    let snapshot = recorded.snapshot();
    assert_eq!(total(&snapshot, BYTES_SENT), written, "{snapshot:#?}");
    assert_eq!(total(&snapshot, BYTES_RECEIVED), read, "{snapshot:#?}");
    assert_attributes(&snapshot[BYTES_RECEIVED][0], &name, "background", Some("PUBLIC"));

    // A client the socket cannot dial for: one dial failure.
    inst.stop();
    let before = socket.failed_dials();
    let client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let refused = trust_login().connect_raw(client, tokio_postgres::NoTls).await;
    assert!(refused.is_err());
    let deadline = Instant::now() + Duration::from_secs(10);
    while socket.failed_dials() == before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snapshot = recorded.snapshot();
    assert_eq!(total(&snapshot, DIAL_FAILURE_COUNT), 1, "{snapshot:#?}");
    assert_eq!(total(&snapshot, DIAL_LATENCY), 2, "{snapshot:#?}");
    assert_eq!(total(&snapshot, BYTES_SENT), written, "{snapshot:#?}");
    connector_id(&snapshot);
    socket.shutdown().await;
    connector.close().await;
}

#[tokio::test]
async fn two_connectors_have_their_own_id_and_the_global_provider_is_the_default() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let name = inst.connection_name().to_owned();
    let recorded = Recorded::new();
    let a = env.builder().meter_provider(&recorded.provider).build().unwrap();
    let b = env.builder().meter_provider(&recorded.provider).build().unwrap();
    drop(a.connect(&name).await.unwrap());
    drop(b.connect(&name).await.unwrap());
    let snapshot = recorded.snapshot();
    let ids: std::collections::BTreeSet<&String> = snapshot[DIAL_LATENCY]
        .iter()
        .map(|p| &p.attributes[CONNECTOR_ID_KEY])
        .collect();
    assert_eq!(ids.len(), 2, "{snapshot:#?}");
    assert_eq!(total(&snapshot, REFRESH_SUCCESS_COUNT), 2, "{snapshot:#?}");

    // Without a provider given, the global one (set here before building) records.
    let global = Recorded::new();
    opentelemetry::global::set_meter_provider(global.provider.clone());
    let c = env.connector();
    drop(c.connect(&name).await.unwrap());
    assert_eq!(global.total(DIAL_LATENCY), 1);
    assert_eq!(global.total(OPEN_CONNECTIONS), 0);
    assert_eq!(
        recorded.total(DIAL_LATENCY),
        2,
        "the other provider saw nothing more"
    );
    for metric in global.snapshot().keys() {
        assert!(METRIC_NAMES.contains(&metric.as_str()), "{metric}");
    }
}

/// A finished span: its name and fields.
#[derive(Debug, Clone)]
struct SpanRecord {
    name: &'static str,
    fields: BTreeMap<String, String>,
}

/// Captures every span's fields (at creation and recorded later) when it closes.
#[derive(Clone, Default)]
struct SpanCapture(Arc<Mutex<Vec<SpanRecord>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S> tracing_subscriber::Layer<S> for SpanCapture
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanRecord {
                name: attrs.metadata().name(),
                fields,
            });
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id)
            && let Some(record) = span.extensions_mut().get_mut::<SpanRecord>()
        {
            values.record(&mut Fields(&mut record.fields));
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(span) = ctx.span(&id)
            && let Some(record) = span.extensions_mut().remove::<SpanRecord>()
        {
            self.0.lock().unwrap().push(record);
        }
    }
}

impl SpanCapture {
    fn named(&self, name: &str) -> Vec<SpanRecord> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    async fn wait_for(&self, name: &str, n: usize) -> Vec<SpanRecord> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans = self.named(name);
            if spans.len() >= n || Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Spans of connects, refreshes and relayed connections, with their stable fields and errors
/// with their causes. The subscriber is this thread's default (the test runtime runs every task
/// on this thread), so other tests are not affected.
#[tokio::test]
async fn spans_carry_stable_fields_and_error_chains() {
    use tracing_subscriber::layer::SubscriberExt;

    let capture = SpanCapture::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));

    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let name = inst.connection_name().to_owned();
    let connector = env.connector();
    drop(connector.connect(&name).await.unwrap());

    let connects = capture.wait_for("connect", 1).await;
    assert_eq!(
        connects[0].fields,
        fields(&[
            ("instance", &name),
            ("ip_type", "Public"),
            ("iam_authn", "false"),
            ("strategy", "Background"),
        ])
    );
    let refreshes = capture.wait_for("refresh", 1).await;
    assert_eq!(
        refreshes[0].fields,
        fields(&[
            ("instance", &name),
            ("iam_authn", "false"),
            ("strategy", "Background"),
            ("attempt", "1"),
        ])
    );

    // A relayed connection: its bytes, both ways.
    let socket = connector
        .local_socket(&name)
        .tcp("127.0.0.1:0".parse().unwrap())
        .serve()
        .await
        .unwrap();
    let client = tokio::net::TcpStream::connect(*socket.addr()).await.unwrap();
    let counts = Session::over(client).await.close().await;
    let relays = capture.wait_for("relay", 1).await;
    let socket_text = format!("tcp://{}", *socket.addr());
    assert_eq!(
        relays[0].fields,
        fields(&[
            ("instance", &name),
            ("socket", &socket_text),
            ("bytes_sent", &counts.written().to_string()),
            ("bytes_received", &counts.read().to_string()),
        ])
    );

    // The proxy stops and the Admin API fails: the connect's error, with its cause, on its
    // span; the refresh it forces fails too, and says why.
    inst.stop();
    inst.faults().admin_status(503, None);
    connector.connect(&name).await.unwrap_err();
    let connects = capture.wait_for("connect", 3).await;
    let failed = connects.last().unwrap();
    let error = &failed.fields["error"];
    assert!(error.contains(&name), "{failed:?}");
    assert!(
        error.to_lowercase().contains("refused"),
        "the cause is in the chain: {failed:?}"
    );
    let refreshes = capture.wait_for("refresh", 2).await;
    let failed = &refreshes[1];
    assert_eq!(failed.fields["attempt"], "1", "{failed:?}");
    assert!(failed.fields["error"].contains("503"), "{failed:?}");

    // A relayed connection the socket could not dial.
    let client = tokio::net::TcpStream::connect(*socket.addr()).await.unwrap();
    assert!(
        trust_login()
            .connect_raw(client, tokio_postgres::NoTls)
            .await
            .is_err()
    );
    let relays = capture.wait_for("relay", 2).await;
    let refused = &relays[1];
    assert!(
        refused.fields["error"].to_lowercase().contains("refused"),
        "{refused:?}"
    );
    assert!(!refused.fields.contains_key("bytes_sent"), "{refused:?}");
    socket.shutdown().await;
    connector.close().await;
}

#[test]
fn every_metric_is_named_as_go_names_it() {
    assert_eq!(
        METRIC_NAMES,
        [
            "cloudsqlconn/dial_latency",
            "cloudsqlconn/open_connections",
            "cloudsqlconn/dial_failure_count",
            "cloudsqlconn/refresh_success_count",
            "cloudsqlconn/refresh_failure_count",
            "cloudsqlconn/bytes_sent",
            "cloudsqlconn/bytes_received",
        ]
    );
    assert_eq!(INSTANCE_KEY, "cloudsql_instance");
    assert_eq!(CONNECTOR_ID_KEY, "cloudsql_dialer_id");
    assert_eq!(ERROR_CODE_KEY, "cloudsql_error_code");
}

/// The connector hands out `Connector` clones freely; metrics survive the clone that built them.
#[tokio::test]
async fn clones_share_one_connector_id() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let name = inst.connection_name().to_owned();
    let recorded = Recorded::new();
    let connector: Connector = env.builder().meter_provider(&recorded.provider).build().unwrap();
    let clone = connector.clone();
    drop(connector);
    drop(clone.connect(&name).await.unwrap());
    drop(clone.connect(&name).await.unwrap());
    let snapshot = recorded.snapshot();
    assert_eq!(
        snapshot[DIAL_LATENCY].len(),
        1,
        "one attribute set: {snapshot:#?}"
    );
    assert_eq!(total(&snapshot, DIAL_LATENCY), 2);
}
