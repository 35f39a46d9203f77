//! Series computed when `/metrics` is read: `flagger_canary_total` from the Canaries the controller
//! watches, and the `process_*` series the Prometheus client libraries serve (from Linux's
//! `/proc`), which dashboards and alerts on the controller's job use.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, OnceLock},
    time::{SystemTime, UNIX_EPOCH},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

use super::NamespaceLabels;

/// Counts Canaries per namespace.
pub type CountCanaries = Box<dyn Fn() -> BTreeMap<String, i64> + Send + Sync>;

/// `flagger_canary_total{namespace}`, counted at each scrape: a namespace whose last Canary is
/// deleted has no series any more (Flagger keeps its last count).
#[derive(Clone, Default)]
pub struct CanaryTotal(Arc<OnceLock<CountCanaries>>);

impl fmt::Debug for CanaryTotal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CanaryTotal").field(&self.0.get().is_some()).finish()
    }
}

impl CanaryTotal {
    /// Counts with `count` from now on (once the controller watches Canaries; until then, and
    /// for a second call, nothing changes).
    pub fn count_with(&self, count: CountCanaries) {
        let _ = self.0.set(count);
    }
}

impl Collector for CanaryTotal {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let Some(count) = self.0.get() else { return Ok(()) };
        let counts = count();
        if counts.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "canary_total",
            "Number of canaries per namespace",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (namespace, n) in counts {
            let labels = NamespaceLabels { namespace };
            ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// `process_*`: CPU time, memory, file descriptors and start time of the controller's process.
#[derive(Debug)]
pub struct ProcessCollector {
    start: f64,
}

impl ProcessCollector {
    /// A collector for this process, which started about now.
    pub fn new() -> ProcessCollector {
        let start = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        ProcessCollector { start }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

/// What `/proc/self` says now; `None` for what cannot be read (not Linux, or hidden).
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<i64>,
    virtual_bytes: Option<i64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, fixed at 100 in Linux's ABI).
const USER_HZ: f64 = 100.0;

fn sample() -> Sample {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let mut s = parse(&stat, &status, &limits);
    s.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as i64);
    s
}

/// Reads `/proc/self/stat` (utime and stime, fields 14 and 15), `/proc/self/status` (`VmRSS`,
/// `VmSize`, in kB) and `/proc/self/limits` (the soft limit of open files).
fn parse(stat: &str, status: &str, limits: &str) -> Sample {
    // Fields after the command name, which is in parentheses and may hold spaces: field 3 first.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let cpu_seconds = match (ticks(14 - 3), ticks(15 - 3)) {
        (Some(user), Some(system)) => Some((user + system) as f64 / USER_HZ),
        _ => None,
    };
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            .map(|v| v.saturating_mul(1024))
    };
    let max_fds = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<i64>().ok());
    Sample {
        cpu_seconds,
        resident_bytes: kb("VmRSS:"),
        virtual_bytes: kb("VmSize:"),
        open_fds: None,
        max_fds,
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let s = sample();
        if let Some(v) = s.cpu_seconds {
            let c = ConstCounter::new(v);
            let help = "Total user and system CPU time spent in seconds.";
            c.encode(encoder.encode_descriptor("process_cpu_seconds", help, None, c.metric_type())?)?;
        }
        let gauges = [
            ("process_resident_memory_bytes", "Resident memory size in bytes.", s.resident_bytes),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes.", s.virtual_bytes),
            ("process_open_fds", "Number of open file descriptors.", s.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors.", s.max_fds),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        let g = ConstGauge::new(self.start);
        let help = "Start time of the process since unix epoch in seconds.";
        g.encode(encoder.encode_descriptor("process_start_time_seconds", help, None, g.metric_type())?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::{encoding::text::encode, registry::Registry};

    use super::*;

    #[test]
    fn proc_files_are_read_as_the_client_libraries_do() {
        let stat = "4242 (veer (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 70 0 0 20 0 9 0 1000 \
                    123456789 5000 18446744073709551615";
        let status = "Name:\tveer\nVmSize:\t  120560 kB\nVmRSS:\t   20480 kB\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 1048576              files     \n";
        assert_eq!(
            parse(stat, status, limits),
            Sample {
                cpu_seconds: Some(3.2),
                resident_bytes: Some(20480 * 1024),
                virtual_bytes: Some(120560 * 1024),
                open_fds: None,
                max_fds: Some(1024),
            }
        );
        assert_eq!(parse("", "", ""), Sample::default(), "nothing readable: no values, no panic");
    }

    #[test]
    fn this_process_is_described() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector::new()));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for series in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.lines().any(|l| l.starts_with(series)), "{series} missing from\n{text}");
        }
    }

    #[test]
    fn canaries_are_counted_at_each_scrape() {
        let total = CanaryTotal::default();
        let mut registry = Registry::default();
        registry.sub_registry_with_prefix("flagger").register_collector(Box::new(total.clone()));
        let scrape = |registry: &Registry| {
            let mut text = String::new();
            encode(&mut text, registry).unwrap();
            text.lines()
                .filter(|l| l.starts_with("flagger_canary_total"))
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert!(scrape(&registry).is_empty(), "nothing before the Canaries are watched");
        let canaries =
            Arc::new(std::sync::Mutex::new(BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 1)])));
        let source = canaries.clone();
        total.count_with(Box::new(move || source.lock().unwrap().clone()));
        assert_eq!(
            scrape(&registry),
            ["flagger_canary_total{namespace=\"a\"} 2", "flagger_canary_total{namespace=\"b\"} 1"]
        );
        canaries.lock().unwrap().remove("b");
        assert_eq!(
            scrape(&registry),
            ["flagger_canary_total{namespace=\"a\"} 2"],
            "the last Canary of b went"
        );
    }
}
