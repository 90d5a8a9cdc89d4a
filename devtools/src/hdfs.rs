//! A throwaway HDFS for tests: one NameNode and one DataNode on 127.0.0.1,
//! started by `scripts/hdfs-test-cluster.sh` (Hadoop 2.7.3's own jars, on
//! Java 17) in a temporary folder and stopped when the guard drops. Shared
//! by the `weir` library's unit tests and its integration tests.
//!
//! These helpers panic with the script's words when something fails: they
//! are for tests only.

/// A throwaway HDFS (one NameNode, one DataNode on 127.0.0.1) started by
/// `scripts/hdfs-test-cluster.sh` in a temporary folder, stopped on drop even
/// if the test fails.
pub struct HdfsCluster {
    dir: std::path::PathBuf,
    /// `hdfs://127.0.0.1:PORT`.
    pub url: String,
}

impl HdfsCluster {
    /// The script.
    pub fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/hdfs-test-cluster.sh")
    }

    /// Runs the script's `command` on this cluster's folder; its stdout, or
    /// a panic with what it said.
    /// The folder the cluster lives in.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.as_path()
    }

    pub fn run(dir: &std::path::Path, command: &str) -> String {
        let out = std::process::Command::new("bash")
            .arg(Self::script())
            .arg(command)
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("bash runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "hdfs-test-cluster.sh {command} failed ({}):\n{}\n{stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Starts a cluster; panics with the script's words if it cannot.
    pub fn start() -> HdfsCluster {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("weir-hdfs-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary folder for the test HDFS");
        // The guard exists before the script runs, so a start that fails
        // halfway is stopped too.
        let mut cluster = HdfsCluster { dir, url: String::new() };
        let stdout = Self::run(cluster.dir.as_path(), "start");
        cluster.url = stdout.lines().last().unwrap_or_default().trim().to_string();
        assert!(cluster.url.starts_with("hdfs://127.0.0.1:"), "unexpected URL {:?}", cluster.url);
        cluster
    }

    /// `127.0.0.1:PORT`.
    pub fn namenode(&self) -> &str {
        self.url.trim_start_matches("hdfs://")
    }

    /// Hadoop's own `FsShell` on this cluster, with `args`; its stdout.
    pub fn fs_shell(&self, args: &[&str]) -> String {
        let classpath = Self::run(self.dir.as_path(), "classpath");
        // The java the script uses: WEIR_HDFS_JAVA, else $JAVA_HOME/bin/java, else java.
        let java = std::env::var_os("WEIR_HDFS_JAVA")
            .or_else(|| {
                std::env::var_os("JAVA_HOME").map(|home| std::path::Path::new(&home).join("bin/java").into())
            })
            .filter(|java| std::path::Path::new(java).is_file())
            .unwrap_or_else(|| "java".into());
        let out = std::process::Command::new(java)
            .args(["-cp", classpath.trim(), "org.apache.hadoop.fs.FsShell", "-fs", &self.url])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("java runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "FsShell {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

impl Drop for HdfsCluster {
    fn drop(&mut self) {
        let stopped = std::process::Command::new("bash")
            .arg(Self::script())
            .arg("stop")
            .arg(self.dir.as_path())
            .stdin(std::process::Stdio::null())
            .output();
        match stopped {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                eprintln!("stopping the HDFS cluster failed: {}", String::from_utf8_lossy(&out.stderr))
            }
            Err(e) => eprintln!("stopping the HDFS cluster failed: {e}"),
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
