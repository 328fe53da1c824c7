//! A deterministic, node_exporter-like workload: the series a Prometheus
//! scraping `H` node_exporters (plus a small instrumented HTTP handler and
//! the Go runtime) would hold, and values that evolve like real ones between
//! scrape rounds.
//!
//! Everything comes from one seeded [`Rng`], so the same seed and host count
//! give the same series and the same values on every run and every target.

/// SplitMix64: tiny, fast, and good enough for synthetic metric values.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// How a series' value moves from one scrape round to the next.
#[derive(Debug, Clone, Copy)]
enum Model {
    /// Never changes (sizes, totals, info-style 0/1 gauges).
    Const,
    /// Monotonic counter growing by a per-second rate drawn from [lo, hi),
    /// rounded to `quantum` (1 for packet counts, 0.01 for CPU seconds, 0 for none).
    Counter {
        lo: f64,
        hi: f64,
        quantum: f64,
    },
    /// Random walk by at most `step` per round, kept inside [lo, hi].
    Gauge {
        lo: f64,
        hi: f64,
        step: f64,
        quantum: f64,
    },
    /// The scrape's own time in seconds, like `node_time_seconds`.
    Clock,
    /// Cumulative bucket `index` of histogram `hist`.
    Bucket {
        hist: usize,
        index: usize,
    },
    Sum {
        hist: usize,
    },
    Count {
        hist: usize,
    },
}

/// One series: sorted labels (`__name__` included) and its current value.
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: Vec<(String, String)>,
    model: Model,
    pub value: f64,
}

/// A classic histogram's state: observations land in buckets by an
/// exponential latency distribution.
#[derive(Debug, Clone)]
struct Histogram {
    /// Finite upper bounds; the `+Inf` bucket follows them.
    bounds: Vec<f64>,
    /// Cumulative counts, one per bound plus `+Inf`.
    cumulative: Vec<f64>,
    sum: f64,
    /// Observations per second.
    rate: f64,
    /// Mean observed latency, seconds.
    mean: f64,
}

impl Histogram {
    fn new(bounds: &[f64], rate: f64, mean: f64, uptime: f64) -> Histogram {
        // Start as if it had run for `uptime` seconds: expected counts.
        let total = (rate * uptime).round();
        let mut cumulative: Vec<f64> = bounds
            .iter()
            .map(|b| (total * (1.0 - (-b / mean).exp())).round())
            .collect();
        cumulative.push(total);
        Histogram {
            bounds: bounds.to_vec(),
            cumulative,
            sum: total * mean,
            rate,
            mean,
        }
    }

    fn observe_round(&mut self, rng: &mut Rng, interval_secs: f64) {
        let n = (self.rate * interval_secs * rng.range(0.5, 1.5)).floor() as u64;
        for _ in 0..n {
            let latency = -self.mean * (1.0 - rng.unit()).ln();
            self.sum += latency;
            let first = self
                .bounds
                .iter()
                .position(|b| latency <= *b)
                .unwrap_or(self.bounds.len());
            for count in &mut self.cumulative[first..] {
                *count += 1.0;
            }
        }
    }
}

/// All series of all hosts, and the clock of the next scrape round.
#[derive(Debug, Clone)]
pub struct Workload {
    pub series: Vec<Series>,
    hists: Vec<Histogram>,
    rng: Rng,
    interval_ms: i64,
    next_ts: i64,
    rounds_done: u64,
}

impl Workload {
    /// `hosts` node_exporters scraped every `interval_ms`, first scrape at `start_ms`.
    pub fn new(hosts: usize, seed: u64, start_ms: i64, interval_ms: i64) -> Workload {
        let mut rng = Rng::new(seed);
        let mut series = Vec::new();
        let mut hists = Vec::new();
        for host in 0..hosts {
            let first = series.len();
            HostBuilder {
                instance: format!("host-{host:03}:9100"),
                uptime: rng.range(86_400.0, 60.0 * 86_400.0),
                rng: &mut rng,
                series: &mut series,
                hists: &mut hists,
                first,
            }
            .build();
        }
        Workload {
            series,
            hists,
            rng,
            interval_ms,
            next_ts: start_ms,
            rounds_done: 0,
        }
    }

    /// Moves every series to the next scrape round (the first call keeps
    /// the initial values) and returns that round's timestamp in ms.
    pub fn advance(&mut self) -> i64 {
        let ts = self.next_ts;
        let interval_secs = self.interval_ms as f64 / 1000.0;
        if self.rounds_done > 0 {
            for hist in &mut self.hists {
                hist.observe_round(&mut self.rng, interval_secs);
            }
        }
        for series in &mut self.series {
            series.value = match series.model {
                Model::Const => series.value,
                Model::Counter { lo, hi, quantum } => {
                    if self.rounds_done == 0 {
                        series.value
                    } else {
                        let inc = self.rng.range(lo, hi) * interval_secs;
                        quantize(series.value + inc, quantum)
                    }
                }
                Model::Gauge {
                    lo,
                    hi,
                    step,
                    quantum,
                } => {
                    if self.rounds_done == 0 {
                        series.value
                    } else {
                        let next = series.value + self.rng.range(-step, step);
                        quantize(next.clamp(lo, hi), quantum)
                    }
                }
                Model::Clock => ts as f64 / 1000.0 + self.rng.range(0.001, 0.02),
                Model::Bucket { hist, index } => self.hists[hist].cumulative[index],
                Model::Sum { hist } => self.hists[hist].sum,
                Model::Count { hist } => {
                    let h = &self.hists[hist];
                    h.cumulative[h.bounds.len()]
                }
            };
        }
        self.next_ts += self.interval_ms;
        self.rounds_done += 1;
        ts
    }
}

fn quantize(value: f64, quantum: f64) -> f64 {
    if quantum > 0.0 {
        (value / quantum).round() * quantum
    } else {
        value
    }
}

const CPU_MODES: [(&str, f64, f64); 8] = [
    ("idle", 0.70, 0.95),
    ("user", 0.03, 0.20),
    ("system", 0.01, 0.06),
    ("iowait", 0.0, 0.02),
    ("irq", 0.0, 0.0),
    ("softirq", 0.001, 0.005),
    ("steal", 0.0, 0.004),
    ("nice", 0.0, 0.0005),
];

const MEMORY: [&str; 28] = [
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapCached",
    "SwapTotal",
    "SwapFree",
    "Active",
    "Inactive",
    "Active_anon",
    "Inactive_anon",
    "Active_file",
    "Inactive_file",
    "Dirty",
    "Writeback",
    "AnonPages",
    "Mapped",
    "Shmem",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "KernelStack",
    "PageTables",
    "Committed_AS",
    "VmallocUsed",
    "HugePages_Total",
    "Hugepagesize",
];

/// (device, fstype, mountpoint)
const MOUNTS: [(&str, &str, &str); 5] = [
    ("/dev/sda1", "ext4", "/"),
    ("/dev/sda2", "vfat", "/boot/efi"),
    ("/dev/sdb1", "xfs", "/var/lib/data"),
    ("tmpfs", "tmpfs", "/run"),
    ("tmpfs", "tmpfs", "/run/user/1000"),
];

const NET_DEVICES: [&str; 4] = ["lo", "eth0", "eth1", "docker0"];
const NET_COUNTERS: [&str; 8] = [
    "bytes",
    "packets",
    "errs",
    "drop",
    "fifo",
    "compressed",
    "multicast",
    "frame",
];

const DISKS: [&str; 4] = ["sda", "sdb", "nvme0n1", "dm-0"];
/// (suffix, per-second rate range, quantum)
const DISK_COUNTERS: [(&str, f64, f64, f64); 11] = [
    ("reads_completed_total", 1.0, 40.0, 1.0),
    ("writes_completed_total", 5.0, 80.0, 1.0),
    ("reads_merged_total", 0.0, 5.0, 1.0),
    ("writes_merged_total", 0.0, 30.0, 1.0),
    ("read_bytes_total", 4096.0, 2e6, 512.0),
    ("written_bytes_total", 4096.0, 4e6, 512.0),
    ("read_time_seconds_total", 0.0, 0.05, 0.001),
    ("write_time_seconds_total", 0.0, 0.2, 0.001),
    ("io_time_seconds_total", 0.0, 0.1, 0.001),
    ("io_time_weighted_seconds_total", 0.0, 0.3, 0.001),
    ("discards_completed_total", 0.0, 0.1, 1.0),
];

const VMSTAT: [(&str, f64); 10] = [
    ("pgfault", 2000.0),
    ("pgmajfault", 2.0),
    ("pgpgin", 300.0),
    ("pgpgout", 900.0),
    ("pswpin", 0.0),
    ("pswpout", 0.0),
    ("oom_kill", 0.0),
    ("pgsteal_kswapd", 20.0),
    ("pgscan_kswapd", 25.0),
    ("pgscan_direct", 1.0),
];

const NETSTAT: [(&str, f64); 22] = [
    ("Tcp_ActiveOpens", 3.0),
    ("Tcp_PassiveOpens", 5.0),
    ("Tcp_CurrEstab", -1.0),
    ("Tcp_InErrs", 0.01),
    ("Tcp_InSegs", 800.0),
    ("Tcp_OutSegs", 900.0),
    ("Tcp_OutRsts", 1.0),
    ("Tcp_RetransSegs", 0.5),
    ("TcpExt_ListenDrops", 0.0),
    ("TcpExt_ListenOverflows", 0.0),
    ("TcpExt_SyncookiesFailed", 0.0),
    ("TcpExt_SyncookiesRecv", 0.0),
    ("TcpExt_SyncookiesSent", 0.0),
    ("TcpExt_TCPSynRetrans", 0.05),
    ("TcpExt_TCPTimeouts", 0.1),
    ("Udp_InDatagrams", 50.0),
    ("Udp_InErrors", 0.0),
    ("Udp_NoPorts", 0.2),
    ("Udp_OutDatagrams", 50.0),
    ("Ip_Forwarding", -2.0),
    ("Icmp_InMsgs", 0.5),
    ("Icmp_OutMsgs", 0.5),
];

const SOCKSTAT: [&str; 10] = [
    "sockets_used",
    "TCP_alloc",
    "TCP_inuse",
    "TCP_mem",
    "TCP_mem_bytes",
    "TCP_orphan",
    "TCP_tw",
    "UDP_inuse",
    "UDP_mem",
    "UDP_mem_bytes",
];

const COLLECTORS: [&str; 30] = [
    "arp",
    "bcache",
    "bonding",
    "btrfs",
    "conntrack",
    "cpu",
    "cpufreq",
    "diskstats",
    "dmi",
    "edac",
    "entropy",
    "fibrechannel",
    "filefd",
    "filesystem",
    "hwmon",
    "infiniband",
    "ipvs",
    "loadavg",
    "mdadm",
    "meminfo",
    "netclass",
    "netdev",
    "netstat",
    "nfs",
    "os",
    "powersupplyclass",
    "pressure",
    "schedstat",
    "sockstat",
    "vmstat",
];

const UNITS: [&str; 30] = [
    "cron.service",
    "dbus.service",
    "docker.service",
    "containerd.service",
    "ssh.service",
    "systemd-journald.service",
    "systemd-logind.service",
    "systemd-networkd.service",
    "systemd-resolved.service",
    "systemd-timesyncd.service",
    "systemd-udevd.service",
    "node_exporter.service",
    "rsyslog.service",
    "polkit.service",
    "getty@tty1.service",
    "serial-getty@ttyS0.service",
    "unattended-upgrades.service",
    "apt-daily.service",
    "apt-daily-upgrade.service",
    "logrotate.service",
    "man-db.service",
    "fstrim.service",
    "e2scrub_reap.service",
    "networking.service",
    "chrony.service",
    "nginx.service",
    "postgresql.service",
    "redis-server.service",
    "snapd.service",
    "multipathd.service",
];
const UNIT_STATES: [&str; 5] = ["activating", "active", "deactivating", "failed", "inactive"];

const HANDLERS: [&str; 4] = [
    "/api/v1/query",
    "/api/v1/query_range",
    "/metrics",
    "/-/healthy",
];
const LE: [(&str, f64); 11] = [
    ("0.005", 0.005),
    ("0.01", 0.01),
    ("0.025", 0.025),
    ("0.05", 0.05),
    ("0.1", 0.1),
    ("0.25", 0.25),
    ("0.5", 0.5),
    ("1.0", 1.0),
    ("2.5", 2.5),
    ("5.0", 5.0),
    ("10.0", 10.0),
];

const GO_GAUGES: [(&str, f64, f64); 16] = [
    ("go_goroutines", 8.0, 14.0),
    ("go_threads", 7.0, 12.0),
    ("go_memstats_alloc_bytes", 2e6, 6e6),
    ("go_memstats_heap_alloc_bytes", 2e6, 6e6),
    ("go_memstats_heap_idle_bytes", 3e6, 8e6),
    ("go_memstats_heap_inuse_bytes", 4e6, 8e6),
    ("go_memstats_heap_objects", 15_000.0, 40_000.0),
    ("go_memstats_heap_released_bytes", 1e6, 6e6),
    ("go_memstats_heap_sys_bytes", 1.1e7, 1.2e7),
    ("go_memstats_last_gc_time_seconds", 1.7e9, 1.7e9),
    ("go_memstats_mcache_inuse_bytes", 4800.0, 4800.0),
    ("go_memstats_mspan_inuse_bytes", 80_000.0, 120_000.0),
    ("go_memstats_next_gc_bytes", 4e6, 8e6),
    ("go_memstats_stack_inuse_bytes", 6e5, 9e5),
    ("go_memstats_sys_bytes", 1.8e7, 2.2e7),
    ("process_resident_memory_bytes", 1.8e7, 2.6e7),
];

struct HostBuilder<'a> {
    instance: String,
    /// Seconds since "boot": counters start near rate × uptime.
    uptime: f64,
    rng: &'a mut Rng,
    series: &'a mut Vec<Series>,
    hists: &'a mut Vec<Histogram>,
    /// Index of this host's first series.
    first: usize,
}

impl HostBuilder<'_> {
    fn add(&mut self, name: &str, extra: &[(&str, &str)], model: Model, initial: f64) {
        let mut labels: Vec<(String, String)> = Vec::with_capacity(extra.len() + 3);
        labels.push(("__name__".to_owned(), name.to_owned()));
        labels.push(("instance".to_owned(), self.instance.clone()));
        labels.push(("job".to_owned(), "node".to_owned()));
        labels.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        labels.sort();
        self.series.push(Series {
            labels,
            model,
            value: initial,
        });
    }

    fn constant(&mut self, name: &str, extra: &[(&str, &str)], value: f64) {
        self.add(name, extra, Model::Const, value);
    }

    /// A counter with a per-second rate in [lo, hi); starts at about rate × uptime.
    fn counter(&mut self, name: &str, extra: &[(&str, &str)], lo: f64, hi: f64, quantum: f64) {
        let start = quantize(self.rng.range(lo, hi) * self.uptime, quantum);
        self.add(name, extra, Model::Counter { lo, hi, quantum }, start);
    }

    fn gauge(&mut self, name: &str, extra: &[(&str, &str)], lo: f64, hi: f64, quantum: f64) {
        let start = quantize(self.rng.range(lo, hi), quantum);
        let step = (hi - lo) / 50.0;
        self.add(
            name,
            extra,
            Model::Gauge {
                lo,
                hi,
                step,
                quantum,
            },
            start,
        );
    }

    fn build(&mut self) {
        let cpus = *self.rng.pick(&[2usize, 4, 4, 8, 8, 16]);
        let mem_total = *self.rng.pick(&[8.0, 16.0, 32.0, 64.0]) * 1024.0 * 1024.0 * 1024.0;
        let cpu_names: Vec<String> = (0..cpus).map(|c| c.to_string()).collect();

        for cpu in &cpu_names {
            for (mode, lo, hi) in CPU_MODES {
                self.counter(
                    "node_cpu_seconds_total",
                    &[("cpu", cpu), ("mode", mode)],
                    lo,
                    hi,
                    0.01,
                );
            }
            for mode in ["nice", "user"] {
                self.constant(
                    "node_cpu_guest_seconds_total",
                    &[("cpu", cpu), ("mode", mode)],
                    0.0,
                );
            }
            self.gauge(
                "node_cpu_scaling_frequency_hertz",
                &[("cpu", cpu)],
                1.2e9,
                3.5e9,
                1000.0,
            );
            self.counter(
                "node_schedstat_running_seconds_total",
                &[("cpu", cpu)],
                0.05,
                0.3,
                1e-9,
            );
            self.counter(
                "node_schedstat_waiting_seconds_total",
                &[("cpu", cpu)],
                0.001,
                0.05,
                1e-9,
            );
            self.counter(
                "node_schedstat_timeslices_total",
                &[("cpu", cpu)],
                50.0,
                500.0,
                1.0,
            );
            self.counter(
                "node_softnet_processed_total",
                &[("cpu", cpu)],
                10.0,
                300.0,
                1.0,
            );
            self.counter("node_softnet_dropped_total", &[("cpu", cpu)], 0.0, 0.0, 1.0);
            self.counter(
                "node_softnet_times_squeezed_total",
                &[("cpu", cpu)],
                0.0,
                0.05,
                1.0,
            );
        }

        for field in MEMORY {
            let name = format!("node_memory_{field}_bytes");
            match field {
                "MemTotal" => self.constant(&name, &[], mem_total),
                "SwapTotal" | "SwapFree" | "HugePages_Total" => self.constant(&name, &[], 0.0),
                "Hugepagesize" => self.constant(&name, &[], 2_097_152.0),
                _ => {
                    let share = self.rng.range(0.001, 0.6);
                    let center = mem_total * share;
                    self.gauge(&name, &[], center * 0.8, center * 1.2, 1024.0);
                }
            }
        }

        for (device, fstype, mountpoint) in MOUNTS {
            let labels = [
                ("device", device),
                ("fstype", fstype),
                ("mountpoint", mountpoint),
            ];
            let size = if fstype == "tmpfs" {
                mem_total / 10.0
            } else {
                *self.rng.pick(&[0.5, 50.0, 200.0, 1000.0]) * 1e9
            };
            let used = size * self.rng.range(0.05, 0.9);
            self.constant("node_filesystem_size_bytes", &labels, size);
            self.gauge(
                "node_filesystem_free_bytes",
                &labels,
                size - used * 1.01,
                size - used,
                4096.0,
            );
            self.gauge(
                "node_filesystem_avail_bytes",
                &labels,
                (size - used) * 0.94,
                (size - used) * 0.95,
                4096.0,
            );
            self.constant("node_filesystem_files", &labels, (size / 16384.0).round());
            self.gauge(
                "node_filesystem_files_free",
                &labels,
                size / 20000.0,
                size / 19000.0,
                1.0,
            );
            self.constant("node_filesystem_readonly", &labels, 0.0);
            self.constant("node_filesystem_device_error", &labels, 0.0);
        }

        for device in NET_DEVICES {
            let busy = if device == "eth0" { 1.0 } else { 0.05 };
            for direction in ["receive", "transmit"] {
                for counter in NET_COUNTERS {
                    let name = format!("node_network_{direction}_{counter}_total");
                    let (lo, hi) = match counter {
                        "bytes" => (1e4 * busy, 5e6 * busy),
                        "packets" => (10.0 * busy, 4000.0 * busy),
                        "errs" | "drop" => (0.0, 0.01),
                        "multicast" => (0.0, 0.5),
                        _ => (0.0, 0.0),
                    };
                    self.counter(&name, &[("device", device)], lo, hi, 1.0);
                }
            }
            self.constant("node_network_up", &[("device", device)], 1.0);
            self.constant(
                "node_network_mtu_bytes",
                &[("device", device)],
                if device == "lo" { 65536.0 } else { 1500.0 },
            );
            self.constant("node_network_speed_bytes", &[("device", device)], 1.25e9);
        }

        for disk in DISKS {
            for (suffix, lo, hi, quantum) in DISK_COUNTERS {
                let name = format!("node_disk_{suffix}");
                self.counter(&name, &[("device", disk)], lo, hi, quantum);
            }
            self.gauge("node_disk_io_now", &[("device", disk)], 0.0, 4.0, 1.0);
        }

        let load = self.rng.range(0.0, cpus as f64);
        for name in ["node_load1", "node_load5", "node_load15"] {
            self.gauge(name, &[], load * 0.5, load * 1.5 + 0.1, 0.01);
        }

        for (field, rate) in VMSTAT {
            let name = format!("node_vmstat_{field}");
            self.counter(&name, &[], rate * 0.5, rate * 1.5, 1.0);
        }
        for (field, rate) in NETSTAT {
            let name = format!("node_netstat_{field}");
            if rate == -1.0 {
                self.gauge(&name, &[], 10.0, 400.0, 1.0);
            } else if rate == -2.0 {
                self.constant(&name, &[], 1.0);
            } else {
                self.counter(&name, &[], rate * 0.5, rate * 1.5, 1.0);
            }
        }
        for field in SOCKSTAT {
            let name = format!("node_sockstat_{field}");
            self.gauge(&name, &[], 10.0, 2000.0, 1.0);
        }

        self.counter("node_context_switches_total", &[], 2000.0, 40_000.0, 1.0);
        self.counter("node_intr_total", &[], 1000.0, 20_000.0, 1.0);
        self.counter("node_forks_total", &[], 1.0, 30.0, 1.0);
        let boot = 1.7e9 - self.uptime.round();
        self.constant("node_boot_time_seconds", &[], boot);
        self.add("node_time_seconds", &[], Model::Clock, 0.0);
        self.gauge("node_procs_running", &[], 1.0, (cpus + 2) as f64, 1.0);
        self.gauge("node_procs_blocked", &[], 0.0, 2.0, 1.0);
        self.gauge("node_entropy_available_bits", &[], 256.0, 256.0, 1.0);
        self.gauge("node_filefd_allocated", &[], 1000.0, 3000.0, 1.0);
        self.constant("node_filefd_maximum", &[], 9.223_372_036_854_776e18);
        self.constant(
            "node_uname_info",
            &[
                ("machine", "x86_64"),
                ("release", "6.1.0-28-amd64"),
                ("sysname", "Linux"),
            ],
            1.0,
        );
        self.constant(
            "node_os_info",
            &[
                ("id", "debian"),
                ("version_id", "12"),
                ("name", "Debian GNU/Linux"),
            ],
            1.0,
        );
        for (chip, sensors) in [("platform_coretemp_0", 4), ("pci0000:00_0000:00:1f_3", 2)] {
            for s in 0..sensors {
                let sensor = format!("temp{}", s + 1);
                self.gauge(
                    "node_hwmon_temp_celsius",
                    &[("chip", chip), ("sensor", &sensor)],
                    35.0,
                    75.0,
                    1.0,
                );
            }
        }
        for resource in ["cpu", "io", "memory"] {
            self.counter(
                &format!("node_pressure_{resource}_waiting_seconds_total"),
                &[],
                0.0,
                0.05,
                1e-6,
            );
        }

        for unit in UNITS {
            let state_now = if self.rng.below(20) == 0 {
                "inactive"
            } else {
                "active"
            };
            for state in UNIT_STATES {
                let value = if state == state_now { 1.0 } else { 0.0 };
                self.constant(
                    "node_systemd_unit_state",
                    &[("name", unit), ("state", state), ("type", "simple")],
                    value,
                );
            }
        }

        for collector in COLLECTORS {
            self.gauge(
                "node_scrape_collector_duration_seconds",
                &[("collector", collector)],
                1e-5,
                0.02,
                0.0,
            );
            self.constant(
                "node_scrape_collector_success",
                &[("collector", collector)],
                1.0,
            );
        }

        // An instrumented HTTP server: a classic histogram per handler.
        let bounds: Vec<f64> = LE.iter().map(|(_, b)| *b).collect();
        for handler in HANDLERS {
            let rate = self.rng.range(0.1, 8.0);
            let mean = self.rng.range(0.005, 0.4);
            let hist = self.hists.len();
            self.hists
                .push(Histogram::new(&bounds, rate, mean, self.uptime));
            for (index, (le, _)) in LE.iter().enumerate() {
                let initial = self.hists[hist].cumulative[index];
                self.add(
                    "http_request_duration_seconds_bucket",
                    &[("handler", handler), ("le", le)],
                    Model::Bucket { hist, index },
                    initial,
                );
            }
            let total = self.hists[hist].cumulative[LE.len()];
            self.add(
                "http_request_duration_seconds_bucket",
                &[("handler", handler), ("le", "+Inf")],
                Model::Bucket {
                    hist,
                    index: LE.len(),
                },
                total,
            );
            let sum = self.hists[hist].sum;
            self.add(
                "http_request_duration_seconds_sum",
                &[("handler", handler)],
                Model::Sum { hist },
                sum,
            );
            self.add(
                "http_request_duration_seconds_count",
                &[("handler", handler)],
                Model::Count { hist },
                total,
            );
        }
        for code in ["200", "500", "503"] {
            let (lo, hi) = if code == "200" {
                (0.06, 0.07)
            } else {
                (0.0, 0.0)
            };
            self.counter(
                "promhttp_metric_handler_requests_total",
                &[("code", code)],
                lo,
                hi,
                1.0,
            );
        }

        // Go runtime and process metrics of the exporter itself.
        for quantile in ["0.0", "0.25", "0.5", "0.75", "1.0"] {
            self.gauge(
                "go_gc_duration_seconds",
                &[("quantile", quantile)],
                2e-5,
                5e-4,
                0.0,
            );
        }
        self.counter("go_gc_duration_seconds_sum", &[], 1e-5, 5e-5, 0.0);
        self.counter("go_gc_duration_seconds_count", &[], 0.05, 0.2, 1.0);
        for (name, lo, hi) in GO_GAUGES {
            self.gauge(name, &[], lo, hi, 1.0);
        }
        self.constant("go_info", &[("version", "go1.23.4")], 1.0);
        self.counter("process_cpu_seconds_total", &[], 0.005, 0.02, 0.01);
        self.gauge("process_open_fds", &[], 9.0, 14.0, 1.0);
        self.constant("process_max_fds", &[], 1_048_576.0);
        self.constant(
            "process_start_time_seconds",
            &[],
            1.7e9 - self.uptime.round() + 12.0,
        );
        self.gauge("process_virtual_memory_bytes", &[], 1.2e9, 1.3e9, 4096.0);
        self.counter("process_network_receive_bytes_total", &[], 20.0, 40.0, 1.0);
        self.counter(
            "process_network_transmit_bytes_total",
            &[],
            3000.0,
            9000.0,
            1.0,
        );

        // What Prometheus adds per target.
        let scraped = (self.series.len() - self.first) as f64;
        self.constant("up", &[], 1.0);
        self.gauge("scrape_duration_seconds", &[], 0.01, 0.08, 0.0);
        self.constant("scrape_samples_scraped", &[], scraped);
        self.constant("scrape_samples_post_metric_relabeling", &[], scraped);
        self.constant("scrape_series_added", &[], 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_sorted_and_monotonic_counters() {
        let mut a = Workload::new(3, 7, 1_000_000, 15_000);
        let mut b = Workload::new(3, 7, 1_000_000, 15_000);
        let per_host = a.series.len() / 3;
        assert!(
            (300..1500).contains(&per_host),
            "{per_host} series per host"
        );
        let mut previous: Vec<f64> = Vec::new();
        for round in 0..5 {
            assert_eq!(a.advance(), 1_000_000 + round * 15_000);
            b.advance();
            for (x, y) in a.series.iter().zip(&b.series) {
                assert_eq!(x.labels, y.labels);
                assert_eq!(x.value.to_bits(), y.value.to_bits());
            }
            for (i, s) in a.series.iter().enumerate() {
                assert!(s.labels.windows(2).all(|w| w[0].0 < w[1].0));
                let name = &s.labels[0].1;
                if round > 0 && (name.ends_with("_total") || name.ends_with("_bucket")) {
                    assert!(s.value >= previous[i], "{name} went down");
                }
            }
            previous = a.series.iter().map(|s| s.value).collect();
        }
        let mut keys: Vec<&Vec<(String, String)>> = a.series.iter().map(|s| &s.labels).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), a.series.len(), "duplicate series");
    }
}
