//! The CPU time of this process, for benches that report CPU per connection or per MB.

/// CPU time of all this process's threads, in nanoseconds (each thread's `schedstat`).
pub(crate) fn cpu_ns() -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else {
            continue; // The thread ended meanwhile.
        };
        total += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| anyhow::anyhow!("unreadable schedstat: {stat}"))?;
    }
    Ok(total)
}
