//! Trino: a long-running coordinator and workers in namespace `trino`, queries from every team
//! that end in QueryCompletedEvent JSON (the shape Trino's `http-event-listener` POSTs: airlift
//! JSON, `java.time.Duration` as decimal seconds, `Instant` as ISO-8601), the coordinator's
//! OpenMetrics `/metrics`, and tab-separated server logs.

use serde_json::{Value, json};

use super::world::{Cluster, ContainerSpec, PendingLine, PodRole, PodSpec, Rng};

const GIB: u64 = 1024 * 1024 * 1024;
/// Trino version the emulated clusters report.
pub const TRINO_VERSION: &str = "468";
const SOURCES: &[&str] = &["superset", "trino-cli", "dbt-trino", "airflow", "jupyter"];
const PEOPLE: &[&str] = &["ana", "bruno", "chen", "dara", "emeka", "fatima", "goran", "hana"];
const TABLES: &[(&str, &str, &str)] = &[
    ("hive", "sales", "orders"),
    ("hive", "web", "clicks"),
    ("iceberg", "finance", "ledger"),
    ("iceberg", "ml", "features"),
    ("postgresql", "public", "customers"),
];
const ERRORS: &[(i64, &str, &str, &str)] = &[
    (1, "GENERIC_USER_ERROR", "USER_ERROR", "io.trino.spi.TrinoException"),
    (1, "SYNTAX_ERROR", "USER_ERROR", "io.trino.sql.parser.ParsingException"),
    (131079, "EXCEEDED_USER_MEMORY_LIMIT", "INSUFFICIENT_RESOURCES", "io.trino.ExceededMemoryLimitException"),
    (65536, "GENERIC_INTERNAL_ERROR", "INTERNAL_ERROR", "io.trino.spi.TrinoException"),
];

/// State of one Trino cluster (the coordinator's JMX counters and query id generator).
#[derive(Debug, Clone)]
pub struct TrinoCluster {
    /// Coordinator id in query ids (`…_00012_<id>`).
    pub coordinator_id: String,
    /// Load factor 0..2 driving worker CPU.
    pub load: f64,
    /// Queries running now.
    pub running: u64,
    /// Queries queued now.
    pub queued: u64,
    /// Started queries (counter).
    pub started: u64,
    /// Completed queries, failed included (counter).
    pub completed: u64,
    /// Failed queries (counter).
    pub failed: u64,
    /// User-error failures (counter).
    pub user_errors: u64,
    /// Internal failures (counter).
    pub internal_errors: u64,
    /// CPU seconds consumed by queries (counter).
    pub cpu_seconds: f64,
    /// Input bytes consumed (counter).
    pub input_bytes: u64,
    /// Reserved memory of the general pool.
    pub reserved_bytes: u64,
    seq: u64,
}

impl TrinoCluster {
    /// A fresh cluster state.
    pub fn new(coordinator_id: String) -> TrinoCluster {
        TrinoCluster {
            coordinator_id,
            load: 0.5,
            running: 0,
            queued: 0,
            started: 0,
            completed: 0,
            failed: 0,
            user_errors: 0,
            internal_errors: 0,
            cpu_seconds: 0.0,
            input_bytes: 0,
            reserved_bytes: 0,
            seq: 0,
        }
    }
}

/// Adds the coordinator and one worker per two nodes (at least one).
pub fn add_trino_pods(cluster: &mut Cluster, rng: &mut Rng, created_ms: i64, team: &str) {
    let workers = (cluster.nodes.len() / 2).max(1);
    for (i, role) in std::iter::once(PodRole::TrinoCoordinator).chain(std::iter::repeat_n(PodRole::TrinoWorker, workers)).enumerate() {
        let (component, cpu_m, mem, base) = match role {
            PodRole::TrinoCoordinator => ("coordinator", 2000, 8 * GIB, 0.3),
            _ => ("worker", 4000, 16 * GIB, 1.0),
        };
        let hash = rng.k8s_suffix(10);
        let suffix = rng.k8s_suffix(5);
        cluster.add_pod(rng, created_ms, PodSpec {
            name: format!("trino-{component}-{hash}-{suffix}"),
            namespace: "trino".into(),
            team: team.to_string(),
            app: "trino".into(),
            role,
            labels: vec![("component".into(), component.into()), ("pod-template-hash".into(), hash.clone())],
            annotations: vec![],
            owner: ("ReplicaSet".into(), format!("trino-{component}-{hash}")),
            containers: vec![ContainerSpec {
                name: format!("trino-{component}"),
                image: format!("trinodb/trino:{TRINO_VERSION}"),
                cpu_request_m: cpu_m,
                cpu_limit_m: None,
                mem_request: mem,
                mem_limit: Some(mem),
                ports: vec![("http".into(), 8080)],
                cpu_base: base,
            }],
            node: Some(i % cluster.nodes.len()),
            spark_app: None,
        });
    }
}

fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Jackson's `java.time.Duration` as seconds with nanosecond digits, here millisecond precision.
fn secs(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn server_log(ms: i64, level: &str, thread: &str, class: &str, msg: &str) -> String {
    format!("{}\t{level}\t{thread}\t{class}\t{msg}", iso_ms(ms))
}

/// Completes this tick's queries over (t0, t1]; returns their QueryCompletedEvent JSON lines.
pub fn advance(cluster: &mut Cluster, rng: &mut Rng, teams: &[String], mean_per_tick: f64, t0: i64, t1: i64) -> Vec<String> {
    let n = rng.poisson(mean_per_tick);
    let tc = &mut cluster.trino;
    tc.running = rng.poisson(mean_per_tick * 2.0);
    tc.queued = if rng.chance(0.2) { rng.int(1, 4) } else { 0 };
    tc.load = (tc.running as f64 / (mean_per_tick * 2.0).max(0.5)).min(2.0);
    tc.reserved_bytes = tc.running * rng.int(1, 6) * GIB / 4;
    let coordinator = cluster.pods.iter().position(|p| p.role == PodRole::TrinoCoordinator);
    let workers: Vec<usize> = cluster.pods.iter().enumerate().filter(|(_, p)| p.role == PodRole::TrinoWorker).map(|(i, _)| i).collect();
    let mut events = Vec::new();
    for k in 0..n {
        let tc = &mut cluster.trino;
        tc.seq += 1;
        tc.started += 1;
        tc.completed += 1;
        let end = t0 + ((t1 - t0) * (k as i64 + 1)) / (n as i64 + 1);
        let wall_ms = rng.int(80, 90_000) as i64;
        let create = end - wall_ms - rng.int(5, 400) as i64;
        let queued_ms = rng.int(1, 300) as i64;
        let planning_ms = rng.int(10, 800) as i64;
        let exec_start = create + queued_ms + planning_ms;
        let team = rng.pick(teams).clone();
        let person = *rng.pick(PEOPLE);
        let user = if rng.chance(0.4) { format!("svc-{team}") } else { person.to_string() };
        let source = *rng.pick(SOURCES);
        let (catalog, schema, table) = *rng.pick(TABLES);
        let created = chrono::DateTime::from_timestamp_millis(create).unwrap_or_default();
        let query_id = format!("{}_{:05}_{}", created.format("%Y%m%d_%H%M%S"), tc.seq % 100_000, tc.coordinator_id);
        let cpu_ms = (wall_ms as f64 * rng.range(0.5, 8.0)) as i64;
        let rows = rng.int(1_000, 500_000_000);
        let bytes = rows * rng.int(20, 200);
        let out_rows = rng.int(1, 10_000);
        let peak = rng.int(1, 8000) * 1024 * 1024;
        let failure = if rng.chance(0.07) { Some(*rng.pick(ERRORS)) } else { None };
        tc.cpu_seconds += cpu_ms as f64 / 1000.0;
        tc.input_bytes += bytes;
        let state = if failure.is_some() { "FAILED" } else { "FINISHED" };
        let sql = format!("SELECT {}, count(*) FROM {catalog}.{schema}.{table} WHERE ds = DATE '{}' GROUP BY 1", if rng.chance(0.5) { "region" } else { "status" }, created.format("%Y-%m-%d"));
        let failure_info = failure.map(|(code, name, typ, class)| {
            if typ == "USER_ERROR" { tc.user_errors += 1 } else { tc.internal_errors += 1 }
            tc.failed += 1;
            let msg = match name {
                "SYNTAX_ERROR" => "line 1:8: mismatched input 'FROM'. Expecting: '*', <expression>".to_string(),
                "EXCEEDED_USER_MEMORY_LIMIT" => "Query exceeded per-node memory limit of 12GB [Allocated: 11.99GB, Delta: 16.00MB]".to_string(),
                _ => format!("Table '{catalog}.{schema}.{table}' partition listing failed"),
            };
            json!({"errorCode":{"code":code,"name":name,"type":typ},"failureType":class,"failureMessage":msg,
                "failureTask":null,"failureHost":null,
                "failuresJson":json!({"type":class,"message":msg,"suppressed":[],"stack":[]}).to_string()})
        });
        let event = json!({
            "metadata":{"queryId":query_id,"transactionId":rng.uuid(),"query":sql,"queryHash":rng.hex(32),
                "queryState":state,"tables":[],"routines":[],"uri":format!("http://trino.trino.svc:8080/v1/query/{query_id}"),
                "updateType":null,"preparedQuery":null,"plan":null,"jsonPlan":null,"payload":null},
            "statistics":{"cpuTime":secs(cpu_ms),"failedCpuTime":secs(if failure.is_some() { cpu_ms } else { 0 }),
                "wallTime":secs(wall_ms),"queuedTime":secs(queued_ms),"scheduledTime":secs(cpu_ms + cpu_ms / 5),
                "failedScheduledTime":secs(0),"resourceWaitingTime":secs(queued_ms),"analysisTime":secs(planning_ms / 3),
                "planningTime":secs(planning_ms),"planningCpuTime":secs(planning_ms / 2),"executionTime":secs(end - exec_start),"inputBlockedTime":secs(wall_ms / 10),
                "failedInputBlockedTime":secs(0),"outputBlockedTime":secs(wall_ms / 50),"failedOutputBlockedTime":secs(0),
                "peakUserMemoryBytes":peak,"peakTaskUserMemory":peak / 2,"peakTaskTotalMemory":peak / 2 + 1024 * 1024,
                "physicalInputBytes":bytes,"physicalInputRows":rows,"processedInputBytes":bytes,"processedInputRows":rows,
                "internalNetworkBytes":bytes / 10,"internalNetworkRows":rows / 100,"totalBytes":bytes,"totalRows":rows,
                "outputBytes":out_rows * 40,"outputRows":out_rows,"writtenBytes":0,"writtenRows":0,
                "spilledBytes":0,"cumulativeMemory":peak as f64 * wall_ms as f64 / 2.0,"failedCumulativeMemory":0.0,
                "completedSplits":rng.int(1, 5000),"complete":true,"cpuTimeDistribution":[],"outputBufferUtilization":[],"operatorSummaries":[]},
            "context":{"user":user,"originalUser":user,"principal":user,"enabledRoles":[],"groups":[],"traceToken":null,
                "remoteClientAddress":format!("10.{}.{}.{}", 100 + cluster.index, rng.int(64, 127), rng.int(2, 250)),
                "userAgent":format!("{source}/{}", rng.int(1, 9)),"clientInfo":null,"clientTags":[format!("team={team}")],
                "clientCapabilities":["PATH","PARAMETRIC_DATETIME","SESSION_AUTHORIZATION"],"source":source,"timezone":"UTC",
                "catalog":catalog,"schema":schema,"resourceGroupId":["global", team],"sessionProperties":{},"resourceEstimates":{},
                "serverAddress":"trino.trino.svc","serverVersion":TRINO_VERSION,"environment":cluster.name,"queryType":"SELECT","retryPolicy":"NONE"},
            "ioMetadata":{"inputs":[{"catalogName":catalog,"catalogVersion":"default","schema":schema,"table":table,"columns":[],
                "physicalInputBytes":bytes,"physicalInputRows":rows}],"output":null},
            "failureInfo":failure_info,
            "warnings":[],
            "createTime":iso_ms(create),
            "executionStartTime":iso_ms(exec_start),
            "endTime":iso_ms(end)
        });
        events.push(event.to_string());
        if let Some(ci) = coordinator {
            let mut lines = vec![server_log(end, "INFO", &format!("dispatcher-query-{}", rng.int(1, 40)), "io.trino.event.QueryMonitor",
                &format!("TIMELINE: Query {query_id} :: {state}{} :: elapsed {wall_ms}ms :: planning {planning_ms}ms :: waiting {queued_ms}ms :: scheduling 3ms :: running {}ms :: finishing 1ms :: begin {} :: end {}",
                    failure.map(|f| format!(" ({})", f.1)).unwrap_or_default(), end - exec_start, iso_ms(create), iso_ms(end)))];
            if let Some((_, name, _, class)) = failure {
                lines.push(server_log(end, "ERROR", "remote-task-callback-7", "io.trino.execution.StageStateMachine", &format!("Stage {query_id}.1 failed")));
                lines.push(format!("{class}: {name} in query {query_id}"));
                lines.push("\tat io.trino.operator.Driver.processInternal(Driver.java:403)".into());
                lines.push("\tat io.trino.execution.executor.timesharing.TimeSharingTaskExecutor$TaskRunner.run(TimeSharingTaskExecutor.java:552)".into());
                lines.push("\tat java.base/java.lang.Thread.run(Thread.java:1583)".into());
            }
            let c = &mut cluster.pods[ci].containers[0];
            for (j, text) in lines.into_iter().enumerate() {
                c.pending.push(PendingLine { ts_ns: end * 1_000_000 + j as i64 * 1000, stderr: false, text });
            }
        }
        if !workers.is_empty() && rng.chance(0.5) {
            let wi = workers[(rng.next_u64() % workers.len() as u64) as usize];
            let text = server_log(end - 5, "INFO", "task-notification-3", "io.trino.execution.SqlTaskManager", &format!("Task {query_id}.1.0.0 finished, {} splits", rng.int(1, 400)));
            cluster.pods[wi].containers[0].pending.push(PendingLine { ts_ns: (end - 5) * 1_000_000, stderr: false, text });
        }
    }
    events
}

/// The coordinator's `/metrics` (OpenMetrics text, as Trino's built-in JMX → OpenMetrics endpoint).
pub fn metrics(cluster: &Cluster) -> String {
    let t = &cluster.trino;
    let workers = cluster.pods.iter().filter(|p| p.role == PodRole::TrinoWorker).count() as u64;
    let total_mem = workers * 12 * GIB;
    let vals: Vec<(&str, String)> = vec![
        ("trino_execution_name_QueryManager_RunningQueries", t.running.to_string()),
        ("trino_execution_name_QueryManager_QueuedQueries", t.queued.to_string()),
        ("trino_execution_name_QueryManager_StartedQueries_TotalCount", t.started.to_string()),
        ("trino_execution_name_QueryManager_CompletedQueries_TotalCount", t.completed.to_string()),
        ("trino_execution_name_QueryManager_FailedQueries_TotalCount", t.failed.to_string()),
        ("trino_execution_name_QueryManager_UserErrorFailures_TotalCount", t.user_errors.to_string()),
        ("trino_execution_name_QueryManager_InternalFailures_TotalCount", t.internal_errors.to_string()),
        ("trino_execution_name_QueryManager_ConsumedCpuTimeSecs_TotalCount", format!("{:.3}", t.cpu_seconds)),
        ("trino_execution_name_QueryManager_ConsumedInputBytes_TotalCount", t.input_bytes.to_string()),
        ("trino_memory_type_ClusterMemoryPool_name_general_TotalDistributedBytes", total_mem.to_string()),
        ("trino_memory_type_ClusterMemoryPool_name_general_ReservedDistributedBytes", t.reserved_bytes.min(total_mem).to_string()),
        ("trino_memory_type_ClusterMemoryPool_name_general_FreeDistributedBytes", total_mem.saturating_sub(t.reserved_bytes).to_string()),
        ("trino_failuredetector_name_HeartbeatFailureDetector_ActiveCount", (workers + 1).to_string()),
        ("trino_metadata_name_DiscoveryNodeManager_ActiveNodeCount", (workers + 1).to_string()),
    ];
    let mut s = String::new();
    for (name, v) in vals {
        s.push_str(&format!("# TYPE {name} gauge\n{name} {v}\n"));
    }
    s.push_str("# EOF\n");
    s
}
