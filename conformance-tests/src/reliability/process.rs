//! Worker processes of the reliability suite: start, stop, kill, and read what they ran.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::Env;

/// How a worker process runs (see the `dogs-test-worker` binary).
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// A label, used for its files and as its worker id.
    pub label: String,
    /// The job name it defines.
    pub name: String,
    /// `quick`, `hold`, `sleep` or `slow`.
    pub mode: &'static str,
    /// Worker slots.
    pub slots: usize,
    /// Lease time.
    pub lock: Duration,
    /// Poll interval.
    pub poll: Duration,
    /// Shutdown grace.
    pub grace: Duration,
    /// Store timeout.
    pub timeout: Duration,
    /// How long a `slow` handler blocks.
    pub slow: Duration,
    /// Extra environment (such as a fake clock).
    pub env: Vec<(String, String)>,
    /// Redis: how many replicas must confirm each write (0: none).
    pub wait_replicas: u32,
    /// Also schedule a job every this long, due the second duration later, until the file
    /// exists (see the worker binary).
    pub schedule: Option<(Duration, Duration, PathBuf)>,
}

impl WorkerSpec {
    /// A quick worker named `label` for job `name`, 32 slots, 30 s leases.
    pub fn new(label: &str, name: &str) -> Self {
        WorkerSpec {
            label: label.to_owned(),
            name: name.to_owned(),
            mode: "quick",
            slots: 32,
            lock: Duration::from_secs(30),
            poll: Duration::from_millis(500),
            grace: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            slow: Duration::from_secs(5),
            env: Vec::new(),
            wait_replicas: 0,
            schedule: None,
        }
    }
}

/// A running worker process.
#[derive(Debug)]
pub struct WorkerProcess {
    /// Its label.
    pub label: String,
    /// How far its clock was from this process's when it started.
    pub clock_offset: Duration,
    /// Whether its clock was ahead (or equal).
    pub clock_ahead: bool,
    child: Child,
    stdin: Option<ChildStdin>,
    out: PathBuf,
    log: PathBuf,
}

/// One line of a worker's execution log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A handler started: job id, tries, was_stale.
    Start(String, u32, bool),
    /// A handler that outlived its lease returned.
    Late(String),
}

impl WorkerProcess {
    /// Starts a worker process as `spec` says and waits until its workers run.
    pub fn start(env: &Env, spec: &WorkerSpec) -> WorkerProcess {
        let out = env.path(&format!("{}.out", spec.label));
        let log = env.path(&format!("{}.log", spec.label));
        let log_file = std::fs::File::create(&log).unwrap();
        let ms = |d: Duration| d.as_millis().to_string();
        let mut command = Command::new(&env.worker_bin);
        command
            .args(["--backend", env.backend()])
            .args(["--url", &env.settings.url])
            .args(["--namespace", &env.namespace])
            .arg("--out")
            .arg(&out)
            .args(["--name", &spec.name])
            .args(["--slots", &spec.slots.to_string()])
            .args(["--lock-ms", &ms(spec.lock)])
            .args(["--poll-ms", &ms(spec.poll)])
            .args(["--grace-ms", &ms(spec.grace)])
            .args(["--timeout-ms", &ms(spec.timeout)])
            .args(["--slow-ms", &ms(spec.slow)])
            .args(["--worker-id", &spec.label])
            .args(["--mode", spec.mode])
            .args(["--wait-replicas", &spec.wait_replicas.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file);
        for (name, value) in &spec.env {
            command.env(name, value);
        }
        if let Some((every, delay, until)) = &spec.schedule {
            command
                .args(["--schedule-ms", &ms(*every)])
                .args(["--schedule-delay-ms", &ms(*delay)])
                .arg("--schedule-until")
                .arg(until);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", env.worker_bin.display()));
        let stdout = child.stdout.take().unwrap();
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let clock = first
            .trim()
            .strip_prefix("ready ")
            .and_then(|ms| ms.parse::<i64>().ok());
        let Some(clock) = clock else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "worker {} did not start: {}",
                spec.label,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        WorkerProcess {
            label: spec.label.clone(),
            clock_offset: Duration::from_millis(
                (clock - chrono::Utc::now().timestamp_millis()).unsigned_abs(),
            ),
            clock_ahead: clock >= chrono::Utc::now().timestamp_millis(),
            stdin: child.stdin.take(),
            child,
            out,
            log,
        }
    }

    /// What it ran so far.
    pub fn lines(&self) -> Vec<Line> {
        read_lines(&self.out)
    }

    /// The ids of the jobs it started, in order.
    pub fn started(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter_map(|l| match l {
                Line::Start(id, _, _) => Some(id),
                Line::Late(_) => None,
            })
            .collect()
    }

    /// The job ids it started, each with its clock (Unix ms) at the start.
    pub fn start_clocks(&self) -> Vec<(String, i64)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter_map(
                |line| match line.split(' ').collect::<Vec<_>>().as_slice() {
                    ["start", id, _, _, clock] => Some(((*id).to_owned(), clock.parse().ok()?)),
                    _ => None,
                },
            )
            .collect()
    }

    /// The lines of its execution log that start with `word`, without it (`scheduled`,
    /// `refused`, `ran`).
    pub fn words(&self, word: &str) -> Vec<String> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let prefix = format!("{word} ");
        text.lines()
            .filter_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// Its standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks it to stop gracefully (closes its standard input) without waiting.
    pub fn request_stop(&mut self) {
        self.stdin.take();
    }

    /// Stops it gracefully and waits up to `deadline` for it to exit; fails unless it exits 0.
    pub async fn stop(mut self, deadline: Duration) {
        self.request_stop();
        self.wait_exit(deadline).await;
    }

    /// Waits up to `deadline` for it to exit; fails unless it exits 0.
    pub async fn wait_exit(&mut self, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    assert!(
                        status.success(),
                        "worker {} exited with {status}: {}",
                        self.label,
                        self.log()
                    );
                    return;
                }
                Ok(None) if Instant::now() < end => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => {
                    let _ = self.child.kill();
                    panic!("worker {} did not exit within {deadline:?}", self.label);
                }
            }
        }
    }

    /// Kills it with SIGKILL, as a crash would, and reaps it.
    pub fn kill(mut self) -> Vec<Line> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a worker's execution log.
pub fn read_lines(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["start", id, tries, stale, ..] => Some(Line::Start(
                    (*id).to_owned(),
                    tries.parse().ok()?,
                    *stale == "1",
                )),
                ["late", id] => Some(Line::Late((*id).to_owned())),
                _ => None,
            }
        })
        .collect()
}

/// How many times each job id started, over several workers.
pub fn start_counts<'a>(
    workers: impl IntoIterator<Item = &'a WorkerProcess>,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for worker in workers {
        for id in worker.started() {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    counts
}

/// Lines of a worker log that report a panic, or warnings and errors.
pub fn log_summary(log: &str) -> (usize, usize) {
    let panics = log.lines().filter(|l| l.contains("panicked")).count();
    let problems = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .count();
    (panics, problems)
}
