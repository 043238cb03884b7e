//! Prometheus metrics (`GET /metrics`, text exposition format): HTTP requests and their
//! latency per route, send acknowledgement latency, and the node's counters (deliveries,
//! batches, dropped messages, penalties, store writes) and queue depths, read at scrape time.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::driver::DriverHandle;
use crate::store::Store;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

/// The API's metrics registry.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    send_ack: Histogram,
    pending: Gauge,
    peers: Gauge,
    streams: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The node's own counters, read on each scrape.
#[derive(Debug)]
struct NodeCollector {
    driver: DriverHandle,
    store: Store,
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.driver.stats();
        let store = self.store.stats();
        let counters = [
            (
                "lienthong_inbox_deliveries",
                "Documents and statuses delivered to local tenants' inboxes",
                stats.delivered.load(Ordering::Relaxed),
            ),
            (
                "lienthong_relay_batches",
                "Batches the relay core persisted",
                stats.batches.load(Ordering::Relaxed),
            ),
            (
                "lienthong_outbound_dropped",
                "Network messages dropped on a full queue (retried by the relay)",
                stats.outbound_dropped.load(Ordering::Relaxed),
            ),
            (
                "lienthong_peer_penalties",
                "Penalties given to peers for invalid messages",
                stats.penalties.load(Ordering::Relaxed),
            ),
            (
                "lienthong_store_groups",
                "Synced write groups (one fsync each)",
                store.groups,
            ),
            (
                "lienthong_store_bytes",
                "Bytes made durable by the store",
                store.bytes,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let failed = ConstGauge::new(i64::from(store.failed));
        let metric = encoder.encode_descriptor(
            "lienthong_store_failed",
            "1 when the store stopped after a failed write",
            None,
            failed.metric_type(),
        )?;
        failed.encode(metric)
    }
}

impl Metrics {
    /// A registry with the API's metrics and the node's counters.
    pub fn new(driver: DriverHandle, store: Store) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency =
            Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let send_ack = latency_histogram();
        let (pending, peers, streams) = (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register(
            "lienthong_http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "lienthong_http_request_duration_seconds",
            "HTTP request latency, by route and method",
            latency.clone(),
        );
        registry.register(
            "lienthong_send_ack_duration_seconds",
            "Time from a send request to its durable acknowledgement",
            send_ack.clone(),
        );
        registry.register(
            "lienthong_pending_deliveries",
            "Deliveries waiting for the recipient's confirmation (outbox and custody)",
            pending.clone(),
        );
        registry.register(
            "lienthong_peers",
            "Connected peers (absent support reports 0)",
            peers.clone(),
        );
        registry.register(
            "lienthong_inbox_streams",
            "Open server-sent event streams",
            streams.clone(),
        );
        registry.register_collector(Box::new(NodeCollector { driver, store }));
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            send_ack,
            pending,
            peers,
            streams,
        }
    }

    /// Records one answered request.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        if status != 429 {
            self.latency
                .get_or_create(&RouteLabels {
                    route: route.to_owned(),
                    method: method.to_owned(),
                })
                .observe(seconds);
        }
    }

    /// Records a send's time to its durable acknowledgement.
    pub fn send_acknowledged(&self, seconds: f64) {
        self.send_ack.observe(seconds);
    }

    /// An event stream opened (+1) or closed (-1).
    pub fn stream(&self, delta: i64) {
        self.streams.inc_by(delta);
    }

    /// The text exposition, with the gauges read just before.
    pub fn render(&self, pending: Option<u64>, peers: Option<u64>) -> String {
        if let Some(pending) = pending {
            self.pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
        }
        if let Some(peers) = peers {
            self.peers.set(i64::try_from(peers).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        text
    }
}
