//! The three managers as the bench drives them: each given the same programs, started,
//! asked through its own API, and stopped with nothing left behind.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Args, Result};

/// Which manager.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    ClaudePm,
    Pm2,
    Supervisord,
}

/// Every manager, in the order they run.
pub(crate) const KINDS: [Kind; 3] = [Kind::ClaudePm, Kind::Pm2, Kind::Supervisord];

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::ClaudePm => "claude-pm serve",
            Kind::Pm2 => "pm2 7.0.4",
            Kind::Supervisord => "supervisord 4.3.0",
        }
    }
}

/// A program every manager runs, as its argv.
pub(crate) struct Program {
    pub(crate) argv: Vec<String>,
}

impl Program {
    pub(crate) fn new(program: &str, args: &[&str]) -> Program {
        let mut argv = vec![program.to_owned()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        Program { argv }
    }

    fn matches(&self, cmdline: &[u8]) -> bool {
        let want: Vec<u8> = self.argv.join("\0").into_bytes();
        cmdline.strip_suffix(b"\0").unwrap_or(cmdline) == want.as_slice()
    }
}

/// A running manager with `n` children of one program.
pub(crate) struct Manager {
    pub(crate) kind: Kind,
    pid: u32,
    own: Option<Child>,
    dir: PathBuf,
    n: usize,
    pm2: Option<(PathBuf, PathBuf, PathBuf)>,
    stopped: bool,
}

impl Manager {
    pub(crate) fn start(
        kind: Kind,
        args: &Args,
        dir: &Path,
        program: &Program,
        n: usize,
    ) -> Result<Manager> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, text: String| {
            std::fs::write(dir.join(name), text).map_err(|e| format!("write {name}: {e}"))
        };
        let names = (0..n).map(|i| format!("s{i}"));
        let (pid, own) = match kind {
            Kind::ClaudePm => {
                let argv = toml_list(&program.argv);
                write(
                    "pm.toml",
                    names
                        .map(|name| format!("[[session]]\nname = \"{name}\"\ncommand = {argv}\nrestart = \"always\"\nrestart_delay = \"0s\"\n\n"))
                        .collect(),
                )?;
                let child = Command::new(&args.claude_pm)
                    .arg("serve")
                    .arg("--config")
                    .arg(dir.join("pm.toml"))
                    .arg("--state-dir")
                    .arg(dir.join("state"))
                    .stdout(Stdio::null())
                    .stderr(log(dir, "serve.log")?)
                    .spawn()
                    .map_err(|e| format!("start claude-pm serve: {e}"))?;
                (child.id(), Some(child))
            }
            Kind::Pm2 => {
                let apps: Vec<serde_json::Value> = names
                    .map(|name| {
                        serde_json::json!({
                            "name": name, "script": program.argv[0], "args": program.argv[1..],
                            "interpreter": "none", "autorestart": true, "restart_delay": 0,
                        })
                    })
                    .collect();
                write(
                    "eco.config.js",
                    format!(
                        "module.exports = {};\n",
                        serde_json::json!({ "apps": apps })
                    ),
                )?;
                let out = Command::new("node")
                    .arg(&args.pm2)
                    .arg("start")
                    .arg(dir.join("eco.config.js"))
                    .env("PM2_HOME", dir.join("home"))
                    .stdout(log(dir, "pm2-start.log")?)
                    .stderr(Stdio::inherit())
                    .status()
                    .map_err(|e| format!("pm2 start: {e}"))?;
                if !out.success() {
                    return Err(format!("pm2 start failed ({out})"));
                }
                let pid = std::fs::read_to_string(dir.join("home/pm2.pid"))
                    .ok()
                    .and_then(|p| p.trim().parse().ok())
                    .ok_or("pm2 wrote no pid file")?;
                (pid, None)
            }
            Kind::Supervisord => {
                let d = dir.display();
                let mut conf = format!(
                    "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\nchildlogdir={d}\nminfds=8192\n\n[unix_http_server]\nfile={d}/supervisor.sock\n\n[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
                );
                for name in names {
                    conf.push_str(&format!(
                        "[program:{name}]\ncommand={}\nautorestart=true\nstartsecs=0\n\n",
                        program.argv.join(" ")
                    ));
                }
                write("supervisord.conf", conf)?;
                let child = Command::new(&args.supervisord)
                    .arg("-c")
                    .arg(dir.join("supervisord.conf"))
                    .stdout(Stdio::null())
                    .stderr(log(dir, "supervisord.out")?)
                    .spawn()
                    .map_err(|e| format!("start supervisord: {e}"))?;
                (child.id(), Some(child))
            }
        };
        let pm2 = (kind == Kind::Pm2).then(|| {
            (
                args.pm2.clone(),
                args.pm2_module.clone(),
                args.pm2_script.clone(),
            )
        });
        let m = Manager {
            kind,
            pid,
            own,
            dir: dir.to_path_buf(),
            n,
            pm2,
            stopped: false,
        };
        m.wait_for_children(program)?;
        Ok(m)
    }

    /// The manager's own process.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The manager's direct children.
    pub(crate) fn children(&self) -> Vec<u32> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return Vec::new();
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|list| {
                list.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect()
    }

    fn wait_for_children(&self, program: &Program) -> Result {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let running = self
                .children()
                .into_iter()
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| program.matches(&c))
                })
                .count();
            if running == self.n {
                println!("{}: {} children running", self.kind.label(), self.n);
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{}: {running} of {} children running after 120 s (see {})",
                    self.kind.label(),
                    self.n,
                    self.dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `rounds` list and `rounds` inspect requests, one after the other, in milliseconds.
    pub(crate) fn latency(&self, rounds: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        match self.kind {
            Kind::ClaudePm => self.claude_pm_latency(rounds),
            Kind::Pm2 => self.pm2_latency(rounds),
            Kind::Supervisord => {
                let sock = self.dir.join("supervisor.sock");
                let list = timed(rounds, || {
                    let body = xml_rpc(&sock, "supervisor.getAllProcessInfo", "")?;
                    let names = body.matches("<name>name</name>").count();
                    check(names == self.n, "getAllProcessInfo", names)
                })?;
                let inspect = timed(rounds, || {
                    let param = "<param><value><string>s7</string></value></param>";
                    let body = xml_rpc(&sock, "supervisor.getProcessInfo", param)?;
                    check(body.contains("<string>s7</string>"), "getProcessInfo", 0)
                })?;
                Ok((list, inspect))
            }
        }
    }

    fn claude_pm_latency(&self, rounds: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let client = claude_daemon::Client::new(self.dir.join("state/claude-pm.sock"));
        rt.block_on(async {
            let mut list = Vec::new();
            for _ in 0..rounds {
                let t = Instant::now();
                let sessions = client.list().await.map_err(|e| e.to_string())?;
                list.push(t.elapsed().as_secs_f64() * 1e3);
                check(sessions.len() == self.n, "list", sessions.len())?;
            }
            let mut inspect = Vec::new();
            for _ in 0..rounds {
                let t = Instant::now();
                let detail = client.inspect("s7").await.map_err(|e| e.to_string())?;
                inspect.push(t.elapsed().as_secs_f64() * 1e3);
                check(detail.view.name == "s7", "inspect", 0)?;
            }
            Ok((list, inspect))
        })
    }

    fn pm2_latency(&self, rounds: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        let (_, module, script) = self.pm2.as_ref().ok_or("pm2 paths")?;
        let out = Command::new("node")
            .arg(script)
            .arg(module)
            .arg(rounds.to_string())
            .arg("s7")
            .arg(self.n.to_string())
            .env("PM2_HOME", self.dir.join("home"))
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("node {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("the pm2 API script failed ({})", out.status));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("the pm2 API script's output: {e}"))?;
        let series = |key: &str| -> Vec<f64> {
            v.get(key)
                .and_then(|a| a.as_array())
                .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                .unwrap_or_default()
        };
        Ok((series("list"), series("inspect")))
    }

    /// Stop the manager its own way; fail if a child outlives it (which is then killed).
    pub(crate) fn stop(&mut self) -> Result {
        self.stopped = true;
        let children = self.children();
        match (self.kind, &self.pm2) {
            (Kind::Pm2, Some((pm2, _, _))) => {
                let _ = Command::new("node")
                    .arg(pm2)
                    .arg("kill")
                    .env("PM2_HOME", self.dir.join("home"))
                    .stdout(Stdio::null())
                    .status();
            }
            _ => {
                // SAFETY: kill(2) on the manager this bench started.
                unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while alive(self.pid) && Instant::now() < deadline {
            if let Some(own) = &mut self.own {
                if own.try_wait().ok().flatten().is_some() {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        let left: Vec<u32> = children.into_iter().filter(|p| alive(*p)).collect();
        for pid in &left {
            // SAFETY: kill(2) on a child the manager had and left behind.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{}: {} children left running",
                self.kind.label(),
                left.len()
            ))
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.stop();
        }
        if let Some(own) = &mut self.own {
            let _ = own.kill();
            let _ = own.wait();
        }
    }
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn log(dir: &Path, name: &str) -> Result<std::fs::File> {
    std::fs::File::create(dir.join(name)).map_err(|e| format!("{name}: {e}"))
}

fn toml_list(argv: &[String]) -> String {
    let items: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", items.join(", "))
}

fn check(ok: bool, what: &str, got: usize) -> Result {
    if ok {
        Ok(())
    } else {
        Err(format!("{what} answered wrongly (count {got})"))
    }
}

fn timed(rounds: usize, mut f: impl FnMut() -> Result) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        f()?;
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(out)
}

/// One XML-RPC call to supervisord on its Unix socket; the response body.
fn xml_rpc(sock: &Path, method: &str, params: &str) -> Result<String> {
    let body = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>{method}</methodName><params>{params}</params></methodCall>"
    );
    let mut s = std::os::unix::net::UnixStream::connect(sock)
        .map_err(|e| format!("connect {}: {e}", sock.display()))?;
    let request = format!(
        "POST /RPC2 HTTP/1.0\r\nHost: localhost\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("send to supervisord: {e}"))?;
    let mut response = String::new();
    s.read_to_string(&mut response)
        .map_err(|e| format!("read from supervisord: {e}"))?;
    if !response.starts_with("HTTP/1.0 200") && !response.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "supervisord answered {}",
            response.lines().next().unwrap_or("nothing")
        ));
    }
    Ok(response)
}
