//! Veer's artifacts as a user builds and publishes them (docs/install.md): the OCI image that
//! `packaging/image.sh` builds without a container engine, and both Helm charts, pushed by
//! `packaging/publish.sh` to a real OCI registry (distribution's `registry`, built by
//! `e2e/build-tools.sh`, on 127.0.0.1 with its storage in a temporary directory).
//!
//! - The image is reproducible: a second build from copies of the binaries with other mtimes and
//!   modes, another umask and another temporary directory gives the same bytes, manifest digest
//!   included.
//! - Pulled back from the registry by digest (every blob checked against its digest) and unpacked,
//!   the image is what the Dockerfile builds: static binaries that print their version, the CA
//!   bundle, `/tmp` 1777, user 65532, entrypoint `veer`. The controller runs from the unpacked
//!   root filesystem against the local control plane, with the image's user, environment and
//!   entrypoint; as root, in a chroot of the unpacked image, to which the test adds only what a
//!   kubelet would mount (`/etc/resolv.conf`, `/etc/hosts`, no `/dev`) and a kubeconfig naming the
//!   API server by its Service name `kubernetes.default.svc`, which only a DNS server of this test
//!   resolves (static glibc, no NSS modules). It becomes ready and initializes a Canary.
//! - Flux installs the controller's chart from the registry (`HelmRepository` of `type: oci`), and
//!   the Deployment runs the pushed image: the packaged chart names it by default.
//!
//! The image needs a release build of the two binaries for `x86_64-unknown-linux-gnu` with
//! `+crt-static`, in this target directory (several minutes cold; nothing when it is current).

mod common;

use std::{
    collections::BTreeMap,
    fs,
    net::{Ipv4Addr, SocketAddr},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use common::harness::{
    Process, apply_yaml, canary_yaml, chart_identity, controller_args, free_port, podinfo_yaml, wait_phase,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use veer::api::Phase;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The target directory of this build (where the release binaries of the image go too).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target/tmp has a parent").to_owned()
}

/// Runs `cmd` and returns its standard output, trimmed; panics with its output when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// distribution's `registry` and `crane`: the paths `VEER_E2E_REGISTRY_BIN` and `VEER_E2E_CRANE` name
/// when `e2e/.run/env` sets them (with `VEER_E2E_GITOPS=1`, whose `VEER_E2E_REGISTRY` is the stack's
/// own registry, `host:port`, not a path), else built (once per machine, cached) by `e2e/build-tools.sh`.
struct Tools {
    registry: PathBuf,
    crane: PathBuf,
}

fn tools() -> Tools {
    if let (Ok(registry), Ok(crane)) =
        (std::env::var("VEER_E2E_REGISTRY_BIN"), std::env::var("VEER_E2E_CRANE"))
    {
        return Tools { registry: registry.into(), crane: crane.into() };
    }
    let paths = run(Command::new("bash").current_dir(repo()).args([
        "-c",
        r#"e2e/build-tools.sh registry crane >&2 && . e2e/lib.sh && echo "$(registry_bin)/registry" && echo "$(crane_bin)/crane""#,
    ]));
    let mut lines = paths.lines().map(PathBuf::from);
    let tools = Tools { registry: lines.next().expect("the registry"), crane: lines.next().expect("crane") };
    assert!(tools.registry.is_file() && tools.crane.is_file(), "built: {paths}");
    tools
}

/// `packaging/image.sh --out OUT ARGS...` in this target directory, under `umask`, with `TMPDIR` set
/// to `tmp` when given; returns the manifest digest it prints.
fn image_sh(out: &Path, args: &[&str], umask: &str, tmp: Option<&Path>) -> String {
    let mut cmd = Command::new("bash");
    cmd.args(["-c", r#"umask "$1" && shift && exec "$@""#, "bash", umask])
        .arg(repo().join("packaging/image.sh"))
        .arg("--out")
        .arg(out)
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir());
    if let Some(tmp) = tmp {
        cmd.env("TMPDIR", tmp);
    }
    let t = Instant::now();
    let digest = run(&mut cmd);
    println!("packaging/image.sh {args:?} (umask {umask}): {digest} in {:?}", t.elapsed());
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "a digest: {digest}");
    digest
}

/// Every file under `dir`, by relative path, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut all = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                all.insert(name, fs::read(&path).unwrap());
            }
        }
    }
    all
}

/// The registry, its storage in a temporary directory; stopped (by pid) when dropped.
struct Registry {
    _process: Process,
    host: String,
    _storage: tempfile::TempDir,
}

impl Registry {
    async fn start(tools: &Tools) -> Registry {
        let storage = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = storage.path().join("config.yml");
        let data = storage.path().join("data");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\n\
                 storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
                 http: {{addr: 127.0.0.1:{port}}}\n",
                data.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(&tools.registry);
        // Its OpenTelemetry exporter would otherwise try to send traces to localhost:4318.
        cmd.arg("serve").arg(&config).env("OTEL_TRACES_EXPORTER", "none");
        let process = Process::command(&format!("registry-{port}"), cmd, port);
        let host = format!("127.0.0.1:{port}");
        let http = veer::http::client_builder().build().unwrap();
        let url = format!("http://{host}/v2/");
        common::wait_for("the registry to answer /v2/", Duration::from_secs(30), || async {
            match http.get(&url).send().await {
                Ok(r) if r.status() == 200 => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        Registry { _process: process, host, _storage: storage }
    }

    /// `packaging/publish.sh --registry HOST --plain-http`: the image of `layout` and both charts.
    /// Returns the image reference it prints (`HOST/veer:VERSION@sha256:...`).
    fn publish(&self, tools: &Tools, layout: &Path) -> String {
        let helm_home = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let pushed = run(Command::new(repo().join("packaging/publish.sh"))
            .args(["--registry", &self.host, "--plain-http", "--image-dir"])
            .arg(layout)
            .env("CRANE", &tools.crane)
            .env("HELM", common::env("VEER_E2E_HELM"))
            .env("HELM_CACHE_HOME", helm_home.path().join("cache"))
            .env("HELM_CONFIG_HOME", helm_home.path().join("config"))
            .env("HELM_DATA_HOME", helm_home.path().join("data")));
        println!("packaging/publish.sh: {pushed} in {:?}", t.elapsed());
        pushed
    }

    /// GETs `/v2/PATH` (a manifest with `accept`), checks that the body has the digest `want` (when
    /// given), and returns the body and the registry's `Docker-Content-Digest`.
    async fn get(&self, path: &str, accept: &str, want: Option<&str>) -> (Vec<u8>, Option<String>) {
        let url = format!("http://{}/v2/{path}", self.host);
        let http = veer::http::client_builder().build().unwrap();
        let response =
            http.get(&url).header("Accept", accept).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(response.status(), 200, "GET {url}");
        let digest = response.headers().get("docker-content-digest").map(|v| v.to_str().unwrap().to_owned());
        let body = response.bytes().await.unwrap().to_vec();
        if let Some(want) = want {
            assert_eq!(sha256(&body), want, "the bytes of {url}");
        }
        (body, digest)
    }
}

/// One entry of a ustar archive.
#[derive(Debug, PartialEq, Eq)]
struct TarEntry {
    name: String,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    /// `b'0'` a file, `b'5'` a directory.
    kind: u8,
}

/// The entries of an uncompressed ustar archive (what packaging/image.sh writes).
fn tar_entries(tar: &[u8]) -> Vec<TarEntry> {
    fn octal(field: &[u8]) -> u64 {
        let text = String::from_utf8_lossy(field);
        let digits = text.trim_matches(|c: char| c == '\0' || c == ' ');
        u64::from_str_radix(digits, 8).unwrap_or_else(|_| panic!("an octal field: {text:?}"))
    }
    fn text(field: &[u8]) -> String {
        String::from_utf8_lossy(field.split(|b| *b == 0).next().unwrap()).into_owned()
    }
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|b| *b != 0) {
        let h = &tar[at..at + 512];
        assert_eq!(&h[257..262], b"ustar", "a ustar header at {at}");
        let prefix = text(&h[345..500]);
        let name = text(&h[0..100]);
        let size = octal(&h[124..136]);
        entries.push(TarEntry {
            name: if prefix.is_empty() { name } else { format!("{prefix}/{name}") },
            mode: octal(&h[100..108]) as u32,
            uid: octal(&h[108..116]),
            gid: octal(&h[116..124]),
            mtime: octal(&h[136..148]),
            kind: h[156],
        });
        at += 512 + size.div_ceil(512) as usize * 512;
    }
    entries
}

/// Whether an ELF executable names a program interpreter (`PT_INTERP`): a dynamically linked one.
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "an ELF file");
    assert_eq!((elf[4], elf[5]), (2, 1), "64-bit little-endian");
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| u32::from_le_bytes(elf[phoff + i * size..][..4].try_into().unwrap()) == 3)
}

/// The answer of a DNS server that knows one name: an A record `ip` for `name` (a name compared
/// without case, no trailing dot), no record of another type for it, and NXDOMAIN for every other
/// name. `None` for what is not a query of one question. The second value tells whether the
/// question was for `name`.
fn dns_answer(query: &[u8], name: &str, ip: Ipv4Addr) -> Option<(Vec<u8>, bool)> {
    if query.len() < 12 || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).into_owned());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = query.get(12..at + 4)?;
    let ours = labels.join(".").eq_ignore_ascii_case(name);
    let answers = u16::from(ours && qtype == 1);
    let rcode = if ours { 0 } else { 3 };
    let mut reply = vec![query[0], query[1], 0x80 | (query[2] & 0x01), 0x80 | rcode, 0, 1];
    reply.extend(answers.to_be_bytes());
    reply.extend([0, 0, 0, 0]);
    reply.extend(question);
    if answers == 1 {
        // The name by a pointer to the question; type A, class IN, TTL 30 s, 4 bytes.
        reply.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
        reply.extend(ip.octets());
    }
    Some((reply, ours))
}

/// A DNS server on port 53 of a loopback address of its own (127.53.x.y), answering
/// [`dns_answer`]; counts the questions for `name`. Binding port 53 needs root, as the chroot does.
async fn dns_server(
    name: &'static str,
    ip: Ipv4Addr,
) -> (Ipv4Addr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let pid = std::process::id();
    let addr = Ipv4Addr::new(127, 53, ((pid >> 8) % 250 + 1) as u8, (pid % 250 + 1) as u8);
    let socket = tokio::net::UdpSocket::bind(SocketAddr::from((addr, 53)))
        .await
        .unwrap_or_else(|e| panic!("bind {addr}:53: {e}"));
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            if let Some((reply, ours)) = dns_answer(&buf[..n], name, ip) {
                if ours {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                let _ = socket.send_to(&reply, peer).await;
            }
        }
    });
    (addr, hits, task)
}

fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).expect("a Uid line");
    uid.split_whitespace().nth(1) == Some("0")
}

/// The path of `program` on the test's PATH.
fn which(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

/// The Service name the controller in the chroot reaches the API server by: one of the API
/// server's certificate's names (e2e/pki.sh), resolved through the search list as in a pod.
const API_SERVICE: &str = "kubernetes.default.svc";
const API_SERVICE_FQDN: &str = "kubernetes.default.svc.cluster.local";

#[test]
fn the_test_dns_server_answers_its_name_and_refuses_others() {
    // A query (id 0x1234, recursion desired) for kubernetes.default.svc.cluster.local, type A.
    let query = |qtype: u8| {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in API_SERVICE_FQDN.split('.') {
            q.push(label.len() as u8);
            q.extend(label.as_bytes());
        }
        q.extend([0, 0, qtype, 0, 1]);
        q
    };
    let ip = Ipv4Addr::new(127, 0, 0, 1);
    let (reply, ours) = dns_answer(&query(1), API_SERVICE_FQDN, ip).unwrap();
    assert!(ours);
    assert_eq!(&reply[..8], &[0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1]);
    assert_eq!(&reply[reply.len() - 6..], &[0, 4, 127, 0, 0, 1]);
    // AAAA: the name exists, no record.
    let (reply, ours) = dns_answer(&query(28), API_SERVICE_FQDN, ip).unwrap();
    assert!(ours);
    assert_eq!(&reply[2..8], &[0x81, 0x80, 0, 1, 0, 0]);
    assert_eq!(reply.len(), query(28).len());
    // Another name (the first search domain tried): NXDOMAIN.
    let (reply, ours) = dns_answer(&query(1), "kubernetes.default.svc", ip).unwrap();
    assert!(!ours);
    assert_eq!(&reply[2..8], &[0x81, 0x83, 0, 1, 0, 0]);
    // Not a query: a reply, or garbage.
    let mut answer = query(1);
    answer[2] |= 0x80;
    assert!(dns_answer(&answer, API_SERVICE_FQDN, ip).is_none());
    assert!(dns_answer(&[0x12, 0x34, 1], API_SERVICE_FQDN, ip).is_none());
    assert!(dns_answer(&query(1)[..20], API_SERVICE_FQDN, ip).is_none());
}

#[test]
fn an_elf_interpreter_is_found_in_a_dynamic_binary_only() {
    // The test binary itself is dynamically linked (the default of the gnu target).
    let me = fs::read(std::env::current_exe().unwrap()).unwrap();
    assert!(has_interpreter(&me));
    // A 64-bit ELF header with one program header of type PT_LOAD (1), then one of PT_INTERP (3).
    let mut elf = vec![0u8; 64 + 2 * 56];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    elf[0x20] = 64; // e_phoff
    elf[0x36] = 56; // e_phentsize
    elf[0x38] = 1; // e_phnum
    elf[64] = 1;
    elf[64 + 56] = 3;
    assert!(!has_interpreter(&elf));
    elf[0x38] = 2;
    assert!(has_interpreter(&elf));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane (make test)"]
async fn the_image_is_reproducible_and_runs_the_controller_after_a_round_trip_through_a_registry() {
    let client = common::client().await;
    let tools = tools();
    let work = tempfile::tempdir().unwrap();

    // Build (the release build, then the layout), then build again from copies of the binaries with
    // other mtimes and modes, under another umask and temporary directory.
    let layout = work.path().join("layout");
    let digest = image_sh(&layout, &[], "022", None);
    let binaries = work.path().join("binaries");
    fs::create_dir(&binaries).unwrap();
    let release = target_dir().join("x86_64-unknown-linux-gnu/release");
    for bin in ["veer", "veer-loadtester"] {
        let copy = binaries.join(bin);
        fs::copy(release.join(bin), &copy).unwrap();
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o700)).unwrap();
        let file = fs::File::options().write(true).open(&copy).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000)).unwrap();
    }
    let again = work.path().join("again");
    let tmp = work.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let digest_again = image_sh(&again, &["--binaries", binaries.to_str().unwrap()], "077", Some(&tmp));
    assert_eq!(digest, digest_again, "two builds of the same commit");
    let (ours, theirs) = (files(&layout), files(&again));
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>());
    assert!(ours == theirs, "the two layouts differ in content");
    assert_eq!(ours.len(), 5, "oci-layout, index.json and three blobs: {:?}", ours.keys());

    // Push the image and both charts; pull the image back by digest.
    let registry = Registry::start(&tools).await;
    let pushed = registry.publish(&tools, &layout);
    assert_eq!(pushed, format!("{}/veer:{VERSION}@{digest}", registry.host));
    let (body, served) = registry.get(&format!("veer/manifests/{digest}"), MANIFEST, Some(&digest)).await;
    assert_eq!(served.as_deref(), Some(digest.as_str()));
    let (_, by_tag) = registry.get(&format!("veer/manifests/{VERSION}"), MANIFEST, None).await;
    assert_eq!(by_tag.as_deref(), Some(digest.as_str()), "the tag {VERSION} names the pushed image");
    let manifest: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(manifest["mediaType"], MANIFEST);
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let (config, _) = registry.get(&format!("veer/blobs/{config_digest}"), "*/*", Some(config_digest)).await;
    let config: Value = serde_json::from_slice(&config).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(layers[0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    let layer_digest = layers[0]["digest"].as_str().unwrap();
    let (layer, _) = registry.get(&format!("veer/blobs/{layer_digest}"), "*/*", Some(layer_digest)).await;
    assert_eq!(layer.len() as u64, layers[0]["size"].as_u64().unwrap());

    // The configuration: the Dockerfile's.
    let revision = run(Command::new("git").current_dir(repo()).args(["rev-parse", "HEAD"]));
    let epoch: u64 =
        run(Command::new("git").current_dir(repo()).args(["log", "-1", "--format=%ct"])).parse().unwrap();
    assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some("amd64"), Some("linux")));
    let image = &config["config"];
    assert_eq!(image["User"], "65532:65532");
    assert_eq!(image["Entrypoint"], json!(["/usr/local/bin/veer"]));
    let env: Vec<&str> = image["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(env.contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"), "{env:?}");
    let labels = &image["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], VERSION);
    let label_revision = labels["org.opencontainers.image.revision"].as_str().unwrap();
    assert!(label_revision.starts_with(&revision), "{label_revision} is not commit {revision}");
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    let layer_tar = {
        let gz = work.path().join("layer.tar.gz");
        fs::write(&gz, &layer).unwrap();
        run(Command::new("gzip").args(["-dk"]).arg(&gz));
        fs::read(work.path().join("layer.tar")).unwrap()
    };
    assert_eq!(config["rootfs"]["diff_ids"], json!([sha256(&layer_tar)]));

    // The layer: these entries exactly, sorted, root's, with the commit's time.
    let entries = tar_entries(&layer_tar);
    let expected: [(&str, u32, u8); 10] = [
        ("etc/", 0o755, b'5'),
        ("etc/ssl/", 0o755, b'5'),
        ("etc/ssl/certs/", 0o755, b'5'),
        ("etc/ssl/certs/ca-certificates.crt", 0o644, b'0'),
        ("tmp/", 0o1777, b'5'),
        ("usr/", 0o755, b'5'),
        ("usr/local/", 0o755, b'5'),
        ("usr/local/bin/", 0o755, b'5'),
        ("usr/local/bin/veer", 0o755, b'0'),
        ("usr/local/bin/veer-loadtester", 0o755, b'0'),
    ];
    let expected: Vec<TarEntry> = expected
        .iter()
        .map(|(name, mode, kind)| TarEntry {
            name: name.to_string(),
            mode: *mode,
            uid: 0,
            gid: 0,
            mtime: epoch,
            kind: *kind,
        })
        .collect();
    assert_eq!(entries, expected);

    // Unpacked, the binaries are static and run.
    let rootfs = work.path().join("rootfs");
    fs::create_dir(&rootfs).unwrap();
    run(Command::new("tar").arg("-xf").arg(work.path().join("layer.tar")).arg("-C").arg(&rootfs));
    for bin in ["veer", "veer-loadtester"] {
        let path = rootfs.join("usr/local/bin").join(bin);
        assert!(!has_interpreter(&fs::read(&path).unwrap()), "{bin} is statically linked");
        assert_eq!(run(Command::new(&path).arg("--version")), format!("{bin} {VERSION}"));
    }
    let bundle = fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    let roots = bundle.matches("-----BEGIN CERTIFICATE-----").count();
    assert!(roots > 100, "Mozilla's roots: {roots} certificates");

    // The controller from the image, with its user, environment and entrypoint. As root: in a chroot
    // of the unpacked image with a kubeconfig that names the API server by its Service name, which
    // only the test's DNS server resolves (what a pod's /etc/resolv.conf would say).
    common::with_namespace(&client, "image", async |ns| {
        let ns = ns.name.as_str();
        let port = free_port();
        let args = controller_args(ns, port, &[]);
        let entrypoint = image["Entrypoint"][0].as_str().unwrap();
        let identity: Value = serde_json::from_str(&fs::read_to_string(chart_identity(ns)).unwrap())
            .expect("a JSON kubeconfig");
        let chrooted = is_root();
        let mut dns = None;
        let mut cmd = if chrooted {
            let (addr, hits, task) = dns_server(API_SERVICE_FQDN, Ipv4Addr::LOCALHOST).await;
            dns = Some((hits, task));
            let etc = rootfs.join("etc");
            fs::write(
                etc.join("resolv.conf"),
                format!(
                    "nameserver {addr}\nsearch {ns}.svc.cluster.local svc.cluster.local cluster.local\n\
                     options ndots:5\n"
                ),
            )
            .unwrap();
            fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").unwrap();
            let mut kubeconfig = identity.clone();
            for cluster in kubeconfig["clusters"].as_array_mut().unwrap() {
                let server = cluster["cluster"]["server"].as_str().unwrap();
                let api_port = server.rsplit_once(':').unwrap().1.to_owned();
                cluster["cluster"]["server"] = json!(format!("https://{API_SERVICE}:{api_port}"));
            }
            fs::create_dir_all(rootfs.join("etc/veer")).unwrap();
            fs::write(rootfs.join("etc/veer/kubeconfig"), kubeconfig.to_string()).unwrap();
            let mut cmd = Command::new(which("chroot"));
            cmd.arg(format!("--userspec={}", image["User"].as_str().unwrap())).arg(&rootfs).arg(entrypoint);
            cmd.env_clear().env("KUBECONFIG", "/etc/veer/kubeconfig");
            cmd
        } else {
            println!("not root: the controller runs from the unpacked image without a chroot");
            let path = std::env::temp_dir().join(format!("{ns}-image.kubeconfig"));
            fs::write(&path, identity.to_string()).unwrap();
            let mut cmd = Command::new(rootfs.join(entrypoint.trim_start_matches('/')));
            cmd.env_clear().env("KUBECONFIG", path);
            cmd
        };
        for var in &env {
            let (k, v) = var.split_once('=').unwrap();
            cmd.env(k, v);
        }
        cmd.args(&args);
        let controller = Process::command(&format!("veer-image-{ns}"), cmd, port);
        let http = veer::http::client_builder().build().unwrap();
        let t = Instant::now();
        common::wait_for("the controller from the image to be ready", Duration::from_secs(60), || async {
            match http.get(format!("{}/readyz", controller.url())).send().await {
                Ok(r) if r.status() == 200 => Ok(()),
                Ok(r) => Err(format!("HTTP {}; log: {}", r.status(), controller.tail(5))),
                Err(e) => Err(format!("{e}; log: {}", controller.tail(5))),
            }
        })
        .await;
        println!("the controller from the image is ready after {:?}", t.elapsed());
        apply_yaml(&client, ns, &podinfo_yaml("podinfo", "ghcr.io/stefanprodan/podinfo:6.0.0")).await;
        apply_yaml(
            &client,
            ns,
            &canary_yaml(
                "  provider: kubernetes\n  service: {port: 9898}",
                "    interval: 1m\n    threshold: 1\n    iterations: 2",
            ),
        )
        .await;
        wait_phase(&client, ns, "podinfo", Phase::Initialized, Duration::from_secs(120)).await;
        if let Some((hits, task)) = dns {
            let hits = hits.load(Ordering::Relaxed);
            assert!(hits > 0, "the controller resolved {API_SERVICE} through the test's DNS server");
            println!("{hits} DNS questions for {API_SERVICE_FQDN} answered");
            task.abort();
        }
    })
    .await;

    // The charts are in the registry as Helm OCI artifacts, and their default image is the pushed one.
    let helm = common::helm::Helm::new();
    for chart in ["veer", "veer-loadtester"] {
        let chart_yaml = fs::read_to_string(repo().join("charts").join(chart).join("Chart.yaml")).unwrap();
        let chart_meta: Value = serde_saphyr::from_str(&chart_yaml).unwrap();
        let version = chart_meta["version"].as_str().unwrap();
        assert_eq!(chart_meta["appVersion"], VERSION, "{chart}'s appVersion is the image's tag");
        let reference = format!("oci://{}/charts/{chart}", registry.host);
        let values = helm.ok(&["show", "values", &reference, "--version", version, "--plain-http"]);
        let values: Value = serde_saphyr::from_str(&values).unwrap();
        assert_eq!(values["image"]["repository"], format!("{}/veer", registry.host), "{chart}");
        assert_eq!(values["image"]["tag"], "", "{chart}: the tag is the appVersion");
    }
}

/// The tests that need Flux: `VEER_E2E_FLUX=0 make test` leaves this module out (`--skip flux::`).
mod flux {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::Api;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs the local control plane with Flux (make test)"]
    async fn flux_installs_the_controller_from_the_oci_registry_with_the_pushed_image() {
        common::require_flux();
        let client = common::client().await;
        let tools = tools();
        let work = tempfile::tempdir().unwrap();
        let layout = work.path().join("layout");
        let digest = image_sh(&layout, &[], "022", None);
        let registry = Registry::start(&tools).await;
        let pushed = registry.publish(&tools, &layout);
        let image = format!("{}/veer:{VERSION}", registry.host);
        assert_eq!(pushed, format!("{image}@{digest}"));
        let chart_yaml = fs::read_to_string(repo().join("charts/veer/Chart.yaml")).unwrap();
        let chart_version =
            serde_saphyr::from_str::<Value>(&chart_yaml).unwrap()["version"].as_str().unwrap().to_owned();

        common::with_namespace(&client, "oci-flux", async |ns| {
            let ns = ns.name.as_str();
            let release = common::unique_name("veer-oci");
            // No image in the values: the published chart names the pushed image.
            let installed = common::flux::install(
                &client,
                ns,
                json!({"type": "oci", "url": format!("oci://{}/charts", registry.host),
                       "insecure": true, "interval": "10m"}),
                &release,
                &chart_version,
                json!({}),
                Duration::from_secs(180),
            )
            .await;
            println!("Flux: HelmRelease from the OCI registry Ready after {installed:?}");
            let deployment = Api::<Deployment>::namespaced(client.clone(), ns).get(&release).await.unwrap();
            let containers = deployment.spec.unwrap().template.spec.unwrap().containers;
            assert_eq!(containers[0].image.as_deref(), Some(image.as_str()));
            // That reference is the pushed image.
            let (_, served) = registry.get(&format!("veer/manifests/{VERSION}"), MANIFEST, None).await;
            assert_eq!(served.as_deref(), Some(digest.as_str()));

            // Uninstall through Flux, so that the release's cluster-scoped objects go too.
            common::flux::uninstall(&client, ns).await;
        })
        .await;
    }
}
