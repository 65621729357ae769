#!/usr/bin/env bash
# Scheduler measurements on the device: GPU alone vs GPU + lavapipe, two devices on the one
# GPU, and the scheduler tests on the real GPU. Logs go to $OUT.
D=.dev-sched
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
NV=${NV_ICD:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
tar -C /tmp -xJf $D/lvpkit.tar.xz
K=/tmp/lvpkit
for l in $K/sys/*; do ldconfig -p | grep -q "$(basename $l)" || cp $l $K/lib/; done
sys_cxx=$(ldconfig -p | awk '/libstdc\+\+\.so\.6 /{print $NF; exit}')
grep -q GLIBCXX_3.4.30 "$sys_cxx" 2>/dev/null || cp $K/stdcxx/* $K/lib/
printf '{"ICD":{"api_version":"1.1.230","library_path":"%s"},"file_format_version":"1.0.0"}\n' $K/lib/libvulkan_lvp.so > $K/lvp_icd.json
export LD_LIBRARY_PATH=$K/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VK_DRIVER_FILES=$NV:$K/lvp_icd.json
export WGPU_BACKEND=vulkan
chmod +x $D/sparq $D/schedule-test
$D/sparq devices 2>&1 | tee $OUT/devices.txt | grep '^\['
GPU=${GPU:-nvidia}
LVP=${LVP:-llvmpipe}
timeout 45 $D/sparq bench --adapters $GPU,$LVP --json $OUT/gpu_lavapipe.json > $OUT/gpu_lavapipe.md 2> $OUT/gpu_lavapipe.err; echo "rc=$?" >> $OUT/gpu_lavapipe.md
timeout 25 $D/sparq bench --adapters $GPU,$GPU --json $OUT/gpu_x2.json > $OUT/gpu_x2.md 2> $OUT/gpu_x2.err; echo "rc=$?" >> $OUT/gpu_x2.md
SPARQ_TEST_ADAPTERS=$GPU timeout 25 $D/schedule-test --test-threads 1 > $OUT/tests_gpu.txt 2>&1; echo "rc=$?" >> $OUT/tests_gpu.txt
tail -3 $OUT/tests_gpu.txt; tail -n 4 $OUT/*.err
cat $OUT/gpu_lavapipe.md $OUT/gpu_x2.md
