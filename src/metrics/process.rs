//! The `process_*` series: the prometheus crate's process collector, except
//! `process_cpu_seconds_total`, which it counts in whole seconds (a
//! `rate()` over a minute of a mostly idle gateway is 0, then 1/60). Here
//! it comes from `getrusage` in microseconds, so a rate shows real load.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Opts};

const CPU: &str = "process_cpu_seconds_total";

pub struct ProcessMetrics {
    inner: prometheus::process_collector::ProcessCollector,
    cpu: Counter,
    /// Two scrapes at once must not both add the same CPU time.
    update: std::sync::Mutex<()>,
}

impl ProcessMetrics {
    pub fn new() -> ProcessMetrics {
        ProcessMetrics {
            inner: prometheus::process_collector::ProcessCollector::for_self(),
            cpu: Counter::with_opts(Opts::new(
                CPU,
                "Total user and system CPU time spent in seconds (microsecond resolution).",
            ))
            .expect("valid metric"),
            update: std::sync::Mutex::new(()),
        }
    }
}

/// User plus system CPU time of this process so far, in seconds.
fn cpu_seconds() -> Option<f64> {
    // SAFETY: a zeroed rusage is a valid value of this plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable rusage for the call to fill in.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(u.ru_utime) + secs(u.ru_stime))
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut d: Vec<&Desc> = self
            .inner
            .desc()
            .into_iter()
            .filter(|d| d.fq_name != CPU)
            .collect();
        d.extend(self.cpu.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families: Vec<MetricFamily> = self
            .inner
            .collect()
            .into_iter()
            .filter(|f| f.name() != CPU)
            .collect();
        let _one_at_a_time = self.update.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(now) = cpu_seconds() {
            // A counter only goes up: add what was used since the last scrape.
            self.cpu.inc_by((now - self.cpu.get()).max(0.0));
        }
        families.extend(self.cpu.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_has_sub_second_resolution() {
        let m = ProcessMetrics::new();
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(30) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        let cpu = m
            .collect()
            .into_iter()
            .find(|f| f.name() == CPU)
            .expect("cpu family");
        let v = cpu.get_metric()[0].get_counter().get_value();
        assert!(v > 0.0 && v.fract() != 0.0, "{v}");
        assert_eq!(m.desc().iter().filter(|d| d.fq_name == CPU).count(), 1);
    }
}
