//! `score-job`, `fanout` and `aggregate` of a results folder, without a scheduler: a job is
//! scored once (a second run, a racing run, reuse the sealed result), a killed run leaves no
//! result and blocks nothing, a bad manifest is one line naming the file and line, and the
//! Kubernetes Job validates against the Job schema offline. `slurm.rs` runs the same jobs
//! through a real one-node Slurm cluster.

use std::path::{Path, PathBuf};

use super::{attempts_recorded, text, Env};

/// A manifest of four tree-traversal submissions (a fast, exact CPU task with a built-in
/// calibration) by two agents (the time horizon needs two runs of each): the starting
/// solution (score 0), the reference (1), an invalid program, the reference again as a `.tar`
/// archive.
pub struct Jobs {
    pub manifest: PathBuf,
    pub results: PathBuf,
}

impl Jobs {
    pub fn new(env: &Env) -> Jobs {
        let root = env.work.path().join("fanout");
        for (name, what) in [("start", "start"), ("reference", "reference")] {
            let dir = root.join("subs").join(name);
            let out = env.rdbench(&[
                "install-solution",
                "tree-traversal",
                what,
                "--dir",
                dir.to_str().unwrap(),
            ]);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        }
        // The fourth job's submission is the reference as a `.tar` archive.
        let tar = std::process::Command::new("tar")
            .arg("-cf")
            .arg(root.join("subs/reference.tar"))
            .arg("-C")
            .arg(root.join("subs/reference"))
            .arg(".")
            .output()
            .unwrap();
        assert!(tar.status.success(), "{}", text(&tar));
        let bad = root.join("subs/invalid");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join("program.json"), "{\"not\": \"a program\"}").unwrap();
        let manifest = root.join("manifest.jsonl");
        std::fs::write(
            &manifest,
            "{\"rdbench_manifest\": 1}\n\
             {\"task\": \"tree-traversal\", \"submission\": \"subs/start\", \"agent\": \"starter\"}\n\
             {\"task\": \"tree-traversal\", \"submission\": \"subs/reference\", \"agent\": \"expert\", \"seed\": 7}\n\
             {\"task\": \"tree-traversal\", \"submission\": \"subs/invalid\", \"agent\": \"starter\", \"label\": \"not a program\"}\n\
             {\"task\": \"tree-traversal\", \"submission\": \"subs/reference.tar\", \"agent\": \"expert\"}\n",
        )
        .unwrap();
        Jobs {
            manifest,
            results: root.join("results"),
        }
    }

    pub fn score_job(&self, env: &Env, index: usize) -> std::process::Output {
        env.rdbench(&[
            "score-job",
            "--manifest",
            self.manifest.to_str().unwrap(),
            "--index",
            &index.to_string(),
            "--results",
            self.results.to_str().unwrap(),
        ])
    }

    /// `rdbench [--json] aggregate RESULTS` (short bootstraps, no files).
    pub fn aggregate(&self, env: &Env, json: bool) -> std::process::Output {
        let mut args = vec!["aggregate", self.results.to_str().unwrap(), "--no-files"];
        args.extend(["--bootstrap", "20", "--budget-bootstrap", "20"]);
        if json {
            args.insert(0, "--json");
        }
        env.rdbench(&args)
    }

    /// `rdbench fanout TARGET MANIFEST --results RESULTS ARGS...`.
    pub fn fanout(&self, env: &Env, target: &str, args: &[&str]) -> std::process::Output {
        let mut all = vec!["fanout", target, self.manifest.to_str().unwrap()];
        all.extend(["--results", self.results.to_str().unwrap()]);
        all.extend(args);
        env.rdbench(&all)
    }

    pub fn result(&self, index: usize) -> serde_json::Value {
        let path = self.results.join(format!("{index}.json"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_slice(&bytes).unwrap()
    }

    /// The four results: start about 0, reference about 1, the invalid one no score, each
    /// from one scoring entry; and `aggregate` of the folder reports both agents, with the
    /// best score of each.
    pub fn check_results_and_aggregate(&self, env: &Env) {
        let score = |i: usize| self.result(i)["score"].as_f64();
        assert!(score(0).unwrap().abs() < 0.05, "start: {}", self.result(0));
        assert!(
            (score(1).unwrap() - 1.0).abs() < 0.05,
            "reference: {}",
            self.result(1)
        );
        assert_eq!(score(2), None, "invalid: {}", self.result(2));
        assert!(
            (score(3).unwrap() - 1.0).abs() < 0.05,
            "reference: {}",
            self.result(3)
        );
        for (i, code) in [(0, 0), (1, 0), (2, 1), (3, 0)] {
            let r = self.result(i);
            assert_eq!(r["exit_code"], code, "{r}");
            assert_eq!(r["entries"], 1, "scored once: {r}");
            assert_eq!(r["manifest_index"], i, "{r}");
        }
        assert!(
            self.result(2)["report"]
                .as_str()
                .unwrap()
                .contains("INVALID"),
            "{}",
            self.result(2)
        );
        let out = self.aggregate(env, true);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let report = String::from_utf8_lossy(&out.stdout);
        for agent in ["starter", "expert"] {
            assert!(
                report.contains(&format!("\"{agent}\"")),
                "{agent}: {report}"
            );
        }
    }
}

/// Scored once: the second run and a racing pair reuse the sealed result (no new attempt), a
/// killed earlier run's scratch folder does not block the job, and an invalid submission is a
/// result with exit code 1.
#[test]
fn score_job_scores_each_index_once_and_aggregate_reads_the_folder() {
    let env = Env::new();
    let jobs = Jobs::new(&env);
    // What a run killed mid-score leaves: its scratch folder, no result.
    let killed = jobs.results.join(".work/0/attempt");
    std::fs::create_dir_all(&killed).unwrap();
    std::fs::write(killed.join("program.json"), "half").unwrap();
    for (i, code) in [(0, 0), (1, 0), (2, 1), (3, 0)] {
        let out = jobs.score_job(&env, i);
        assert_eq!(out.status.code(), Some(code), "job {i}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(": scored: "),
            "{}",
            text(&out)
        );
    }
    assert!(!jobs.results.join(".work/0").exists(), "scratch removed");
    jobs.check_results_and_aggregate(&env);
    let home = env.home.path().join("home");
    let attempts = attempts_recorded(&home).len();
    assert_eq!(attempts, 4, "one attempt per job");

    // Again, and two at once: the result is reported, nothing is scored.
    let before = std::fs::read(jobs.results.join("1.json")).unwrap();
    let racing: Vec<_> = (0..2)
        .map(|_| {
            let mut c = env.command(&[
                "score-job",
                "--manifest",
                jobs.manifest.to_str().unwrap(),
                "--index",
                "1",
                "--results",
                jobs.results.to_str().unwrap(),
            ]);
            c.stdout(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for child in racing {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("already scored, not scored again"), "{said}");
    }
    let out = jobs.score_job(&env, 2);
    assert_eq!(out.status.code(), Some(1), "the invalid one stays invalid");
    assert_eq!(std::fs::read(jobs.results.join("1.json")).unwrap(), before);
    assert_eq!(
        attempts_recorded(&home).len(),
        attempts,
        "nothing scored again"
    );

    // A broken file in the folder: one line naming it, the others still aggregated, exit 2.
    std::fs::write(jobs.results.join("4.json"), "{ torn").unwrap();
    let out = jobs.aggregate(&env, false);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("4.json"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("expert"));
    // A result of another job in the way is never overwritten.
    std::fs::write(
        &jobs.manifest,
        std::fs::read_to_string(&jobs.manifest)
            .unwrap()
            .replace("subs/start", "subs/reference"),
    )
    .unwrap();
    let out = jobs.score_job(&env, 0);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("0.json: the result of another job"),
        "{}",
        text(&out)
    );
}

#[test]
fn bad_manifests_and_indexes_exit_2_naming_file_and_line() {
    let env = Env::new();
    let jobs = Jobs::new(&env);
    let out = jobs.score_job(&env, 4);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no job 4: it has 4 jobs"),
        "{}",
        text(&out)
    );
    let bad = jobs.manifest.with_file_name("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"rdbench_manifest\": 1}\n{\"task\": \"tree-traversal\", \"submission\": \"a\", \"sed\": 1}\n",
    )
    .unwrap();
    for args in [
        vec![
            "score-job",
            "--manifest",
            bad.to_str().unwrap(),
            "--index",
            "0",
            "--results",
            "r",
        ],
        vec!["fanout", "slurm", bad.to_str().unwrap(), "--results", "r"],
    ] {
        let out = env.rdbench(&args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("bad.jsonl: line 2: unknown field `sed`"),
            "{err}"
        );
    }
    assert!(!Path::new("r").exists(), "nothing made for a bad manifest");
}

/// The Kubernetes Job: an Indexed Job with the settings asked for, that deserializes back into
/// k8s-openapi's Job and validates against Kubernetes 1.33's Job schema (kubernetes-validate,
/// offline; skipped with one line where it is not installed, except in CI).
#[test]
fn fanout_k8s_writes_an_indexed_job_that_validates() {
    let env = Env::new();
    let jobs = Jobs::new(&env);
    let out_file = env.work.path().join("job.json");
    let jobs = Jobs {
        results: "/data/results".into(),
        ..jobs
    };
    let out = jobs.fanout(
        &env,
        "k8s",
        &[
            "--image",
            "registry.example/rdbench:1",
            "--pvc",
            "rdbench-data",
            "--max-running",
            "2",
            "--out",
            out_file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json = std::fs::read_to_string(&out_file).unwrap();
    let job: k8s_openapi::api::batch::v1::Job = serde_json::from_str(&json).expect("a Job");
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!((spec.completions, spec.parallelism), (Some(4), Some(2)));
    assert_eq!(spec.pod_replacement_policy.as_deref(), Some("Failed"));
    assert!(spec.backoff_limit_per_index.is_some());
    let pod = spec.template.spec.as_ref().unwrap();
    let command = pod.containers[0].command.as_ref().unwrap().join(" ");
    assert!(
        command.contains("--index \"$JOB_COMPLETION_INDEX\""),
        "{command}"
    );
    assert!(
        command.contains("--manifest /data/manifest.jsonl"),
        "{command}"
    );
    assert!(
        !json.contains("nvidia.com/gpu"),
        "a CPU-only manifest asks for no GPU"
    );
    // A GPU task's manifest asks for one per pod.
    let gpu = jobs.manifest.with_file_name("gpu.jsonl");
    std::fs::write(
        &gpu,
        "{\"rdbench_manifest\": 1}\n{\"task\": \"prefix-sum\", \"submission\": \"a\"}\n",
    )
    .unwrap();
    let out = env.rdbench(&[
        "fanout",
        "k8s",
        gpu.to_str().unwrap(),
        "--results",
        "/data/r",
        "--image",
        "i",
        "--pvc",
        "p",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let gpu_json = String::from_utf8_lossy(&out.stdout);
    assert!(gpu_json.contains("\"nvidia.com/gpu\": \"1\""), "{gpu_json}");

    let validate = std::env::var_os("RDBENCH_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::repo().join(".venv/bin/kubernetes-validate"));
    if !validate.exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI installs kubernetes-validate (scripts/test.sh)"
        );
        eprintln!("skipped: schema validation: no {}", validate.display());
        return;
    }
    let gpu_file = env.work.path().join("gpu-job.json");
    std::fs::write(&gpu_file, gpu_json.as_bytes()).unwrap();
    let validate = |file: &Path| {
        std::process::Command::new(&validate)
            .args(["--strict", "-k", "1.33.0"])
            .arg(file)
            .output()
            .unwrap()
    };
    for file in [&out_file, &gpu_file] {
        let out = validate(file);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("INFO"),
            "{}",
            text(&out)
        );
    }
    // And the check can fail: a Job with a misspelt field does not validate.
    std::fs::write(&gpu_file, json.replace("completionMode", "completionMod")).unwrap();
    let out = validate(&gpu_file);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
}
