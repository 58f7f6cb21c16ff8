# Sourced by scripts/bootstrap.sh (llama-cpp-python's libraries) and scripts/build_llama_server.sh
# (llama.cpp's server for the tests and benchmarks): one place that says how llama.cpp is compiled.
#
# Why these flags: llama.cpp compiles for the building CPU (GGML_NATIVE, -march=native). On a processor
# with AMX (Intel Sapphire Rapids and later, common in clouds) that turns on ggml's AMX matrix path,
# which segfaults in ggml_backend_amx_mul_mat at the first generation on some machines (llama.cpp issue
# #20824, open; dspy dropped its AMX variant from CI for the same crash; ollama #17205 on AWS m7i).
# -mno-amx-* win over -march=native in any order (GCC and Clang keep explicitly disabled features), so
# the AMX sources compile to nothing (they are guarded by __AMX_INT8__), and AVX2 / AVX-512 stay native.
# A native build is only valid on the CPU it was built for, so the wheel cache of scripts/bootstrap.sh
# keys on this CPU's feature flags as well as on these arguments (pip's own cache keys on neither).
# tests/test_native_build.py checks the built libraries hold no AMX instruction (objdump).
LLAMA_NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
LLAMA_CMAKE_FLAGS="-DGGML_NATIVE=ON -DCMAKE_C_FLAGS='$LLAMA_NO_AMX' -DCMAKE_CXX_FLAGS='$LLAMA_NO_AMX'"
# What a native build depends on: the CPU's instruction-set flags and the compiler.
llama_cpu_key() {
    { grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m; "${CC:-cc}" --version 2>/dev/null | head -1; } \
        | sha256sum | cut -c1-16
}
