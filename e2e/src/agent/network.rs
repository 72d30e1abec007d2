//! Pod network sandboxes: a network namespace per Pod, a veth into the host
//! bridge, an address from the benchmarking range 198.18.0.0/15 (never a
//! real network). Done with iproute2, which every Debian machine has.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use tokio::process::Command;
use tokio::sync::Mutex;

use super::config::AgentConfig;
use super::error::AgentError;

/// Prefix of every namespace and host-side veth the agent creates, so that
/// cleanup finds them all.
pub const NETNS_PREFIX: &str = "pc-";

#[derive(Debug)]
pub struct Network {
    bridge: String,
    gateway: Ipv4Addr,
    prefix_len: u8,
    used: Mutex<BTreeSet<u32>>,
}

/// Runs a command and fails with its stderr.
pub async fn run(program: &str, args: &[&str]) -> Result<String, AgentError> {
    let output = Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|source| AgentError::Io {
            context: format!("cannot run {program}"),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(AgentError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

impl Network {
    pub fn new(config: &AgentConfig) -> Self {
        Self {
            bridge: config.bridge.clone(),
            gateway: config.gateway,
            prefix_len: config.prefix_len,
            used: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Creates the bridge if missing and removes sandboxes a previous agent
    /// left behind.
    pub async fn prepare(&self) -> Result<(), AgentError> {
        if run("ip", &["link", "show", &self.bridge]).await.is_err() {
            run("ip", &["link", "add", &self.bridge, "type", "bridge"]).await?;
        }
        let address = format!("{}/{}", self.gateway, self.prefix_len);
        let addresses = run("ip", &["-4", "addr", "show", "dev", &self.bridge]).await?;
        if !addresses.contains(&address) {
            run("ip", &["addr", "add", &address, "dev", &self.bridge]).await?;
        }
        run("ip", &["link", "set", &self.bridge, "up"]).await?;
        for namespace in list_namespaces().await? {
            remove_namespace(&namespace).await;
        }
        Ok(())
    }

    /// Creates a sandbox and returns its namespace name and address.
    pub async fn create(
        &self,
        uid: &str,
        sysctls: &[(String, String)],
    ) -> Result<(String, Ipv4Addr), AgentError> {
        let short: String = uid
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(10)
            .collect();
        let namespace = format!("{NETNS_PREFIX}{short}");
        let host_veth = format!("{NETNS_PREFIX}h{short}");
        let address = self.allocate().await?;
        let result = self.wire(&namespace, &host_veth, address, sysctls).await;
        if let Err(err) = result {
            remove_namespace(&namespace).await;
            self.release(address).await;
            return Err(err);
        }
        Ok((namespace, address))
    }

    async fn wire(
        &self,
        namespace: &str,
        host_veth: &str,
        address: Ipv4Addr,
        sysctls: &[(String, String)],
    ) -> Result<(), AgentError> {
        run("ip", &["netns", "add", namespace]).await?;
        run(
            "ip",
            &[
                "link", "add", host_veth, "type", "veth", "peer", "name", "eth0", "netns",
                namespace,
            ],
        )
        .await?;
        run(
            "ip",
            &["link", "set", host_veth, "master", &self.bridge, "up"],
        )
        .await?;
        let cidr = format!("{address}/{}", self.prefix_len);
        let gateway = self.gateway.to_string();
        let commands: [&[&str]; 4] = [
            &["ip", "addr", "add", &cidr, "dev", "eth0"],
            &["ip", "link", "set", "eth0", "up"],
            &["ip", "link", "set", "lo", "up"],
            &["ip", "route", "add", "default", "via", &gateway],
        ];
        for command in commands {
            let mut args = vec!["netns", "exec", namespace];
            args.extend_from_slice(command);
            run("ip", &args).await?;
        }
        for (name, value) in sysctls {
            let setting = format!("{name}={value}");
            run(
                "ip",
                &["netns", "exec", namespace, "sysctl", "-q", "-w", &setting],
            )
            .await?;
        }
        Ok(())
    }

    /// Removes a sandbox and frees its address.
    pub async fn destroy(&self, namespace: &str, address: Ipv4Addr) {
        remove_namespace(namespace).await;
        self.release(address).await;
    }

    async fn allocate(&self) -> Result<Ipv4Addr, AgentError> {
        let base = u32::from(self.gateway) & (u32::MAX << (32 - u32::from(self.prefix_len)));
        let size = 1u32 << (32 - u32::from(self.prefix_len));
        let mut used = self.used.lock().await;
        // .1.0 and above: the low addresses are left to the host side.
        let offset = (256..size - 1)
            .find(|offset| !used.contains(offset))
            .ok_or_else(|| AgentError::Config("pod address pool exhausted".into()))?;
        used.insert(offset);
        Ok(Ipv4Addr::from(base + offset))
    }

    async fn release(&self, address: Ipv4Addr) {
        let base = u32::from(self.gateway) & (u32::MAX << (32 - u32::from(self.prefix_len)));
        self.used
            .lock()
            .await
            .remove(&(u32::from(address).wrapping_sub(base)));
    }
}

/// Namespaces the agent created (by name prefix).
pub async fn list_namespaces() -> Result<Vec<String>, AgentError> {
    let listing = run("ip", &["netns", "list"]).await?;
    Ok(listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(NETNS_PREFIX))
        .map(str::to_owned)
        .collect())
}

/// Kills whatever still runs in a namespace and deletes it (its veth goes
/// with it).
pub async fn remove_namespace(namespace: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", namespace]).await {
        for pid in pids.split_whitespace() {
            let _ = run("kill", &["-KILL", pid]).await;
        }
    }
    let _ = run("ip", &["netns", "delete", namespace]).await;
}
