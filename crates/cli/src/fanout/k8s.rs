//! `fanout k8s`: a Kubernetes Indexed Job, one completion index per manifest job, each pod
//! running `rdbench score-job ... --index "$JOB_COMPLETION_INDEX"` (Kubernetes sets that
//! variable in every pod of an Indexed Job).
//!
//! Built from `k8s-openapi`'s typed structures (Kubernetes 1.33's API, which has
//! `backoffLimitPerIndex` and `podReplacementPolicy`) and printed as JSON, which `kubectl
//! apply -f` reads as it reads YAML (JSON is YAML), so no YAML serializer is needed. The
//! manifest and the results live on a volume every pod mounts (a PersistentVolumeClaim).
//!
//! Retries: each index is retried on its own (`backoffLimitPerIndex`), a replacement pod
//! starts only once the failed one is gone (`podReplacementPolicy: Failed`: never two pods
//! scoring one index; `score-job`'s lock would serialize them anyway), and exit code 2 (usage:
//! a retry cannot help) fails its index at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rdbench_core::{Error, Result};

use super::manifest::Manifest;
use super::{invalid_is_done, score_job_command, Common};

/// The volume's name inside the pod spec.
const VOLUME: &str = "rdbench-data";

/// `rdbench fanout k8s`.
#[derive(clap::Args, Debug)]
pub struct K8sArgs {
    #[command(flatten)]
    pub common: Common,
    /// The container image holding rdbench (and the tasks' tools).
    #[arg(long)]
    pub image: String,
    /// The PersistentVolumeClaim holding the manifest, the submissions and the results.
    #[arg(long)]
    pub pvc: String,
    /// Where the pods mount the claim.
    #[arg(long, default_value = "/data")]
    pub mount_path: PathBuf,
    /// The manifest's path in the pods [default: MOUNT_PATH/<the manifest's file name>].
    #[arg(long)]
    pub pod_manifest: Option<PathBuf>,
    /// The rdbench binary in the image.
    #[arg(long, default_value = "rdbench")]
    pub rdbench: PathBuf,
    /// The Job's name [default: rdbench-<the manifest's name>].
    #[arg(long)]
    pub name: Option<String>,
    /// The rdbench home in the pods (calibrations, attempts' logs) [default: the image's
    /// $RDBENCH_HOME]. The global --home is this machine's and never goes into the Job.
    #[arg(long)]
    pub pod_home: Option<PathBuf>,
    /// Retries of each index before it counts as failed.
    #[arg(long, default_value_t = 2)]
    pub backoff_limit_per_index: i32,
}

/// The Job for `manifest`, as JSON.
pub fn job_json(args: &K8sArgs, manifest: &Manifest) -> Result<String> {
    let job = job(args, manifest)?;
    let mut text =
        serde_json::to_string_pretty(&job).map_err(|e| Error::Internal(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// The Job for `manifest`.
pub fn job(args: &K8sArgs, manifest: &Manifest) -> Result<Job> {
    let common = &args.common;
    let pod_manifest = match &args.pod_manifest {
        Some(p) => p.clone(),
        None => {
            args.mount_path
                .join(manifest.path.file_name().ok_or_else(|| {
                    Error::Usage(format!("{}: no file name", manifest.path.display()))
                })?)
        }
    };
    for (what, path) in [
        ("--mount-path", &args.mount_path),
        ("--results", &common.results),
        ("--pod-manifest", &pod_manifest),
    ] {
        if !path.is_absolute() {
            return Err(Error::Usage(format!(
                "{what} {}: the path as the pods see it, absolute",
                path.display()
            )));
        }
    }
    let name = match &args.name {
        Some(n) => n.clone(),
        None => format!("rdbench-{}", dns_label_part(&manifest.path)),
    };
    check_dns_label(&name)?;
    let jobs = i32::try_from(manifest.jobs.len())
        .map_err(|_| Error::Usage("too many jobs for one Kubernetes Job".into()))?;
    let command = score_job_command(
        &args.rdbench,
        args.pod_home.as_deref(),
        &pod_manifest,
        &common.results,
        "JOB_COMPLETION_INDEX",
    )?;
    let container = Container {
        name: "score".into(),
        image: Some(args.image.clone()),
        command: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            invalid_is_done(&command),
        ]),
        env: Some(vec![EnvVar {
            name: "RDBENCH_LOG".into(),
            value: Some("warn".into()),
            ..EnvVar::default()
        }]),
        resources: Some(resources(common, manifest)),
        volume_mounts: Some(vec![VolumeMount {
            name: VOLUME.into(),
            mount_path: args.mount_path.display().to_string(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".into()),
        volumes: Some(vec![Volume {
            name: VOLUME.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: args.pvc.clone(),
                read_only: None,
            }),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    };
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "rdbench-score-job".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".into()),
            completions: Some(jobs),
            parallelism: Some(common.max_running.map_or(jobs, |k| jobs.min(k as i32))),
            backoff_limit_per_index: Some(args.backoff_limit_per_index),
            pod_replacement_policy: Some("Failed".into()),
            pod_failure_policy: Some(failure_policy()),
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// Requests and limits: `nvidia.com/gpu` only for a manifest with a GPU profile.
fn resources(common: &Common, manifest: &Manifest) -> ResourceRequirements {
    let mut amounts = BTreeMap::new();
    if let Some(gpus) = common.gpus(manifest) {
        amounts.insert("nvidia.com/gpu".to_string(), Quantity(gpus.to_string()));
    }
    if let Some(cpus) = common.cpus {
        amounts.insert("cpu".to_string(), Quantity(cpus.to_string()));
    }
    if let Some(mem) = common.mem {
        amounts.insert("memory".to_string(), Quantity(format!("{mem}Gi")));
    }
    ResourceRequirements {
        requests: (!amounts.is_empty()).then(|| amounts.clone()),
        limits: (!amounts.is_empty()).then_some(amounts),
        ..ResourceRequirements::default()
    }
}

/// Exit code 2 fails the index at once; a pod evicted or preempted is not the job's failure.
fn failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "FailIndex".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some("score".into()),
                    operator: "In".into(),
                    values: vec![2],
                }),
                on_pod_conditions: None,
            },
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_exit_codes: None,
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                }]),
            },
        ],
    }
}

/// The manifest's file stem as a DNS label's tail: lower case, `-` for anything else.
fn dns_label_part(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let part: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    part.trim_matches('-').to_string()
}

/// A Job's name: a DNS label (RFC 1123) short enough for its pods' hostnames.
fn check_dns_label(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--name {name:?}: a Job's name is 1 to 63 lower-case letters, digits and '-', \
             starting and ending with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_dns_labels_or_are_refused() {
        assert_eq!(dns_label_part(Path::new("/x/My_Runs.2.jsonl")), "my-runs-2");
        assert!(check_dns_label("rdbench-my-runs-2").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", &"a".repeat(64)] {
            assert!(check_dns_label(bad).is_err(), "{bad:?}");
        }
    }
}
