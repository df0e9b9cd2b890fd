//! How much memory this process holds, and how much the machine (or its cgroup) has left: what a
//! load is checked against before it starts, and what it reports when it ends.

/// Resident memory of this process, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Resident {
    /// The most ever resident (VmHWM).
    pub peak: u64,
    /// Resident now (VmRSS).
    pub now: u64,
}

/// This process's resident memory (Linux; `None` elsewhere).
pub fn resident() -> Option<Resident> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    Some(Resident { peak: kib_field(&status, "VmHWM:")?, now: kib_field(&status, "VmRSS:")? })
}

/// Bytes that can still be allocated without swapping or the OOM killer: the kernel's
/// MemAvailable, or less where a cgroup (a container's memory limit) allows less.
pub fn available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let machine = kib_field(&meminfo, "MemAvailable:")?;
    let read = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).ok()?.trim().parse::<u64>().ok();
    let cgroup = read("memory.max").zip(read("memory.current")).map(|(max, used)| max.saturating_sub(used));
    Some(cgroup.map_or(machine, |c| c.min(machine)))
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_in_bytes() {
        let text = "Name:\tarmorm\nVmHWM:\t  2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(kib_field(text, "VmHWM:"), Some(2 << 20));
        assert_eq!(kib_field(text, "VmRSS:"), Some(1 << 20));
        assert_eq!(kib_field(text, "VmSwap:"), None);
        if cfg!(target_os = "linux") {
            let r = resident().unwrap();
            assert!(r.peak >= r.now && r.now > 0);
            assert!(available().unwrap() > 0);
        }
    }
}
