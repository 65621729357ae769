#!/usr/bin/env bash
# GEMV tuning sweep on the lent GPU (see ../shared/gpu/GPU.md): workgroup size (WGS), rows
# per subgroup (RS), blocks in flight per lane (US), x staged in workgroup memory or read
# from global memory (XS); prints the key columns only. Arguments go to `sparq bench`.
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
for wg in ${WGS:-256}; do for r in ${RS:-2}; do for u in ${US:-2}; do for xs in ${XS:-1}; do
  echo "== WG=$wg R=$r U=$u XSTAGE=$xs"
  SPARQ_GEMV_WG=$wg SPARQ_GEMV_R=$r SPARQ_GEMV_U=$u SPARQ_GEMV_XSTAGE=$xs \
    .gpu/sparq bench --adapter vulkan "$@" 2>/dev/null |
    awk -F'|' '/^\| (f|i)/ {printf "%-9s M=%-3s %5sx%-5s %8s us (min %s) %6s GB/s %5s%% %s TF\n", $2, $4, $5, $6, $7, $8, $9, $11, $10}'
done; done; done; done
