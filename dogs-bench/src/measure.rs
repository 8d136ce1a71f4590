//! Figures, their statistics over runs, percentiles and CPU time.

use serde::Serialize;

/// One reported figure: the median of its runs, with min and max.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub values: Vec<f64>,
    pub settings: String,
}

impl Figure {
    pub fn new(name: &str, unit: &str, mut values: Vec<f64>, settings: &str) -> Self {
        values.sort_by(f64::total_cmp);
        Figure {
            name: name.to_owned(),
            unit: unit.to_owned(),
            median: percentile(&values, 0.5),
            min: values.first().copied().unwrap_or(0.0),
            max: values.last().copied().unwrap_or(0.0),
            values,
            settings: settings.to_owned(),
        }
    }
}

/// The `p` percentile (0..=1) of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// CPU seconds (user + system) of this process.
pub fn process_cpu() -> f64 {
    cpu_of("self")
}

/// CPU seconds of every process whose name is `name` (the database server), where visible.
pub fn server_cpu(name: Option<&str>) -> Option<f64> {
    let name = name?;
    let mut total = 0.0;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name();
        let Some(pid) = pid.to_str() else { continue };
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == name {
            total += cpu_of(pid);
            found = true;
        }
    }
    found.then_some(total)
}

fn cpu_of(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command (which is in parentheses): utime and stime are the 12th and 13th.
    let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
