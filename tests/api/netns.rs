//! A network namespace of its own for one test, joined to the machine through a second namespace that
//! routes between them, and a switch that cuts the traffic silently — packets are dropped on the way,
//! no reset and no ICMP comes back — so a process inside sees a real partition: hangs, not errors.
//!
//! ```text
//! machine (the test) ── veth ── router namespace ── veth ── node namespace (the node)
//!      host_addr                                                ns_addr
//! ```
//!
//! The cut is made with `tc` on the router's two interfaces: an `htb` root qdisc whose second class feeds
//! a `pfifo` of length 0 (every packet enqueued there is dropped), and `u32` filters that send the cut
//! traffic to that class. The drops are of forwarded packets, so neither end learns of them: a drop on
//! an end's own interface would be a local drop, which that end's TCP reports (`ETIMEDOUT` within
//! seconds) where a real network says nothing.
//!
//! Needs root and `ip netns`; without them [`Netns::create`] says why and answers `None`, unless
//! `ORDERSAGA_REQUIRE_SERVICES=1`, which makes it fail.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::helpers::services_required;

/// The private range the namespaces take their addresses from: `10.213.0.0/16`, a `/29` per test.
const RANGE: [u8; 2] = [10, 213];

/// A node's network namespace, routed to the machine through a router namespace; both are deleted,
/// with whatever runs in them, when dropped.
pub struct Netns {
    pub name: String,
    /// The router's namespace.
    router: String,
    /// The machine's end of the machine–router pair (in the test's own namespace).
    host_veth: String,
    /// The router's end towards the machine.
    router_up: String,
    /// The router's end towards the node.
    router_down: String,
    /// The node's end of the router–node pair.
    ns_veth: String,
    /// The machine's address: what the node reaches the machine at.
    pub host_addr: Ipv4Addr,
    router_up_addr: Ipv4Addr,
    router_down_addr: Ipv4Addr,
    /// The node's address: what the machine reaches a process inside at.
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
            // 8,192 /29 blocks in the range; the pid spreads concurrent test processes over them.
            let block = (pid.wrapping_mul(97).wrapping_add(n)) % 8_192;
            let base = block * 8;
            let [c, d] = [(base >> 8) as u8, (base & 0xff) as u8];
            let addr = |offset: u8| Ipv4Addr::new(RANGE[0], RANGE[1], c, d + offset);
            if [1, 2, 5, 6]
                .into_iter()
                .any(|offset| address_in_use(addr(offset)))
            {
                continue;
            }
            // Interface names have at most 15 characters.
            let tag = format!("{:x}{n:x}", pid % 0x10_0000);
            netns = Some(Netns {
                name: format!("ordersaga-{tag}"),
                router: format!("ordersaga-{tag}-r"),
                host_veth: format!("osh{tag}"),
                router_up: format!("osu{tag}"),
                router_down: format!("osd{tag}"),
                ns_veth: format!("osn{tag}"),
                host_addr: addr(1),
                router_up_addr: addr(2),
                router_down_addr: addr(5),
                ns_addr: addr(6),
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
        let cidr = |addr: Ipv4Addr| format!("{addr}/30");
        let (router, node) = (self.router.as_str(), self.name.as_str());
        run("ip", &["netns", "add", node])?;
        run("ip", &["netns", "add", router])?;
        // Machine ↔ router.
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
                &self.router_up,
            ],
        )?;
        run("ip", &["link", "set", &self.router_up, "netns", router])?;
        run(
            "ip",
            &["addr", "add", &cidr(self.host_addr), "dev", &self.host_veth],
        )?;
        run("ip", &["link", "set", &self.host_veth, "up"])?;
        in_netns(
            router,
            &[
                "ip",
                "addr",
                "add",
                &cidr(self.router_up_addr),
                "dev",
                &self.router_up,
            ],
        )?;
        in_netns(router, &["ip", "link", "set", &self.router_up, "up"])?;
        // Router ↔ node.
        in_netns(
            router,
            &[
                "ip",
                "link",
                "add",
                &self.router_down,
                "type",
                "veth",
                "peer",
                "name",
                &self.ns_veth,
            ],
        )?;
        in_netns(router, &["ip", "link", "set", &self.ns_veth, "netns", node])?;
        in_netns(
            router,
            &[
                "ip",
                "addr",
                "add",
                &cidr(self.router_down_addr),
                "dev",
                &self.router_down,
            ],
        )?;
        in_netns(router, &["ip", "link", "set", &self.router_down, "up"])?;
        in_netns(router, &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
        in_netns(
            node,
            &["ip", "addr", "add", &cidr(self.ns_addr), "dev", &self.ns_veth],
        )?;
        in_netns(node, &["ip", "link", "set", &self.ns_veth, "up"])?;
        in_netns(node, &["ip", "link", "set", "lo", "up"])?;
        // Routes through the router, both ways (the machine's goes with its interface).
        in_netns(
            node,
            &[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &self.router_down_addr.to_string(),
            ],
        )?;
        run(
            "ip",
            &[
                "route",
                "add",
                &format!("{}/32", self.ns_addr),
                "via",
                &self.router_up_addr.to_string(),
                "dev",
                &self.host_veth,
            ],
        )?;
        // On each of the router's interfaces: class 1:1 passes (the default), class 1:2 drops all it gets.
        for dev in [&self.router_up, &self.router_down] {
            let tc = |args: &[&str]| {
                let mut all = vec!["tc"];
                all.extend_from_slice(args);
                in_netns(router, &all)
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

    /// A command that runs `program` inside the namespace (`ip netns exec` execs it: its pid is the
    /// program's).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Adds a filter on one of the router's interfaces sending matching packets to the dropping class:
    /// `towards_host` cuts what the node sends, else what the machine sends the node.
    fn drop_on(&self, towards_host: bool, matcher: &[&str]) {
        let dev = if towards_host {
            &self.router_up
        } else {
            &self.router_down
        };
        let mut args = vec![
            "tc", "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
        ];
        args.extend_from_slice(matcher);
        args.extend_from_slice(&["flowid", "1:2"]);
        in_netns(&self.router, &args).unwrap();
    }

    /// Cuts the traffic to and from the machine's TCP `port` (e.g. a relay to the database), both ways.
    pub fn cut_to(&self, port: u16) {
        let port = port.to_string();
        self.drop_on(true, &["match", "ip", "dport", &port, "0xffff"]);
        self.drop_on(false, &["match", "ip", "sport", &port, "0xffff"]);
    }

    /// Cuts everything between the namespace and the machine, clients' requests included.
    pub fn cut_all(&self) {
        self.drop_on(true, &["match", "u32", "0", "0"]);
        self.drop_on(false, &["match", "u32", "0", "0"]);
    }

    /// Removes every cut.
    pub fn heal(&self) {
        for dev in [&self.router_up, &self.router_down] {
            in_netns(&self.router, &["tc", "filter", "del", "dev", dev, "parent", "1:"]).unwrap();
        }
    }

    /// Packets the cuts dropped so far, both ways (a cut that drops nothing cut nothing).
    pub fn dropped(&self) -> u64 {
        [&self.router_up, &self.router_down]
            .into_iter()
            .map(|dev| {
                let output = Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &self.router,
                        "tc",
                        "-s",
                        "qdisc",
                        "show",
                        "dev",
                        dev,
                    ])
                    .output();
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
            })
            .sum()
    }
}

/// Runs `args` inside namespace `name` and waits for it.
fn in_netns(name: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", name];
    all.extend_from_slice(args);
    run("ip", &all)
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Whatever still runs inside dies with the test.
        for name in [&self.name, &self.router] {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = run("kill", &["-KILL", pid]);
                }
            }
        }
        // Deleting a namespace deletes its ends of the pairs, and so the pairs and the machine's route.
        for name in [&self.name, &self.router] {
            let _ = run("ip", &["netns", "del", name]);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .stderr(Stdio::null())
            .status();
    }
}
