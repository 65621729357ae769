#!/usr/bin/env bash
# GEMV tuning sweep on the lent GPU: rows per subgroup (R) × workgroup size, key columns only.
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
for wg in ${WGS:-64 128 256}; do
  for r in ${RS:-1 2 4}; do
    echo "== WG=$wg R=$r"
    SPARQ_GEMV_WG=$wg SPARQ_GEMV_R=$r .gpu/sparq bench --adapter vulkan "$@" 2>/dev/null |
      awk -F'|' '/^\| (f|i)/ {printf "%-9s M=%-3s %5sx%-5s %8s us %6s GB/s %5s%%\n", $2, $4, $5, $6, $7, $8, $10}'
  done
done
