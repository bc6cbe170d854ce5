//! The services a campaign starts for itself, so that it may crash, restart and stop them without
//! touching the machine's: a PostgreSQL cluster (`initdb` into a temporary directory, its own port) and
//! RabbitMQ nodes (their own node names, ports, data directories and Erlang cookie), one node or a
//! cluster. Everything is killed and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::process::Command;

use crate::helpers::services_required;

/// Where the PostgreSQL binaries are (`ORDERSAGA_CAMPAIGN_PG_BIN`, default Debian's 15).
fn pg_bin(tool: &str) -> PathBuf {
    let dir = std::env::var("ORDERSAGA_CAMPAIGN_PG_BIN")
        .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned());
    Path::new(&dir).join(tool)
}

/// RabbitMQ's scripts: the package's own (not the wrapper in `/usr/sbin`, which switches to the
/// `rabbitmq` user and its environment), else whatever is on the `PATH`.
fn rabbit_bin(tool: &str) -> PathBuf {
    let packaged = Path::new("/usr/lib/rabbitmq/bin").join(tool);
    if packaged.exists() {
        packaged
    } else {
        PathBuf::from(tool)
    }
}

/// Whether `tool` can be run; otherwise the campaign is skipped (or fails where services are required).
fn available(tool: &Path, what: &str) -> bool {
    let found = tool.is_absolute() && tool.exists()
        || std::process::Command::new("sh")
            .args(["-c", &format!("command -v {}", tool.display())])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !found {
        assert!(
            !services_required(),
            "{what} ({}) is missing but ORDERSAGA_REQUIRE_SERVICES=1",
            tool.display()
        );
        eprintln!("skipped: {what} ({}) is missing", tool.display());
    }
    found
}

/// A free TCP port on loopback in 20000–31999: low enough that RabbitMQ's command-line tools, which
/// take ports 10000 above a node's distribution port, find theirs.
pub fn free_low_port() -> u16 {
    loop {
        let port = rand::random_range(20_000..32_000);
        if port == 25_672 {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn temp_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ordersaga-campaign-{kind}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a command to its end; panics with its output if it fails.
async fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what}: {}\n{text}", out.status);
    text
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL cluster of the campaign's own. PostgreSQL refuses to run as root: as root, it runs as
/// the `postgres` user, which owns the directory.
pub struct PrivatePostgres {
    dir: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// `initdb` and start; `None` (after saying why) without the binaries.
    pub async fn start() -> Option<PrivatePostgres> {
        if !available(&pg_bin("initdb"), "PostgreSQL's initdb") {
            return None;
        }
        let dir = temp_dir("pg");
        let as_postgres = running_as_root();
        if as_postgres {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres"]).arg(&dir);
                    c
                },
                "chown",
            )
            .await;
        }
        let pg = PrivatePostgres {
            dir,
            port: free_low_port(),
            as_postgres,
        };
        let mut initdb = pg.command("initdb");
        initdb
            .arg("-D")
            .arg(pg.data())
            .args(["-A", "trust", "-U", "postgres", "--no-sync"]);
        run(initdb, "initdb").await;
        pg.ctl(&["start"]).await;
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_bin(tool));
            c
        } else {
            Command::new(pg_bin(tool))
        };
        cmd.current_dir(&self.dir);
        cmd
    }

    async fn ctl(&self, args: &[&str]) {
        let mut cmd = self.command("pg_ctl");
        // fsync off: the campaign crashes processes, not the machine, and the OS keeps what was written.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        cmd.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-w", "-t", "60", "-o", &options])
            .args(args);
        run(cmd, &format!("pg_ctl {args:?}")).await;
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a database and answers its URL.
    pub async fn create_database(&self, name: &str) -> String {
        use sea_orm::ConnectionTrait;
        let admin = sea_orm::Database::connect(self.url("postgres")).await.unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        let _ = admin.close().await;
        self.url(name)
    }

    /// A crash-like restart (`-m immediate`: no checkpoint, recovery at start); every connection is cut.
    pub async fn crash_restart(&self) {
        self.ctl(&["restart", "-m", "immediate"]).await;
    }

    /// Stops the server (`-m fast`); [`PrivatePostgres::start_again`] brings it back.
    pub async fn stop(&self) {
        self.ctl(&["stop", "-m", "fast"]).await;
    }

    pub async fn start_again(&self) {
        self.ctl(&["start"]).await;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_bin("pg_ctl"));
            c
        } else {
            std::process::Command::new(pg_bin("pg_ctl"))
        };
        let _ = cmd
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One RabbitMQ node of the campaign's own.
pub struct RabbitNode {
    pub name: String,
    pub amqp_port: u16,
    dist_port: u16,
    dir: PathBuf,
    server: Option<tokio::process::Child>,
}

/// RabbitMQ nodes of the campaign's own, sharing an Erlang cookie; clustered when more than one.
pub struct RabbitCluster {
    pub nodes: Vec<RabbitNode>,
}

impl RabbitNode {
    fn new(cookie: &str, extra_conf: &str) -> RabbitNode {
        let dir = temp_dir("rabbit");
        let amqp_port = free_low_port();
        let mut dist_port = free_low_port();
        while dist_port == amqp_port {
            dist_port = free_low_port();
        }
        let name = format!(
            "ordersaga-campaign-{}@localhost",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let cookie_file = dir.join(".erlang.cookie");
        std::fs::write(&cookie_file, cookie).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cookie_file, std::fs::Permissions::from_mode(0o400)).unwrap();
        }
        std::fs::write(dir.join("rabbitmq-env.conf"), "").unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{amqp_port}\nloopback_users = none\n{extra_conf}"),
        )
        .unwrap();
        RabbitNode {
            name,
            amqp_port,
            dist_port,
            dir,
            server: None,
        }
    }

    /// The environment of this node's server and of the tools that talk to it.
    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(rabbit_bin(tool));
        let dir = &self.dir;
        cmd.current_dir(dir)
            .env("HOME", dir)
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_PORT", self.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", dir.join("rabbitmq.pid"));
        cmd
    }

    /// Starts the node's server (on its data directory: a node killed comes back with its data) and
    /// waits until it runs.
    pub async fn boot(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let mut cmd = self.command("rabbitmq-server");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        self.server = Some(cmd.spawn().expect("rabbitmq-server starts"));
        self.await_startup().await;
    }

    /// Waits until the broker runs (the node may not be reachable by its name at first).
    async fn await_startup(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let mut cmd = self.command("rabbitmqctl");
            cmd.args(["-n", &self.name, "await_startup", "--timeout", "60"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if cmd.status().await.is_ok_and(|s| s.success()) {
                return;
            }
            if let Some(server) = &mut self.server
                && let Ok(Some(status)) = server.try_wait()
            {
                panic!(
                    "rabbitmq-server {} exited with {status}; log in {}",
                    self.name,
                    self.dir.join("server.log").display()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "RabbitMQ node {} did not start; log in {}",
                self.name,
                self.dir.display()
            );
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }

    /// `rabbitmqctl -n NODE args…`
    pub async fn ctl(&self, args: &[&str]) -> String {
        let mut cmd = self.command("rabbitmqctl");
        cmd.args(["-n", &self.name]).args(args);
        run(cmd, &format!("rabbitmqctl {args:?} on {}", self.name)).await
    }

    /// Creates a vhost that `guest` may use; answers its AMQP URL.
    pub async fn vhost(&self, name: &str) -> String {
        self.ctl(&["add_vhost", name]).await;
        self.ctl(&["set_permissions", "-p", name, "guest", ".*", ".*", ".*"])
            .await;
        self.url_of(name)
    }

    /// The AMQP URL of vhost `name` on this node.
    pub fn url_of(&self, vhost: &str) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/{vhost}", self.amqp_port)
    }

    /// How many queues of `vhost` node `leader` leads (asked of this node).
    pub async fn leaders(&self, vhost: &str, leader: &str) -> usize {
        let listed = self
            .ctl(&[
                "list_queues",
                "-p",
                vhost,
                "name",
                "leader",
                "--no-table-headers",
                "--quiet",
            ])
            .await;
        listed
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some(leader))
            .count()
    }

    /// The broker stops (`stop_app`: connections are cut, the node stays).
    pub async fn stop_app(&self) {
        self.ctl(&["stop_app"]).await;
    }

    pub async fn start_app(&mut self) {
        self.ctl(&["start_app"]).await;
        self.await_startup().await;
    }

    fn os_pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("rabbitmq.pid"))
            .ok()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
    }

    /// `kill -9` of the node's Erlang VM.
    pub async fn kill(&mut self) {
        if let Some(pid) = self.os_pid() {
            let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
            let _ = std::fs::remove_file(self.dir.join("rabbitmq.pid"));
        }
        if let Some(mut server) = self.server.take() {
            let _ = server.kill().await;
            let _ = server.wait().await;
        }
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        if let Some(pid) = self.os_pid() {
            let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
        }
        if let Some(mut server) = self.server.take() {
            let _ = server.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RabbitCluster {
    /// `size` nodes started and, beyond the first, joined to it; `None` (after saying why) without
    /// RabbitMQ. `extra_conf` is added to every node's `rabbitmq.conf`.
    pub async fn start(size: usize, extra_conf: &str) -> Option<RabbitCluster> {
        if !available(&rabbit_bin("rabbitmq-server"), "RabbitMQ") {
            return None;
        }
        let cookie = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let mut nodes: Vec<RabbitNode> = (0..size).map(|_| RabbitNode::new(&cookie, extra_conf)).collect();
        for node in &mut nodes {
            node.boot().await;
        }
        if let Some((first, rest)) = nodes.split_first_mut() {
            for node in rest {
                node.ctl(&["stop_app"]).await;
                node.ctl(&["join_cluster", &first.name]).await;
                node.start_app().await;
            }
        }
        Some(RabbitCluster { nodes })
    }

    pub fn node(&mut self, i: usize) -> &mut RabbitNode {
        &mut self.nodes[i]
    }
}

/// A connection to a node with a confirming channel, to publish as an outside client would and to
/// read queue depths.
pub struct AmqpClient {
    connection: Connection,
    channel: lapin::Channel,
}

impl AmqpClient {
    pub async fn connect(url: &str) -> AmqpClient {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        AmqpClient { connection, channel }
    }

    /// Publishes `body` straight to `queue` (through the default exchange), persistent, with `message_id`
    /// and `headers`, and waits for the broker's confirm.
    pub async fn publish_to_queue(
        &self,
        queue: &str,
        body: &[u8],
        message_id: &str,
        headers: &[(&str, &str)],
    ) {
        let mut table = FieldTable::default();
        for (k, v) in headers {
            table.insert((*k).into(), AMQPValue::LongString((*v).into()));
        }
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(message_id.into())
            .with_headers(table);
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await
            .unwrap();
        let confirmation = confirm.await.unwrap();
        assert!(
            matches!(confirmation, lapin::Confirmation::Ack(None)),
            "{queue} took the message: {confirmation:?}"
        );
    }

    /// How many messages `queue` holds (a passive declare).
    pub async fn depth(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("queue {queue}: {e}"))
            .message_count()
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
}
