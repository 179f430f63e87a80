//! The machine side of `bench load`: CPU sets (who runs where), readings from `/proc`, the
//! coordinator as a child process, and its `/metrics` endpoint. Linux only where it must be:
//! elsewhere pinning is refused with a clear error and memory readings are absent.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// How long a coordinator may take to rebuild its index from its store and listen.
const START_TIMEOUT: Duration = Duration::from_secs(1_800);

/// The CPUs this process may run on (its affinity mask), in ascending order.
pub fn allowed_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `set`,
        // which is a zeroed value of that type.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
                return (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect();
            }
        }
    }
    (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
}

#[cfg(target_os = "linux")]
fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; CPU_SET only sets bits below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(c, &mut set);
        }
        set
    }
}

/// Pins every thread of this process (the ones running now; threads started later inherit the
/// mask of the thread that starts them) to `cpus`.
pub fn pin_this_process(cpus: &[usize]) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        let set = cpu_set(cpus);
        let tasks = std::fs::read_dir("/proc/self/task").context("reading /proc/self/task")?;
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            // SAFETY: sched_setaffinity reads `set`, a valid cpu_set_t, and touches no memory of ours.
            let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
            // A thread may have ended since the directory was read (ESRCH): nothing to pin.
            if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH) {
                bail!("cannot pin thread {tid} to CPUs {cpus:?}: {}", std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        bail!("pinning to CPUs {cpus:?} needs Linux (sched_setaffinity)")
    }
}

/// A process's resident memory now (`VmRSS`) and at its peak (`VmHWM`), in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss: u64,
    pub peak: u64,
}

/// `/proc/<pid>/status`'s memory lines; `None` when the process is gone or `/proc` is absent.
pub fn memory(pid: u32) -> Option<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| {
        text.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).map(|v| v * 1024)
    };
    Some(Memory { rss: kb("VmRSS:")?, peak: kb("VmHWM:").unwrap_or(0) })
}

/// CPU time (user + system, all threads) a process has used, in seconds.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    #[cfg(target_os = "linux")]
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    #[cfg(not(target_os = "linux"))]
    let hz = 100.0;
    Some(ticks as f64 / hz)
}

/// What the machine is: CPUs, their model, memory, kernel.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string());
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|kb| kb * 1024);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string());
    let load = std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next().map(String::from));
    json!({
        "cpus_online": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpus_allowed": allowed_cpus().len(),
        "cpu_model": model,
        "avx2": flags.contains(" avx2"),
        "avx512_vpopcntdq": flags.contains("avx512_vpopcntdq"),
        "mem_total_bytes": mem,
        "kernel": kernel,
        "loadavg_1min_before": load,
    })
}

/// A running `ponte-coordinator serve`, stopped (SIGTERM, then kill) when dropped.
pub struct CoordinatorProcess {
    child: Child,
    /// The gRPC address it printed.
    pub addr: String,
    /// The `/metrics` address it logged, when it serves metrics.
    pub metrics: Option<String>,
    /// Seconds from the spawn until it listened (its index rebuilt from the store).
    pub start_seconds: f64,
}

impl CoordinatorProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it and waits for it to exit.
    pub fn stop(mut self) {
        crate::demo::terminate(&mut self.child);
    }

    /// Whether it has exited (crashed) already.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            crate::demo::terminate(&mut self.child);
        }
    }
}

/// The address in a log line such as `… GET http://127.0.0.1:41231/metrics …`.
fn metrics_address(line: &str) -> Option<String> {
    let start = line.find("http://")? + "http://".len();
    let end = start + line[start..].find("/metrics")?;
    let addr = &line[start..end];
    addr.parse::<std::net::SocketAddr>().is_ok().then(|| addr.to_string())
}

/// Starts `ponte-coordinator serve --config CONFIG` (pinned to `cpus` when given: the mask is
/// set in the child before it runs the program, so every thread it starts inherits it), logs its
/// stderr to `log`, and waits until it listens. The metrics address is taken from its log.
pub fn start_coordinator(bin_dir: &Path, config: &Path, log: &Path, cpus: Option<&[usize]>) -> Result<CoordinatorProcess> {
    let program = bin_dir.join("ponte-coordinator");
    let mut cmd = Command::new(&program);
    cmd.arg("serve").arg("--config").arg(config).stdout(Stdio::piped()).stderr(Stdio::piped()).env("PONTE_LOG", "info");
    if let Some(cpus) = cpus {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            let set = cpu_set(cpus);
            // SAFETY: between fork and exec the closure only makes one system call on a value
            // it owns; it allocates nothing and takes no lock.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        #[cfg(not(target_os = "linux"))]
        bail!("pinning the coordinator to CPUs {cpus:?} needs Linux");
    }
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {}", program.display()))?;
    let stdout = child.stdout.take().context("coordinator stdout")?;
    let stderr = child.stderr.take().context("coordinator stderr")?;
    let (tx, rx) = std::sync::mpsc::channel::<(bool, String)>();
    let tx_err = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("ponte-coordinator listening on ") {
                let _ = tx.send((true, addr.trim().to_string()));
            }
        }
    });
    let mut log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(log_file, "{line}");
            if line.contains("metrics") && let Some(addr) = metrics_address(&line) {
                let _ = tx_err.send((false, addr));
            }
        }
    });
    let mut addr = None;
    let mut metrics = None;
    let deadline = started + START_TIMEOUT;
    while addr.is_none() {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((true, a)) => addr = Some(a),
            Ok((false, m)) => metrics = Some(m),
            Err(_) => {
                if let Ok(Some(status)) = child.try_wait() {
                    std::thread::sleep(Duration::from_millis(200));
                    bail!("the coordinator exited ({status}) before listening; {} says:\n{}", log.display(), tail(log));
                }
                if Instant::now() > deadline {
                    crate::demo::terminate(&mut child);
                    bail!("the coordinator did not listen within {} s; {} says:\n{}", START_TIMEOUT.as_secs(), log.display(), tail(log));
                }
            }
        }
    }
    let start_seconds = started.elapsed().as_secs_f64();
    // The metrics endpoint is logged before the gRPC listener's line; give the log a moment.
    if metrics.is_none() {
        let until = Instant::now() + Duration::from_secs(2);
        while metrics.is_none() && Instant::now() < until {
            if let Ok((false, m)) = rx.recv_timeout(Duration::from_millis(100)) {
                metrics = Some(m);
            }
        }
    }
    Ok(CoordinatorProcess { child, addr: addr.unwrap_or_default(), metrics, start_seconds })
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `GET /metrics` over plain HTTP/1.0; the body.
pub fn scrape(addr: &str) -> Result<String> {
    let mut stream = std::net::TcpStream::connect(addr).with_context(|| format!("connecting to the metrics endpoint {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    stream.take(64 * 1024 * 1024).read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("the metrics endpoint sent no HTTP body")?;
    anyhow::ensure!(head.starts_with("HTTP/1.") && head.contains(" 200"), "the metrics endpoint answered {:?}", head.lines().next());
    Ok(body.to_string())
}

/// The value of an unlabelled gauge or counter in Prometheus text.
pub fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        rest.starts_with(' ').then(|| rest.split_whitespace().next()?.parse::<f64>().ok()).flatten()
    })
}

/// Items the coordinator holds, from its `/metrics` gauge `ponte_coordinator_items`.
pub fn indexed_from_metrics(addr: &str) -> Option<u64> {
    scrape(addr).ok().and_then(|m| gauge(&m, "ponte_coordinator_items")).map(|v| v as u64)
}

/// Items a stopped coordinator's store holds, from `ponte-coordinator stats --data-dir` (the
/// per-node lines; links, clusters and per-epoch lines left out).
pub fn indexed_from_stats(bin_dir: &Path, data_dir: &Path) -> Result<u64> {
    let out = Command::new(bin_dir.join("ponte-coordinator")).arg("stats").arg("--data-dir").arg(data_dir).output()?;
    anyhow::ensure!(out.status.success(), "ponte-coordinator stats failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("links\t") && !l.starts_with("clusters\t") && !l.starts_with("epoch "))
        .filter_map(|l| l.rsplit('\t').next()?.trim().parse::<u64>().ok())
        .sum())
}

/// The folder of this process's executable's siblings (the release binaries when this is the
/// release `ponte-sim`), as the demo finds them.
pub fn binaries(bin_dir: Option<PathBuf>) -> Result<PathBuf> {
    let dir = match bin_dir {
        Some(d) => d,
        None => crate::locate_binaries(false)?,
    };
    if !dir.join("ponte-coordinator").exists() {
        bail!("ponte-coordinator not found in {}: build it (cargo build --release -p ponte-coordinator) or pass --bin-dir", dir.display());
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_metrics_address_from_a_log_line() {
        let line = "2026-01-01T00:00:00Z  INFO ponte_coordinator::service: metrics endpoint listening: GET http://127.0.0.1:41231/metrics (plain HTTP, no authentication) addr=127.0.0.1:41231";
        assert_eq!(metrics_address(line).as_deref(), Some("127.0.0.1:41231"));
        assert_eq!(metrics_address("GET http://not-an-address/metrics"), None);
        assert_eq!(metrics_address("no address here"), None);
    }

    #[test]
    fn reads_unlabelled_gauges_only() {
        let text = "# HELP ponte_coordinator_items Items\nponte_coordinator_items_total 9\nponte_coordinator_items 1234\nponte_coordinator_encodings{epoch=\"1\"} 1234\n";
        assert_eq!(gauge(text, "ponte_coordinator_items"), Some(1234.0));
        assert_eq!(gauge(text, "ponte_coordinator_links"), None);
    }

    #[test]
    fn this_process_has_memory_and_cpu_readings() {
        let m = memory(std::process::id()).unwrap();
        assert!(m.rss > 0 && m.peak >= m.rss);
        assert!(cpu_seconds("self").unwrap() >= 0.0);
        assert!(!allowed_cpus().is_empty());
    }
}
