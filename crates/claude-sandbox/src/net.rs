//! `network = api`: the session's own network namespace, where the only way out is a
//! listener on the API's address that the manager (outside, in the host's namespace) forwards
//! to the real API, byte for byte (TLS stays end to end). This is how the CLI's own sandbox
//! restricts egress, without a helper process inside: the listening socket is created in the
//! new namespace by a short-lived thread of the manager and keeps that namespace, while the
//! manager's runtime accepts on it.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::str::FromStr;

use crate::error::{Error, Result};

/// Where a sandboxed session's network reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Network {
    /// The host's network.
    #[default]
    Host,
    /// Its own network namespace; only the API endpoint is reachable.
    Api,
}

impl Network {
    /// The setting's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Host => "host",
            Network::Api => "api",
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Network {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "host" => Ok(Network::Host),
            "api" => Ok(Network::Api),
            _ => Err(Error::InvalidNetwork { text: s.into() }),
        }
    }
}

/// The API endpoint a session talks to, from its `ANTHROPIC_BASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiEndpoint {
    /// The host as written (a name or an IPv4 address).
    pub host: String,
    /// The port (the scheme's default if the URL has none).
    pub port: u16,
}

/// The CLI's default API.
pub const DEFAULT_API_URL: &str = "https://api.anthropic.com";

impl ApiEndpoint {
    /// Parse `http(s)://HOST[:PORT][/...]`.
    pub fn parse(url: &str) -> Result<ApiEndpoint> {
        let bad = |why| Error::InvalidApiUrl {
            url: url.into(),
            why,
        };
        let (scheme, rest) = url
            .trim()
            .split_once("://")
            .ok_or(bad("expected http:// or https://"))?;
        let default_port = match scheme {
            "https" => 443,
            "http" => 80,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        if authority.starts_with('[') {
            return Err(bad("IPv6 addresses are not supported"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| bad("the port is not a number from 1 to 65535"))?,
            ),
            None => (authority, default_port),
        };
        let name_ok = |h: &str| {
            !h.is_empty()
                && h.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        if !name_ok(host) || port == 0 {
            return Err(bad("the host is missing or not a host name"));
        }
        Ok(ApiEndpoint {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The address the session dials inside its namespace: the host's own IPv4 address if it
    /// is one, else 127.0.0.1 (the name is mapped there by the sandbox's `/etc/hosts`).
    pub(crate) fn inside(&self) -> SocketAddr {
        let ip = self.host.parse::<Ipv4Addr>().unwrap_or(Ipv4Addr::LOCALHOST);
        SocketAddr::from((ip, self.port))
    }

    /// Whether the sandbox needs an `/etc/hosts` naming the host.
    pub(crate) fn is_name(&self) -> bool {
        self.host.parse::<Ipv4Addr>().is_err()
    }
}

/// A session's network namespace and the forwarder of its one way out.
#[derive(Debug)]
pub(crate) struct ApiNetwork {
    pub(crate) netns: OwnedFd,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiNetwork {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bring `lo` up in the calling thread's network namespace.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a datagram socket for the ioctls and a zeroed ifreq we own.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut rc = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(sock);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// In a new thread: a new network namespace with `lo` up, its descriptor, and a listener on
/// `addr` inside it.
fn namespace_with_listener(addr: SocketAddr) -> std::io::Result<(OwnedFd, TcpListener)> {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        loopback_up()?;
        let netns: OwnedFd = std::fs::File::open("/proc/thread-self/ns/net")?.into();
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok((netns, listener))
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

/// Where the forwarder dials the real API (resolved in the host's namespace, now).
fn upstream(api: &ApiEndpoint) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (api.host.as_str(), api.port)
        .to_socket_addrs()
        .map_err(|e| Error::Network {
            op: "resolve the API host",
            source: e,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Network {
            op: "resolve the API host",
            source: std::io::Error::other("no address"),
        });
    }
    Ok(addrs)
}

impl ApiNetwork {
    /// The namespace and its forwarder, running on the current tokio runtime.
    pub(crate) fn start(api: &ApiEndpoint) -> Result<ApiNetwork> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::Network {
            op: "start the API forwarder",
            source: std::io::Error::other("not within a tokio runtime"),
        })?;
        let targets = upstream(api)?;
        let (netns, listener) =
            namespace_with_listener(api.inside()).map_err(|e| Error::Network {
                op: "create the session's network namespace",
                source: e,
            })?;
        let _guard = runtime.enter();
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| Error::Network {
            op: "register the API listener",
            source: e,
        })?;
        let task = runtime.spawn(forward(listener, targets));
        tracing::debug!(netns = netns.as_raw_fd(), api = %api.host, port = api.port, "API forwarder up");
        Ok(ApiNetwork { netns, task })
    }
}

/// Accept inside the namespace, dial the API outside, copy both ways.
async fn forward(listener: tokio::net::TcpListener, targets: Vec<SocketAddr>) {
    loop {
        let Ok((mut inside, _)) = listener.accept().await else {
            // Out of descriptors, say: wait instead of spinning on the same error.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let targets = targets.clone();
        tokio::spawn(async move {
            let Ok(mut outside) = tokio::net::TcpStream::connect(&targets[..]).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_parse_or_name_their_problem() {
        let e = ApiEndpoint::parse("http://127.0.0.1:4000/v1").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.is_name()),
            ("127.0.0.1", 4000, false)
        );
        let e = ApiEndpoint::parse(DEFAULT_API_URL).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.is_name()),
            ("api.anthropic.com", 443, true)
        );
        assert_eq!(e.inside(), SocketAddr::from((Ipv4Addr::LOCALHOST, 443)));
        for (url, why) in [
            ("api.anthropic.com", "http:// or https://"),
            ("ftp://x", "scheme"),
            ("http://:80", "host"),
            ("http://a b", "host"),
            ("http://h:99999", "port"),
            ("http://u:p@h", "credentials"),
            ("http://[::1]:80", "IPv6"),
        ] {
            let err = ApiEndpoint::parse(url).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(url), "{err}");
        }
    }
}
