//! What this machine offers, detected the way Mesos' agent does unless flags override it:
//! every CPU, memory and disk less what the host keeps for itself, and ports 31000–32000.

use std::path::Path;

use cairn_log::event::{PortRange, Resources};

/// Memory and disk the host keeps: half of it, at most 1 GiB for memory and 5 GiB for disk.
const MEM_RESERVE_MIB: u64 = 1024;
const DISK_RESERVE_MIB: u64 = 5 * 1024;

/// Mesos' default port range.
pub const DEFAULT_PORTS: PortRange = PortRange {
    begin: 31000,
    end: 32000,
};

/// CPUs, memory and disk detected from the host, for a data directory at `data_dir`.
pub fn detect(data_dir: &Path) -> Resources {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let mem = mem_total_mib().unwrap_or(0);
    let disk = nix::sys::statvfs::statvfs(data_dir)
        .map(|s| (s.blocks_available() * s.fragment_size()) >> 20)
        .unwrap_or(0);
    Resources {
        cpus_milli: cpus * 1000,
        mem_mib: mem - (mem / 2).min(MEM_RESERVE_MIB),
        disk_mib: disk - (disk / 2).min(DISK_RESERVE_MIB),
        ports: vec![DEFAULT_PORTS],
    }
}

fn mem_total_mib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib >> 10)
}

/// Parses port ranges as Mesos writes them: `31000-32000,8080` or `[31000-32000, 8080-8080]`.
pub fn parse_ports(text: &str) -> Result<Vec<PortRange>, String> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    let mut ranges = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (begin, end) = part.split_once('-').unwrap_or((part, part));
        let parse = |s: &str| {
            s.trim()
                .parse::<u16>()
                .map_err(|_| format!("ports: {part:?} is not a port or a range of ports"))
        };
        let (begin, end) = (parse(begin)?, parse(end)?);
        if begin == 0 || begin > end {
            return Err(format!("ports: {part:?} is not a range from 1 to 65535"));
        }
        ranges.push(PortRange { begin, end });
    }
    ranges.sort();
    if ranges.windows(2).any(|w| w[0].end >= w[1].begin) {
        return Err(format!("ports: {text:?} has overlapping ranges"));
    }
    Ok(ranges)
}

/// Parses attributes as Mesos writes them: `rack:r1;zone:eu-1`.
pub fn parse_attributes(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut attributes = std::collections::BTreeMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once(':')
            .ok_or_else(|| format!("attributes: {part:?} is not key:value"))?;
        if key.trim().is_empty() {
            return Err(format!("attributes: {part:?} has an empty key"));
        }
        attributes.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    Ok(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_as_mesos_writes_them() {
        let r = |begin, end| PortRange { begin, end };
        assert_eq!(
            parse_ports("[31000-32000, 8080]").unwrap(),
            [r(8080, 8080), r(31000, 32000)]
        );
        assert!(parse_ports("10-5").unwrap_err().contains("\"10-5\""));
        assert!(parse_ports("1-10,5-20")
            .unwrap_err()
            .contains("overlapping"));
        assert!(parse_ports("http").is_err());
    }

    #[test]
    fn attributes_parse_as_mesos_writes_them() {
        let a = parse_attributes("rack:r1; zone:eu-1").unwrap();
        assert_eq!(a.get("rack").map(String::as_str), Some("r1"));
        assert_eq!(a.len(), 2);
        assert!(parse_attributes("rack").unwrap_err().contains("key:value"));
    }

    #[test]
    fn detection_leaves_the_host_a_reserve() {
        let r = detect(Path::new("/"));
        assert!(r.cpus_milli >= 1000);
        assert!(r.mem_mib > 0 && r.mem_mib < mem_total_mib().unwrap());
    }
}
