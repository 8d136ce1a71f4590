//! The `overhead` scenario: what automatic lease renewal and metrics (a Prometheus recorder
//! installed) cost a drain, against a drain with both off, in alternated rounds of one run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use crate::backend::Backend;
use crate::measure::Figure;
use crate::scenarios::{drain_once, namespace, Outcome};
use crate::Settings;

/// A recorder that forwards to Prometheus's while it is on, and records nothing while off.
struct Switched {
    on: Arc<AtomicBool>,
    inner: PrometheusRecorder,
}

impl Recorder for Switched {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if self.on.load(Ordering::Relaxed) {
            self.inner.register_counter(key, metadata)
        } else {
            Counter::noop()
        }
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if self.on.load(Ordering::Relaxed) {
            self.inner.register_gauge(key, metadata)
        } else {
            Gauge::noop()
        }
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if self.on.load(Ordering::Relaxed) {
            self.inner.register_histogram(key, metadata)
        } else {
            Histogram::noop()
        }
    }
}

pub async fn run(settings: &Settings, backend: &Backend) -> Outcome<Vec<Figure>> {
    let on = Arc::new(AtomicBool::new(false));
    let recorder = Switched {
        on: on.clone(),
        inner: PrometheusBuilder::new().build_recorder(),
    };
    let handle = recorder.inner.handle();
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    let slots = 32;
    let (mut plain, mut full, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut plain_cpu, mut full_cpu, mut cpu_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..settings.runs {
        let mut rates = [0.0f64; 2];
        let mut cpu = [0.0f64; 2];
        // Alternated: the machine's drift falls on both sides alike.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for (i, with) in order.into_iter().enumerate() {
            on.store(with, Ordering::Relaxed);
            let settings = Settings {
                auto_extend: Some(with),
                ..settings.clone()
            };
            let ns = namespace(round * 2 + i);
            let store = backend.open(&ns).await?;
            let (rate, process, _) = drain_once(&settings, backend, &store, slots).await?;
            drop(store);
            backend.cleanup(&ns).await?;
            rates[usize::from(with)] = rate;
            cpu[usize::from(with)] = process;
        }
        plain.push(rates[0]);
        full.push(rates[1]);
        ratios.push(rates[1] / rates[0]);
        plain_cpu.push(cpu[0]);
        full_cpu.push(cpu[1]);
        cpu_ratios.push(cpu[1] / cpu[0]);
    }
    on.store(false, Ordering::Relaxed);
    // The recorder saw the drains with metrics on: it holds every job's figures.
    let rendered = handle.render();
    if !rendered.contains("dogs_executions_succeeded_total") {
        return Err("the recorder saw no executions".into());
    }
    let set = format!(
        "{} due no-op jobs, {slots} slots, cooldown 0, history {}, alternated rounds",
        settings.jobs,
        if settings.history { "kept" } else { "off" }
    );
    Ok(vec![
        Figure::new("drain, auto-renewal and metrics off", "jobs/s", plain, &set),
        Figure::new(
            "drain, auto-renewal and a Prometheus recorder on",
            "jobs/s",
            full,
            &set,
        ),
        Figure::new("rate on / off, per round", "ratio", ratios, &set),
        Figure::new("process CPU, off", "s/1000 jobs", plain_cpu, &set),
        Figure::new("process CPU, on", "s/1000 jobs", full_cpu, &set),
        Figure::new("process CPU on / off, per round", "ratio", cpu_ratios, &set),
    ])
}
