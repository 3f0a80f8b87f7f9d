#!/bin/sh
# One shard of a sharded fleetimage run, as a Kubernetes Indexed Job's pod or an AWS Batch
# array child runs it (deploy/kubernetes/indexed-job.yaml, deploy/aws-batch/job-definition.json).
#
# The shard comes from the job's environment (fleetimage reads JOB_COMPLETION_INDEX with
# FLEETIMAGE_SHARD_COUNT, or AWS_BATCH_JOB_ARRAY_INDEX with AWS_BATCH_JOB_ARRAY_SIZE); the run
# id is the same for every shard and every restart (RUN_ID, derived from the job). The journal
# lives on this shard's own disk ($FLEETIMAGE_JOURNAL; never on NFS/EFS: SQLite's WAL needs a
# local file system):
#   - the journal knows the run (the container restarted, its disk kept): resume it;
#   - it does not (first start, or a new pod / a retried child on an empty disk): run under the
#     same run id, which adopts the images this shard already made before creating anything.
# Usage: fleetimage-shard [--run-id ID] [fleetimage flags...]: --run-id (first) overrides
# $RUN_ID (AWS Batch substitutes job parameters only in the command); the other arguments go
# to fleetimage (e.g. --endpoint-url for a test endpoint).
set -eu

if [ "${1:-}" = "--run-id" ]; then
    RUN_ID="${2:?--run-id needs a value}"
    shift 2
fi

: "${RUN_ID:?set RUN_ID: the run id, the same for every shard (letters, digits and -, <= 40)}"
: "${FLEET_CONFIG:?set FLEET_CONFIG: the fleet config file}"
: "${REPORT_DIR:?set REPORT_DIR: where each shard writes its report}"
index="${JOB_COMPLETION_INDEX:-${AWS_BATCH_JOB_ARRAY_INDEX:-}}"
: "${index:?no shard index: JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX must be set}"

mkdir -p "$REPORT_DIR"
report="$REPORT_DIR/$RUN_ID-shard-$index.json"

known=0
fleetimage status "$RUN_ID" >/dev/null 2>&1 || known=$?
if [ "$known" -ne 2 ]; then  # 0 or 1: the journal holds this run
    exec fleetimage resume "$RUN_ID" --yes --report "$report" "$@"
fi
exec fleetimage run --config "$FLEET_CONFIG" --run-id "$RUN_ID" --yes --report "$report" "$@"
