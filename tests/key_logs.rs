//! The key's debug event, `RSA key generated`: its stable fields `racers`, `seed_ms` (how long
//! the key waited for aws-lc's random generator to be seeded) and `elapsed_ms`, which operators
//! and `benches/cold_start.rs` read. Its own test binary, because it installs the process-wide
//! tracing subscriber.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, filter::Targets};

/// An event's numeric fields, by name.
type Fields = Vec<(&'static str, f64)>;

/// The numeric fields of every event from the key module.
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
fn the_key_event_says_how_long_the_seed_and_the_whole_key_took() {
    let events = KeyEvents::default();
    let keys = Targets::new().with_target("cloudsql_core::keys", tracing::Level::DEBUG);
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(events.clone().with_filter(keys)),
    )
    .unwrap();

    cloudsql::core::RsaKey::generate().unwrap();

    let events = events.0.lock().unwrap();
    let generated = events
        .iter()
        .find(|fields| fields.iter().any(|(name, _)| *name == "elapsed_ms"))
        .unwrap_or_else(|| panic!("no `RSA key generated` event among {events:?}"));
    let field = |wanted: &str| {
        generated
            .iter()
            .find(|(name, _)| *name == wanted)
            .map(|(_, value)| *value)
            .unwrap_or_else(|| panic!("no `{wanted}` in {generated:?}"))
    };
    let (racers, seed_ms, elapsed_ms) = (field("racers"), field("seed_ms"), field("elapsed_ms"));
    assert!(racers >= 1.0, "{generated:?}");
    assert!(seed_ms >= 0.0 && seed_ms <= elapsed_ms, "{generated:?}");
}
