//! A real Postfix for bounce tests: a private instance (its own configuration, queue and
//! ports in a temporary folder) that relays everything to a given SMTP server and sends
//! the bounces it writes for the bounce domain to rapport's listener. Its DSNs are Postfix's
//! own, as a company's relay would write them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A running Postfix instance; stopped when dropped.
pub struct Postfix {
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(self.dir.path().join("etc"))
            .arg("abort")
            .output();
    }
}

impl Postfix {
    /// The port a coming instance will listen on (so the app can be told before it starts).
    pub fn reserve_port() -> u16 {
        super::free_port()
    }

    /// Starts Postfix on `port`, relaying to `127.0.0.1:relay_port`, with mail for
    /// `bounce_domain` sent to `bounce`. `None` (with a note) where Postfix is not installed
    /// or this is not root; under CI both must hold (`.ci/run` installs Postfix).
    pub fn start(
        port: u16,
        relay_port: u16,
        bounce_domain: &str,
        bounce: std::net::SocketAddr,
    ) -> Option<Postfix> {
        let usable = Path::new("/usr/sbin/postfix").exists() && super::smtp::running_as_root();
        if !usable {
            assert!(
                std::env::var("CI").is_err(),
                "a private Postfix needs /usr/sbin/postfix and root under CI"
            );
            eprintln!("SKIPPED: a private Postfix needs /usr/sbin/postfix and root");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let mut perms = std::fs::metadata(root).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(root, perms).unwrap();
        for sub in ["etc", "queue", "data"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let chown = Command::new("chown")
            .arg("postfix")
            .arg(root.join("data"))
            .status()
            .unwrap();
        assert!(chown.success(), "chown postfix data");
        let r = root.display();
        std::fs::write(
            root.join("etc/main.cf"),
            format!(
                "compatibility_level = 3.6\n\
                 queue_directory = {r}/queue\n\
                 data_directory = {r}/data\n\
                 mail_owner = postfix\n\
                 setgid_group = postdrop\n\
                 inet_interfaces = 127.0.0.1\n\
                 inet_protocols = ipv4\n\
                 myhostname = relay.test\n\
                 mydomain = relay.test\n\
                 mydestination =\n\
                 mynetworks = 127.0.0.0/8\n\
                 relayhost = [127.0.0.1]:{relay_port}\n\
                 transport_maps = inline:{{ {{{bounce_domain}=smtp:[{}]:{}}} }}\n\
                 smtpd_relay_restrictions = permit_mynetworks, reject\n\
                 smtp_dns_support_level = disabled\n\
                 smtp_tls_security_level = none\n\
                 smtpd_tls_security_level = none\n\
                 alias_maps =\n\
                 alias_database =\n\
                 local_recipient_maps =\n\
                 biff = no\n\
                 maillog_file_prefixes = {r}\n\
                 maillog_file = {r}/maillog\n",
                bounce.ip(),
                bounce.port()
            ),
        )
        .unwrap();
        // Every service outside a chroot, so that nothing needs copying into the queue.
        let services = [
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ];
        std::fs::write(
            root.join("etc/master.cf"),
            format!(
                "127.0.0.1:{port} inet n - n - - smtpd\n{}\n",
                services.join("\n")
            ),
        )
        .unwrap();
        let out = Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(root.join("etc"))
            .arg("start")
            .output()
            .expect("run postfix");
        let pf = Postfix { port, dir };
        assert!(
            out.status.success(),
            "postfix start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            pf.log()
        );
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(pf);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("postfix did not listen on {port}:\n{}", pf.log());
    }

    /// Postfix's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }
}
