#!/bin/bash
# Submit both pipelines: each array job, then its merge step once every
# task has succeeded. Usage: SHARED=/shared bash submit.sh
set -euo pipefail
cd "$(dirname "$0")"
export SHARED=${SHARED:-/shared}
rob=$(sbatch --parsable --export=ALL --array=0-6 robustness.sbatch)
sbatch --export=ALL --dependency="afterok:$rob" robustness-merge.sbatch
feat=$(sbatch --parsable --export=ALL --array=0-3 features.sbatch)
sbatch --export=ALL --dependency="afterok:$feat" finetune.sbatch
