//! Spark applications on Kubernetes: driver + executor pods in `spark-<team>`, the driver's
//! PrometheusServlet output (`/metrics/prometheus/`, `/metrics/executors/prometheus`), event logs
//! in the listener's JSON-lines format, and log4j driver/executor logs with stack traces.
//!
//! Shapes follow the captures in `shared/fixtures/spark/` (Spark 4 PrometheusServlet, event log).

use serde_json::{Value, json};

use super::world::{Cluster, ContainerSpec, PendingLine, PodPhase, PodRole, PodSpec, Rng, SimConfig};

const MIB: u64 = 1024 * 1024;
/// Spark version the emulated applications report.
pub const SPARK_VERSION: &str = "3.5.3";
const SPARK_REVISION: &str = "32232e9ed33bb16b93ad58cfde8b82e0f07c0970";
/// Body every Spark UI path answers with while the SparkContext starts.
pub const PLACEHOLDER_BODY: &str = "Spark is starting up. Please wait a while until it's ready.";
const APP_NAMES: &[&str] =
    &["daily-orders-etl", "sessionize-clicks", "feature-backfill", "ledger-reconcile", "search-index-build", "churn-model-train"];

/// Per-executor task statistics (the `metrics_executor_*` series).
#[derive(Debug, Clone, Default)]
pub struct ExecStats {
    /// Tasks completed.
    pub tasks_completed: u64,
    /// Tasks failed.
    pub tasks_failed: u64,
    /// Sum of task durations, ms.
    pub duration_ms: u64,
    /// JVM GC time, ms.
    pub gc_ms: u64,
    /// Executor CPU time, ns.
    pub cpu_ns: u64,
    /// Input bytes read.
    pub input_bytes: u64,
    /// Input records read.
    pub records_read: u64,
    /// Shuffle bytes read.
    pub shuffle_read: u64,
    /// Shuffle bytes written.
    pub shuffle_write: u64,
}

/// An executor of an application.
#[derive(Debug, Clone)]
pub struct Executor {
    /// Executor id (`1`, `2`, …).
    pub id: String,
    /// Pod uid.
    pub pod_uid: String,
    /// Statistics.
    pub stats: ExecStats,
}

/// One Spark application and its progress.
#[derive(Debug, Clone)]
pub struct SparkApp {
    /// `spark-<32 hex>`, as Spark on Kubernetes names applications.
    pub id: String,
    /// spark.app.name.
    pub name: String,
    /// Owning team.
    pub team: String,
    /// `spark-<team>`.
    pub namespace: String,
    /// SparkListenerApplicationStart time, unix ms.
    pub start_ms: i64,
    /// Until then every UI path answers the HTML placeholder.
    pub ready_ms: i64,
    /// Planned end, unix ms.
    pub end_ms: i64,
    /// Set when SparkListenerApplicationEnd was written.
    pub finished_ms: Option<i64>,
    /// Whether the application will exit non-zero.
    pub fails: bool,
    /// Driver pod uid.
    pub driver_uid: String,
    /// Driver pod name.
    pub driver_pod: String,
    /// Executors.
    pub executors: Vec<Executor>,
    /// Cores per executor.
    pub exec_cores: u64,
    /// Statistics the driver aggregates.
    pub totals: ExecStats,
    executors_announced: bool,
    next_job: u64,
    next_stage: u64,
    next_task: u64,
    jobs_ok: u64,
    jobs_failed: u64,
    stages_ok: u64,
    stages_failed: u64,
    events_posted: u64,
    active_jobs: u64,
}

/// What the tick must do with an event log file.
#[derive(Debug, Clone)]
pub enum EventLogWrite {
    /// Append one JSON line to `<spark-events>/<app>.inprogress`.
    Append {
        /// Application id (file name).
        app: String,
        /// The JSON line.
        line: String,
    },
    /// Rename `<app>.inprogress` to `<app>`.
    Complete {
        /// Application id.
        app: String,
    },
}

fn log4j(ms: i64, level: &str, class: &str, msg: &str) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    format!("{} {level} {class}: {msg}", t.format("%y/%m/%d %H:%M:%S"))
}

fn push(cluster: &mut Cluster, uid: &str, ms: i64, lines: impl IntoIterator<Item = String>) {
    if let Some(pi) = cluster.pod_index(uid) {
        let c = &mut cluster.pods[pi].containers[0];
        let mut ns = ms * 1_000_000;
        for text in lines {
            ns += 17_000; // strictly increasing within the burst
            c.pending.push(PendingLine { ts_ns: ns, stderr: true, text });
        }
    }
}

/// Starts new applications while fewer than `spark_apps_per_cluster` run.
pub fn maybe_start(cluster: &mut Cluster, rng: &mut Rng, cfg: &SimConfig, teams: &[String], now_ms: i64, out: &mut Vec<EventLogWrite>) {
    let running = cluster.spark_apps.iter().filter(|a| a.finished_ms.is_none()).count();
    if running >= cfg.spark_apps_per_cluster || (running > 0 && !rng.chance(0.25)) {
        return;
    }
    let team = if teams.len() > 1 { rng.pick(&teams[1..]).clone() } else { teams[0].clone() };
    let name = rng.pick(APP_NAMES).to_string();
    let id = format!("spark-{}", rng.hex(32));
    let namespace = format!("spark-{team}");
    let pod_base = format!("{name}-{}", rng.hex(16));
    let exec_count = rng.int(2, 5);
    let exec_cores = rng.int(1, 4);
    let exec_mem = 1024 * rng.int(2, 8);
    let duration_ms = cfg.tick_ms as i64 * rng.int(30, 180) as i64;
    let common = |role: &str| {
        vec![
            ("spark-app-name".to_string(), name.clone()),
            ("spark-app-selector".to_string(), id.clone()),
            ("spark-role".to_string(), role.to_string()),
            ("spark-version".to_string(), SPARK_VERSION.to_string()),
        ]
    };
    let image = format!("registry.example.com/{team}/spark-jobs:{SPARK_VERSION}-{}", rng.int(1, 40));
    let driver_pod = format!("{pod_base}-driver");
    let driver_cpu = rng.range(0.2, 0.5);
    let di = cluster.add_pod(rng, now_ms, PodSpec {
        name: driver_pod.clone(),
        namespace: namespace.clone(),
        team: team.clone(),
        app: name.clone(),
        role: PodRole::SparkDriver,
        labels: common("driver"),
        annotations: vec![],
        owner: ("SparkApplication".into(), name.clone()),
        containers: vec![ContainerSpec {
            name: "spark-kubernetes-driver".into(),
            image: image.clone(),
            cpu_request_m: 1000,
            cpu_limit_m: Some(2000),
            mem_request: 2816 * MIB,
            mem_limit: Some(2816 * MIB),
            ports: vec![("driver-rpc-port".into(), 7078), ("blockmanager".into(), 7079), ("spark-ui".into(), 4040)],
            cpu_base: driver_cpu,
        }],
        node: None,
        spark_app: Some(id.clone()),
    });
    let driver_uid = cluster.pods[di].uid.clone();
    let mut executors = Vec::new();
    for e in 1..=exec_count {
        let mut labels = common("executor");
        labels.push(("spark-exec-id".into(), e.to_string()));
        let exec_cpu = exec_cores as f64 * rng.range(0.5, 0.95);
        let pi = cluster.add_pod(rng, now_ms + 4000, PodSpec {
            name: format!("{pod_base}-exec-{e}"),
            namespace: namespace.clone(),
            team: team.clone(),
            app: name.clone(),
            role: PodRole::SparkExecutor,
            labels,
            annotations: vec![],
            owner: ("Pod".into(), driver_pod.clone()),
            containers: vec![ContainerSpec {
                name: "spark-kubernetes-executor".into(),
                image: image.clone(),
                cpu_request_m: exec_cores * 1000,
                cpu_limit_m: Some(exec_cores * 1000),
                mem_request: (exec_mem + exec_mem / 10) * MIB,
                mem_limit: Some((exec_mem + exec_mem / 10) * MIB),
                ports: vec![("blockmanager".into(), 7079)],
                cpu_base: exec_cpu,
            }],
            node: None,
            spark_app: Some(id.clone()),
        });
        executors.push(Executor { id: e.to_string(), pod_uid: cluster.pods[pi].uid.clone(), stats: ExecStats::default() });
    }
    let app = SparkApp {
        id: id.clone(),
        name: name.clone(),
        team,
        namespace,
        start_ms: now_ms,
        ready_ms: now_ms + 12_000,
        end_ms: now_ms + duration_ms.max(20_000),
        finished_ms: None,
        fails: rng.chance(0.1),
        driver_uid: driver_uid.clone(),
        driver_pod,
        executors,
        exec_cores,
        totals: ExecStats::default(),
        executors_announced: false,
        next_job: 0,
        next_stage: 0,
        next_task: 0,
        jobs_ok: 0,
        jobs_failed: 0,
        stages_ok: 0,
        stages_failed: 0,
        events_posted: 0,
        active_jobs: 0,
    };
    let mut ev = |v: Value| out.push(EventLogWrite::Append { app: id.clone(), line: v.to_string() });
    ev(json!({"Event":"SparkListenerLogStart","Spark Version":SPARK_VERSION}));
    ev(json!({"Event":"SparkListenerResourceProfileAdded","Resource Profile Id":0,
        "Executor Resource Requests":{"cores":{"Resource Name":"cores","Amount":exec_cores,"Discovery Script":"","Vendor":""},
            "memory":{"Resource Name":"memory","Amount":exec_mem,"Discovery Script":"","Vendor":""},
            "offHeap":{"Resource Name":"offHeap","Amount":0,"Discovery Script":"","Vendor":""}},
        "Task Resource Requests":{"cpus":{"Resource Name":"cpus","Amount":1.0}}}));
    ev(json!({"Event":"SparkListenerEnvironmentUpdate","JVM Information":{"Java Version":"17.0.13 (Eclipse Adoptium)"},
        "Spark Properties":{"spark.app.name":name,"spark.app.id":id,"spark.master":"k8s://https://kubernetes.default.svc",
            "spark.kubernetes.namespace":app.namespace,"spark.executor.instances":exec_count.to_string(),
            "spark.executor.cores":exec_cores.to_string(),"spark.executor.memory":format!("{exec_mem}m"),
            "spark.eventLog.enabled":"true"},
        "Hadoop Properties":{},"System Properties":{},"Metrics Properties":{},"Classpath Entries":{}}));
    ev(json!({"Event":"SparkListenerApplicationStart","App Name":name,"App ID":id,"Timestamp":now_ms,"User":"spark"}));
    push(cluster, &driver_uid, now_ms, [
        "Using Spark's default log4j profile: org/apache/spark/log4j2-defaults.properties".to_string(),
        log4j(now_ms, "INFO", "SparkContext", &format!("Running Spark version {SPARK_VERSION}")),
        log4j(now_ms, "INFO", "SparkContext", &format!("Submitted application: {name}")),
        log4j(now_ms, "INFO", "Utils", "Successfully started service 'SparkUI' on port 4040."),
        log4j(now_ms, "INFO", "ExecutorPodsAllocator", &format!("Going to request {exec_count} executors from Kubernetes for ResourceProfile Id: 0, target: {exec_count}, known: 0, sharedSlotFromPendingPods: 2147483647.")),
    ]);
    cluster.spark_apps.push(app);
}

/// Advances every running application over (t0, t1]: executor registration, jobs/stages/tasks,
/// logs, and completion. Finished pods are removed 30 s after they end.
pub fn advance(cluster: &mut Cluster, rng: &mut Rng, t0: i64, t1: i64, out: &mut Vec<EventLogWrite>) {
    for ai in 0..cluster.spark_apps.len() {
        if cluster.spark_apps[ai].finished_ms.is_some() {
            continue;
        }
        let mut app = cluster.spark_apps[ai].clone();
        let mut events: Vec<Value> = Vec::new();
        if t1 >= app.ready_ms && !app.executors_announced {
            app.executors_announced = true;
            for (k, e) in app.executors.iter().enumerate() {
                let ts = app.ready_ms - 3000 + k as i64 * 150;
                let host = cluster.pod_index(&e.pod_uid).map(|i| cluster.pods[i].ip.clone()).unwrap_or_default();
                events.push(json!({"Event":"SparkListenerExecutorAdded","Timestamp":ts,"Executor ID":e.id,
                    "Executor Info":{"Host":host,"Total Cores":app.exec_cores,"Log Urls":{},"Attributes":{},"Resources":{},"Resource Profile Id":0,
                    "Registration Time":ts,"Request Time":app.start_ms + 2000}}));
                events.push(json!({"Event":"SparkListenerBlockManagerAdded","Block Manager ID":{"Executor ID":e.id,"Host":host,"Port":7079},
                    "Maximum Memory":2_101_975_449u64,"Timestamp":ts + 40,"Maximum Onheap Memory":2_101_975_449u64,"Maximum Offheap Memory":0}));
                push(cluster, &app.driver_uid, ts, [log4j(ts, "INFO", "KubernetesClusterSchedulerBackend$KubernetesDriverEndpoint",
                    &format!("Registered executor NettyRpcEndpointRef(spark-client://Executor) ({host}:41234) with ID {}, ResourceProfileId 0", e.id))]);
                push(cluster, &e.pod_uid, ts, [
                    log4j(ts, "INFO", "CoarseGrainedExecutorBackend", "Successfully registered with driver"),
                    log4j(ts, "INFO", "Executor", &format!("Starting executor ID {} on host {host}", e.id)),
                ]);
            }
        }
        if app.executors_announced && t1 < app.end_ms && rng.chance(0.6) {
            let from = t0.max(app.ready_ms);
            run_job(cluster, rng, &mut app, from, t1, &mut events);
        } else if !app.executors_announced {
            push(cluster, &app.driver_uid.clone(), t1 - 1, [log4j(t1 - 1, "INFO", "ExecutorPodsAllocator", "Waiting for executors to register")]);
        }
        if t1 >= app.end_ms {
            for e in &app.executors {
                events.push(json!({"Event":"SparkListenerExecutorRemoved","Timestamp":t1 - 200,"Executor ID":e.id,
                    "Removed Reason":"Executor killed by driver."}));
            }
            let code = if app.fails { 1 } else { 0 };
            events.push(json!({"Event":"SparkListenerApplicationEnd","Timestamp":t1 - 100,"ExitCode":code}));
            push(cluster, &app.driver_uid.clone(), t1 - 100, [
                log4j(t1 - 100, "INFO", "SparkContext", "Invoking stop() from shutdown hook"),
                log4j(t1 - 100, "INFO", "SparkUI", "Stopped Spark web UI at http://spark-ui-svc:4040"),
                log4j(t1 - 100, "INFO", "SparkContext", "Successfully stopped SparkContext"),
            ]);
            app.finished_ms = Some(t1);
            for pod in &mut cluster.pods {
                if pod.spark_app.as_deref() == Some(app.id.as_str()) && pod.finished_ms.is_none() {
                    pod.finished_ms = Some(t1);
                    pod.phase = if app.fails && pod.role == PodRole::SparkDriver { PodPhase::Failed } else { PodPhase::Succeeded };
                }
            }
        }
        app.events_posted += events.len() as u64;
        for e in events {
            out.push(EventLogWrite::Append { app: app.id.clone(), line: e.to_string() });
        }
        if app.finished_ms.is_some() {
            out.push(EventLogWrite::Complete { app: app.id.clone() });
        }
        cluster.spark_apps[ai] = app;
    }
    cluster.pods.retain(|p| p.finished_ms.is_none_or(|f| t1 - f < 30_000));
    cluster.spark_apps.retain(|a| a.finished_ms.is_none_or(|f| t1 - f < 30_000));
}

fn stage_info(stage: u64, name: &str, tasks: u64, submitted: Option<i64>, completed: Option<i64>, failure: Option<&str>) -> Value {
    let mut v = json!({"Stage ID":stage,"Stage Attempt ID":0,"Stage Name":name,"Number of Tasks":tasks,"RDD Info":[],"Parent IDs":[],
        "Details":"org.apache.spark.sql.Dataset.collect(Dataset.scala:3575)","Accumulables":[],"Resource Profile Id":0,
        "Shuffle Push Enabled":false,"Shuffle Push Mergers Count":0});
    if let Some(s) = submitted {
        v["Submission Time"] = json!(s);
    }
    if let Some(c) = completed {
        v["Completion Time"] = json!(c);
    }
    if let Some(f) = failure {
        v["Failure Reason"] = json!(f);
    }
    v
}

const JAVA_TRACE: &[&str] = &[
    "\tat org.apache.spark.sql.errors.QueryExecutionErrors$.raiseError(QueryExecutionErrors.scala:2707)",
    "\tat org.apache.spark.sql.catalyst.expressions.GeneratedClass$GeneratedIteratorForCodegenStage1.processNext(Unknown Source)",
    "\tat org.apache.spark.sql.execution.BufferedRowIterator.hasNext(BufferedRowIterator.java:43)",
    "\tat org.apache.spark.shuffle.sort.BypassMergeSortShuffleWriter.write(BypassMergeSortShuffleWriter.java:140)",
    "\tat org.apache.spark.scheduler.ShuffleMapTask.runTask(ShuffleMapTask.scala:104)",
    "\tat org.apache.spark.scheduler.Task.run(Task.scala:141)",
    "\tat org.apache.spark.executor.Executor$TaskRunner.run(Executor.scala:620)",
    "\tat java.base/java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1136)",
    "\tat java.base/java.lang.Thread.run(Thread.java:840)",
];

fn failure_lines(python: bool, stage: u64, task: u64) -> (String, Vec<String>) {
    if python {
        let msg = "[PYTHON_EXCEPTION] An exception was thrown from the Python worker: Traceback (most recent call last):".to_string();
        let mut lines = vec![
            format!("org.apache.spark.api.python.PythonException: {msg}"),
            "  File \"/opt/jobs/job.py\", line 87, in parse_row".to_string(),
            "    raise ValueError(f\"bad record {row['id']}\")".to_string(),
            format!("ValueError: bad record {}", 1000 + task * 7 + stage),
        ];
        lines.push("\tat org.apache.spark.api.python.BasePythonRunner$ReaderIterator.handlePythonException(PythonRunner.scala:572)".into());
        lines.extend(JAVA_TRACE[2..].iter().map(|s| s.to_string()));
        (msg, lines)
    } else {
        let msg = "[ARITHMETIC_OVERFLOW] long overflow. Use 'try_add' to tolerate overflow and return NULL instead. SQLSTATE: 22003".to_string();
        let mut lines = vec![format!("org.apache.spark.SparkArithmeticException: {msg}")];
        lines.extend(JAVA_TRACE.iter().map(|s| s.to_string()));
        (msg, lines)
    }
}

fn run_job(cluster: &mut Cluster, rng: &mut Rng, app: &mut SparkApp, t0: i64, t1: i64, events: &mut Vec<Value>) {
    let job = app.next_job;
    app.next_job += 1;
    let span = (t1 - t0).max(10);
    let line = rng.int(20, 140);
    let call = format!("collect at /opt/jobs/{}.py:{line}", app.name.replace('-', "_"));
    let stages: Vec<u64> = (0..rng.int(1, 2)).map(|k| app.next_stage + k).collect();
    app.next_stage += stages.len() as u64;
    let slots = app.executors.len() as u64 * app.exec_cores;
    let tasks_per_stage = slots.max(2);
    let fail_stage = if rng.chance(0.06) { Some(*stages.last().unwrap_or(&0)) } else { None };
    let python = rng.chance(0.4);
    let job_start = t0 + 1;
    app.active_jobs = 1;
    events.push(json!({"Event":"SparkListenerJobStart","Job ID":job,"Submission Time":job_start,
        "Stage Infos":stages.iter().map(|s| stage_info(*s, &call, tasks_per_stage, None, None, None)).collect::<Vec<_>>(),
        "Stage IDs":stages,"Properties":{"spark.app.id":app.id,"callSite.short":call,"spark.job.description":format!("{} step {job}", app.name)}}));
    let driver_uid = app.driver_uid.clone();
    push(cluster, &driver_uid, job_start, [log4j(job_start, "INFO", "DAGScheduler", &format!("Got job {job} ({call}) with {} output partitions", tasks_per_stage))]);
    let per_stage = span / (stages.len() as i64 + 1);
    let mut job_failed: Option<String> = None;
    for (k, &stage) in stages.iter().enumerate() {
        let s0 = job_start + k as i64 * per_stage + 2;
        let s1 = s0 + per_stage - 4;
        events.push(json!({"Event":"SparkListenerStageSubmitted","Stage Info":stage_info(stage, &call, tasks_per_stage, Some(s0), None, None),
            "Properties":{"spark.app.id":app.id,"callSite.short":call}}));
        push(cluster, &driver_uid, s0, [log4j(s0, "INFO", "DAGScheduler", &format!("Submitting {tasks_per_stage} missing tasks from ResultStage {stage} ({call})"))]);
        let mut failure: Option<String> = None;
        for t in 0..tasks_per_stage {
            let tid = app.next_task;
            app.next_task += 1;
            let ei = (t % app.executors.len() as u64) as usize;
            let launch = s0 + (t as i64 * 3) % (per_stage / 4).max(1);
            let finish = (launch + rng.int(per_stage as u64 / 3, (per_stage as u64 * 3 / 4).max(per_stage as u64 / 3 + 1)) as i64).min(s1);
            let run_ms = (finish - launch).max(1) as u64;
            let cpu_ns = (run_ms as f64 * 1e6 * rng.range(0.5, 0.95)) as u64;
            let gc_ms = run_ms / rng.int(20, 60);
            let records = rng.int(10_000, 2_000_000);
            let input = records * rng.int(40, 120);
            let sh_w = input / rng.int(4, 20);
            let fails_here = failure.is_none() && fail_stage == Some(stage) && t == tasks_per_stage - 1;
            let exec = app.executors[ei].id.clone();
            let exec_uid = app.executors[ei].pod_uid.clone();
            let host = cluster.pod_index(&exec_uid).map(|i| cluster.pods[i].ip.clone()).unwrap_or_default();
            let reason = if fails_here {
                let (msg, trace) = failure_lines(python, stage, tid);
                let mut lines = vec![log4j(finish, "ERROR", "Executor", &format!("Exception in task {t}.0 in stage {stage}.0 (TID {tid})"))];
                lines.extend(trace.iter().cloned());
                push(cluster, &exec_uid, finish, lines);
                let mut lines = vec![log4j(finish + 5, "WARN", "TaskSetManager", &format!("Lost task {t}.0 in stage {stage}.0 (TID {tid}) ({host} executor {exec}): {}", trace[0]))];
                lines.extend(trace[1..].iter().cloned());
                push(cluster, &driver_uid, finish + 5, lines);
                failure = Some(msg.clone());
                json!({"Reason":"ExceptionFailure","Class Name":if python {"org.apache.spark.api.python.PythonException"} else {"org.apache.spark.SparkArithmeticException"},
                    "Description":msg,"Stack Trace":[{"Declaring Class":"org.apache.spark.scheduler.Task","Method Name":"run","File Name":"Task.scala","Line Number":141}],
                    "Full Stack Trace":trace.join("\n"),"Accumulator Updates":[]})
            } else {
                push(cluster, &exec_uid, finish, [log4j(finish, "INFO", "Executor", &format!("Finished task {t}.0 in stage {stage}.0 (TID {tid}). 2391 bytes result sent to driver"))]);
                json!({"Reason":"Success"})
            };
            let st = &mut app.executors[ei].stats;
            for s in [st, &mut app.totals] {
                if fails_here {
                    s.tasks_failed += 1;
                } else {
                    s.tasks_completed += 1;
                }
                s.duration_ms += run_ms;
                s.gc_ms += gc_ms;
                s.cpu_ns += cpu_ns;
                s.input_bytes += input;
                s.records_read += records;
                s.shuffle_write += sh_w;
                s.shuffle_read += sh_w / 2;
            }
            events.push(json!({"Event":"SparkListenerTaskEnd","Stage ID":stage,"Stage Attempt ID":0,"Task Type":"ResultTask","Task End Reason":reason,
                "Task Info":{"Task ID":tid,"Index":t,"Attempt":0,"Partition ID":t,"Launch Time":launch,"Executor ID":exec,"Host":host,
                    "Locality":"PROCESS_LOCAL","Speculative":false,"Getting Result Time":0,"Finish Time":finish,"Failed":fails_here,"Killed":false,"Accumulables":[]},
                "Task Executor Metrics":{"JVMHeapMemory":rng.int(200, 1800) * MIB,"JVMOffHeapMemory":rng.int(60, 200) * MIB,"OnHeapExecutionMemory":rng.int(0, 512) * MIB,
                    "OffHeapExecutionMemory":0,"OnHeapStorageMemory":rng.int(0, 64) * MIB,"OffHeapStorageMemory":0,"OnHeapUnifiedMemory":rng.int(0, 512) * MIB,
                    "OffHeapUnifiedMemory":0,"DirectPoolMemory":rng.int(1, 16) * MIB,"MappedPoolMemory":0,"ProcessTreeJVMVMemory":0,"ProcessTreeJVMRSSMemory":0,
                    "ProcessTreePythonVMemory":0,"ProcessTreePythonRSSMemory":0,"ProcessTreeOtherVMemory":0,"ProcessTreeOtherRSSMemory":0,
                    "MinorGCCount":rng.int(0, 4),"MinorGCTime":gc_ms,"MajorGCCount":0,"MajorGCTime":0,"TotalGCTime":gc_ms,"ConcurrentGCCount":0,"ConcurrentGCTime":0},
                "Task Metrics":{"Executor Deserialize Time":rng.int(2, 40),"Executor Deserialize CPU Time":rng.int(1_000_000, 30_000_000),
                    "Executor Run Time":run_ms,"Executor CPU Time":cpu_ns,"Peak Execution Memory":rng.int(0, 64) * MIB,
                    "Peak On Heap Execution Memory":rng.int(0, 256) * MIB,"Peak Off Heap Execution Memory":0,"Result Size":2391,"JVM GC Time":gc_ms,
                    "Result Serialization Time":rng.int(0, 3),"Memory Bytes Spilled":0,"Disk Bytes Spilled":0,
                    "Shuffle Read Metrics":{"Remote Blocks Fetched":0,"Local Blocks Fetched":0,"Fetch Wait Time":0,"Remote Bytes Read":sh_w / 4,
                        "Remote Bytes Read To Disk":0,"Local Bytes Read":sh_w / 4,"Total Records Read":records / 10,"Remote Requests Duration":0},
                    "Shuffle Write Metrics":{"Shuffle Bytes Written":sh_w,"Shuffle Write Time":rng.int(1_000_000, 90_000_000),"Shuffle Records Written":records / 10},
                    "Input Metrics":{"Bytes Read":input,"Records Read":records},"Output Metrics":{"Bytes Written":0,"Records Written":0},"Updated Blocks":[]}}));
        }
        match &failure {
            Some(msg) => {
                app.stages_failed += 1;
                events.push(json!({"Event":"SparkListenerStageCompleted","Stage Info":stage_info(stage, &call, tasks_per_stage, Some(s0), Some(s1), Some(msg))}));
                push(cluster, &driver_uid, s1, [log4j(s1, "INFO", "DAGScheduler", &format!("ResultStage {stage} ({call}) failed in {} ms due to {msg}", s1 - s0))]);
                job_failed = Some(msg.clone());
                break;
            }
            None => {
                app.stages_ok += 1;
                events.push(json!({"Event":"SparkListenerStageCompleted","Stage Info":stage_info(stage, &call, tasks_per_stage, Some(s0), Some(s1), None)}));
                push(cluster, &driver_uid, s1, [log4j(s1, "INFO", "DAGScheduler", &format!("ResultStage {stage} ({call}) finished in {} ms", s1 - s0))]);
            }
        }
    }
    let end = t1 - 2;
    app.active_jobs = 0;
    match job_failed {
        Some(msg) => {
            app.jobs_failed += 1;
            events.push(json!({"Event":"SparkListenerJobEnd","Job ID":job,"Completion Time":end,
                "Job Result":{"Result":"JobFailed","Exception":{"Message":msg,"Stack Trace":[]}}}));
            push(cluster, &driver_uid, end, [log4j(end, "INFO", "DAGScheduler", &format!("Job {job} failed: {call}, took {:.6} s", (end - job_start) as f64 / 1000.0))]);
        }
        None => {
            app.jobs_ok += 1;
            events.push(json!({"Event":"SparkListenerJobEnd","Job ID":job,"Completion Time":end,"Job Result":{"Result":"JobSucceeded"}}));
            push(cluster, &driver_uid, end, [log4j(end, "INFO", "DAGScheduler", &format!("Job {job} finished: {call}, took {:.6} s", (end - job_start) as f64 / 1000.0))]);
        }
    }
}

/// The driver's `/metrics/prometheus/` body (PrometheusServlet: no HELP/TYPE, app id in names).
pub fn driver_metrics(app: &SparkApp, now_ms: i64) -> String {
    let ns = app.id.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let p = format!("metrics_{ns}_driver_");
    let mut s = String::new();
    let t = &app.totals;
    let uptime_s = ((now_ms - app.start_ms) / 1000).max(0) as u64;
    let heap = 300 * MIB + (t.tasks_completed * 7919 % 700) * MIB;
    let gauges: Vec<(&str, u64)> = vec![
        ("BlockManager_disk_diskSpaceUsed_MB", 0),
        ("BlockManager_memory_maxMem_MB", 1048 + 2004 * app.executors.len() as u64),
        ("BlockManager_memory_memUsed_MB", t.tasks_completed % 97),
        ("BlockManager_memory_remainingMem_MB", 1048 + 2004 * app.executors.len() as u64 - t.tasks_completed % 97),
        ("DAGScheduler_job_activeJobs", app.active_jobs),
        ("DAGScheduler_job_allJobs", app.next_job),
        ("DAGScheduler_stage_failedStages", 0),
        ("DAGScheduler_stage_runningStages", 0),
        ("DAGScheduler_stage_waitingStages", 0),
        ("ExecutorMetrics_JVMHeapMemory", heap),
        ("ExecutorMetrics_JVMOffHeapMemory", 150 * MIB),
        ("ExecutorMetrics_MinorGCCount", t.gc_ms / 30),
        ("ExecutorMetrics_MinorGCTime", t.gc_ms / 4),
        ("ExecutorMetrics_ProcessTreeJVMRSSMemory", heap + 400 * MIB),
        ("ExecutorMetrics_TotalGCTime", t.gc_ms / 4),
        ("JVMCPU_jvmCpuTime", uptime_s * 350_000_000),
        ("LiveListenerBus_queue_appStatus_size", 0),
        ("LiveListenerBus_queue_eventLog_size", 0),
        ("executor_threadpool_activeTasks", 0),
        ("executor_threadpool_completeTasks", 0),
    ];
    for (name, v) in gauges {
        s.push_str(&format!("{p}{name}_Number{{type=\"gauges\"}} {v}\n{p}{name}_Value{{type=\"gauges\"}} {v}\n"));
    }
    let counters: Vec<(&str, u64)> = vec![
        ("LiveListenerBus_numEventsPosted", app.events_posted + 8),
        ("LiveListenerBus_queue_appStatus_numDroppedEvents", 0),
        ("LiveListenerBus_queue_eventLog_numDroppedEvents", 0),
        ("appStatus_jobs_failedJobs", app.jobs_failed),
        ("appStatus_jobs_succeededJobs", app.jobs_ok),
        ("appStatus_stages_completedStages", app.stages_ok),
        ("appStatus_stages_failedStages", app.stages_failed),
        ("appStatus_stages_skippedStages", 0),
        ("appStatus_tasks_completedTasks", t.tasks_completed),
        ("appStatus_tasks_failedTasks", t.tasks_failed),
        ("appStatus_tasks_killedTasks", 0),
        ("appStatus_tasks_skippedTasks", 0),
        ("executor_bytesRead", t.input_bytes),
        ("executor_cpuTime", t.cpu_ns),
        ("executor_jvmGCTime", t.gc_ms),
        ("executor_recordsRead", t.records_read),
        ("executor_runTime", t.duration_ms),
        ("executor_shuffleBytesWritten", t.shuffle_write),
        ("executor_shuffleTotalBytesRead", t.shuffle_read),
    ];
    for (name, v) in counters {
        s.push_str(&format!("{p}{name}_Count{{type=\"counters\"}} {v}\n"));
    }
    let n = app.events_posted + 8;
    let timer = "DAGScheduler_messageProcessingTime";
    for (q, v) in [("Count", n as f64), ("Max", 5.3e8), ("Mean", 2.1e6), ("Min", 12_000.0), ("50thPercentile", 584_579.0),
        ("75thPercentile", 1.2e6), ("95thPercentile", 4.1e7), ("98thPercentile", 1.04e8), ("99thPercentile", 2.0e8),
        ("999thPercentile", 5.3e8), ("StdDev", 5.6e7), ("FifteenMinuteRate", 0.9), ("FiveMinuteRate", 1.0),
        ("MeanRate", 1.1), ("OneMinuteRate", 1.17)]
    {
        s.push_str(&format!("{p}{timer}_{q}{{type=\"timers\"}} {v}\n"));
    }
    s
}

/// The driver's `/metrics/executors/prometheus` body (labelled per executor, driver included).
pub fn executors_metrics(app: &SparkApp) -> String {
    let mut s = format!("spark_info{{version=\"{SPARK_VERSION}\", revision=\"{SPARK_REVISION}\"}} 1.0\n");
    let mut rows: Vec<(String, u64, ExecStats)> = vec![("driver".into(), 0, ExecStats::default())];
    if app.executors_announced && app.finished_ms.is_none() {
        rows.extend(app.executors.iter().map(|e| (e.id.clone(), app.exec_cores, e.stats.clone())));
    }
    for (id, cores, st) in rows {
        let l = format!("{{application_id=\"{}\", application_name=\"{}\", executor_id=\"{id}\"}}", app.id, app.name);
        let heap = 200 * MIB + st.tasks_completed * 3 * MIB % (1500 * MIB);
        let vals: Vec<(&str, String)> = vec![
            ("rddBlocks", "0".into()),
            ("memoryUsed_bytes", (st.tasks_completed * 9173).to_string()),
            ("diskUsed_bytes", "0".into()),
            ("totalCores", cores.to_string()),
            ("maxTasks", cores.to_string()),
            ("activeTasks", "0".into()),
            ("failedTasks_total", st.tasks_failed.to_string()),
            ("completedTasks_total", st.tasks_completed.to_string()),
            ("totalTasks_total", (st.tasks_completed + st.tasks_failed).to_string()),
            ("totalDuration_seconds_total", format!("{}", st.duration_ms as f64 / 1000.0)),
            ("totalGCTime_seconds_total", format!("{}", st.gc_ms as f64 / 1000.0)),
            ("totalInputBytes_bytes_total", st.input_bytes.to_string()),
            ("totalShuffleRead_bytes_total", st.shuffle_read.to_string()),
            ("totalShuffleWrite_bytes_total", st.shuffle_write.to_string()),
            ("maxMemory_bytes", "2101975449".into()),
            ("JVMHeapMemory_bytes", heap.to_string()),
            ("JVMOffHeapMemory_bytes", (120 * MIB).to_string()),
            ("OnHeapExecutionMemory_bytes", "0".into()),
            ("ProcessTreeJVMRSSMemory_bytes", (heap + 300 * MIB).to_string()),
            ("MinorGCCount_total", (st.gc_ms / 30).to_string()),
            ("MajorGCCount_total", "0".into()),
            ("MinorGCTime_seconds_total", format!("{}", st.gc_ms as f64 / 1000.0)),
            ("MajorGCTime_seconds_total", "0.0".into()),
        ];
        for (name, v) in vals {
            s.push_str(&format!("metrics_executor_{name}{l} {v}\n"));
        }
    }
    s
}
