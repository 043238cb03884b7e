//! Network namespaces for partition tests: one namespace per node, each joined by a veth
//! pair to a bridge in the root namespace (which keeps an address on it to reach the
//! nodes' APIs); a partition is a set of nftables drop rules inside the cut-off nodes'
//! namespaces, removed to heal. Needs root, `ip` and `nft`.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::HarnessError;

/// The namespaces of one test run; removed on drop.
#[derive(Debug)]
pub struct Netns {
    tag: String,
    subnet: [u8; 3],
    count: usize,
}

fn run(args: &[&str], input: Option<&str>) -> Result<(), HarnessError> {
    let (program, rest) = args
        .split_first()
        .ok_or_else(|| HarnessError::Federation("empty command".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| HarnessError::Io {
        what: format!("running {}", args.join(" ")),
        source,
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write as _;
        stdin
            .write_all(text.as_bytes())
            .map_err(|source| HarnessError::Io {
                what: "writing nft rules".into(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| HarnessError::Io {
            what: format!("running {}", args.join(" ")),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HarnessError::Federation(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Netns {
    /// Why namespaces cannot be used here, if they cannot (not root, or no `ip`/`nft`).
    pub fn unavailable() -> Option<String> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Some("network namespaces need root".into());
        }
        for tool in ["ip", "nft"] {
            let found = Command::new(tool)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !found {
                return Some(format!(
                    "`{tool}` is not installed (scripts/setup installs it)"
                ));
            }
        }
        None
    }

    /// Creates `count` namespaces on a bridge, each with one address.
    pub fn create(count: usize) -> Result<Self, HarnessError> {
        let pid = std::process::id();
        let subnet = [
            10,
            u8::try_from(100 + pid % 100).unwrap_or(100),
            u8::try_from((pid / 100) % 250).unwrap_or(0),
        ];
        let netns = Self {
            tag: format!("lt{}", pid % 1_000_000),
            subnet,
            count: 0,
        };
        let bridge = netns.bridge();
        let gateway = format!("{}/24", netns.address(None));
        run(&["ip", "link", "add", &bridge, "type", "bridge"], None)?;
        let mut netns = netns;
        run(&["ip", "addr", "add", &gateway, "dev", &bridge], None)?;
        run(&["ip", "link", "set", &bridge, "up"], None)?;
        for i in 0..count {
            let (ns, outer, inner) = (
                netns.name(i),
                format!("{}v{i}", netns.tag),
                format!("{}p{i}", netns.tag),
            );
            run(&["ip", "netns", "add", &ns], None)?;
            netns.count = i + 1;
            run(
                &[
                    "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
                ],
                None,
            )?;
            run(&["ip", "link", "set", &inner, "netns", &ns], None)?;
            run(&["ip", "link", "set", &outer, "master", &bridge], None)?;
            run(&["ip", "link", "set", &outer, "up"], None)?;
            let address = format!("{}/24", netns.host(i));
            run(
                &[
                    "ip", "netns", "exec", &ns, "ip", "addr", "add", &address, "dev", &inner,
                ],
                None,
            )?;
            run(
                &[
                    "ip", "netns", "exec", &ns, "ip", "link", "set", &inner, "up",
                ],
                None,
            )?;
            run(
                &["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"],
                None,
            )?;
        }
        Ok(netns)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn address(&self, node: Option<usize>) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        let last = node.map_or(1, |i| u8::try_from(10 + i).unwrap_or(u8::MAX));
        Ipv4Addr::new(a, b, c, last)
    }

    /// Node `i`'s address.
    pub fn host(&self, i: usize) -> Ipv4Addr {
        self.address(Some(i))
    }

    /// Node `i`'s namespace name.
    pub fn name(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    /// Cuts nodes `cut` off from nodes `rest` (both ways); they still reach each other and
    /// the root namespace.
    pub fn cut(&self, cut: &[usize], rest: &[usize]) -> Result<(), HarnessError> {
        let others = rest
            .iter()
            .map(|&i| self.host(i).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let rules = format!(
            "table inet lienthong_cut {{\n\
               chain out {{ type filter hook output priority 0; policy accept; ip daddr {{ {others} }} drop; }}\n\
               chain in {{ type filter hook input priority 0; policy accept; ip saddr {{ {others} }} drop; }}\n\
             }}\n"
        );
        for &i in cut {
            run(
                &["ip", "netns", "exec", &self.name(i), "nft", "-f", "-"],
                Some(&rules),
            )?;
        }
        Ok(())
    }

    /// Removes the cut from nodes `cut`.
    pub fn heal(&self, cut: &[usize]) -> Result<(), HarnessError> {
        for &i in cut {
            run(
                &[
                    "ip",
                    "netns",
                    "exec",
                    &self.name(i),
                    "nft",
                    "delete",
                    "table",
                    "inet",
                    "lienthong_cut",
                ],
                None,
            )?;
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for i in 0..self.count {
            // Deleting a namespace deletes its end of the veth pair, and so the pair.
            let _ = run(&["ip", "netns", "delete", &self.name(i)], None);
        }
        let _ = run(&["ip", "link", "delete", &self.bridge()], None);
    }
}
