//! What every benchmark in `benches/` reads from its machine: settings from the
//! environment and how busy the machine was (on a shared machine, figures are only
//! comparable within one run, so each table says its load average).

/// The number in the environment variable `name`, or `default` when unset or not a number.
pub fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The 1-minute load average (`/proc/loadavg`), NaN where there is none.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}
