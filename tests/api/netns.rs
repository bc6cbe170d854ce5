//! A network namespace of its own for one test, joined to the machine by a veth pair, and a switch that
//! cuts the traffic between the two silently — packets are dropped on the wire, no reset and no ICMP
//! comes back — so a process inside sees a real partition: hangs, not errors.
//!
//! The cut is made with `tc` on both ends of the veth pair: an `htb` root qdisc whose second class
//! feeds a `pfifo` of length 0 (every packet enqueued there is dropped), and `u32` filters that send
//! the cut traffic to that class. Packets to the namespace are cut on the machine's end (source port),
//! packets from it on the namespace's end (destination port), so both directions are lost.
//!
//! Needs root and `ip netns`; without them [`Netns::create`] says why and answers `None`, unless
//! `ORDERSAGA_REQUIRE_SERVICES=1`, which makes it fail.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::helpers::services_required;

/// The private range the pairs take their addresses from: `10.213.0.0/16`, a `/30` per namespace.
const RANGE: [u8; 2] = [10, 213];

/// A network namespace with a veth pair to the machine; deleted, with whatever runs in it, when dropped.
pub struct Netns {
    pub name: String,
    /// The machine's end of the pair (in the test's own namespace).
    host_veth: String,
    /// The namespace's end.
    ns_veth: String,
    /// The machine's address on the pair: what the namespace reaches the machine at.
    pub host_addr: Ipv4Addr,
    /// The namespace's address: what the machine reaches a process inside at.
    pub ns_addr: Ipv4Addr,
}

/// Runs a command; its standard error when it fails.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// Whether `addr` is already taken by an interface of the machine.
fn address_in_use(addr: Ipv4Addr) -> bool {
    Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("inet {addr}/")))
        .unwrap_or(true)
}

/// Says why the namespace cannot be made: fails where services are required, else skips.
fn unavailable(reason: &str) -> Option<Netns> {
    assert!(
        !services_required(),
        "network namespaces are unavailable ({reason}) but ORDERSAGA_REQUIRE_SERVICES=1"
    );
    eprintln!("skipped: network namespaces are unavailable ({reason})");
    None
}

impl Netns {
    /// Makes the namespace and its pair, loopback and both ends up, the cut classes in place.
    pub fn create() -> Option<Netns> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        if !is_root() {
            return unavailable("not root");
        }
        if let Err(e) = run("ip", &["netns", "list"]) {
            return unavailable(&e);
        }
        let pid = std::process::id();
        let mut netns = None;
        for _ in 0..64 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            // 16,384 /30 blocks in the range; the pid spreads concurrent test processes over them.
            let block = (pid.wrapping_mul(97).wrapping_add(n)) % 16_384;
            let base = block * 4;
            let [c, d] = [(base >> 8) as u8, (base & 0xff) as u8];
            let host_addr = Ipv4Addr::new(RANGE[0], RANGE[1], c, d + 1);
            let ns_addr = Ipv4Addr::new(RANGE[0], RANGE[1], c, d + 2);
            if address_in_use(host_addr) || address_in_use(ns_addr) {
                continue;
            }
            // Interface names have at most 15 characters.
            let tag = format!("{:x}{n:x}", pid % 0x10_0000);
            netns = Some(Netns {
                name: format!("ordersaga-{tag}"),
                host_veth: format!("osh{tag}"),
                ns_veth: format!("osn{tag}"),
                host_addr,
                ns_addr,
            });
            break;
        }
        let Some(netns) = netns else {
            return unavailable("no free address block");
        };
        if let Err(e) = netns.set_up() {
            drop(netns);
            return unavailable(&e);
        }
        Some(netns)
    }

    fn set_up(&self) -> Result<(), String> {
        let (host_cidr, ns_cidr) = (format!("{}/30", self.host_addr), format!("{}/30", self.ns_addr));
        run("ip", &["netns", "add", &self.name])?;
        run(
            "ip",
            &[
                "link",
                "add",
                &self.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                &self.ns_veth,
            ],
        )?;
        run("ip", &["link", "set", &self.ns_veth, "netns", &self.name])?;
        run("ip", &["addr", "add", &host_cidr, "dev", &self.host_veth])?;
        run("ip", &["link", "set", &self.host_veth, "up"])?;
        self.inside(&["ip", "addr", "add", &ns_cidr, "dev", &self.ns_veth])?;
        self.inside(&["ip", "link", "set", &self.ns_veth, "up"])?;
        self.inside(&["ip", "link", "set", "lo", "up"])?;
        // On each end: class 1:1 passes (the default), class 1:2 drops everything it gets.
        for (prefix, dev) in [
            (&[][..], &self.host_veth),
            (&["ip", "netns", "exec", &self.name][..], &self.ns_veth),
        ] {
            let tc = |args: &[&str]| {
                let mut all: Vec<&str> = prefix.to_vec();
                all.push("tc");
                all.extend_from_slice(args);
                run(all[0], &all[1..])
            };
            tc(&[
                "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1", "r2q", "100000",
            ])?;
            for class in ["1:1", "1:2"] {
                tc(&[
                    "class", "add", "dev", dev, "parent", "1:", "classid", class, "htb", "rate", "10gbit",
                ])?;
            }
            tc(&[
                "qdisc", "add", "dev", dev, "parent", "1:2", "handle", "20:", "pfifo", "limit", "0",
            ])?;
        }
        Ok(())
    }

    /// Runs `args` inside the namespace and waits for it.
    pub fn inside(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec` execs it: its pid is the
    /// program's).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Adds a filter sending matching packets of one end to the dropping class.
    fn drop_on(&self, on_host: bool, matcher: &[&str]) {
        let dev = if on_host { &self.host_veth } else { &self.ns_veth };
        let mut args = vec![
            "tc", "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
        ];
        args.extend_from_slice(matcher);
        args.extend_from_slice(&["flowid", "1:2"]);
        let done = if on_host {
            run(args[0], &args[1..])
        } else {
            self.inside(&args)
        };
        done.unwrap();
    }

    /// Cuts the traffic to and from the machine's TCP `port` (e.g. a relay to the database), both ways.
    pub fn cut_to(&self, port: u16) {
        let port = port.to_string();
        // Machine → namespace: from the port. Namespace → machine: to the port.
        self.drop_on(true, &["match", "ip", "sport", &port, "0xffff"]);
        self.drop_on(false, &["match", "ip", "dport", &port, "0xffff"]);
    }

    /// Cuts everything between the namespace and the machine, clients' requests included.
    pub fn cut_all(&self) {
        self.drop_on(true, &["match", "u32", "0", "0"]);
        self.drop_on(false, &["match", "u32", "0", "0"]);
    }

    /// Removes every cut.
    pub fn heal(&self) {
        run("tc", &["filter", "del", "dev", &self.host_veth, "parent", "1:"]).unwrap();
        self.inside(&["tc", "filter", "del", "dev", &self.ns_veth, "parent", "1:"])
            .unwrap();
    }

    /// Packets the cuts dropped so far, on both ends (a cut that drops nothing cut nothing).
    pub fn dropped(&self) -> u64 {
        let count = |output: std::io::Result<std::process::Output>| {
            let text = output
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            // `qdisc pfifo 20: … \n Sent … (dropped N, …`
            text.split("qdisc ")
                .filter(|q| q.starts_with("pfifo 20:"))
                .filter_map(|q| q.split("dropped ").nth(1))
                .filter_map(|rest| rest.split(',').next())
                .filter_map(|n| n.trim().parse::<u64>().ok())
                .sum::<u64>()
        };
        let host = count(
            Command::new("tc")
                .args(["-s", "qdisc", "show", "dev", &self.host_veth])
                .output(),
        );
        let ns = count(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.name,
                    "tc",
                    "-s",
                    "qdisc",
                    "show",
                    "dev",
                    &self.ns_veth,
                ])
                .output(),
        );
        host + ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Whatever still runs inside dies with the namespace's test.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = run("kill", &["-KILL", pid]);
            }
        }
        let _ = run("ip", &["netns", "del", &self.name]);
        // Deleting the namespace deletes its end and so the pair; this is for a namespace never made.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .stderr(Stdio::null())
            .status();
    }
}
