//! The key's debug event, `RSA key generated`, with its stable fields `racers` and `elapsed_ms`,
//! and the seed's, `aws-lc random generator seeded`, with `seed_ms`: operators and
//! `benches/cold_start.rs` read them. Its own test binary, because it installs the process-wide
//! tracing subscriber.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, filter::Targets};

/// An event's numeric fields, by name.
type Fields = Vec<(&'static str, f64)>;

/// The numeric fields of every event from the key and random-generator modules.
#[derive(Clone, Default)]
struct KeyEvents(Arc<Mutex<Vec<Fields>>>);

struct Numbers(Fields);

impl Visit for Numbers {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.push((field.name(), value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.name(), value as f64));
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> Layer<S> for KeyEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut numbers = Numbers(Vec::new());
        event.record(&mut numbers);
        self.0.lock().unwrap().push(numbers.0);
    }
}

#[test]
fn the_key_and_seed_events_say_how_long_each_took() {
    let events = KeyEvents::default();
    let keys = Targets::new()
        .with_target("cloudsql_core::keys", tracing::Level::DEBUG)
        .with_target("cloudsql_core::random", tracing::Level::DEBUG);
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(events.clone().with_filter(keys)),
    )
    .unwrap();

    // Building a connector starts both the key and the seed, each on a thread of its own.
    let connector = cloudsql::core::Connector::builder().build().unwrap();
    cloudsql::core::RsaKey::generate().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let event_with = |wanted: &str| loop {
        let found = events
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|fields| fields.iter().any(|(name, _)| *name == wanted))
            .cloned();
        match found {
            Some(fields) => return fields,
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            None => panic!("no event with `{wanted}` among {:?}", events.0.lock().unwrap()),
        }
    };
    let field = |fields: &Fields, wanted: &str| {
        fields
            .iter()
            .find(|(name, _)| *name == wanted)
            .map(|(_, value)| *value)
            .unwrap_or_else(|| panic!("no `{wanted}` in {fields:?}"))
    };
    let generated = event_with("elapsed_ms");
    assert!(field(&generated, "racers") >= 1.0, "{generated:?}");
    assert!(field(&generated, "elapsed_ms") > 0.0, "{generated:?}");
    let seeded = event_with("seed_ms");
    assert!(field(&seeded, "seed_ms") >= 0.0, "{seeded:?}");
    drop(connector);
}
