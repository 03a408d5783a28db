//! A `log` logger that keeps every record, for the tests that read the
//! runtime's reports. A logger is process-global: a test binary that uses
//! this one calls [`install`] and runs its tests one at a time.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, Once};

/// One captured record.
#[derive(Debug, Clone)]
pub(crate) struct Rec {
    pub(crate) level: log::Level,
    pub(crate) target: String,
    pub(crate) kv: HashMap<String, String>,
}

struct Capture(Mutex<Vec<Rec>>);

struct Fields(HashMap<String, String>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        self.0.insert(key.to_string(), value.to_string());
        Ok(())
    }
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let mut fields = Fields(HashMap::new());
        record.key_values().visit(&mut fields).unwrap();
        self.0.lock().unwrap().push(Rec {
            level: record.level(),
            target: record.target().to_string(),
            kv: fields.0,
        });
    }
    fn flush(&self) {}
}

static LOGGER: Capture = Capture(Mutex::new(Vec::new()));

/// Makes the capturing logger this binary's logger, at every level (once).
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&LOGGER).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Forgets the records captured so far.
pub(crate) fn clear() {
    LOGGER.0.lock().unwrap().clear();
}

/// The records captured so far, oldest first.
pub(crate) fn records() -> MutexGuard<'static, Vec<Rec>> {
    LOGGER.0.lock().unwrap()
}
